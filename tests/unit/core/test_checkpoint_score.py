"""The score training keeps its best checkpoint by: the selection objective, except that a
fine-tune's checkpoint worse than its start (PSNR, AuC or colourfulness gap beyond the tolerance)
ranks below the start, so a run that only gets worse returns where it started."""

from pipeline.core import metrics

START = {"auc": 86.0, "auc_rebalanced": 22.3, "psnr": 21.1, "cf_gap": 11.6}


def val(**kw):
    v = {**START, **kw}
    v["objective"] = metrics.selection_objective(v["auc_rebalanced"], v["cf_gap"])
    return v


def test_an_oversaturated_fine_tune_ranks_below_its_start():
    # the wrecked demo: more rebalanced AuC (splashed colour) for 10 AuC, 6 dB and 13 colourfulness points
    wrecked = val(auc=76.0, auc_rebalanced=40.7, psnr=15.1, cf_gap=24.3)
    assert wrecked["objective"] > val()["objective"]  # the objective alone prefers it
    assert metrics.worse_than(wrecked, START)
    assert metrics.checkpoint_score(wrecked, START) < metrics.checkpoint_score(val(), START)


def test_a_real_improvement_wins_and_small_losses_are_tolerated():
    better = val(auc_rebalanced=26.0, psnr=20.9, auc=85.6, cf_gap=10.0)
    assert not metrics.worse_than(better, START)
    assert metrics.checkpoint_score(better, START) > metrics.checkpoint_score(val(), START)
    for key, worse in (("psnr", 20.7), ("auc", 85.4), ("cf_gap", 13.7)):
        assert metrics.worse_than(val(**{key: worse}), START), key


def test_without_a_start_the_score_is_the_objective():
    v = val(auc_rebalanced=40.0, psnr=10.0)
    assert metrics.checkpoint_score(v) == v["objective"]


def test_the_purple_share_counts_saturated_purple_only():
    import torch

    ab = torch.zeros(2, 2, 2, 2)
    ab[0, :, 0, 0] = torch.tensor([30.0, -30.0])  # hue 315: purple
    ab[0, :, 0, 1] = torch.tensor([3.0, -3.0])  # purple hue, chroma 4: grey-ish, not counted
    ab[0, :, 1, 0] = torch.tensor([0.0, -40.0])  # hue 270: blue
    ab[1, :, :, :] = torch.tensor([20.0, -10.0])[:, None, None]  # hue 333: all purple
    assert metrics.purple_share(ab).tolist() == [0.25, 1.0]
