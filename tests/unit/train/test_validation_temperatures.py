"""Validation at several decoding temperatures (train.val_temperatures): every T decoded from one
forward pass scores as a forward pass at that T would, and a checkpoint is scored at the T it would
ship with: the best objective whose purple share stays within 1.3x the truth's."""

import numpy as np
import pytest
import torch

from pipeline.config import ConfigError, ExperimentConfig
from pipeline.core import metrics
from pipeline.gan import batches
from pipeline.train import progress, trainer
from support.validation import figures, generator, photos, tiny, uniform_prior


def test_each_temperature_scores_as_a_forward_pass_at_it():
    cfg = tiny(val_temperatures=[0.8, 0.38])
    G = generator(cfg)
    temps = trainer.validation_temperatures(G, cfg)
    assert temps == [0.38, 0.8], "the model's own T first, each T once"
    per_t, _ = trainer.score_validation(G, photos(), cfg, uniform_prior(G), torch.device("cpu"), temps)
    for T in temps:  # the same figures from a forward pass decoded at T
        sums = trainer.empty_sums(torch.device("cpu"))
        with torch.no_grad():
            for raw in photos():
                batch = trainer.to_tensors(raw)
                b = batches.step_batch(batch, G.logits_stride)
                logits, ab = G(b["L"], T)
                trainer.accumulate(sums, ab, b, trainer.truth_side(logits, b, batch["rgb"], uniform_prior(G)))
        want = metrics.summarise(sums)
        for key in ("auc", "auc_rebalanced", "psnr", "cf_gap", "purple_pct", "purple_true_pct"):
            assert per_t[T][key] == pytest.approx(want[key], abs=1e-6), (T, key)
    assert per_t[0.38]["cf_pred"] > per_t[0.8]["cf_pred"], "a lower T decodes more vivid colours"
    assert per_t[0.38]["images"] == 6


def test_ab_from_logits_matches_the_forward_pass_at_any_size():
    G = generator(tiny())
    L = torch.rand(2, 1, 37, 45) * 2 - 1  # not a multiple of the model's 2**depth
    with torch.no_grad():
        logits, ab = G(L, 0.6)
        again = G.ab_from_logits(logits, (37, 45), 0.6)
    assert again.shape == ab.shape == (2, 2, 37, 45)
    inner = (slice(None), slice(None), slice(0, 32), slice(0, 40))  # away from the padded border
    assert torch.allclose(again[inner], ab[inner], atol=1e-4)


def test_the_best_temperature_is_the_best_objective_within_the_purple_limit():
    per_t = {0.2: figures(40.0, 3.0), 0.38: figures(39.0, 2.5), 0.6: figures(38.0, 2.0)}
    assert metrics.best_temperature(per_t) == 0.38, "0.2's 3 % is over 1.3 x 2 %"
    assert metrics.best_temperature({0.2: figures(40.0, 9.0), 0.5: figures(30.0, 8.0)}) == 0.2, (
        "none within the limit: the best objective of all"
    )
    assert metrics.best_temperature({0.4: figures(39.0, 1.0), 0.6: figures(39.0, 1.0)}) == 0.6, "ties: the higher T"


def test_validation_reports_the_chosen_temperature_and_each_objective():
    per_t = {0.38: {**figures(39.0, 2.5), "psnr": 20.5}, 0.6: {**figures(38.0, 2.0), "psnr": 20.9}}
    val = trainer.at_best_temperature(per_t)
    assert val["temperature"] == 0.38 and val["psnr"] == 20.5 and val["objective"] == 39.0
    assert val["objective_t0.38"] == 39.0 and val["objective_t0.6"] == 38.0
    line = progress.figures({**val, "auc": 85.0})
    assert line.endswith("objective 39.0  at T 0.38")
    one = trainer.at_best_temperature({0.6: per_t[0.6]})
    assert one == per_t[0.6], "one temperature: the figures as before, no T of their own"
    assert "at T" not in progress.figures({**one, "auc": 85.0})


@pytest.mark.parametrize("bad", ["[0.5, 0]", "[0.5, hot]", str(list(np.linspace(0.1, 2, 17)))])
def test_bad_validation_temperatures_are_config_errors(bad):
    with pytest.raises(ConfigError, match="train.val_temperatures"):
        ExperimentConfig().replace({"train.val_temperatures": bad})


def test_each_temperature_is_held_to_the_start_at_the_same_temperature():
    """A lower T alone costs PSNR and a higher one colourfulness: against the start's figures at
    another T, a checkpoint would look worse than its start for having changed T, not for being worse."""

    def at(objective, psnr, cf_gap):
        return {
            "objective": objective,
            "auc_rebalanced": objective + 0.5 * cf_gap,
            "psnr": psnr,
            "auc": 85.0,
            "cf_gap": cf_gap,
            "purple_pct": 1.0,
            "purple_true_pct": 2.0,
        }

    start_per_t = {0.5: at(39.0, 20.3, 1.0), 0.7: at(38.0, 20.7, 4.0)}
    start = trainer.start_figures(trainer.at_best_temperature(start_per_t), start_per_t, {})
    assert start["temperature"] == 0.5 and set(start["by_t"]) == {"0.5", "0.7"}
    # the checkpoint: as good as the start at 0.5, better at 0.7 than the start was there
    per_t = {0.5: at(39.0, 20.3, 1.0), 0.7: at(39.5, 20.7, 4.0)}
    val = trainer.at_best_temperature(per_t, start)
    assert val["temperature"] == 0.7
    assert not metrics.worse_than(val, metrics.start_at(start, 0.7))
    assert metrics.worse_than(val, {k: v for k, v in start.items() if k != "by_t"}), (
        "held to the start's own best T, the change of T alone reads as a loss"
    )
    # a checkpoint worse than the start at its best-objective T is scored at a T where it is not
    per_t = {0.5: at(39.6, 19.9, 1.0), 0.7: at(38.5, 20.7, 4.0)}
    assert trainer.at_best_temperature(per_t, start)["temperature"] == 0.7
    assert trainer.at_best_temperature(per_t)["temperature"] == 0.5, "without a start: the best objective"


