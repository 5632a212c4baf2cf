"""A hint's colour where the user put it, and along the object around it: the generator's colours
corrected by what it still misses at each hint, spread by the geodesic distance from the hint.

The generator takes hints as input and learns to follow them, but it follows them only part of
the way (a hint model trained on a CPU budget closes about a fifth of the gap at the points). So
after the network, each hint's patch is shifted to the hint's colour (the model's texture inside
it kept: its own ab plus the patch's mean residual), and that shift fades with the distance from
the patch measured along the photo, where crossing a lightness edge counts extra: the colour keeps
more to its side of an outline (Yatziv & Sapiro 2006, "Fast image and video
colorization using chrominance blending", applied to the model's residual, not to grey). Where
the reach of hints meets, their shifts blend by weight; far from every hint the model's colours
stay. Pure numpy, torch and scikit-image, at the working size.
"""

from __future__ import annotations

from typing import List, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from skimage.graph import MCP_Geometric
from skimage.measure import label

from models.scaling import AB_SCALE

# Chosen on everyday-val (157 photos, 10 true-colour hints per photo, the shipped model): PSNR
# 21.1 dB with the network alone, 23.3 dB with the shift fading to 1/e at 0.4 short sides and an
# edge cost of 0.2 px per L at size 128; reaches of 0.2 / 0.8 and edge costs of 0.05 / 1.0 scored lower.
REACH = 0.4  # geodesic distance, in short sides of the working size, where a hint's shift is 1/e
EDGE = 0.2 / 128  # extra distance, in short sides, per unit of L crossed: at short side 128 an edge
# of 50 L counts as 10 px more (distances in short sides: the same photo spreads alike at any size)
MIN_REACH = 1e-6  # short sides: a reach below it counts as 0, the network alone (the squares overflow)
MAX_REACH = 10.0  # short sides: past a few, every hint reaches the whole photo alike
GRID = 64  # the spread is worked out on a grid of at most this short side, then upsampled: a hint
# costs a few ms of geodesic distances whatever the working size


def parse_reach(text: str) -> float:
    """A reach given as text (a flag, a query parameter) -> float in 0..MAX_REACH; ValueError saying
    what was expected otherwise."""
    try:
        reach = float(text)
    except (TypeError, ValueError):
        reach = float("nan")
    if not 0 <= reach <= MAX_REACH:  # NaN fails too
        raise ValueError(f"must be in 0..{MAX_REACH:g} (short sides of the photo), got {text!r:.40}")
    return reach + 0.0  # -0 as 0


def spread(L: np.ndarray, ab: np.ndarray, hint_map: np.ndarray, reach: float = REACH, edge: float = EDGE) -> np.ndarray:
    """The model's ab (2, h, w), in Lab units, predicted for lightness L (h, w) in 0..100 with
    ``hint_map`` (3, h, w: a/AB_SCALE, b/AB_SCALE, 0/1 mask; ``hints.hint_map``) -> ab (2, h, w)
    float32 that has each hint's colour on its patch and the shift toward it spread along the
    photo. No hints (an all-zero mask) or ``reach`` 0 (below ``MIN_REACH``): ``ab`` unchanged."""
    mask = hint_map[2] > 0  # (h, w)
    if reach < MIN_REACH or not mask.any():
        return ab
    if ab.shape[-2:] != mask.shape or L.shape != mask.shape:
        raise ValueError(f"L {L.shape}, ab {ab.shape[-2:]} and the hint map {mask.shape} differ in size")
    ab = np.asarray(ab, np.float32)
    h, w = mask.shape
    f = max(1, -(-min(h, w) // GRID))  # the grid's cells are f x f pixels: bounded work per hint
    Lc = _block_means(np.asarray(L, np.float64), f)  # (hc, wc)
    cost = f + edge * min(h, w) * _gradient(Lc)  # (hc, wc): a step is f pixels, plus the lightness crossed
    scale = reach * min(h, w)  # pixels of the working size
    geodesic = MCP_Geometric(cost)
    shifted = np.zeros((2, *Lc.shape))  # (2, hc, wc): the weighted shifts
    weight = np.zeros(Lc.shape)  # (hc, wc)
    patches = _patches(hint_map, mask)
    shifts = [colour - ab[:, rows, cols].mean(1) for rows, cols, colour in patches]  # (2,): what the model misses
    for (rows, cols, _), shift in zip(patches, shifts, strict=True):
        seeds = np.unique(np.stack([rows // f, cols // f], 1), axis=0)  # the cells the patch touches
        dist, _ = geodesic.find_costs(seeds)  # (hc, wc), 0 on the seeds (a buffer reused by the next call)
        wt = np.exp(-((dist / scale) ** 2))
        shifted += wt * shift[:, None, None]
        weight += wt
    # Normalised where hints overlap (weights summing over 1), fading alone where only one reaches.
    field = _upsampled(shifted / np.maximum(weight, 1.0), f)[:, :h, :w]  # (2, h, w)
    out = ab + field.astype(np.float32)
    for (rows, cols, _), shift in zip(patches, shifts, strict=True):  # each patch on its hint's colour, texture kept
        out[:, rows, cols] = ab[:, rows, cols] + shift[:, None]
    return out


def _block_means(x: np.ndarray, f: int) -> np.ndarray:
    """(h, w) -> (ceil(h/f), ceil(w/f)): the mean of each f x f block (the last ones padded with
    the edge's values), so pixel (r, c) lies in cell (r // f, c // f)."""
    if f == 1:
        return x
    h, w = x.shape
    hc, wc = -(-h // f), -(-w // f)
    x = np.pad(x, ((0, hc * f - h), (0, wc * f - w)), mode="edge")
    return x.reshape(hc, f, wc, f).mean((1, 3))


def _gradient(x: np.ndarray) -> np.ndarray:
    """|grad x| per cell (central differences; an axis of one cell has none)."""
    g2 = np.zeros_like(x)
    for axis in (0, 1):
        if x.shape[axis] > 1:
            g2 += np.gradient(x, axis=axis) ** 2
    return np.sqrt(g2)


def _upsampled(field: np.ndarray, f: int) -> np.ndarray:
    """(C, hc, wc) cells -> (C, hc*f, wc*f) pixels, bilinear between the cells' centres."""
    if f == 1:
        return field
    t = torch.from_numpy(np.ascontiguousarray(field, dtype=np.float32))[None]
    return F.interpolate(t, scale_factor=f, mode="bilinear", align_corners=False)[0].numpy()


def _patches(hint_map: np.ndarray, mask: np.ndarray) -> List[Tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """[(rows, cols, colour (2,) in Lab units)]: the pixels of each connected piece of the hint mask
    of one colour (two touching hints of different colours stay two patches; two apart of the same
    colour too)."""
    given = hint_map[:2, mask].T * AB_SCALE  # (n, 2): each hinted pixel's colour
    colours, which = np.unique(given, axis=0, return_inverse=True)
    ids = np.zeros(mask.shape, np.int64)
    ids[mask] = which.reshape(-1) + 1  # 1.. per colour; 0 no hint
    pieces = label(ids, background=0, connectivity=2)  # same colour and touching: one piece
    order = np.argsort(pieces, axis=None, kind="stable")
    flat = pieces.reshape(-1)[order]
    starts = np.searchsorted(flat, np.arange(1, flat[-1] + 1))
    out = []
    for idx in np.split(order, starts)[1:]:  # the pixels of piece 1, 2, ...
        rows, cols = np.unravel_index(idx, mask.shape)
        out.append((rows, cols, colours[ids[rows[0], cols[0]] - 1].astype(np.float64)))
    return out
