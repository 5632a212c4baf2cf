"""Colorizing one photo with a trained generator: the maths of ``colorize infer`` and ``eval``.

Pure torch/numpy, no Ray. The generator predicts ab from L at a working size (short side
``size``, the scale it was trained at: ``geometry.short_side_shape``); ab is upsampled to the
photo's own resolution and joined with its full-resolution L, so detail and lightness come from
the input, only colour is guessed. sRGB out by ``color.lab_to_rgb_u8`` (keeps L).
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from models.scaling import L_to_input, input_to_L
from pipeline.core import color, geometry, hint_spread
from pipeline.core import hints as hint_maps
from pipeline.core.hints import Hint, HintError

DEFAULT_SIZE = 256  # working size of a generator whose training scale is not known
CHUNK_PIXELS = 1 << 20  # full-resolution work goes this many pixels (whole rows) at a time


def working_size(G, size: Optional[int] = None) -> int:
    """The working size to use: ``size`` when asked for, else the scale ``G`` was trained at (its
    checkpoint's ``data.resize``): inference at the training scale, where its colours hold."""
    return size or getattr(G, "working_size", None) or DEFAULT_SIZE


def _row_chunks(H: int, W: int):
    step = max(1, CHUNK_PIXELS // max(W, 1))
    for r in range(0, H, step):
        yield slice(r, min(H, r + step))


def join_l_ab(L: np.ndarray, ab: np.ndarray) -> np.ndarray:
    """L (H, W) in 0..100 and ab (H, W, 2) -> uint8 sRGB (H, W, 3); L kept, chroma gives way where
    the colour would leave the sRGB gamut. Row chunks: no full-size Lab or float RGB copy."""
    H, W = L.shape
    out = np.empty((H, W, 3), np.uint8)
    for rows in _row_chunks(H, W):
        lab = np.concatenate([L[rows, :, None].astype(np.float32), ab[rows].astype(np.float32)], -1)
        # torch's kernels: the same rule as numpy's (8-bit rounding aside), ~3x faster on CPU
        out[rows] = color.lab_to_rgb_u8(torch.from_numpy(lab), dim=-1).numpy()
    return out


def lightness(rgb: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) -> L (H, W) float32 in 0..100, in row chunks (4 bytes per pixel in all)."""
    H, W = rgb.shape[:2]
    L = np.empty((H, W), np.float32)
    for rows in _row_chunks(H, W):
        L[rows] = color.rgb_to_lab(rgb[rows])[..., 0]
    return L


@torch.no_grad()
def working_L(L: np.ndarray, size: Optional[int]) -> np.ndarray:
    """L (H, W) resized (antialiased, as ``predict_ab`` does) to the working size: short side ``size``."""
    H, W = L.shape
    h, w = geometry.short_side_shape(H, W, size)
    if (h, w) == (H, W):
        return np.asarray(L, np.float32)
    x = torch.from_numpy(np.ascontiguousarray(L, dtype=np.float32))[None, None]
    return F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)[0, 0].numpy()


def upsample_ab(ab: np.ndarray, H: int, W: int) -> np.ndarray:
    """ab (h, w, 2) -> (H, W, 2), bilinear, as ``predict_ab`` upsamples."""
    if ab.shape[:2] == (H, W):
        return ab
    x = torch.from_numpy(np.ascontiguousarray(ab, dtype=np.float32)).permute(2, 0, 1)[None]
    return F.interpolate(x, size=(H, W), mode="bilinear", align_corners=False)[0].permute(1, 2, 0).numpy()


def photo_L(rgb: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) sRGB (grey or colour: only its lightness is used) -> L (H, W) float32, 0..100."""
    if rgb.ndim != 3 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"expected a uint8 (H, W, 3) image, got {rgb.dtype} {rgb.shape}")
    return lightness(rgb)


def working_input(L: np.ndarray, size: Optional[int] = 256) -> np.ndarray:
    """L (H, W) in 0..100 -> the generator's input (1, h, w) float32 at the working size (short
    side ``size``, ``geometry.short_side_shape``; antialiased bilinear). CPU work: bulk inference
    runs it in the read tasks, so the model's actor only runs the model."""
    H, W = L.shape
    x = torch.from_numpy(np.ascontiguousarray(L, dtype=np.float32))[None, None]  # (1,1,H,W), no copy
    h, w = geometry.short_side_shape(H, W, size)
    if (h, w) != (H, W):
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    return L_to_input(x)[0].numpy()  # scaled at the working size: no full-resolution copy


def takes_hints(G) -> bool:
    return bool(getattr(G, "takes_hints", False))


def check_takes_hints(G, hints: Optional[Sequence[Hint]]) -> None:
    """HintError when ``hints`` are given to a model that takes none."""
    if hints and not takes_hints(G):
        raise HintError("this model takes no colour hints (the shipped model does; a model trained with model.hints)")


def working_hints(G, hints: Optional[Sequence[Hint]], H: int, W: int, x: torch.Tensor) -> Optional[torch.Tensor]:
    """(1, 3, h, w) hint map for an H x W photo whose working input is ``x`` (1, 1, h, w), or
    None without hints; HintError for hints outside the photo, too many, or a model without them."""
    if not hints:
        return None
    check_takes_hints(G, hints)
    hint_maps.check_hints(hints, W, H)
    h, w = x.shape[-2:]
    return torch.from_numpy(hint_maps.hint_map(hints, H, W, h, w))[None]


@torch.no_grad()
def predict_ab_batch(
    G: torch.nn.Module,
    x: torch.Tensor,
    temperature: Optional[float] = None,
    device: Optional[torch.device] = None,
    hints: Optional[torch.Tensor] = None,
    spread: float = hint_spread.REACH,
    prior_correction: Optional[float] = None,
) -> torch.Tensor:
    """Inputs (B, 1, h, w) of one working size (and hint maps (B, 3, h, w) or None) -> ab
    (B, 2, h, w) float32 on ``device`` (bf16 autocast on CUDA; the annealed mean stays fp32),
    decoded at ``temperature`` and ``prior_correction`` (None: the model's own).
    With hints, each hint's colour is then put on its patch and spread along the photo
    (``hint_spread``, reach ``spread`` short sides; 0: the network's colours alone)."""
    ab = _forward(G, x, temperature, device, hints, prior_correction)[1].float()
    if hints is None or spread <= 0:
        return ab
    Ls = input_to_L(x[:, 0].float()).cpu().numpy()  # (B, h, w) in 0..100
    maps, abs_ = hints.cpu().numpy(), ab.cpu().numpy()
    out = [hint_spread.spread(L, a, m, spread) for L, a, m in zip(Ls, abs_, maps, strict=True)]
    return torch.from_numpy(np.stack(out)).to(ab.device)


def _forward(G, x, temperature, device, hints, prior_correction=None):
    device = device or next(G.parameters()).device
    x = x.to(device, non_blocking=True)
    kwargs = {}  # only what is given: an L-only generator is called as it always was
    if hints is not None:
        kwargs["hints"] = hints.to(device)
    if prior_correction is not None:
        kwargs["prior_correction"] = prior_correction
    with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        return G(x, temperature, **kwargs)


@torch.no_grad()
def suggest_colours(
    G: torch.nn.Module,
    L: np.ndarray,
    x: float,
    y: float,
    size: Optional[int] = None,
    hints: Optional[Sequence[Hint]] = None,
    k: int = 8,
    prior_correction: Optional[float] = None,
) -> List[dict]:
    """The model's own likeliest colours at point (x, y) of a photo whose lightness is L (H, W),
    given the hints placed so far (Zhang et al. 2017's palette): the ``k`` most probable ab bins
    of its distribution there as it decodes (with ``prior_correction``, None: its own), each as
    {"color": "#rrggbb" at the point's own L, "p": probability}, most probable first. HintError
    for a point outside the photo."""
    H, W = L.shape
    hint_maps.check_hints([Hint(x, y, (0, 0, 0))], W, H)
    inp = torch.from_numpy(working_input(L, working_size(G, size)))[None]  # (1, 1, h, w)
    raw = _forward(G, inp, None, None, working_hints(G, hints, H, W, inp))[0]
    logits = G.corrected(raw, prior_correction).float()  # (1, Q, h', w')
    h, w = logits.shape[-2:]
    p = torch.softmax(logits[0, :, min(h - 1, int(y * h / H)), min(w - 1, int(x * w / W))], 0)  # (Q,)
    top = torch.topk(p, min(k, p.numel()))
    bins = G.bins[top.indices].cpu().numpy()  # (k, 2)
    lab = np.concatenate([np.full((len(bins), 1), L[int(y), int(x)], np.float32), bins], 1)
    rgb = color.lab_to_rgb_u8(lab[None])[0]  # (k, 3): at the point's lightness, in gamut
    return [
        {"color": "#{:02x}{:02x}{:02x}".format(*c), "p": round(float(q), 4)}
        for c, q in zip(rgb, top.values, strict=True)
    ]


def join_full(L: np.ndarray, ab: torch.Tensor) -> np.ndarray:
    """Full-resolution L (H, W) in 0..100 and working-size ab (2, h, w) (torch, any device) ->
    uint8 sRGB (H, W, 3): ab upsampled (bilinear) to the photo, joined with its own L, fitted to the
    gamut keeping L (``color.lab_to_rgb_u8``, vectorised torch on ab's device)."""
    H, W = L.shape
    ab = ab[None].float()
    if tuple(ab.shape[-2:]) != (H, W):
        ab = F.interpolate(ab, size=(H, W), mode="bilinear", align_corners=False)
    Lt = torch.from_numpy(np.ascontiguousarray(L, dtype=np.float32)).to(ab.device)[None, None]
    return color.lab_to_rgb_u8(torch.cat([Lt, ab], 1)[0], dim=0).permute(1, 2, 0).cpu().numpy()


@torch.no_grad()
def predict_ab(
    G: torch.nn.Module,
    L: np.ndarray,
    size: Optional[int] = 256,
    temperature: Optional[float] = None,
    device: Optional[torch.device] = None,
    hints: Optional[Sequence[Hint]] = None,
    spread: float = hint_spread.REACH,
    prior_correction: Optional[float] = None,
) -> np.ndarray:
    """ab (H, W, 2) float32 for a lightness plane L (H, W) in 0..100, following ``hints`` (points
    of the H x W photo; HintError when they do not fit it or the model takes none), their colours
    spread ``spread`` short sides (``predict_ab_batch``, as its ``prior_correction``)."""
    H, W = L.shape
    x = torch.from_numpy(working_input(L, size))[None]  # (1,1,h,w)
    maps = working_hints(G, hints, H, W, x)
    ab = predict_ab_batch(G, x, temperature, device, maps, spread, prior_correction)  # (1,2,h,w)
    if tuple(ab.shape[-2:]) != (H, W):
        ab = F.interpolate(ab, size=(H, W), mode="bilinear", align_corners=False)
    return ab[0].permute(1, 2, 0).cpu().numpy()


@torch.no_grad()
def colorize(
    G: torch.nn.Module,
    rgb: np.ndarray,
    size: Optional[int] = 256,
    temperature: Optional[float] = None,
    device: Optional[torch.device] = None,
    hints: Optional[Sequence[Hint]] = None,
    spread: float = hint_spread.REACH,
    prior_correction: Optional[float] = None,
) -> np.ndarray:
    """uint8 (H, W, 3) photo, grey or colour (colour is made grey first: only its L is used) ->
    uint8 (H, W, 3) colorized at the same size with the same L (up to 8-bit rounding), following
    ``hints`` when given (their colours spread ``spread`` short sides), decoded at
    ``prior_correction`` (None: the model's own)."""
    L = photo_L(rgb)  # row chunks: the full-resolution planes stay within predict's memory bound
    return join_l_ab(L, predict_ab(G, L, size, temperature, device, hints, spread, prior_correction))


@torch.no_grad()
def colorize_batch(
    G: torch.nn.Module,
    rgbs,
    temperature: Optional[float] = None,
    device: Optional[torch.device] = None,
    batch_size: int = 16,
):
    """uint8 photos of one size (e.g. eval's square crops) colorized at their own size, ``batch_size``
    at a time through G: the same result as ``colorize(G, rgb, None, ...)`` for each."""
    out = []
    for i in range(0, len(rgbs), batch_size):
        Ls = [photo_L(r) for r in rgbs[i : i + batch_size]]
        x = torch.from_numpy(np.stack([working_input(L, None) for L in Ls]))
        ab = predict_ab_batch(G, x, temperature, device)
        out += [join_full(L, a) for L, a in zip(Ls, ab, strict=True)]
    return out
