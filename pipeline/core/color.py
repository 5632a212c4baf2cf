"""Colour science: sRGB <-> CIE Lab (D65), how Lab is stored and shown, the quantized ab grid, soft
encoding, decoding, priors, and the one rule for "grey".

Pure numpy/torch, no I/O beyond the explicit Zhang-import helper, no Ray. Every function that
takes ab data accepts a numpy array or a torch tensor and answers in kind, so the same maths runs in
Ray Data workers (numpy) and inside the training loop on the GPU (torch).

Conventions:
- Lab matches ``skimage.color.rgb2lab`` (sRGB, D65, 2-degree observer).
- Storage (prepared shards): L as uint8 ``round(L * 255/100)`` (``L_to_u8``/``u8_to_L``), ab as
  int8 ``round(ab)`` (``ab_to_i8``/``i8_to_ab``). The networks' own scalings (L -> [-1, 1],
  ab / 110) live with the networks, in ``models/scaling.py``.
- Lab -> sRGB for anything a person or a metric sees (``infer``, ``eval``, validation, sample
  grids, benches, pictures): ``lab_to_rgb_keep_l`` / ``lab_to_rgb_u8``. Gamut rule: a colour
  outside sRGB keeps its L and is mixed, in linear light, with the grey of that L just enough to
  fit (grey at any L always does): only chroma is given up. Per-channel clipping would change its
  lightness. ``lab_to_rgb`` (per-channel clip, the same numbers as ``skimage.color.lab2rgb``) is
  the reference conversion only.
- Grey: a pixel is coloured when its ab leaves the grey bin's cell (``|a|`` or ``|b|`` > 5, by the
  rounding ``ab_to_bin`` uses); an image is grey when fewer than ``GREY_FRACTION`` of its pixels
  are coloured. One rule for skipping grey photos and for masking them out of the loss.
- ab grid: step 10, bin centres on multiples of 10. The bin set (``ab_bins``) is derived from the
  sRGB gamut by the rule in ``_grid_cells``; order is sorted by a, then b.
"""

from __future__ import annotations

import functools
import sys
from typing import TYPE_CHECKING, Union

import numpy as np

if TYPE_CHECKING:
    import torch

# torch is imported only where a tensor is handled: Ray Data workers that only bin pixels start
# without paying its ~2 s import.
Array = Union[np.ndarray, "torch.Tensor"]


def _is_tensor(x) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


GRID_STEP = 10.0
# Extended grid of cells used for O(1) lookups: a, b cell indices in [-GRID_HALF, GRID_HALF]
# (ab in [-135, 135]); sRGB's Lab gamut spans a in [-86, 98], b in [-108, 94].
GRID_HALF = 13
GRID_SIDE = 2 * GRID_HALF + 1

# sRGB primaries -> XYZ (the matrix skimage uses) and the D65 / 2-degree white point.
XYZ_FROM_RGB = np.array(
    [[0.412453, 0.357580, 0.180423], [0.212671, 0.715160, 0.072169], [0.019334, 0.119193, 0.950227]]
)
RGB_FROM_XYZ = np.linalg.inv(XYZ_FROM_RGB)
D65_WHITE = np.array([0.95047, 1.0, 1.08883])
# White-normalised forward matrix: rows give X/Xn, Y/Yn, Z/Zn from linear RGB.
_XYZN_FROM_RGB = XYZ_FROM_RGB / D65_WHITE[:, None]
_LAB_EPS = 0.008856
_LAB_KAPPA = 7.787


# ----------------------------------------------------------------------------- sRGB <-> Lab (numpy)


def _srgb_to_linear(c: np.ndarray) -> np.ndarray:
    return np.where(c > 0.04045, ((c + 0.055) / 1.055) ** 2.4, c / 12.92)