def test_temperatures_that_name_the_same_figures_are_scored_once():
    cfg = tiny(val_temperatures=[0.5, 0.5000000001, 0.38])
    assert trainer.validation_temperatures(generator(cfg), cfg) == [0.38, 0.5]


def test_a_resumed_run_says_when_its_start_was_validated_another_way(capsys):
    now = {"temperatures": [0.6, 0.5], "prior": "prior_probs.npy"}
    trainer.warn_if_scored_otherwise({"auc": 85.0, "scoring": now}, now, "mix.npy")
    trainer.warn_if_scored_otherwise(None, now, "mix.npy")
    assert capsys.readouterr().out == ""
    trainer.warn_if_scored_otherwise({"auc": 85.0, "scoring": {**now, "prior": "mix.npy"}}, now, "mix.npy")
    assert "validated at T [0.6, 0.5] with the prior mix.npy" in capsys.readouterr().out
    # a start recorded before validation said how: at the model's own T with loss.prior
    trainer.warn_if_scored_otherwise({"auc": 85.0}, now, "prior_probs.npy")
    assert "validated another way" in capsys.readouterr().out
    one = {"temperatures": [0.6], "prior": "prior_probs.npy"}
    trainer.warn_if_scored_otherwise({"auc": 85.0}, one, "prior_probs.npy")
    assert capsys.readouterr().out == ""
    trainer.warn_if_scored_otherwise({"auc": 85.0}, one, "mix.npy")  # train.val_prior set since
    assert "validated another way" in capsys.readouterr().out


class Shard:
    """The ``iter_batches`` face of a Ray Data shard over in-memory batches (what ``validate`` reads)."""

    def __init__(self, rows):
        self.rows = rows

    def iter_batches(self, batch_size, batch_format):
        return iter(self.rows)


def test_a_checkpoint_is_judged_against_the_start_at_its_own_temperature():
    """Training's path: the start scored at every T (``start_figures``), a checkpoint validated
    against it, its score and the worse-than-start note taken at the T it was picked at."""
    cfg = tiny(val_temperatures=[0.8])
    G = generator(cfg)
    prior, cpu = uniform_prior(G), torch.device("cpu")
    val, per_t, _ = trainer.validate(G, Shard(photos()), cfg, prior, cpu)
    start = trainer.start_figures(val, per_t, trainer.validation_scoring(G, cfg))
    assert set(start["by_t"]) == {"0.38", "0.8"} and start["scoring"]["temperatures"] == [0.38, 0.8]
    again, _, _ = trainer.validate(G, Shard(photos()), cfg, prior, cpu, start=start)
    score, worse = metrics.judged(again, start)
    assert score == again["objective"] and worse == [], "the same weights are no worse than themselves"
    # the start's own best T differs from the checkpoint's: held to the start at the checkpoint's T
    other = 0.8 if start["temperature"] == 0.38 else 0.38
    at_other = {**per_t[other], "temperature": other}
    mixed = {k: v for k, v in start.items() if k != "by_t"}
    assert metrics.judged(at_other, start) == (at_other["objective"], [])
    assert metrics.worse_than(at_other, mixed) or metrics.worse_than(mixed, at_other), (
        "the two temperatures differ beyond the guard's tolerances: comparing across them would misjudge"
    )


def test_validation_temperatures_must_be_a_list():
    with pytest.raises(ConfigError, match=r"train.val_temperatures must be a list \(\[\] for none\)"):
        ExperimentConfig().replace({"train.val_temperatures": "null"})


def test_the_run_summary_says_when_the_best_t_is_not_the_models_own(capsys):
    """The summary's best checkpoint, from what Ray Train reported with it: its figures at its best T,
    and how to ship it at that T when the model decodes at another."""
    from types import SimpleNamespace

    from pipeline.jobs import train as train_job

    cfg = tiny()  # the model's own T: 0.38

    def summary_of(temperature):
        reported = {"epoch": 2, "val_score": 39.0, "val_auc": 85.0, "val_auc_rebalanced": 40.0, "val_psnr": 20.5}
        reported |= {"val_cf_gap": 2.0, "val_objective": 39.0, "val_temperature": temperature}
        result = SimpleNamespace(
            metrics={}, checkpoint=None, best_checkpoints=[(SimpleNamespace(path="/r/c"), reported)]
        )
        launched = trainer.Launched(result, "run-id", {}, {}, cfg)
        train_job.summary(launched, "r", "sqlite:////tmp/m.db", "/tmp/a", 60.0)
        return capsys.readouterr().out

    said = summary_of(0.5)
    assert "objective 39.0  at T 0.5" in said
    assert "scored best at T 0.5; the model decodes at its T 0.38" in said and "--temperature 0.5" in said
    assert "scored best" not in summary_of(0.38)
