"""Building blocks: residual blocks (dilation optional), SAGAN self-attention, noise dropout.

Shapes are (B, C, H, W) throughout. Normalisation defaults to GroupNorm: no running buffers, so
nothing to keep in sync under DDP and no dependence on the per-GPU batch size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def norm_layer(kind: str, channels: int) -> nn.Module:
    if kind == "group":
        return nn.GroupNorm(min(32, max(1, channels // 4)), channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}: use group, batch, instance or none")


class NoiseDropout(nn.Module):
    """Dropout as the generator's noise source (pix2pix). ``always_on`` keeps it active in eval
    mode, for diverse samples of the same input."""

    def __init__(self, p: float):
        super().__init__()
        self.p = float(p)
        self.always_on = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p <= 0:
            return x
        return F.dropout(x, self.p, training=self.training or self.always_on)


class ResBlock(nn.Module):
    """x + conv-norm-act-(dropout)-conv-norm(x), then act. Same shape in and out; ``dilation`` > 1
    widens the 3x3 convs' reach (the bottleneck stacks 2, 4, 8 for wide context)."""

    def __init__(self, channels: int, dilation: int = 1, norm: str = "group", dropout: float = 0.0):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation, bias=False)
        self.norm1 = norm_layer(norm, channels)
        self.drop = NoiseDropout(dropout)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=dilation, dilation=dilation, bias=False)
        self.norm2 = norm_layer(norm, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.norm1(self.conv1(x)), inplace=True)
        h = self.norm2(self.conv2(self.drop(h)))
        return F.relu(x + h)


class SelfAttention2d(nn.Module):
    """SAGAN self-attention: x + gamma * attention(x), gamma starting at 0, so the block begins as
    the identity and learns how much global context to mix in. Uses fused SDPA kernels."""

    def __init__(self, channels: int, reduction: int = 8):
        super().__init__()
        inner = max(1, channels // reduction)
        self.q = nn.Conv2d(channels, inner, 1)
        self.k = nn.Conv2d(channels, inner, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        q = self.q(x).flatten(2).transpose(1, 2).unsqueeze(1)  # (B, 1, HW, C')
        k = self.k(x).flatten(2).transpose(1, 2).unsqueeze(1)  # (B, 1, HW, C')
        v = self.v(x).flatten(2).transpose(1, 2).unsqueeze(1)  # (B, 1, HW, C)
        # SAGAN uses an unscaled dot product; SDPA's 1/sqrt(C') scaling only tempers early logits.
        o = F.scaled_dot_product_attention(q, k, v)  # (B, 1, HW, C)
        o = o.squeeze(1).transpose(1, 2).reshape(b, c, h, w)
        return x + self.gamma * o


def down(cin: int, cout: int, norm: str) -> nn.Sequential:
    """Stride-2 conv: halves H and W."""
    conv = nn.Conv2d(cin, cout, 4, stride=2, padding=1, bias=False)
    return nn.Sequential(conv, norm_layer(norm, cout), nn.ReLU(True))


class Up(nn.Module):
    """Nearest-neighbour x2 then 3x3 conv (no checkerboard artefacts of transposed convs), then
    concat with the encoder skip and fuse with a 1x1 conv."""

    def __init__(self, cin: int, cskip: int, cout: int, norm: str):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), norm_layer(norm, cout), nn.ReLU(True))
        self.fuse = nn.Sequential(nn.Conv2d(cout + cskip, cout, 1, bias=False), norm_layer(norm, cout), nn.ReLU(True))

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))
        return self.fuse(torch.cat([x, skip], 1))