# uint8 fast path: the sRGB transfer curve as a 256-entry table.
_LINEAR_LUT = _srgb_to_linear(np.arange(256, dtype=np.float64) / 255.0).astype(np.float32)


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB (..., 3) uint8, or float in [0, 1], -> Lab (..., 3) float32 (float64 for float64 input).

    L in [0, 100]; a, b roughly in [-128, 127]. Matches ``skimage.color.rgb2lab`` to < 1e-3.
    """
    rgb = np.asarray(rgb)
    if rgb.shape[-1] != 3:
        raise ValueError(f"rgb_to_lab expects (..., 3) input, got shape {rgb.shape}")
    if rgb.dtype == np.uint8:
        lin = _LINEAR_LUT[rgb]
    else:
        dtype = np.float64 if rgb.dtype == np.float64 else np.float32
        lin = _srgb_to_linear(rgb.astype(dtype, copy=False))
    dtype = lin.dtype
    m = _XYZN_FROM_RGB.astype(dtype)
    r, g, b = lin[..., 0], lin[..., 1], lin[..., 2]
    out = np.empty(lin.shape, dtype)
    # Planar arithmetic beats a (..., 3) @ (3, 3) matmul for 3-vectors.
    for i in range(3):
        t = m[i, 0] * r + m[i, 1] * g + m[i, 2] * b
        f = np.cbrt(t)
        small = t <= _LAB_EPS
        if small.any():
            f[small] = _LAB_KAPPA * t[small] + 16.0 / 116.0
        out[..., i] = f
    fx, fy, fz = out[..., 0].copy(), out[..., 1].copy(), out[..., 2]
    out[..., 0] = 116.0 * fy - 16.0
    out[..., 1] = 500.0 * (fx - fy)
    out[..., 2] = 200.0 * (fy - fz)
    return out


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """Lab (..., 3) -> sRGB (..., 3) float in [0, 1], each channel clipped: skimage's ``lab2rgb``.

    The reference conversion (tests compare it with skimage). Not for display or scoring: clipping
    an out-of-gamut colour changes its lightness; use ``lab_to_rgb_keep_l``.
    """
    lab = np.asarray(lab)
    dtype = np.float64 if lab.dtype == np.float64 else np.float32
    lab = lab.astype(dtype, copy=False)
    fy = (lab[..., 0] + 16.0) / 116.0
    fx = lab[..., 1] / 500.0 + fy
    fz = np.maximum(fy - lab[..., 2] / 200.0, 0.0)  # skimage clips negative Z to 0
    f = np.stack([fx, fy, fz], axis=-1)
    xyz = np.where(f > 0.2068966, f**3, (f - 16.0 / 116.0) / _LAB_KAPPA) * D65_WHITE.astype(dtype)
    lin = xyz @ RGB_FROM_XYZ.T.astype(dtype)
    rgb = np.where(lin > 0.0031308, 1.055 * np.abs(lin) ** (1 / 2.4) - 0.055, 12.92 * lin)
    return np.clip(rgb, 0.0, 1.0).astype(dtype, copy=False)


# ----------------------------------------------------------------------------- Lab -> sRGB, keeping L

# Pixels converted at a time: bounds the temporaries (a few (N, 3) arrays) for large photos.
KEEP_L_CHUNK = 1 << 20


def _fit_keeping_l(lab, xp, rgb_from_xyz_t, white):
    """(N, 3) Lab -> (N, 3) sRGB in [0, 1] by the gamut rule of ``lab_to_rgb_keep_l``. ``xp`` is
    numpy or torch: the same expressions serve both. Closed form, no per-pixel branches."""
    fy = (lab[..., 0] + 16.0) / 116.0
    f = xp.stack([lab[..., 1] / 500.0 + fy, fy, fy - lab[..., 2] / 200.0], -1)
    xyz = xp.where(f > 0.2068966, f * f * f, (f - 16.0 / 116.0) / _LAB_KAPPA) * white
    lin = xyz @ rgb_from_xyz_t  # linear RGB, may leave [0, 1]
    Y = xyz[..., 1:2].clip(0.0, 1.0)  # luminance (sets L); (Y, Y, Y) is the grey of that L
    d = lin - Y  # offset from that grey, of zero luminance (XYZ_FROM_RGB's Y row sums to 1)
    room = xp.where(d > 0, 1.0 - Y, Y)  # how far each channel may move before it leaves [0, 1]
    t = xp.amin(room / abs(d).clip(1e-12, None), -1)[..., None].clip(None, 1.0)  # (N, 1): the mix that fits
    c = Y + t * d  # in gamut; in-gamut colours have t = 1: unchanged
    rgb = xp.where(c > 0.0031308, 1.055 * abs(c) ** (1 / 2.4) - 0.055, 12.92 * c)
    return rgb.clip(0.0, 1.0)  # only float rounding is left to clip


def lab_to_rgb_keep_l(lab: Array, dim: int = -1) -> Array:
    """Lab with channels on ``dim`` -> sRGB in [0, 1], keeping each pixel's L: the one conversion
    for what users and metrics see.

    Gamut rule: a colour outside sRGB keeps its L (its luminance Y) and is mixed, in linear light,
    with the grey of the same L just enough to fit (closed form: the largest mix per channel).
    Luminance is linear in linear RGB, so L stays exact, up to 8-bit rounding once quantised; the
    colour's direction from grey (its dominant wavelength) is kept, only chroma is given up.
    Per-channel clipping would change L (a bright saturated guess comes back darker or lighter);
    shrinking a and b in Lab is not monotone (from a yellow just outside sRGB the path bulges out
    and re-enters only at 1/4 of its chroma). In-gamut colours convert exactly as ``lab_to_rgb``.

    numpy in: float64 out; torch in (any device, e.g. (B,3,H,W) with dim=1): float32 out (float64
    for float64 input), autocast off. Both run ``_fit_keeping_l``, ``KEEP_L_CHUNK`` pixels at a time.
    """
    if _is_tensor(lab):
        return _keep_l_torch(lab, dim, quantise=False)
    return _keep_l_numpy(lab, dim, quantise=False)


def _keep_l_numpy(lab, dim: int, quantise: bool) -> np.ndarray:
    """``lab_to_rgb_keep_l`` (float64) or ``lab_to_rgb_u8`` (``quantise``) of a numpy array. Each
    chunk is widened to float64, fitted and, for uint8, quantised inside the loop: beyond the
    output, the extra memory is a few chunk-sized arrays whatever the photo's size (converting the
    whole photo first would hold several full-size float64 copies: GBs for 64 MP)."""
    x = np.moveaxis(np.asarray(lab), dim, -1)
    flat = x.reshape(-1, 3)  # a view for channels-last input (every numpy caller); else one copy in its dtype
    out = np.empty(flat.shape, np.uint8 if quantise else np.float64)
    for i in range(0, len(flat), KEEP_L_CHUNK):
        rgb = _fit_keeping_l(flat[i : i + KEEP_L_CHUNK].astype(np.float64), np, RGB_FROM_XYZ.T, D65_WHITE)
        out[i : i + KEEP_L_CHUNK] = to_uint8(rgb) if quantise else rgb
    return np.moveaxis(out.reshape(x.shape), -1, dim)


def _keep_l_torch(lab: torch.Tensor, dim: int, quantise: bool) -> torch.Tensor:
    """The torch twin of ``_keep_l_numpy`` (float32/float64 out, or uint8 when ``quantise``)."""
    import torch

    x = lab.movedim(dim, -1)
    x = x if x.dtype == torch.float64 else x.float()
    flat = x.reshape(-1, 3)
    m = torch.as_tensor(RGB_FROM_XYZ.T, dtype=x.dtype, device=x.device)
    white = torch.as_tensor(D65_WHITE, dtype=x.dtype, device=x.device)
    out = torch.empty(flat.shape, dtype=torch.uint8 if quantise else x.dtype, device=x.device)
    with torch.autocast(device_type=x.device.type, enabled=False):  # colours stay >= fp32 under bf16
        for i in range(0, len(flat), KEEP_L_CHUNK):
            rgb = _fit_keeping_l(flat[i : i + KEEP_L_CHUNK], torch, m, white)
            out[i : i + KEEP_L_CHUNK] = to_uint8(rgb) if quantise else rgb
    return out.reshape(x.shape).movedim(-1, dim)


def to_uint8(rgb01: Array) -> Array:
    """sRGB in [0, 1] (numpy or torch) -> uint8, rounded to nearest (values outside clipped)."""
    if _is_tensor(rgb01):
        import torch

        return (rgb01 * 255.0).round().clamp(0, 255).to(torch.uint8)
    return np.clip(np.rint(np.asarray(rgb01) * 255.0), 0, 255).astype(np.uint8)


def lab_to_rgb_u8(lab: Array, dim: int = -1) -> Array:
    """Lab with channels on ``dim`` -> uint8 sRGB by ``lab_to_rgb_keep_l``: the picture a user gets
    (quantised chunk by chunk: no full-size float copy of a large photo)."""
    if _is_tensor(lab):
        return _keep_l_torch(lab, dim, quantise=True)
    return _keep_l_numpy(lab, dim, quantise=True)


# ----------------------------------------------------------------------------- storage of L and ab

L_U8_SCALE = 255.0 / 100.0  # L (0..100) is stored as round(L * 255/100) in uint8: 0.39 L-unit steps


def L_to_u8(L: Array) -> Array:
    """L in 0..100 (numpy or torch, any shape) -> its uint8 storage form, round(L * 255/100)."""
    if _is_tensor(L):
        import torch

        return (L * L_U8_SCALE).round().clamp(0, 255).to(torch.uint8)
    return np.clip(np.rint(np.asarray(L) * L_U8_SCALE), 0, 255).astype(np.uint8)


def u8_to_L(L_u8: Array) -> Array:
    """Stored uint8 L -> L in 0..100 as float32 (inverse of ``L_to_u8`` up to its rounding)."""
    if _is_tensor(L_u8):
        return L_u8.float() * (100.0 / 255.0)
    return np.asarray(L_u8).astype(np.float32) * np.float32(100.0 / 255.0)


def ab_to_i8(ab: Array) -> Array:
    """ab (Lab units) -> its int8 storage form, rounded to whole units and clipped to [-128, 127]."""
    if _is_tensor(ab):
        import torch

        return ab.round().clamp(-128, 127).to(torch.int8)
    return np.clip(np.rint(np.asarray(ab)), -128, 127).astype(np.int8)


def i8_to_ab(ab_i8: Array) -> Array:
    """Stored int8 ab -> ab as float32 Lab units."""
    if _is_tensor(ab_i8):
        return ab_i8.float()
    return np.asarray(ab_i8).astype(np.float32)


# ----------------------------------------------------------------------------- sRGB <-> Lab (torch)


def rgb_to_lab_torch(rgb: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Torch twin of ``rgb_to_lab``: channels on ``dim`` (e.g. dim=1 for (B,3,H,W)); uint8 or float."""
    import torch

    if rgb.dtype == torch.uint8:
        rgb = rgb.float() / 255.0
    x = rgb.movedim(dim, -1).float() if rgb.dtype != torch.float64 else rgb.movedim(dim, -1)
    lin = torch.where(x > 0.04045, ((x + 0.055) / 1.055) ** 2.4, x / 12.92)
    t = lin @ torch.as_tensor(_XYZN_FROM_RGB.T, dtype=lin.dtype, device=lin.device)
    f = torch.where(t > _LAB_EPS, t.clamp_min(0).pow(1.0 / 3.0), _LAB_KAPPA * t + 16.0 / 116.0)
    L = 116.0 * f[..., 1] - 16.0
    a = 500.0 * (f[..., 0] - f[..., 1])
    b = 200.0 * (f[..., 1] - f[..., 2])
    return torch.stack([L, a, b], dim=-1).movedim(-1, dim)


