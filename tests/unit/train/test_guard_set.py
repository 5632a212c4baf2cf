"""A guard set (data.val_guard): validation scores a second set at every temperature, and a fine-tune's
checkpoint whose objective there falls below the start's ranks below every one that does not."""

import pytest
import torch

from pipeline.config import ConfigError, ExperimentConfig
from pipeline.core import metrics
from pipeline.train import progress, trainer
from support.validation import figures, generator, photos, tiny, uniform_prior


class Rows:
    """What validation asks of a Ray Data shard: its numpy batches."""

    def __init__(self, batches):
        self.batches = batches

    def iter_batches(self, batch_size, batch_format):
        assert batch_format == "numpy"
        return iter(self.batches)


def test_the_guard_set_is_scored_at_every_temperature_as_the_val_set_would_be():
    cfg = tiny(val_temperatures=[0.8])
    G, cpu = generator(cfg), torch.device("cpu")
    prior = uniform_prior(G)
    val_photos, guard_photos = photos(seed=0), photos(n=3, seed=1)
    val, per_t, _ = trainer.validate(G, Rows(val_photos), cfg, prior, cpu, guard_shard=Rows(guard_photos))
    alone, _ = trainer.score_validation(G, guard_photos, cfg, prior, cpu, [0.38, 0.8])
    own, _ = trainer.score_validation(G, val_photos, cfg, prior, cpu, [0.38, 0.8])
    for T in (0.38, 0.8):
        for key in trainer.GUARD_FIGURES:
            assert per_t[T][f"guard_{key}"] == pytest.approx(alone[T][key]), (T, key)
            assert per_t[T][key] == pytest.approx(own[T][key]), "the val figures are the val set's"
    assert per_t[0.38]["guard_images"] == 3 and per_t[0.38]["images"] == 6
    assert val["guard_objective"] == per_t[val["temperature"]]["guard_objective"], "at the T the val set chose"
    assert val["guard_objective_t0.8"] == alone[0.8]["objective"] and val["objective_t0.8"] == own[0.8]["objective"]
    no_guard, _, _ = trainer.validate(G, Rows(val_photos), cfg, prior, cpu)
    assert not any(k.startswith("guard_") for k in no_guard)


def test_a_checkpoint_worse_on_the_guard_set_than_the_start_ranks_below_one_that_is_not():
    start = {"psnr": 21.0, "auc": 86.0, "cf_gap": 3.0, "guard_objective": 30.0}
    tol = metrics.NO_WORSE_THAN_START["guard_objective"]
    better_here = {**start, "auc_rebalanced": 45.0, "guard_objective": 30.0 - tol - 0.1}
    held = {**start, "auc_rebalanced": 41.0, "guard_objective": 30.0 - tol + 0.1}
    assert metrics.worse_than(better_here, start) == [f"guard set objective 29.40 < 30.00 - {tol}"]
    assert metrics.worse_than(held, start) == []
    assert metrics.checkpoint_score(better_here, start) < metrics.checkpoint_score(held, start)
    assert metrics.checkpoint_score(better_here) == 45.0 - 0.5 * 3.0, "no start: the objective alone"
    unguarded = {k: v for k, v in start.items() if k != "guard_objective"}
    assert metrics.worse_than(better_here, unguarded) == [], "a start scored without a guard set holds nothing"
    nan = float("nan")
    assert metrics.worse_than({**held, "guard_objective": nan}, start) == ["guard set objective not measured"]
    assert metrics.worse_than(held, {**start, "guard_objective": nan}) == [], "nothing measured to hold it to"


def test_the_temperature_chosen_keeps_the_guard_sets_purple_share_within_the_limit_too():
    per_t = {
        0.5: {**figures(40.0, 2.0), "guard_purple_pct": 5.0, "guard_purple_true_pct": 2.0},
        0.7: {**figures(39.0, 2.0), "guard_purple_pct": 2.0, "guard_purple_true_pct": 2.0},
    }
    assert metrics.best_temperature(per_t) == 0.7, "0.5's guard share is 2.5x the truth's"
    assert metrics.best_temperature({T: figures(v["objective"], 2.0) for T, v in per_t.items()}) == 0.5


def test_the_progress_line_and_the_scoring_name_the_guard_set(capsys):
    val = {**figures(39.0, 2.0), "auc": 85.0, "psnr": 20.5, "guard_psnr": 22.25, "guard_objective": 29.5}
    assert "guard set: PSNR 22.25  objective 29.5" in progress.figures(val)
    cfg = tiny().replace({"data.val_guard": "prep/large-val"})
    G = generator(cfg)
    scoring = trainer.validation_scoring(G, cfg)
    assert scoring["guard"] == "prep/large-val"
    assert "guard" not in trainer.validation_scoring(G, tiny()), "a run without one scores as before"
    trainer.warn_if_scored_otherwise({"scoring": trainer.validation_scoring(G, tiny())}, scoring, "prior_probs.npy")
    assert "this run validates at T [0.38] with the prior prior_probs.npy and the guard set prep/large-val" in (
        capsys.readouterr().out
    )


def test_an_empty_guard_path_is_refused():
    with pytest.raises(ConfigError, match="data.val_guard"):
        ExperimentConfig.from_dict({"data": {"val_guard": " "}})
