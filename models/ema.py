"""Training-time views of a network's weights: ``unwrap`` (the module inside DDP) and ``EMA`` (the
exponential moving average of a module's weights, the generator the product ships).

Pure torch, here rather than in ``pipeline/`` so the step code, the builder and checkpoint I/O
all import them from below without a cycle.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Dict

import torch
from torch import nn


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DDP (or similar) wrapper; the module itself when not wrapped."""
    return getattr(model, "module", model)


class EMA:
    """Exponential moving average of a module's weights: ``avg <- d * avg + (1 - d) * weights``.

    ``d`` warms up as min(decay, (1 + n) / (10 + n)) over the first updates (n of them so far),
    so the average follows the first steps instead of keeping the random initialisation for
    ~1/(1 - decay) steps. Floating buffers (BatchNorm's running statistics) are averaged the same
    way, so the statistics match the averaged weights (copied from the live model they describe
    other weights, and the average drifts in colour between checkpoints); integer buffers (counts)
    are copied. The
    average lives in its own module (``self.module``, eval mode, no gradients) with the source's
    device and memory format.
    """

    def __init__(self, model: nn.Module, decay: float):
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = float(decay)
        self.updates = 0
        self.module = copy.deepcopy(unwrap(model)).requires_grad_(False).eval()

    def settle(self) -> None:
        """Skip the warm-up: the average starts from trained weights (a fine-tune), which the first
        updates must not wash out towards a few steps of the live model."""
        self.updates = max(self.updates, math.ceil((10 * self.decay - 1) / (1 - self.decay)))

    def rate(self) -> float:
        """The decay the next update uses (warm-up included)."""
        n = self.updates + 1
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One averaging step towards ``model``'s current weights (call after each optimiser step)."""
        src = unwrap(model)
        d = self.rate()
        self.updates += 1
        avg_p = [p for p in self.module.parameters()]
        src_p = [p.detach() for p in src.parameters()]
        torch._foreach_lerp_(avg_p, src_p, 1.0 - d)
        for b_avg, b_src in zip(self.module.buffers(), src.buffers(), strict=True):
            if b_avg.is_floating_point():
                b_avg.lerp_(b_src, 1.0 - d)
            else:
                b_avg.copy_(b_src)

    def state_dict(self) -> Dict[str, Any]:
        return {"weights": self.module.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        self.module.load_state_dict(state["weights"])
        self.updates = int(state["updates"])