# ----------------------------------------------------------------------------- the ab grid

GRID_RULE = (
    "step-10 ab cells (centres on multiples of 10) that some 8-bit sRGB colour rounds into under "
    "D65 Lab, dilated once by their 4-neighbours; sorted by a, then b"
)


def _round_to_cell(x: Array) -> Array:
    """Nearest cell index of ab values; ties go to the lower cell, as an argmin over sorted bins does."""
    if _is_tensor(x):
        import torch

        return torch.ceil(x / GRID_STEP - 0.5)
    return np.ceil(np.asarray(x) / GRID_STEP - 0.5)


_CACHE_VERSION = "v1"


def _cache_dir() -> str:
    import os

    root = os.environ.get("COLORIZE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "colorize"
    )
    return root


@functools.lru_cache(maxsize=1)
def _srgb_cells() -> np.ndarray:
    """(2^24,) uint16: the grid cell (ia * GRID_SIDE + ib) of every 8-bit sRGB colour, by index
    r << 16 | g << 8 | b. Computed once (a few seconds) and cached on disk; 32 MiB."""
    import os
    import tempfile

    path = os.path.join(_cache_dir(), f"srgb_cells-{_CACHE_VERSION}.npy")
    try:
        cells = np.load(path, mmap_mode="r", allow_pickle=False)
        if cells.shape == (1 << 24,) and cells.dtype == np.uint16:
            return cells
    except (OSError, ValueError):
        pass
    cells = np.empty((256, 256, 256), np.uint16)
    gb = np.stack(np.meshgrid(np.arange(256), np.arange(256), indexing="ij"), -1).astype(np.uint8)
    rgb = np.empty((256, 256, 3), np.uint8)
    rgb[..., 1:] = gb
    for r in range(256):
        rgb[..., 0] = r
        c = _round_to_cell(rgb_to_lab(rgb)[..., 1:]).astype(np.int64) + GRID_HALF
        cells[r] = c[..., 0] * GRID_SIDE + c[..., 1]
    cells = cells.reshape(-1)
    try:  # best effort: atomic so concurrent workers never read a half-written table
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".npy.tmp")
        with os.fdopen(fd, "wb") as f:
            np.save(f, cells)
        os.replace(tmp, path)
    except OSError:
        pass
    return cells


