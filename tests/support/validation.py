"""Tiny generators, photos and figures for the validation tests (several temperatures, the guard set)."""

import numpy as np
import torch

from pipeline.config import ExperimentConfig
from pipeline.gan import cgan

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


def figures(objective, purple, truth=2.0):
    """Validation figures with this objective (no colourfulness gap) and purple share (truth's: ``truth``)."""
    return {
        "objective": objective,
        "auc_rebalanced": objective,
        "cf_gap": 0.0,
        "purple_pct": purple,
        "purple_true_pct": truth,
    }
