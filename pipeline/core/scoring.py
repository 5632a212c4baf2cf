"""Scoring colorized photos against the truth: the metrics of ``colorize eval`` and bench/quality.py.

Pure numpy/torch on 8-bit sRGB images, so every model (ours, baselines, the all-grey output) is
scored on exactly what a user would see (Lab -> sRGB by ``color.lab_to_rgb_u8``, which keeps L):

- AuC of the per-pixel ab-error CDF, thresholds 0..150 step 1, mean over thresholds in %, pooled
  over all pixels of all images; raw, and rebalanced: each pixel weighted by 1/p of its
  ground-truth bin under a prior (Zhang et al. use their ImageNet prior), so rare colours count.
- Colourfulness (Hasler & Süsstrunk) mean over images, of the outputs and of the truth, and the
  gap |CF(out) - CF(truth)|: greyness scores well on pixel error, it cannot hide here.
- PSNR and SSIM on 8-bit RGB, mean over images.
- Top-1 bin accuracy of the output's ab against the truth's bin, raw and class-rebalanced.
"""

from __future__ import annotations

from typing import Dict

import numpy as np
import torch

from pipeline.core import color, metrics


def grey_output(rgb: np.ndarray) -> np.ndarray:
    """The all-grey baseline: the photo's own L with a = b = 0, as uint8 sRGB (H, W, 3)."""
    lab = color.rgb_to_lab(rgb)
    lab[..., 1:] = 0.0
    return color.lab_to_rgb_u8(lab)


def _prior_tensor(prior: np.ndarray) -> torch.Tensor:
    p = torch.as_tensor(np.asarray(prior, np.float64))
    if p.shape != (color.num_bins(),) or not (p > 0).any():
        raise ValueError(f"prior must be ({color.num_bins()},) with some mass, got {tuple(p.shape)}")
    return p


def measure(pred: np.ndarray, truth: np.ndarray, prior: torch.Tensor, ssim: bool = True) -> Dict[str, object]:
    """One image's additive sums and per-image figures; uint8 (H, W, 3) prediction and truth.

    Pure (no shared state), so images can be measured in parallel and merged by ``Scorer``.
    """
    if pred.shape != truth.shape or pred.dtype != np.uint8 or truth.dtype != np.uint8 or pred.shape[-1] != 3:
        raise ValueError(
            f"need two uint8 (H, W, 3) images of one size, got {pred.dtype}{pred.shape} and {truth.dtype}{truth.shape}"
        )
    ab_p = torch.from_numpy(color.rgb_to_lab(pred)[..., 1:]).permute(2, 0, 1)[None]  # (1,2,H,W)
    ab_t = torch.from_numpy(color.rgb_to_lab(truth)[..., 1:]).permute(2, 0, 1)[None]
    bin_t = torch.from_numpy(color.rgb_to_bin(truth).astype(np.int64))  # (H, W)
    bin_p = torch.from_numpy(color.rgb_to_bin(pred).astype(np.int64))
    w = metrics.rebalance_pixel_weights(bin_t, prior)  # (H, W) float64: 1/p of the true bin
    hit = (bin_p == bin_t).double()
    p = torch.tensor(pred).permute(2, 0, 1)[None]  # a copy: inputs may be read-only arrays
    t = torch.tensor(truth).permute(2, 0, 1)[None]
    return {
        "hist": metrics.error_histogram(ab_p, ab_t),
        "hist_rebal": metrics.error_histogram(ab_p, ab_t, w[None]),
        "top1": (float(hit.sum()), float(hit.numel())),
        "top1_rebal": (float((hit * w).sum()), float(w.sum())),
        "cf_pred": float(metrics.colourfulness(p)[0]),
        "cf_true": float(metrics.colourfulness(t)[0]),
        "psnr": float(metrics.psnr(p, t)[0]),
        "ssim": metrics.ssim(pred, truth) if ssim else None,
    }


class Scorer:
    """Accumulates metrics over (prediction, truth) image pairs; ``result()`` gives the summary.

    ``prior``: (Q,) bin prior on this project's grid for the rebalanced figures (bins it gives
    no mass get 1/min positive p). ``ssim``: off saves time where only the rest is needed.
    """

    def __init__(self, prior: np.ndarray, ssim: bool = True):
        self.prior = _prior_tensor(prior)
        self.with_ssim = ssim
        self.hist = torch.zeros(metrics.AUC_MAX + 2, dtype=torch.float64)
        self.hist_rebal = torch.zeros_like(self.hist)
        self.top1 = [0.0, 0.0]  # hits, pixels
        self.top1_rebal = [0.0, 0.0]  # weighted hits, weight
        self.per_image: Dict[str, list] = {"cf_pred": [], "cf_true": [], "psnr": [], "ssim": []}

    def add(self, pred: np.ndarray, truth: np.ndarray) -> Dict[str, float]:
        """Score one uint8 (H, W, 3) prediction against its truth; returns its per-image figures."""
        return self.merge(measure(pred, truth, self.prior, self.with_ssim))

    def merge(self, m: Dict[str, object]) -> Dict[str, float]:
        self.hist += m["hist"]
        self.hist_rebal += m["hist_rebal"]
        for acc, (a, b) in ((self.top1, m["top1"]), (self.top1_rebal, m["top1_rebal"])):
            acc[0] += a
            acc[1] += b
        one = {k: m[k] for k in self.per_image if m.get(k) is not None}
        for k, v in one.items():
            self.per_image[k].append(v)
        return one

    def result(self) -> Dict[str, float]:
        n = len(self.per_image["cf_pred"])
        if n == 0:
            raise ValueError("no images were scored")
        mean = {k: float(np.mean(v)) if v else float("nan") for k, v in self.per_image.items()}
        return {
            "images": n,
            "auc": metrics.auc_from_histogram(self.hist),
            "auc_rebalanced": metrics.auc_from_histogram(self.hist_rebal),
            "cf_pred": mean["cf_pred"],
            "cf_true": mean["cf_true"],
            "cf_gap": abs(mean["cf_pred"] - mean["cf_true"]),
            "psnr": mean["psnr"],
            "ssim": mean["ssim"],
            "top1": 100.0 * self.top1[0] / self.top1[1],
            "top1_rebalanced": 100.0 * self.top1_rebal[0] / self.top1_rebal[1],
        }


def zhang_prior(reference_dir) -> np.ndarray:
    """Zhang et al.'s ImageNet prior (``prior_probs.npy`` + ``pts_in_hull.npy`` in a folder) on
    this project's grid: the prior the rebalanced metrics use, so figures compare with the paper's."""
    import os

    return color.import_zhang_prior(
        os.path.join(reference_dir, "prior_probs.npy"), os.path.join(reference_dir, "pts_in_hull.npy")
    )


def score_images(preds, truths, prior: np.ndarray, ssim: bool = True, threads: int = 1) -> Dict[str, float]:
    """Score paired iterables of uint8 images; ``threads`` > 1 measures them in parallel (numpy
    and torch release the GIL for most of the work)."""
    s = Scorer(prior, ssim=ssim)
    pairs = list(zip(preds, truths, strict=True))  # a missing prediction is an error, not a shorter score
    if threads > 1:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(threads) as pool:
            for m in pool.map(lambda pt: measure(pt[0], pt[1], s.prior, ssim), pairs):
                s.merge(m)
    else:
        for p, t in pairs:
            s.add(p, t)
    return s.result()