@functools.lru_cache(maxsize=1)
def _grid_cells() -> np.ndarray:
    """(Q, 2) int cell indices of the bin set; the rule is ``GRID_RULE``.

    Every 8-bit sRGB colour (2^24 of them) is converted and its ab rounded to a cell: that is the
    gamut set (261 cells). One 4-neighbour dilation adds a margin for colours that real cameras
    and the network's ab output reach just outside it, and makes the set contain all 313 of Zhang
    et al.'s bins, so their prior imports without loss (323 cells).
    """
    hit = np.bincount(_srgb_cells(), minlength=GRID_SIDE * GRID_SIDE) > 0
    hit = hit.reshape(GRID_SIDE, GRID_SIDE)
    dil = hit.copy()
    dil[1:, :] |= hit[:-1, :]
    dil[:-1, :] |= hit[1:, :]
    dil[:, 1:] |= hit[:, :-1]
    dil[:, :-1] |= hit[:, 1:]
    ia, ib = np.nonzero(dil)  # row-major: sorted by a, then b
    return np.stack([ia - GRID_HALF, ib - GRID_HALF], -1)


@functools.lru_cache(maxsize=1)
def _srgb_bin_lut() -> np.ndarray:
    """(2^24,) uint16: ``ab_to_bin(rgb_to_lab(c))`` for every 8-bit colour c (exact: in-gamut)."""
    return _cell_lut().reshape(-1).astype(np.uint16)[_srgb_cells()]


