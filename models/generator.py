"""The generator: L -> class logits over the Q ab bins and the ab image decoded from them.

U-Net encoder (residual blocks at every scale) -> dilated residual bottleneck with self-attention
-> decoder with skips, dropout as the noise source -> 1x1 class head at 1/``logits_stride`` of the
input resolution -> annealed mean (temperature T) -> ab, upsampled to full resolution. The
adversarial loss sees the decoded ab; the rebalanced cross-entropy sees the logits.
"""

from __future__ import annotations

from typing import Iterable, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.layers import NoiseDropout, ResBlock, SelfAttention2d, Up, down, norm_layer
from models.scaling import annealed_mean

# Presets: ``full`` for GPUs (the keyword defaults), ``tiny`` for CPU tests and demos.
GENERATOR_PRESETS = {
    # full: 32 channels at full resolution, doubling per level to 512 at 1/16: ~1/3 of the FLOPs of
    # starting at 64 for the same bottleneck width (logits sit at 1/4, so full-res width buys little).
    "full": dict(
        base_channels=32,
        depth=4,
        max_channels=512,
        blocks_per_stage=1,
        dilations=(2, 4, 8),
        attention_levels=(3, 4),
        logits_stride=4,
        dropout=0.5,
        dropout_stages=2,
    ),
    "small": dict(
        base_channels=32,
        depth=4,
        max_channels=256,
        blocks_per_stage=1,
        dilations=(2, 4, 8),
        attention_levels=(4,),
        logits_stride=4,
        dropout=0.5,
        dropout_stages=2,
    ),
    "tiny": dict(
        base_channels=8,
        depth=3,
        max_channels=32,
        blocks_per_stage=1,
        dilations=(2, 4),
        attention_levels=(3,),
        logits_stride=2,
        dropout=0.5,
        dropout_stages=1,
    ),
}
GENERATOR_KEYS = (
    "base_channels",
    "depth",
    "max_channels",
    "blocks_per_stage",
    "dilations",
    "attention_levels",
    "logits_stride",
    "dropout",
    "dropout_stages",
    "norm",
    "temperature",
)


