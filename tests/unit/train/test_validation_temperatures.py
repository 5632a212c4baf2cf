"""Validation at several decoding temperatures (train.val_temperatures): every T decoded from one
forward pass scores as a forward pass at that T would, and a checkpoint is scored at the T it would
ship with: the best objective whose purple share stays within 1.3x the truth's."""

import numpy as np
import pytest
import torch

from pipeline.config import ConfigError, ExperimentConfig
from pipeline.core import metrics
from pipeline.gan import batches, cgan
from pipeline.train import progress, trainer

TINY = {"model": {"preset": "tiny", "d_base_channels": 8, "d_layers": 2, "temperature": 0.38}}


def tiny(**train) -> ExperimentConfig:
    return ExperimentConfig.from_dict({**TINY, "train": {"batch_size": 3, **train}})


def generator(cfg):
    torch.manual_seed(0)
    return cgan.build(cfg, torch.device("cpu")).generator()


def photos(n=6, size=32, seed=0):
    """numpy batches as Ray Data hands them: smooth random colour fields (a prior-weighted metric
    needs colour), 3 photos a batch."""
    rng = np.random.default_rng(seed)
    low = rng.integers(0, 256, (n, 4, 4, 3)).astype(np.float32)
    rgb = torch.nn.functional.interpolate(torch.from_numpy(low).permute(0, 3, 1, 2), size=size, mode="bilinear")
    rgb = rgb.permute(0, 2, 3, 1).round().clamp(0, 255).to(torch.uint8).numpy()
    return [{"rgb": rgb[i : i + 3]} for i in range(0, n, 3)]


def uniform_prior(G):
    return torch.full((G.num_bins,), 1.0 / G.num_bins, dtype=torch.float64)


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
                trainer.accumulate(sums, logits, ab, b, batch["rgb"], uniform_prior(G))
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


def figures(objective, purple, truth=2.0):
    return {"objective": objective, "purple_pct": purple, "purple_true_pct": truth}


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
    line = progress.figures({**val, "auc": 85.0, "auc_rebalanced": 40.0, "cf_gap": 2.0})
    assert line.endswith("objective 39.0  at T 0.38")
    one = trainer.at_best_temperature({0.6: per_t[0.6]})
    assert one["temperature"] == 0.6 and not any(k.startswith("objective_t") for k in one)
    assert "at T" not in progress.figures({**one, "auc": 85.0, "auc_rebalanced": 40.0, "cf_gap": 2.0})


@pytest.mark.parametrize("bad", ["[0.5, 0]", "[0.5, hot]", str(list(np.linspace(0.1, 2, 17)))])
def test_bad_validation_temperatures_are_config_errors(bad):
    with pytest.raises(ConfigError, match="train.val_temperatures"):
        ExperimentConfig().replace({"train.val_temperatures": bad})