def rgb_to_bin(rgb: np.ndarray) -> np.ndarray:
    """Bin index (uint16) of 8-bit sRGB pixels (..., 3): one table lookup per pixel.

    Equal to ``ab_to_bin(rgb_to_lab(rgb)[..., 1:])``, at a fraction of the cost: the data path of
    the priors job.
    """
    rgb = np.asarray(rgb)
    if rgb.dtype != np.uint8 or rgb.shape[-1] != 3:
        raise ValueError(f"rgb_to_bin expects uint8 (..., 3), got {rgb.dtype} {rgb.shape}")
    packed = rgb[..., 0].astype(np.uint32) << 16
    packed |= rgb[..., 1].astype(np.uint32) << 8
    packed |= rgb[..., 2]
    return np.take(_srgb_bin_lut(), packed)  # np.take: ~2x faster than fancy indexing here


def ab_bins() -> np.ndarray:
    """(Q, 2) float32 ab bin centres of the project's grid, sorted by a then b (read-only)."""
    return _ab_bins_cached()


@functools.lru_cache(maxsize=1)
def _ab_bins_cached() -> np.ndarray:
    out = (_grid_cells() * GRID_STEP).astype(np.float32)
    out.setflags(write=False)
    return out


def num_bins() -> int:
    return len(ab_bins())