class Generator(nn.Module):
    """L (B,1,H,W) in [-1, 1] -> (logits (B,Q,h,w), ab (B,2,H,W) in Lab units).

    ``bins``: the (Q, 2) ab centres of the classes (``pipeline.core.color.ab_bins()`` in this project),
    kept as a buffer so a checkpoint carries its own grid. h, w = ceil(H / logits_stride),
    ceil(W / logits_stride). Any H, W: the input is reflect-padded to a multiple of 2**depth and
    the outputs cropped back.
    """

    def __init__(
        self,
        bins: Sequence[Sequence[float]],
        base_channels: int = 32,
        depth: int = 4,
        max_channels: int = 512,
        blocks_per_stage: int = 1,
        dilations: Iterable[int] = (2, 4, 8),
        attention_levels: Iterable[int] = (3, 4),
        logits_stride: int = 4,
        dropout: float = 0.5,
        dropout_stages: int = 2,
        norm: str = "group",
        temperature: float = 0.38,
    ):
        super().__init__()
        bins_t = torch.as_tensor(np.array(bins, np.float32))
        if bins_t.ndim != 2 or bins_t.shape[1] != 2:
            raise ValueError(f"bins must be (Q, 2), got {tuple(bins_t.shape)}")
        if logits_stride < 1 or logits_stride & (logits_stride - 1) or logits_stride > 2**depth:
            raise ValueError(f"logits_stride must be a power of 2 <= 2**depth, got {logits_stride}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.register_buffer("bins", bins_t, persistent=True)  # (Q, 2), saved with the weights
        self.depth = depth
        self.logits_stride = logits_stride
        self.temperature = float(temperature)
        self.num_bins = bins_t.shape[0]
        attention_levels = set(attention_levels)
        head_level = int(np.log2(logits_stride))

        def ch(level: int) -> int:
            return min(base_channels * 2**level, max_channels)

        self.stem = nn.Sequential(nn.Conv2d(1, ch(0), 3, padding=1, bias=False), norm_layer(norm, ch(0)), nn.ReLU(True))
        self.enc = nn.ModuleList([nn.Sequential(*[ResBlock(ch(0), norm=norm) for _ in range(blocks_per_stage)])])
        for level in range(1, depth + 1):
            blocks = [down(ch(level - 1), ch(level), norm)]
            if level < depth:
                blocks += [ResBlock(ch(level), norm=norm) for _ in range(blocks_per_stage)]
            self.enc.append(nn.Sequential(*blocks))
        # dilated 3x3 convs: the receptive field grows by 4*dilation per block, no new parameters
        mid = [ResBlock(ch(depth), dilation=d, norm=norm) for d in dilations]
        if depth in attention_levels:
            mid.append(SelfAttention2d(ch(depth)))
        self.mid = nn.Sequential(*mid)
        self.ups = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i, level in enumerate(range(depth - 1, head_level - 1, -1)):
            self.ups.append(Up(ch(level + 1), ch(level), ch(level), norm))
            p = dropout if i < dropout_stages else 0.0
            blocks = [ResBlock(ch(level), norm=norm, dropout=p) for _ in range(blocks_per_stage)]
            if level in attention_levels:
                blocks.append(SelfAttention2d(ch(level)))
            self.dec.append(nn.Sequential(*blocks))
        self.head = nn.Conv2d(ch(head_level), self.num_bins, 1)

    # -- noise control
    def set_dropout_at_inference(self, on: bool = True) -> Generator:
        """Keep the decoder's dropout active in eval mode: diverse samples for the same input."""
        for m in self.modules():
            if isinstance(m, NoiseDropout):
                m.always_on = on
        return self

    def decode(self, logits: torch.Tensor, temperature: Optional[float] = None) -> torch.Tensor:
        """(B,Q,h,w) logits -> (B,2,h,w) ab by annealed mean at ``temperature``."""
        t = self.temperature if temperature is None else float(temperature)
        return annealed_mean(logits, self.bins, t, dim=1)

    def forward(self, L: torch.Tensor, temperature: Optional[float] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        B, _, H, W = L.shape
        m = 2**self.depth
        ph, pw = (-H) % m, (-W) % m
        x = F.pad(L, (0, pw, 0, ph), mode="reflect" if min(H, W) > max(ph, pw) else "replicate")
        x = self.stem(x)
        skips = []
        for stage in self.enc:
            x = stage(x)
            skips.append(x)
        x = self.mid(skips.pop())
        for up, block in zip(self.ups, self.dec, strict=True):
            x = block(up(x, skips.pop()))
        logits = self.head(x)  # (B, Q, (H+ph)/s, (W+pw)/s)
        s = self.logits_stride
        h, w = -(-H // s), -(-W // s)
        ab = self.decode(logits, temperature)  # (B, 2, (H+ph)/s, (W+pw)/s)
        if s > 1:
            with torch.autocast(device_type=ab.device.type, enabled=False):
                ab = F.interpolate(ab, scale_factor=float(s), mode="bilinear", align_corners=False)
        return logits[:, :, :h, :w], ab[:, :, :H, :W]

    @classmethod
    def from_config(cls, model_cfg, bins) -> Generator:
        """From a config section (mapping or object with attributes) and the bin centres: the
        section's ``preset``, then any of GENERATOR_KEYS that are set (not None) override it."""
        get = model_cfg.get if isinstance(model_cfg, dict) else lambda k, d=None: getattr(model_cfg, k, d)
        kw = dict(GENERATOR_PRESETS[get("preset", "full") or "full"])
        for k in GENERATOR_KEYS:
            v = get(k, None)
            if v is not None:
                kw[k] = tuple(v) if isinstance(v, list) else v
        return cls(bins=bins, **kw)


class ABPredictor(nn.Module):
    """Serving form of a generator: L (B,1,H,W) in [-1, 1] -> ab (B,2,H,W) in Lab units."""

    def __init__(self, generator: Generator, temperature: Optional[float] = None):
        super().__init__()
        self.generator = generator
        self.temperature = temperature

    def forward(self, L: torch.Tensor) -> torch.Tensor:
        return self.generator(L, self.temperature)[1]
