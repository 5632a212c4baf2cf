"""Colorization metrics, pure torch (CPU or GPU), as sums that add up across batches and workers.

- AuC of the per-pixel ab-error CDF (Zhang et al. 2016): fraction of pixels whose ab error is
  <= t, averaged over t = 0..150 (step 1), in %; raw, and rebalanced with each pixel weighted by
  1/p of its ground-truth bin under a prior.
- Colourfulness (Hasler & Süsstrunk 2003) of 8-bit RGB: sigma_rgyb + 0.3 mu_rgyb.
- PSNR on 8-bit RGB; SSIM (eval only) with Wang et al. 2004's standard parameters, the ones papers
  and torchmetrics report (``SSIM_PARAMS``; scikit-image's defaults differ: a 7x7 uniform window and
  sample covariance give other numbers).
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

AUC_MAX = 150


def error_histogram(
    ab_pred: torch.Tensor, ab_true: torch.Tensor, pixel_weight: Optional[torch.Tensor] = None
) -> torch.Tensor:
    """(AUC_MAX + 2,) float64 sums: slot k holds the weight of pixels with ceil(error) == k (k <=
    AUC_MAX), the last slot those beyond. ab: (B, 2, H, W); pixel_weight: (B, H, W) or None."""
    err = (ab_pred.float() - ab_true.float()).norm(dim=1)  # (B, H, W)
    k = torch.ceil(err).clamp_max(AUC_MAX + 1).long().flatten()
    w = torch.ones_like(err).flatten() if pixel_weight is None else pixel_weight.float().flatten()
    return torch.zeros(AUC_MAX + 2, dtype=torch.float64, device=err.device).index_add_(0, k, w.double())


def auc_from_histogram(hist: torch.Tensor) -> float:
    """AuC in % from an ``error_histogram`` (possibly summed over many batches)."""
    h = hist.double().cpu()
    total = h.sum()
    if total <= 0:
        return float("nan")
    cdf = torch.cumsum(h[: AUC_MAX + 1], 0) / total  # fraction with error <= t, t = 0..150
    return float(100.0 * cdf.mean())


def rebalance_pixel_weights(true_bins: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
    """1/p of each pixel's ground-truth bin (bins a prior never saw get 1/min positive p)."""
    p = prior.double()
    p = torch.where(p > 0, p, p[p > 0].min())
    return (1.0 / p).to(true_bins.device)[true_bins]


def colourfulness(rgb: torch.Tensor) -> torch.Tensor:
    """Hasler & Süsstrunk colourfulness per image of (B, 3, H, W) RGB on a 0..255 scale -> (B,)."""
    r, g, b = rgb.double().unbind(1)
    rg = (r - g).flatten(1)
    yb = (0.5 * (r + g) - b).flatten(1)
    std = torch.sqrt(rg.var(1, unbiased=False) + yb.var(1, unbiased=False))
    mean = torch.sqrt(rg.mean(1) ** 2 + yb.mean(1) ** 2)
    return std + 0.3 * mean