@functools.lru_cache(maxsize=1)
def _cell_lut() -> np.ndarray:
    """(GRID_SIDE, GRID_SIDE) int64: bin index nearest to each cell centre (itself for bin cells)."""
    bins = ab_bins().astype(np.float64)
    ca, cb = np.meshgrid(np.arange(GRID_SIDE), np.arange(GRID_SIDE), indexing="ij")
    centres = (np.stack([ca, cb], -1).reshape(-1, 2) - GRID_HALF) * GRID_STEP
    d = ((centres[:, None, :] - bins[None, :, :]) ** 2).sum(-1)
    return d.argmin(1).reshape(GRID_SIDE, GRID_SIDE)


def _cells(ab: Array):
    """Clipped (ia, ib) cell indices into the extended grid, as int64 arrays/tensors."""
    c = _round_to_cell(ab)
    if _is_tensor(c):
        import torch

        c = torch.nan_to_num(c).clamp(-GRID_HALF, GRID_HALF).long() + GRID_HALF
    else:
        c = np.clip(np.nan_to_num(c), -GRID_HALF, GRID_HALF).astype(np.int64) + GRID_HALF
    return c[..., 0], c[..., 1]


def ab_to_bin(ab: Array) -> Array:
    """Nearest-bin index (int64) for ab of shape (..., 2); numpy or torch in, same out.

    O(1) per pixel: round to the grid cell, then one table lookup. Exact (equal to a brute-force
    nearest-centre search) for every value whose cell is a bin, i.e. all in-gamut colours; a value
    outside the bin set maps to the bin nearest its cell's centre.
    """
    ia, ib = _cells(ab)
    if _is_tensor(ia):
        return _table("cell_lut", ia)[ia, ib]
    return _cell_lut()[ia, ib]


# ----------------------------------------------------------------------------- grey

# An image is grey when fewer than this fraction of its pixels are coloured (``coloured_pixels``).
GREY_FRACTION = 1e-3


@functools.lru_cache(maxsize=1)
def _grey_bin() -> int:
    return int(_cell_lut()[GRID_HALF, GRID_HALF])


def coloured_pixels(ab: Array) -> Array:
    """bool (...) of ab (..., 2): True where the pixel leaves the grey bin's cell, i.e. |a| or |b|
    rounds past 5 exactly as ``ab_to_bin`` rounds (so ``ab_to_bin(ab) != grey bin``).

    Chroma under 5 is JPEG noise on a grey picture saved as colour, or film tone, not a colour to
    learn; and as a bin test it costs an 8-bit photo one table lookup per pixel (``is_grey``).
    """
    return (_round_to_cell(ab) != 0).any(-1)


def is_grey(rgb: np.ndarray) -> bool:
    """True for a uint8 (H, W, 3) photo with (almost) no colour: fewer than ``GREY_FRACTION`` of its
    pixels are ``coloured_pixels``. Via ``rgb_to_bin``'s table: ~0.4 ms for 256x256 on one core,
    where converting to Lab first would take ~2.5 ms (5x a JPEG decode)."""
    return float((rgb_to_bin(rgb) != _grey_bin()).mean()) < GREY_FRACTION


def is_grey_batch(ab: Array, dim: int = 1) -> Array:
    """bool (B,) of a batch of ab with channels on ``dim`` (e.g. (B,2,H,W)): ``is_grey`` per image,
    on Lab input (the loss masks grey images with it)."""
    c = coloured_pixels(_moveaxis(ab, dim, -1))  # (B, ...)
    frac = c.reshape(len(c), -1)
    frac = frac.float().mean(1) if _is_tensor(frac) else frac.mean(1)
    return frac < GREY_FRACTION


def _moveaxis(x: Array, src: int, dst: int) -> Array:
    return x.movedim(src, dst) if _is_tensor(x) else np.moveaxis(np.asarray(x), src, dst)


# ----------------------------------------------------------------------------- soft encoding / decoding


