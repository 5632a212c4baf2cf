"""The generator: L -> class logits over the Q ab bins and the ab image decoded from them.

U-Net encoder (residual blocks at every scale) -> dilated residual bottleneck with self-attention
-> decoder with skips, dropout as the noise source -> 1x1 class head at 1/``logits_stride`` of the
input resolution -> annealed mean (temperature T) -> ab, upsampled to full resolution. The
adversarial loss sees the decoded ab; the rebalanced cross-entropy sees the logits.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from models.layers import NoiseDropout, ResBlock, SelfAttention2d, Up, down, norm_layer
from models.scaling import annealed_mean

NORMS = ("group", "batch", "instance", "none")
# Bounds a config may ask for: wide, but a typo (-3, 40000) fails at load with the key's name.
RANGES = {
    "base_channels": (1, 1024),
    "max_channels": (1, 4096),
    "depth": (1, 8),
    "blocks_per_stage": (1, 16),
    "dropout_stages": (0, 8),
}


def _key(default, help: str, by_preset: bool = True):
    """A generator key: its default (the ``full`` preset's) and what it means, in a sentence a user
    can act on (``colorize config``, docs/configuration.md). ``by_preset``: a config's ``model``
    section leaves it null by default, so its preset's value holds."""
    return field(default=default, metadata={"help": help, "by_preset": by_preset})


@dataclass(frozen=True)
class GeneratorConfig:
    """The generator's shape, spelled once: the defaults are the ``full`` preset (GPUs); the other
    presets are changes to it (``GENERATOR_PRESETS``), and a config's ``model`` section is a preset
    name plus any of these keys (``generator_config``).

    full: 32 channels at full resolution, doubling per level to 512 at 1/16: ~1/3 of the FLOPs of
    starting at 64 for the same bottleneck width (logits sit at 1/4, so full-res width buys little).
    """

    base_channels: int = _key(32, "channels of the first stage")
    depth: int = _key(4, "down-sampling stages of the U-Net")
    max_channels: int = _key(512, "cap on channels in deep stages")
    blocks_per_stage: int = _key(1, "residual blocks per stage")
    dilations: Tuple[int, ...] = _key((2, 4, 8), "dilation of each block in the bottleneck, e.g. [1, 2, 4]")
    attention_levels: Tuple[int, ...] = _key((3, 4), "stages with self-attention (0 = deepest)")
    # the class head's resolution: 1/logits_stride of the input
    logits_stride: int = _key(4, "colour classes are predicted at 1/stride of the resolution (a power of 2)")
    dropout: float = _key(0.5, "dropout in the decoder, the generator's noise")
    dropout_stages: int = _key(2, "decoder stages with dropout")
    norm: str = _key("group", "normalisation layer: group, batch, instance or none", by_preset=False)
    # annealed-mean T used in training and as the default at inference
    temperature: float = _key(
        0.38, "decoding temperature T of the annealed mean: lower = more vivid; infer's default", by_preset=False
    )
    # rebalanced CE trains p(q|x) proportional to w(q) p_true(q|x): decoding can divide w^alpha back out
    prior_correction: float = _key(
        0.0,
        "how much of the class rebalancing decoding undoes, 0..1: 0 decodes the distribution as trained (vivid), "
        "1 divides the rebalancing weights back out (the model's estimate of the true colours: duller, closer "
        "in PSNR); infer's default",
        by_preset=False,
    )
    # also takes colour hints: an ab map and its mask beside L (3 more input channels)
    hints: bool = _key(
        False,
        "the generator also takes colour hints (points whose colour the user gives); an L-only model's weights "
        "start one with the hint channels at zero",
        by_preset=False,
    )
    # Adam steps every weight by about the learning rate, so hint weights that start at zero stay
    # small for thousands of steps: the gain on the hint inputs is their learning rate over the rest's
    hint_gain: float = _key(
        1.0,
        "the hint channels are multiplied by this before the first convolution: with Adam it is their "
        "learning rate relative to the other weights' (a checkpoint's weights are rescaled to keep what it computes)",
        by_preset=False,
    )

    def check(self) -> None:
        """ValueError naming the first key whose value cannot build a generator."""
        for key, (lo, hi) in RANGES.items():
            if not lo <= getattr(self, key) <= hi:
                raise ValueError(f"{key} must be in [{lo}, {hi}], got {getattr(self, key)}")
        s = self.logits_stride
        if s < 1 or s & (s - 1):
            raise ValueError(f"logits_stride must be a power of 2, got {s}")
        if s > 2**self.depth:
            raise ValueError(f"logits_stride must be <= 2**depth = {2**self.depth}, got {s}")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")
        if self.norm not in NORMS:
            raise ValueError(f"norm must be {', '.join(NORMS[:-1])} or {NORMS[-1]}, got {self.norm!r}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if not 0 <= self.prior_correction <= 1:
            raise ValueError(f"prior_correction must be in [0, 1], got {self.prior_correction}")
        if not 0 < self.hint_gain <= 1000:
            raise ValueError(f"hint_gain must be in (0, 1000], got {self.hint_gain}")
        if any(d < 1 for d in self.dilations):
            raise ValueError(f"dilations must all be >= 1, got {self.dilations}")
        if any(a < 0 for a in self.attention_levels):
            raise ValueError(f"attention_levels must all be >= 0, got {self.attention_levels}")


GENERATOR_PRESETS: Dict[str, GeneratorConfig] = {
    "full": GeneratorConfig(),  # GPUs
    "small": GeneratorConfig(max_channels=256, attention_levels=(4,)),
    "tiny": GeneratorConfig(  # CPU tests and demos
        base_channels=8,
        depth=3,
        max_channels=32,
        dilations=(2, 4),
        attention_levels=(3,),
        logits_stride=2,
        dropout_stages=1,
    ),
}


def generator_config(preset: str = "full", **overrides) -> GeneratorConfig:
    """The ``preset`` with each override that is not None (lists become tuples); ValueError for an
    unknown preset or key. Not checked: call ``check`` (``Generator`` does)."""
    if preset not in GENERATOR_PRESETS:
        raise ValueError(f"preset must be {', '.join(GENERATOR_PRESETS)}, got {preset!r}")
    known = {f.name for f in fields(GeneratorConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown generator keys {unknown}: use {sorted(known)}")
    changes = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items() if v is not None}
    return replace(GENERATOR_PRESETS[preset], **changes)


HINT_CHANNELS = 3  # a/AB_SCALE, b/AB_SCALE, mask (1 where a hint is given): all zero = no hints


class Generator(nn.Module):
    """L (B,1,H,W) in [-1, 1] -> (logits (B,Q,h,w), ab (B,2,H,W) in Lab units).

    A hint model (``config.hints``) also takes ``hints`` (B,3,H,W): the hinted ab over
    ``AB_SCALE`` and a 0/1 mask (``pipeline.core.hints``); none given = all zero = no hints, so
    the L -> ab generator is its special case. The hint channels' stem weights start at zero:
    a fresh hint model, or one widened from an L-only model (``widen_state``), begins by
    ignoring them.

    ``bins``: the (Q, 2) ab centres of the classes (``pipeline.core.color.ab_bins()`` in this project),
    kept as a buffer so a checkpoint carries its own grid. ``rebalance_weights`` (Q,): the class
    weights of the cross-entropy it was trained with (all 1 until training sets them,
    ``set_rebalance_weights``), a buffer too, so a checkpoint carries what ``prior_correction``
    divides out. h, w = ceil(H / logits_stride),
    ceil(W / logits_stride). Any H, W: the input is reflect-padded to a multiple of 2**depth and
    the outputs cropped back.
    """

    # The short side of the photos it was trained at: the working size inference uses when none
    # is asked for (set from the checkpoint's data.resize by the loader; None: not known).
    working_size: Optional[int] = None

    def __init__(self, bins: Sequence[Sequence[float]], config: GeneratorConfig = GeneratorConfig()):
        super().__init__()
        config.check()
        bins_t = torch.as_tensor(np.array(bins, np.float32))
        if bins_t.ndim != 2 or bins_t.shape[1] != 2:
            raise ValueError(f"bins must be (Q, 2), got {tuple(bins_t.shape)}")
        c = self.config = config
        self.register_buffer("bins", bins_t, persistent=True)  # (Q, 2), saved with the weights
        self.register_buffer("rebalance_weights", torch.ones(bins_t.shape[0]), persistent=True)  # (Q,)
        self.prior_correction = float(c.prior_correction)
        self.depth = c.depth
        self.logits_stride = c.logits_stride
        self.temperature = float(c.temperature)
        self.num_bins = bins_t.shape[0]
        norm, per_stage, attention_levels = c.norm, c.blocks_per_stage, set(c.attention_levels)
        head_level = int(np.log2(c.logits_stride))

        def ch(level: int) -> int:
            return min(c.base_channels * 2**level, c.max_channels)

        self.takes_hints = bool(c.hints)
        self.hint_gain = float(c.hint_gain)
        in_channels = 1 + HINT_CHANNELS * self.takes_hints
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, ch(0), 3, padding=1, bias=False), norm_layer(norm, ch(0)), nn.ReLU(True)
        )
        with torch.no_grad():
            self.stem[0].weight[:, 1:].zero_()  # hint channels start ignored (see the class docstring)
        self.enc = nn.ModuleList([nn.Sequential(*[ResBlock(ch(0), norm=norm) for _ in range(per_stage)])])
        for level in range(1, c.depth + 1):
            blocks = [down(ch(level - 1), ch(level), norm)]
            if level < c.depth:
                blocks += [ResBlock(ch(level), norm=norm) for _ in range(per_stage)]
            self.enc.append(nn.Sequential(*blocks))
        # dilated 3x3 convs: the receptive field grows by 4*dilation per block, no new parameters
        mid = [ResBlock(ch(c.depth), dilation=d, norm=norm) for d in c.dilations]
        if c.depth in attention_levels:
            mid.append(SelfAttention2d(ch(c.depth)))
        self.mid = nn.Sequential(*mid)
        self.ups = nn.ModuleList()
        self.dec = nn.ModuleList()
        for i, level in enumerate(range(c.depth - 1, head_level - 1, -1)):
            self.ups.append(Up(ch(level + 1), ch(level), ch(level), norm))
            p = c.dropout if i < c.dropout_stages else 0.0
            blocks = [ResBlock(ch(level), norm=norm, dropout=p) for _ in range(per_stage)]
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

    def set_rebalance_weights(self, weights: torch.Tensor) -> Generator:
        """Record the (Q,) class weights the rebalanced cross-entropy trains this generator with."""
        w = torch.as_tensor(weights, dtype=torch.float32, device=self.rebalance_weights.device)
        if w.shape != self.rebalance_weights.shape or not bool(torch.isfinite(w).all() and (w > 0).all()):
            raise ValueError(f"rebalance weights must be {tuple(self.rebalance_weights.shape)}, finite and > 0")
        with torch.no_grad():
            self.rebalance_weights.copy_(w)
        return self

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # weights saved before the buffer existed keep the ones this generator has: all 1 when
        # built to load them, the run's own when a run that recorded its weights resumes them
        state_dict.setdefault(prefix + "rebalance_weights", self.rebalance_weights.detach().clone())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    @property
    def corrects(self) -> bool:
        """Whether a prior correction changes this model's decoding: its recorded class weights are
        not all equal (all 1 when none were recorded; equal weights only shift every logit alike)."""
        w = self.rebalance_weights
        return bool((w - w.mean()).abs().max() > 1e-6 * w.mean())

    def corrected(self, logits: torch.Tensor, prior_correction: Optional[float] = None) -> torch.Tensor:
        """Logits (B,Q,...) with a share A of the rebalancing weights divided out of their
        distribution, log p - A log w, in fp32 or wider; the logits themselves at A 0. A is
        ``prior_correction`` (0..1), or the model's own ``self.prior_correction`` when None."""
        a = self.prior_correction if prior_correction is None else float(prior_correction)
        if not 0 <= a <= 1:
            raise ValueError(f"prior_correction must be in [0, 1], got {a}")
        if not a:
            return logits
        z = logits.to(torch.promote_types(logits.dtype, torch.float32))
        log_w = self.rebalance_weights.log().to(z.dtype)  # (Q,)
        return z - a * log_w.view(1, -1, *[1] * (z.ndim - 2))

    def decode(
        self, logits: torch.Tensor, temperature: Optional[float] = None, prior_correction: Optional[float] = None
    ) -> torch.Tensor:
        """(B,Q,h,w) logits -> (B,2,h,w) ab by annealed mean at ``temperature``, with a share
        ``prior_correction`` of the rebalancing weights divided out first (None: the model's own)."""
        t = self.temperature if temperature is None else float(temperature)
        return annealed_mean(self.corrected(logits, prior_correction), self.bins, t, dim=1)

    def ab_from_logits(
        self,
        logits: torch.Tensor,
        size: Tuple[int, int],
        temperature: Optional[float] = None,
        prior_correction: Optional[float] = None,
    ) -> torch.Tensor:
        """Logits (B,Q,h,w) of an H x W input -> (B,2,H,W) ab at ``temperature``: decoded, upsampled
        by ``logits_stride`` and cut to H x W, as ``forward`` does with its padded logits. From
        ``forward``'s returned logits the same where H and W are multiples of ``2**depth`` (elsewhere
        the last row and column of cells upsample without the padded cells beyond): another T from
        one forward pass."""
        ab = self.decode(logits, temperature, prior_correction)  # (B,2,h,w), fp32 or wider
        s = self.logits_stride
        if s > 1:
            with torch.autocast(device_type=ab.device.type, enabled=False):
                ab = F.interpolate(ab, scale_factor=float(s), mode="bilinear", align_corners=False)
        return ab[:, :, : size[0], : size[1]]

    def widen_state(self, state: Dict[str, torch.Tensor], hint_gain: Optional[float] = None) -> Dict[str, torch.Tensor]:
        """``state`` (an L-only or a hint generator's weights) made to fit this generator: an L-only
        model's stem weight (C,1,3,3) gets zero weights for the hint channels when this one takes
        hints, so the widened model computes exactly what the L-only one did without hints. A hint
        model's weights learnt at another ``hint_gain`` (None: this one's) have their hint weights
        rescaled by that gain over this one's, so they compute what they did."""
        key = "stem.0.weight"
        ours = self.stem[0].weight
        w = state.get(key)
        if w is None or not self.takes_hints or w.shape[1] not in (1, ours.shape[1]):
            return state
        if w.shape[1] == 1:
            zeros = torch.zeros(w.shape[0], ours.shape[1] - 1, *w.shape[2:], dtype=w.dtype, device=w.device)
            return {**state, key: torch.cat([w, zeros], 1)}
        if hint_gain is None or hint_gain == self.hint_gain:
            return state
        scaled = w[:, 1:].float() * (float(hint_gain) / self.hint_gain)  # (C,3,k,k): gain x weight kept
        return {**state, key: torch.cat([w[:, :1], scaled.to(w.dtype)], 1)}

    def forward(
        self,
        L: torch.Tensor,
        temperature: Optional[float] = None,
        hints: Optional[torch.Tensor] = None,
        prior_correction: Optional[float] = None,
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """L (B,1,H,W) and, for a hint model, ``hints`` (B,3,H,W) or None (no hints) -> raw logits
        and ab decoded at ``temperature`` and ``prior_correction`` (None: the model's own)."""
        B, _, H, W = L.shape
        if self.takes_hints:
            if hints is None:
                hints = L.new_zeros(B, HINT_CHANNELS, H, W)
            elif hints.shape != (B, HINT_CHANNELS, H, W):
                raise ValueError(
                    f"hints must be (B, {HINT_CHANNELS}, H, W) = {(B, HINT_CHANNELS, H, W)}, got {tuple(hints.shape)}"
                )
            x = torch.cat([L, hints.to(L.dtype) * self.hint_gain], 1)  # (B,4,H,W)
        elif hints is not None:
            raise ValueError("this model takes no colour hints (its config has model.hints false)")
        else:
            x = L
        m = 2**self.depth
        ph, pw = (-H) % m, (-W) % m
        x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(H, W) > max(ph, pw) else "replicate")
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
        ab = self.ab_from_logits(logits, (H, W), temperature, prior_correction)  # (B,2,H,W)
        return logits[:, :, :h, :w], ab

    @classmethod
    def from_config(cls, model_cfg, bins) -> Generator:
        """From a config's model section (a mapping or an object with attributes) and the bin
        centres: the section's ``preset``, then each ``GeneratorConfig`` key it sets (not None)."""
        get = model_cfg.get if isinstance(model_cfg, dict) else lambda k, d=None: getattr(model_cfg, k, d)
        overrides = {f.name: get(f.name, None) for f in fields(GeneratorConfig)}
        return cls(bins, generator_config(get("preset", "full") or "full", **overrides))


class ABPredictor(nn.Module):
    """Serving form of a generator: L (B,1,H,W) in [-1, 1] -> ab (B,2,H,W) in Lab units."""

    def __init__(self, generator: Generator, temperature: Optional[float] = None):
        super().__init__()
        self.generator = generator
        self.temperature = temperature

    def forward(self, L: torch.Tensor) -> torch.Tensor:
        return self.generator(L, self.temperature)[1]  # a hint model without hints