def psnr(rgb_pred: torch.Tensor, rgb_true: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (dB) of 8-bit-scale RGB (B, 3, H, W)."""
    mse = (rgb_pred.double() - rgb_true.double()).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(255.0**2 / mse.clamp_min(1e-10))


# Wang, Bovik, Sheikh & Simoncelli 2004: an 11x11 Gaussian window of sigma 1.5 (scikit-image
# truncates at 3.5 sigma: radius 5), population (co)variances, K1 = 0.01, K2 = 0.03, L = 255; the
# mean SSIM of each RGB channel over the pixels whose window fits inside the image, then averaged.
# Recorded with the scores (eval's metrics.json) so a reader knows which SSIM they compare.
SSIM_PARAMS = {
    "window": "gaussian",
    "sigma": 1.5,
    "window_size": 11,
    "covariance": "population",
    "K1": 0.01,
    "K2": 0.03,
    "data_range": 255,
    "channels": "RGB, mean of the three",
    "implementation": "skimage.metrics.structural_similarity",
}
SSIM_MIN_SIDE = SSIM_PARAMS["window_size"]


def ssim(rgb_pred: np.ndarray, rgb_true: np.ndarray) -> float:
    """SSIM of two (H, W, 3) uint8 images with ``SSIM_PARAMS``; both sides >= ``SSIM_MIN_SIDE``."""
    from skimage.metrics import structural_similarity  # skimage: a heavy import, eval only

    if min(rgb_true.shape[:2]) < SSIM_MIN_SIDE:
        raise ValueError(
            f"SSIM needs images of at least {SSIM_MIN_SIDE} px a side (its window), got {rgb_true.shape[:2]}"
        )
    p = SSIM_PARAMS
    return float(
        structural_similarity(
            rgb_pred,
            rgb_true,
            channel_axis=-1,
            data_range=p["data_range"],
            gaussian_weights=True,
            sigma=p["sigma"],
            use_sample_covariance=False,
            K1=p["K1"],
            K2=p["K2"],
        )
    )


def summarise(sums: Dict[str, torch.Tensor]) -> Dict[str, float]:
    """Sums accumulated by the validation loop (and all-reduced) -> metric values."""
    n = max(float(sums["images"]), 1.0)
    out = {
        "auc": auc_from_histogram(sums["err_hist"]),
        "auc_rebalanced": auc_from_histogram(sums["err_hist_rebal"]),
        "cf_pred": float(sums["cf_pred"]) / n,
        "cf_true": float(sums["cf_true"]) / n,
        "psnr": float(sums["psnr"]) / n,
        "ce": float(sums["ce"]) / max(float(sums["batches"]), 1.0),
        "l1": float(sums["l1"]) / max(float(sums["batches"]), 1.0),
        "images": float(sums["images"]),
        "purple_pct": 100.0 * float(sums["purple_pred"]) / n,
        "purple_true_pct": 100.0 * float(sums["purple_true"]) / n,
    }
    out["cf_gap"] = abs(out["cf_pred"] - out["cf_true"])
    return out


# Model selection (Tune's objective, reported as val_objective every epoch). Greyness wins plain
# pixel error (an all-grey output scores ~85 raw AuC and ~20 dB PSNR on photos), so neither can
# pick a colorizer. Rebalanced AuC rewards getting rare, saturated colours right; the
# colourfulness gap penalises both washed-out and over-saturated outputs (a model can't buy
# rebalanced AuC by splashing colour everywhere). Both in comparable % / CF units; grey scores
# ~49 - 0.5 * 54 = 22, a good colorizer ~60 - 0.5 * 3 = 58.
OBJECTIVE_CF_WEIGHT = 0.5


def selection_objective(auc_rebalanced: float, cf_gap: float, cf_weight: float = OBJECTIVE_CF_WEIGHT) -> float:
    """Higher is better: rebalanced AuC (%) minus ``cf_weight`` x |CF(pred) - CF(truth)|."""
    return float(auc_rebalanced) - cf_weight * float(cf_gap)


# A fine-tune (``train.init_from``) may not buy its objective with what the objective does not see.
# Against the run's start (scored as candidate zero), a checkpoint that loses more than these ranks
# below every one that does not, the start included: a run that only gets worse returns its start.
# With a guard set (data.val_guard), its objective too: validation's figures there are "guard_"-prefixed.
NO_WORSE_THAN_START = {"psnr": 0.3, "auc": 0.5, "cf_gap": 2.0, "guard_objective": 0.5}  # dB, AuC %, CF, objective
WORSE_THAN_START_PENALTY = 1000.0


def worse_than(val: Dict[str, float], start: Dict[str, float]) -> List[str]:
    """What of ``val`` is worse than ``start`` beyond ``NO_WORSE_THAN_START`` (empty: no worse)."""
    tol = NO_WORSE_THAN_START
    out = []
    if val["psnr"] < start["psnr"] - tol["psnr"]:
        out.append(f"PSNR {val['psnr']:.2f} < {start['psnr']:.2f} - {tol['psnr']}")
    if val["auc"] < start["auc"] - tol["auc"]:
        out.append(f"AuC {val['auc']:.2f} < {start['auc']:.2f} - {tol['auc']}")
    if val["cf_gap"] > start["cf_gap"] + tol["cf_gap"]:
        out.append(f"colourfulness gap {val['cf_gap']:.2f} > {start['cf_gap']:.2f} + {tol['cf_gap']}")
    guard, guard_start = val.get("guard_objective"), start.get("guard_objective")
    if guard is not None and guard_start is not None and math.isfinite(guard_start):
        if not math.isfinite(guard):  # its photos all skipped this time: nothing shows it is no worse
            out.append("guard set objective not measured")
        elif guard < guard_start - tol["guard_objective"]:
            out.append(f"guard set objective {guard:.2f} < {guard_start:.2f} - {tol['guard_objective']}")
    return out


def checkpoint_score(val: Dict[str, float], start: Optional[Dict[str, float]] = None) -> float:
    """What training keeps its best checkpoint by (higher is better): the selection objective,
    less ``WORSE_THAN_START_PENALTY`` when ``start`` is given and ``val`` is worse than it."""
    score = selection_objective(val["auc_rebalanced"], val["cf_gap"])
    return score - WORSE_THAN_START_PENALTY if start is not None and worse_than(val, start) else score


# The purple-magenta cast: pixels of Lab hue 290-350 degrees with chroma above 10, where an
# annealed mean between opposite modes (red-orange and blue) lands.
PURPLE_HUES = (290.0, 350.0)
PURPLE_MIN_CHROMA = 10.0


def purple_share(ab: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """Per image: the share of pixels of ``ab`` (Lab units, a and b along ``dim``) in the purple
    hues with chroma above ``PURPLE_MIN_CHROMA``. ab (B,2,H,W) -> (B,)."""
    a, b = ab.select(dim, 0).double(), ab.select(dim, 1).double()
    hue = torch.rad2deg(torch.atan2(b, a)) % 360
    hit = (hue >= PURPLE_HUES[0]) & (hue <= PURPLE_HUES[1]) & (torch.hypot(a, b) > PURPLE_MIN_CHROMA)
    return hit.flatten(1).double().mean(1)


# Validation at several decoding temperatures (train.val_temperatures): a checkpoint is scored at the
# temperature it would ship with, the best checkpoint score among those whose purple share stays
# within PURPLE_LIMIT x the truth's, so the best checkpoint is the one a temperature sweep would ship.
PURPLE_LIMIT = 1.3


def temperature_key(T: float) -> str:
    """How a temperature names its figures (``objective_t0.5``, the start's ``by_t``): 6 digits."""
    return f"{float(T):g}"


def start_at(start: Optional[Dict], T: Optional[float]) -> Optional[Dict[str, float]]:
    """The start's figures at temperature ``T`` (its ``by_t``, recorded when validation scored several),
    else the start's figures as recorded; None without a start. A change of T alone moves PSNR and the
    colourfulness gap by about ``NO_WORSE_THAN_START``'s tolerances: each T is held to the start's same T."""
    if start is None or T is None:
        return start
    return (start.get("by_t") or {}).get(temperature_key(T), start)


def best_temperature(
    per_t: Dict[float, Dict[str, float]], start: Optional[Dict] = None, limit: float = PURPLE_LIMIT
) -> float:
    """Of ``per_t`` ({T: ``summarise`` figures with "objective"}), the T with the highest
    ``checkpoint_score`` (against ``start_at(start, T)``) whose ``purple_pct`` is at most ``limit`` x
    ``purple_true_pct`` (and the guard set's, where scored); of all of them when none is (ties: the
    higher T, the less vivid decode)."""
    score = {T: checkpoint_score(v, start_at(start, T)) for T, v in per_t.items()}
    within = [T for T, v in per_t.items() if _purple_within(v, limit) and _purple_within(v, limit, "guard_")]
    return max(within or list(per_t), key=lambda T: (score[T], T))


def _purple_within(v: Dict[str, float], limit: float, prefix: str = "") -> bool:
    """Whether ``v``'s purple share (of its ``prefix`` set) is at most ``limit`` x the truth's; True when not scored."""
    pred, true = v.get(prefix + "purple_pct"), v.get(prefix + "purple_true_pct")
    return pred is None or true is None or pred <= limit * true


def judged(val: Dict[str, float], start: Optional[Dict]) -> Tuple[float, List[str]]:
    """(``checkpoint_score``, what ``worse_than`` finds) of validation figures ``val`` against the
    start at their own temperature (``start_at``); the plain objective and nothing without a start."""
    against = start_at(start, val.get("temperature"))
    return checkpoint_score(val, against), (worse_than(val, against) if against is not None else [])
