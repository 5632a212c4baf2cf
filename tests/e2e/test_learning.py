"""Learning check on CPU: a tiny generator learns colour from real photos, and class rebalancing
makes its colours more saturated than the same training with unit weights (the seed's point)."""

import numpy as np
import pytest
import torch

from pipeline.config import ExperimentConfig
from pipeline.core import color, geometry, transforms
from pipeline.data import priors, storage
from pipeline.gan import batches, cgan
from support import ROOT


@pytest.fixture(scope="module")
def photos():
    crops = []
    for path in storage.skimage_photos():
        with open(path, "rb") as f:
            d = transforms.decode_image(f.read(), size=48)
        if d.rgb is None or color.is_grey(d.rgb):
            continue
        crops.append(geometry.centre_crop(d.rgb, 48))
    assert len(crops) >= 6
    return torch.from_numpy(np.stack(crops))  # (N,48,48,3) uint8


def train(photos, rebalance: bool, steps_n: int = 100):
    torch.manual_seed(0)
    cfg = ExperimentConfig.from_dict(
        {
            "model": {"preset": "tiny", "dropout": 0.0, "d_base_channels": 8, "d_layers": 2},
            "loss": {"rebalance": rebalance, "lambda_adv": 0.0},
            "optim": {"lr_g": 3e-3, "beta1": 0.9, "beta2": 0.99},
            "train": {"ema_decay": 0.0, "amp": "off"},  # judge G's own weights, in fp32
        }
    )
    gan = cgan.build(cfg, torch.device("cpu"))
    G = gan.G
    prior = priors.load_prior(str(ROOT / "prior_probs.npy"), None)
    weights = batches.class_weights_tensor(prior, cfg.loss)
    batch = batches.batch_from_rgb(photos, G.logits_stride)
    ces = []
    for i in range(steps_n):
        ces.append(gan.train_step(batch, i, weights, sync=True)["g_ce"])
    G.eval()
    with torch.no_grad():
        _, ab = G(batch["L"])
    return ces, ab.norm(dim=1).mean().item(), batch["ab"].norm(dim=1).mean().item()


def test_ce_falls_and_rebalancing_saturates(photos):
    ces_rb, chroma_rb, chroma_true = train(photos, rebalance=True)
    ces_unit, chroma_unit, _ = train(photos, rebalance=False)
    assert np.mean(ces_rb[-10:]) < 0.6 * np.mean(ces_rb[:5]), "rebalanced CE must fall clearly"
    assert np.mean(ces_unit[-10:]) < 0.6 * np.mean(ces_unit[:5]), "plain CE must fall clearly"
    print(f"mean chroma: rebalanced {chroma_rb:.1f}, unit {chroma_unit:.1f}, truth {chroma_true:.1f}")
    assert chroma_rb > 1.15 * chroma_unit, (chroma_rb, chroma_unit)
