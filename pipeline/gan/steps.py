"""One training step of the cGAN, pure torch (no Ray): a step's tensors from a batch, D step, G step.

DDP-safe by design:
- the D step runs D once on concat(real, fake) (one forward per backward, as DDP expects) with G's
  output detached, so G's parameters get no gradient;
- the G step back-propagates through the *unwrapped* D with its parameters frozen and in eval
  mode: no DDP reducer is armed for D, no gradient lands on D, and spectral norm's power-iteration
  buffers are not advanced (they change only in the D step, where DDP broadcasts them).
"""

from __future__ import annotations

import contextlib
from typing import Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from models import losses, scaling, unwrap
from pipeline.core import color


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU multiplies bf16 in hardware (AMX tiles or AVX512-BF16): there bf16
    autocast is ~2x faster than fp32; elsewhere it is emulated and slower."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported()) and torch.backends.mkldnn.is_available()
    except (AttributeError, RuntimeError):
        return False


def uses_bf16(device: torch.device, amp: str = "auto") -> bool:
    """``train.amp`` on ``device``: ``bf16`` always; ``auto`` on CUDA, and on CPUs with hardware
    bf16 (``cpu_has_fast_bf16``); ``off`` never."""
    if amp == "off":
        return False
    if amp == "bf16" or device.type == "cuda":
        return True
    return device.type == "cpu" and cpu_has_fast_bf16()


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


def _clip(params, max_norm: Optional[float]) -> None:
    if max_norm:
        torch.nn.utils.clip_grad_norm_(params, max_norm)


def _floats(d: Dict[str, torch.Tensor], sync: bool):
    return {k: float(v.detach()) for k, v in d.items()} if sync else {k: v.detach() for k, v in d.items()}


def d_step(
    G: torch.nn.Module,
    D: torch.nn.Module,
    opt_d: torch.optim.Optimizer,
    batch: Dict[str, torch.Tensor],
    loss_cfg,
    fake_ab: Optional[torch.Tensor] = None,
    amp: str = "auto",
    grad_clip: Optional[float] = None,
    sync: bool = True,
    loss_scale: float = 1.0,
) -> Dict[str, float]:
    """One discriminator update: real (L, ab) vs fake (L, G(L)). Touches only D's parameters.

    ``loss_scale`` multiplies the loss before backward (0: a filler step that only keeps DDP's
    collectives in step on a worker whose data ran out)."""
    L, ab = batch["L"], batch["ab"]
    if fake_ab is None:
        with torch.no_grad(), autocast(L.device, amp):
            fake_ab = G(L)[1]
    D.train()
    with autocast(L.device, amp):
        logits = D(torch.cat([L, L]), torch.cat([ab, fake_ab.detach().to(ab.dtype)]))  # (2B,1,h,w)
        real, fake = logits.chunk(2)
        loss_real = losses.gan_loss(real, True, loss_cfg.gan)
        loss_fake = losses.gan_loss(fake, False, loss_cfg.gan)
        loss = 0.5 * (loss_real + loss_fake)
    opt_d.zero_grad(set_to_none=True)
    (loss * loss_scale).backward()
    _clip(D.parameters(), grad_clip)
    opt_d.step()
    return _floats({"d_loss": loss, "d_real": real.float().mean(), "d_fake": fake.float().mean()}, sync)


def g_step(
    G: torch.nn.Module,
    D: torch.nn.Module,
    opt_g: torch.optim.Optimizer,
    batch: Dict[str, torch.Tensor],
    loss_cfg,
    class_weights: Optional[torch.Tensor],
    out: Optional[Tuple[torch.Tensor, torch.Tensor]] = None,
    adv_scale: float = 1.0,
    amp: str = "auto",
    grad_clip: Optional[float] = None,
    sync: bool = True,
    loss_scale: float = 1.0,
) -> Dict[str, float]:
    """One generator update: λ_adv·adv + λ_ce·rebalanced CE + λ_l1·L1. Touches only G's parameters.

    ``out``: G's (logits, ab) from a forward already run on this batch (saves a second forward).
    ``adv_scale`` multiplies λ_adv (warm-up of the adversarial term).
    """
    L = batch["L"]
    mask = batch["colour_mask"] if getattr(loss_cfg, "mask_grey", True) else None
    G.train()
    lambda_adv = loss_cfg.lambda_adv * adv_scale
    with autocast(L.device, amp):
        logits, ab = G(L) if out is None else out
        ce = losses.rebalanced_ce(logits, batch["target"], class_weights, mask)
        l1 = losses.l1(ab, batch["ab"], mask)
        if lambda_adv > 0:
            d = unwrap(D)
            was_training = d.training
            d.eval().requires_grad_(False)
            try:
                adv = losses.gan_loss(d(L, ab), True, loss_cfg.gan, for_discriminator=False)
            finally:
                d.requires_grad_(True).train(was_training)
        else:
            adv = torch.zeros((), device=L.device)
        total = losses.generator_total(adv, ce, l1, lambda_adv, loss_cfg.lambda_ce, loss_cfg.lambda_l1)
    opt_g.zero_grad(set_to_none=True)
    (total * loss_scale).backward()
    _clip(G.parameters(), grad_clip)
    opt_g.step()
    return _floats({"g_loss": total, "g_adv": adv, "g_ce": ce, "g_l1": l1}, sync)


def train_step(
    G,
    D,
    opt_g,
    opt_d,
    batch,
    loss_cfg,
    class_weights,
    adv_scale: float = 1.0,
    amp: str = "auto",
    grad_clip: Optional[float] = None,
    sync: bool = True,
    loss_scale: float = 1.0,
) -> Dict[str, float]:
    """D step then G step on one batch, sharing a single forward of G (``loss_scale``: see d_step)."""
    G.train()
    with autocast(batch["L"].device, amp):
        out = G(batch["L"])
    stats = {}
    if loss_cfg.lambda_adv * adv_scale > 0:
        stats.update(
            d_step(
                G,
                D,
                opt_d,
                batch,
                loss_cfg,
                fake_ab=out[1],
                amp=amp,
                grad_clip=grad_clip,
                sync=sync,
                loss_scale=loss_scale,
            )
        )
    stats.update(
        g_step(
            G,
            D,
            opt_g,
            batch,
            loss_cfg,
            class_weights,
            out=out,
            adv_scale=adv_scale,
            amp=amp,
            grad_clip=grad_clip,
            sync=sync,
            loss_scale=loss_scale,
        )
    )
    return stats


def class_weights_tensor(prior, loss_cfg, device=None) -> torch.Tensor:
    """(Q,) float32 rebalancing weights from a prior (unit weights when rebalancing is off)."""
    if not loss_cfg.rebalance:
        return torch.ones(len(prior), device=device)
    w = color.prior_weights(np.asarray(prior), lam=loss_cfg.prior_lambda, sigma=loss_cfg.prior_sigma)
    return torch.tensor(w, dtype=torch.float32, device=device)
