"""Losses on logits, autocast-safe (computed in fp32). Pure torch: class weights arrive as a tensor."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from models.scaling import ab_to_unit

GAN_KINDS = ("hinge", "lsgan", "bce")


def gan_loss(logits: torch.Tensor, real: bool, kind: str = "hinge", for_discriminator: bool = True) -> torch.Tensor:
    """Adversarial loss of discriminator logits.

    D: push real up and fake down; G (``for_discriminator=False``, ``real=True``): make D call its
    fakes real. hinge: D relu(1 -+ x), G -x; lsgan: (x - 1)^2 / x^2; bce: non-saturating softplus.
    """
    x = logits.float()
    if kind == "hinge":
        if for_discriminator:
            return F.relu(1.0 - x).mean() if real else F.relu(1.0 + x).mean()
        return -x.mean()
    if kind == "lsgan":
        return ((x - 1.0) ** 2).mean() if real else (x**2).mean()
    if kind == "bce":
        return F.softplus(-x).mean() if real else F.softplus(x).mean()
    raise ValueError(f"unknown GAN loss {kind!r}: use one of {GAN_KINDS}")


def rebalanced_ce(
    logits: torch.Tensor,
    target: Tuple[torch.Tensor, torch.Tensor],
    class_weights: Optional[torch.Tensor] = None,
    mask: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Class-rebalanced soft cross-entropy (Zhang et al. 2016), mean over (unmasked) pixels.

    logits: (B, Q, h, w). target: sparse soft targets ``(idx, w)``, each (B, h, w, k), the nearest
    bin first (``pipeline.core.color.soft_encode_sparse``). Each pixel's CE is multiplied by
    ``class_weights[q*]`` (Q,), q* its target's nearest bin; with weights normalised so
    E_p~[w] = 1, the loss keeps the scale of the unweighted one.
    mask: (B,) or (B, h, w), 1 where the pixel counts (e.g. 0 for fully grey images).
    """
    logp = F.log_softmax(logits.float(), dim=1)  # (B, Q, h, w)
    idx, w = target
    ce = -(torch.gather(logp, 1, idx.permute(0, 3, 1, 2)) * w.permute(0, 3, 1, 2).float()).sum(1)  # (B, h, w)
    nearest = idx[..., 0]
    if class_weights is not None:
        ce = ce * class_weights.to(ce.dtype)[nearest]
    if mask is None:
        return ce.mean()
    mask = mask.to(ce.dtype)
    if mask.ndim == 1:
        mask = mask[:, None, None].expand_as(ce)
    return (ce * mask).sum() / mask.sum().clamp_min(1.0)


def l1(ab_pred: torch.Tensor, ab_true: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mean absolute ab error on the ab / 110 scale; mask (B,) selects images."""
    err = ab_to_unit((ab_pred.float() - ab_true.float()).abs())
    if mask is None:
        return err.mean()
    m = mask.to(err.dtype)[:, None, None, None].expand_as(err)
    return (err * m).sum() / m.sum().clamp_min(1.0)


def generator_total(
    adv: torch.Tensor, ce: torch.Tensor, l1_loss: torch.Tensor, lambda_adv: float, lambda_ce: float, lambda_l1: float
) -> torch.Tensor:
    """G's objective: λ_adv·adv + λ_ce·ce + λ_l1·l1."""
    return lambda_adv * adv + lambda_ce * ce + lambda_l1 * l1_loss