@functools.lru_cache(maxsize=4)
def _knn_candidates(k: int) -> np.ndarray:
    """(GRID_SIDE, GRID_SIDE, C) bin indices that can be among the k nearest of any point in a cell.

    A point p in cell c lies within r = 5*sqrt(2) of c's centre, so its k nearest bins lie within
    d_k(c) + 2r of c's centre (triangle inequality). Padded with index Q, a sentinel that
    ``_bins_with_sentinel`` places far away, so padding never wins a top-k.
    """
    bins = ab_bins().astype(np.float64)
    ca, cb = np.meshgrid(np.arange(GRID_SIDE), np.arange(GRID_SIDE), indexing="ij")
    centres = (np.stack([ca, cb], -1).reshape(-1, 2) - GRID_HALF) * GRID_STEP
    d = np.sqrt(((centres[:, None, :] - bins[None, :, :]) ** 2).sum(-1))
    order = np.argsort(d, axis=1, kind="stable")
    dk = np.take_along_axis(d, order[:, k - 1 : k], 1)
    reach = dk + 2 * (GRID_STEP / 2) * np.sqrt(2) + 1e-6
    counts = (d <= reach).sum(1)
    c = int(counts.max())
    cand = order[:, :c].copy()
    for i, n in enumerate(counts):
        cand[i, n:] = len(bins)
    return cand.reshape(GRID_SIDE, GRID_SIDE, c)


@functools.lru_cache(maxsize=1)
def _bins_with_sentinel() -> np.ndarray:
    """(Q + 1, 2) float32: the bin centres plus a far-away padding point at index Q."""
    return np.concatenate([ab_bins(), np.full((1, 2), 1e4, np.float32)])


@functools.lru_cache(maxsize=16)
def _torch_table(name: str, device: str) -> torch.Tensor:
    """Constant tables as tensors, cached per device (no per-call host-to-device copy)."""
    import torch

    tables = {
        "bins": ab_bins,
        "bins_sentinel": _bins_with_sentinel,
        "cell_lut": _cell_lut,
        "knn5": lambda: _knn_candidates(5),
    }
    return torch.tensor(np.array(tables[name]()), device=device)


def _table(name: str, like: torch.Tensor, k: int = 5) -> torch.Tensor:
    if name == "knn" and k != 5:
        import torch

        return torch.tensor(_knn_candidates(k), device=like.device)
    return _torch_table("knn5" if name == "knn" else name, str(like.device))


def soft_encode_sparse(ab: Array, k: int = 5, sigma: float = 5.0):
    """Soft targets of ab (..., 2) as (idx (..., k) int64, weight (..., k)), weights summing to 1.

    Each value is spread over its k nearest bins with Gaussian weights exp(-d^2 / 2 sigma^2)
    (Zhang et al. 2016). O(1) per pixel via per-cell candidate lists; this is the form the loss uses.
    """
    if k < 1:
        raise ValueError("k must be >= 1")
    ia, ib = _cells(ab)
    if _is_tensor(ab):
        import torch

        cand = _table("knn", ab, k)[ia, ib]  # (..., C)
        d2 = ((ab.float().unsqueeze(-2) - _table("bins_sentinel", ab)[cand]) ** 2).sum(-1)  # (..., C)
        d2k, j = torch.topk(d2, k, dim=-1, largest=False)
        idx = torch.gather(cand, -1, j)
        w = torch.softmax(-d2k / (2 * sigma**2), dim=-1)
        return idx, w
    ab = np.asarray(ab, dtype=np.float32)
    cand = _knn_candidates(k)[ia, ib]
    d2 = ((ab[..., None, :] - _bins_with_sentinel()[cand]) ** 2).sum(-1)
    j = np.argsort(d2, axis=-1, kind="stable")[..., :k]
    idx = np.take_along_axis(cand, j, -1)
    logits = -np.take_along_axis(d2, j, -1) / (2 * sigma**2)
    w = np.exp(logits - logits.max(-1, keepdims=True))
    return idx, (w / w.sum(-1, keepdims=True)).astype(np.float32)


