"""Learning check on CPU: a tiny generator learns colour from real photos, and class rebalancing
makes its colours more saturated than the same training with unit weights (the seed's point)."""

import numpy as np
import pytest
import torch

from conftest import ROOT
from models import GENERATOR_PRESETS, Generator, PatchDiscriminator
from pipeline import priors, steps, storage, transforms
from pipeline.config import ExperimentConfig


@pytest.fixture(scope="module")
def photos():
    crops = []
    for path in storage.skimage_photos():
        with open(path, "rb") as f:
            d = transforms.decode_image(f.read(), size=48)
        if d.rgb is None or transforms.is_grey(d.rgb):
            continue
        h, w, _ = d.rgb.shape
        t, l = (h - 48) // 2, (w - 48) // 2
        crops.append(d.rgb[t : t + 48, l : l + 48])
    assert len(crops) >= 6
    return torch.from_numpy(np.stack(crops))  # (N,48,48,3) uint8


def train(photos, rebalance: bool, steps_n: int = 100):
    torch.manual_seed(0)
    cfg = ExperimentConfig.from_dict({"loss": {"rebalance": rebalance, "lambda_adv": 0.0}})
    G = Generator(**{**GENERATOR_PRESETS["tiny"], "dropout": 0.0})
    D = PatchDiscriminator(base_channels=8, n_layers=2)
    opt_g = torch.optim.Adam(G.parameters(), 3e-3, betas=(0.9, 0.99))
    opt_d = torch.optim.Adam(D.parameters(), 1e-4)
    prior = priors.load_prior(str(ROOT / "prior_probs.npy"))
    weights = steps.class_weights_tensor(prior, cfg.loss)
    batch = steps.prepare_batch(photos, G.logits_stride)
    ces = []
    for _ in range(steps_n):
        ces.append(steps.train_step(G, D, opt_g, opt_d, batch, cfg.loss, weights)["g_ce"])
    G.eval()
    with torch.no_grad():
        _, ab = G(batch["L"])
    return ces, ab.norm(dim=1).mean().item(), batch["ab"].norm(dim=1).mean().item()


@pytest.mark.slow
def test_ce_falls_and_rebalancing_saturates(photos):
    ces_rb, chroma_rb, chroma_true = train(photos, rebalance=True)
    ces_unit, chroma_unit, _ = train(photos, rebalance=False)
    assert np.mean(ces_rb[-10:]) < 0.6 * np.mean(ces_rb[:5]), "rebalanced CE must fall clearly"
    assert np.mean(ces_unit[-10:]) < 0.6 * np.mean(ces_unit[:5]), "plain CE must fall clearly"
    print(f"mean chroma: rebalanced {chroma_rb:.1f}, unit {chroma_unit:.1f}, truth {chroma_true:.1f}")
    assert chroma_rb > 1.15 * chroma_unit, (chroma_rb, chroma_unit)
