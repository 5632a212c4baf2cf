"""How Lab values meet the networks' tensors: the one home of the models' input/output scalings.

The models take L scaled to [-1, 1] and see ab divided by ``AB_SCALE`` where a unit-scale value is
needed (the discriminator's input, the L1 loss); the generator's ab output is in Lab units, decoded
from its class logits by ``annealed_mean``. These belong to the models (their contract), so
``pipeline/`` imports them from here, never the reverse.
"""

from __future__ import annotations

import torch

L_CENTRE = 50.0  # L in [0, 100] -> L / 50 - 1 in [-1, 1]
AB_SCALE = 110.0  # ab / 110 puts sRGB's chroma roughly in [-1, 1], like the scaled L


def L_to_input(L):
    """L (any shape, 0..100; numpy or torch) -> the generator's input scale [-1, 1]."""
    return L / L_CENTRE - 1.0


def input_to_L(x):
    """The generator's input scale [-1, 1] -> L in 0..100 (inverse of ``L_to_input``)."""
    return (x + 1.0) * L_CENTRE


def ab_to_unit(ab):
    """ab in Lab units -> roughly [-1, 1] (what the discriminator and the L1 term see)."""
    return ab / AB_SCALE


def annealed_mean(logits: torch.Tensor, bins: torch.Tensor, temperature: float, dim: int = 1) -> torch.Tensor:
    """Class logits over Q bins on ``dim`` (e.g. (B,Q,h,w)) -> ab (2 channels on ``dim``) in Lab units:
    the mean of the bin centres ``bins`` (Q, 2) under softmax(logits / temperature) (Zhang et al.'s
    annealed mean). Computed in fp32 or wider with autocast off: colours stay exact under bf16."""
    z = logits if logits.dtype == torch.float64 else logits.float()  # >= fp32 for a 300-way softmax
    with torch.autocast(device_type=z.device.type, enabled=False):
        p = torch.softmax(z / temperature, dim=dim).movedim(dim, -1)  # (..., Q)
        return (p @ bins.to(p.dtype)).movedim(-1, dim)