def annealed_mean(probs: Array, T: float = 0.38, dim: int = -1, logits: bool = False) -> Array:
    """ab from a class distribution over this project's Q bins on ``dim``: mean of softmax(log p / T).

    T=1 is the plain mean (desaturated), T->0 the mode (vivid but patchy); 0.38 is Zhang's choice.
    With ``logits=True`` the input is unnormalised logits (softmax(z / T), the same thing).
    The output has 2 channels (a, b) on ``dim``. The maths is ``models.scaling.annealed_mean``
    (what the generator decodes with); numpy in, float32 numpy out.
    """
    import torch  # here, not at the top: workers that only bin pixels never import torch

    from pipeline.config import check_temperature  # imports the models (torch) too

    T = check_temperature(T, "annealing temperature")

    from models.scaling import annealed_mean as decode  # importing models/ imports torch too

    tensor = _is_tensor(probs)
    p = probs if tensor else torch.from_numpy(np.asarray(probs, dtype=np.float64))
    z = p if logits else torch.log((p if p.dtype == torch.float64 else p.float()).clamp_min(1e-12))
    ab = decode(z, _table("bins", p), T, dim)
    return ab if tensor else ab.numpy().astype(np.float32)


# ----------------------------------------------------------------------------- priors and rebalancing


def smooth_prior(prior: np.ndarray, sigma: float = 5.0) -> np.ndarray:
    """Gaussian smoothing of a bin distribution in the ab plane (sigma in ab units); sums to 1."""
    prior = _check_prior(prior)
    if sigma <= 0:
        return prior / prior.sum()
    bins = ab_bins().astype(np.float64)
    d2 = ((bins[:, None, :] - bins[None, :, :]) ** 2).sum(-1)
    k = np.exp(-d2 / (2 * sigma**2))
    k /= k.sum(0, keepdims=True)  # each source bin spreads all of its mass: column-stochastic
    p = k @ prior
    return p / p.sum()


def prior_weights(prior: np.ndarray, lam: float = 0.5, sigma: float = 5.0) -> np.ndarray:
    """Zhang et al.'s class-rebalancing weights (Q,) float64 from a bin prior.

    p~ = Gaussian-smoothed prior; w ∝ ((1 - lam) p~ + lam / Q)^-1; normalised so Σ p~ w = 1.
    lam = 1 gives uniform weights (all 1); lam -> 0 approaches inverse frequency.
    """
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"prior mixing lambda must be in [0, 1], got {lam}")
    p = smooth_prior(prior, sigma)
    w = 1.0 / ((1.0 - lam) * p + lam / len(p))
    return w / (p * w).sum()


def _check_prior(prior: np.ndarray) -> np.ndarray:
    prior = np.asarray(prior, dtype=np.float64)
    q = num_bins()
    if prior.shape != (q,):
        raise ValueError(f"prior must have shape ({q},) on this project's grid, got {prior.shape}")
    if not np.all(np.isfinite(prior)) or (prior < 0).any() or prior.sum() <= 0:
        raise ValueError("prior must be finite, non-negative and not all zero")
    return prior


def import_zhang_prior(prior_probs_path, pts_in_hull_path) -> np.ndarray:
    """Map Zhang et al.'s 313-bin prior onto this project's grid (Q,), every bin's mass kept.

    Raises if any of Zhang's bin centres is not a bin here (it would lose mass).
    """
    p = np.load(prior_probs_path, allow_pickle=False).astype(np.float64)
    pts = np.load(pts_in_hull_path, allow_pickle=False).astype(np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or p.shape != (len(pts),):
        raise ValueError(f"expected pts (N,2) and prior (N,), got {pts.shape} and {p.shape}")
    idx = ab_to_bin(pts)
    missing = np.abs(ab_bins()[idx] - pts).max(1) > 1e-6
    if missing.any():
        raise ValueError(f"{int(missing.sum())} of Zhang's bins are not on this grid, e.g. {pts[missing][0]}")
    out = np.zeros(num_bins(), np.float64)
    np.add.at(out, idx, p)
    return out


def bin_histogram(q: np.ndarray) -> np.ndarray:
    """(Q,) int64 counts of bin indices."""
    return np.bincount(np.asarray(q).ravel(), minlength=num_bins()).astype(np.int64)
