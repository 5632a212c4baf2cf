"""What a training step is made of, pure torch (no Ray): a step's tensors from a batch (photos or
prepared shards), the autocast rule of ``train.amp``, and the class weights from a prior. The
step itself is the GAN's own (``pipeline.gan.cgan.GAN.train_step``)."""

from __future__ import annotations

import contextlib
import functools
import logging
from typing import Dict, Optional

import numpy as np
import torch
import torch.nn.functional as F

from models import scaling
from pipeline.core import color

log = logging.getLogger(__name__)


@functools.lru_cache(maxsize=1)
def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AMX tiles or AVX512-BF16): there bf16
    autocast is ~2x faster than fp32; elsewhere it is emulated and slower."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()) and torch.backends.mkldnn.is_available()
    except (AttributeError, RuntimeError):
        return False


def uses_bf16(device: torch.device, amp: str = "auto") -> bool:
    """``train.amp`` on ``device``: ``bf16`` on CUDA, and on a CPU that multiplies bf16 in hardware
    (``cpu_has_fast_bf16``: ~2x the fp32 step of the small and full presets there); on a CPU
    without it bf16 is emulated, ~40x slower than fp32 (measured on an AVX2 CPU), so the step stays fp32 (said once).
    ``auto``: CUDA only (tiny CPU models gain nothing from it); ``off`` never."""
    if amp == "off":
        return False
    if device.type == "cuda":
        return True
    if amp != "bf16":
        return False
    if device.type == "cpu" and not cpu_has_fast_bf16():
        _say_fp32_once()
        return False
    return True


@functools.lru_cache(maxsize=1)
def _say_fp32_once() -> None:
    log.warning(
        "train.amp=bf16: this CPU has no bf16 hardware (AMX or AVX512-BF16), where bf16 is emulated and "
        "tens of times slower than fp32: training in fp32"
    )


def autocast(device: torch.device, amp: str = "auto"):
    """bf16 autocast where ``uses_bf16`` says so, else nothing (fp32)."""
    if uses_bf16(device, amp):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device(t: torch.Tensor, device: Optional[torch.device]) -> torch.Tensor:
    """``t`` on ``device``. To CUDA from host memory: copied through pinned memory with
    ``non_blocking=True``, so the copy queues behind the previous step's kernels instead of
    making the host wait for them; anything else (CPU, already there, None) as ``.to`` does."""
    if device is None:
        return t
    device = torch.device(device)
    if device.type == "cuda" and t.device.type == "cpu":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


def batch_from_rgb(
    rgb: torch.Tensor,
    logits_stride: int,
    soft_k: int = 5,
    soft_sigma: float = 5.0,
    device: Optional[torch.device] = None,
) -> Dict[str, torch.Tensor]:
    """uint8 sRGB (B,H,W,3) -> the tensors a step needs, computed on ``device`` (the GPU in training).

    L: (B,1,H,W) in [-1, 1] (``models.scaling.L_to_input``); ab: (B,2,H,W) Lab units; target:
    soft-encoded ab at the logits resolution, (idx, w) each (B,h,w,k); colour_mask: (B,) 0 for
    grey images (``color.is_grey_batch``), 1 for the others.
    """
    rgb = to_device(rgb, device)
    lab = color.rgb_to_lab_torch(rgb.permute(0, 3, 1, 2), dim=1)  # (B,3,H,W)
    return _from_lab(lab[:, :1], lab[:, 1:], logits_stride, soft_k, soft_sigma)


def batch_from_lab(
    L_u8: torch.Tensor,
    ab_i8: torch.Tensor,
    logits_stride: int,
    soft_k: int = 5,
    soft_sigma: float = 5.0,
    device: Optional[torch.device] = None,
) -> Dict[str, torch.Tensor]:
    """Prepared-shard planes -> the same tensors as ``batch_from_rgb``: L uint8 (B,H,W) and ab
    int8 (B,H,W,2) in the shards' storage forms (``color.L_to_u8``, ``color.ab_to_i8``)."""
    L_u8, ab_i8 = to_device(L_u8, device), to_device(ab_i8, device)
    L = color.u8_to_L(L_u8)[:, None]  # (B,1,H,W) 0..100
    ab = color.i8_to_ab(ab_i8).permute(0, 3, 1, 2)  # (B,2,H,W)
    return _from_lab(L, ab, logits_stride, soft_k, soft_sigma)


def step_batch(
    batch: Dict[str, torch.Tensor],
    logits_stride: int,
    soft_k: int = 5,
    soft_sigma: float = 5.0,
    device: Optional[torch.device] = None,
) -> Dict[str, torch.Tensor]:
    """A step's tensors from a raw-image batch ({"rgb"}) or a prepared-shard batch ({"L", "ab"})."""
    if "rgb" in batch:
        return batch_from_rgb(batch["rgb"], logits_stride, soft_k, soft_sigma, device)
    return batch_from_lab(batch["L"], batch["ab"], logits_stride, soft_k, soft_sigma, device)


def _from_lab(L100: torch.Tensor, ab: torch.Tensor, logits_stride: int, soft_k: int, soft_sigma: float):
    small = F.avg_pool2d(ab, logits_stride, ceil_mode=True) if logits_stride > 1 else ab  # (B,2,h,w)
    target = color.soft_encode_sparse(small.permute(0, 2, 3, 1), k=soft_k, sigma=soft_sigma)
    coloured = ~color.is_grey_batch(ab, dim=1)  # (B,): the rule that skips grey photos
    return {"L": scaling.L_to_input(L100), "ab": ab, "target": target, "colour_mask": coloured.float()}


def class_weights_tensor(prior, loss_cfg, device=None) -> torch.Tensor:
    """(Q,) float32 rebalancing weights from a prior (unit weights when rebalancing is off)."""
    if not loss_cfg.rebalance:
        return torch.ones(len(prior), device=device)
    w = color.prior_weights(np.asarray(prior), lam=loss_cfg.prior_lambda, sigma=loss_cfg.prior_sigma)
    return torch.tensor(w, dtype=torch.float32, device=device)
