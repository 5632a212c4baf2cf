"""SSIM is Wang et al. 2004's (Gaussian window sigma 1.5, population covariance, K1 .01, K2 .03,
L 255), the one papers and torchmetrics report, not scikit-image's default (7x7 uniform window,
sample covariance); eval records the parameters with its scores."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import gaussian_filter

from pipeline import cli
from pipeline.core import metrics


def wang_ssim(x: np.ndarray, y: np.ndarray) -> float:
    """Wang et al.'s SSIM written out: Gaussian-weighted local means, population (co)variances,
    the SSIM map averaged over the pixels whose 11x11 window fits, then over R, G, B."""
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    r = 5  # 11x11 window: sigma 1.5 truncated at 3.5 sigma
    out = []
    for ch in range(3):
        a, b = x[..., ch].astype(np.float64), y[..., ch].astype(np.float64)
        g = lambda im: gaussian_filter(im, sigma=1.5, truncate=3.5)  # noqa: E731
        mu_a, mu_b = g(a), g(b)
        var_a, var_b, cov = g(a * a) - mu_a**2, g(b * b) - mu_b**2, g(a * b) - mu_a * mu_b
        s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
        out.append(s[r:-r, r:-r].mean())
    return float(np.mean(out))


@pytest.fixture(scope="module")
def photo_pair():
    """A real photo and a JPEG-degraded, slightly recoloured copy of it."""
    import skimage.data

    truth = skimage.data.astronaut()[100:260, 150:330]
    buf = io.BytesIO()
    Image.fromarray(truth).save(buf, "JPEG", quality=15)
    pred = np.asarray(Image.open(buf).convert("RGB")).astype(np.int16)
    pred[..., 0] += 12  # a colour cast, as a colorizer's error would be
    return np.clip(pred, 0, 255).astype(np.uint8), truth


def test_ssim_matches_wang_et_al(photo_pair):
    pred, truth = photo_pair
    assert metrics.ssim(pred, truth) == pytest.approx(wang_ssim(pred, truth), abs=1e-9)
    assert metrics.ssim(truth, truth) == pytest.approx(1.0)


def test_ssim_is_not_scikit_images_default(photo_pair):
    from skimage.metrics import structural_similarity

    pred, truth = photo_pair
    default = structural_similarity(pred, truth, channel_axis=-1, data_range=255)  # what eval reported before
    assert abs(metrics.ssim(pred, truth) - default) > 0.005


def test_ssim_by_hand_with_an_explicit_window():
    # every window position written out: 11x11 Gaussian weights (sigma 1.5, summing to 1),
    # weighted means, population (co)variances, Wang's formula; mean over positions and channels
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 256, (15, 17, 3)).astype(np.uint8)
    pred = np.clip(truth.astype(int) + rng.integers(-40, 41, truth.shape), 0, 255).astype(np.uint8)
    t = np.arange(-5, 6)
    w = np.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2 * 1.5**2))
    w /= w.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for ch in range(3):
        for i in range(5, 15 - 5):
            for j in range(5, 17 - 5):
                a = truth[i - 5 : i + 6, j - 5 : j + 6, ch].astype(float)
                b = pred[i - 5 : i + 6, j - 5 : j + 6, ch].astype(float)
                ma, mb = (w * a).sum(), (w * b).sum()
                va, vb, cov = (w * (a - ma) ** 2).sum(), (w * (b - mb) ** 2).sum(), (w * (a - ma) * (b - mb)).sum()
                values.append((2 * ma * mb + c1) * (2 * cov + c2) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    assert metrics.ssim(pred, truth) == pytest.approx(np.mean(values), abs=1e-9)


def test_too_small_for_the_window_is_refused():
    with pytest.raises(ValueError, match="at least 11 px"):
        metrics.ssim(np.zeros((10, 30, 3), np.uint8), np.zeros((10, 30, 3), np.uint8))


def test_eval_records_the_ssim_parameters(ckpt, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    import skimage.data

    Image.fromarray(skimage.data.astronaut()[::8, ::8]).save(photos / "a.png")
    out = tmp_path / "eval"
    assert cli.main(["eval", "--model", str(ckpt), "--data", str(photos), "--out", str(out), "--size", "32"]) == 0
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["ssim_params"] == metrics.SSIM_PARAMS
    assert {k: doc["ssim_params"][k] for k in ("window", "sigma", "covariance", "K1", "K2", "data_range")} == {
        "window": "gaussian",
        "sigma": 1.5,
        "covariance": "population",
        "K1": 0.01,
        "K2": 0.03,
        "data_range": 255,
    }
