"""A hint's colour where the user put it, and along the object around it: the generator's colours
corrected by what it still misses at each hint, spread by the geodesic distance from the hint.

The generator takes hints as input and learns to follow them, but it follows them only part of
the way (a hint model trained on a CPU budget closes about a fifth of the gap at the points). So
after the network, each hint's patch is shifted to the hint's colour (the model's texture inside
it kept: its own ab plus the patch's mean residual), and that shift fades with the distance from
the patch measured along the photo, where crossing a lightness edge counts extra: the colour runs
along an object and stops at its outline (Yatziv & Sapiro 2006, "Fast image and video
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
GRID = 64  # the spread is worked out on a grid of at most this short side, then upsampled: a hint
# costs a few ms whatever the working size (the model's ab is upsampled to the photo anyway)


def spread(L: np.ndarray, ab: np.ndarray, hint_map: np.ndarray, reach: float = REACH, edge: float = EDGE) -> np.ndarray:
    """The model's ab (2, h, w), in Lab units, predicted for lightness L (h, w) in 0..100 with
    ``hint_map`` (3, h, w: a/AB_SCALE, b/AB_SCALE, 0/1 mask; ``hints.hint_map``) -> ab (2, h, w)
    float32 that has each hint's colour on its patch and the shift toward it spread along the
    photo. No hints (an all-zero mask) or ``reach`` 0: ``ab`` unchanged."""
    mask = hint_map[2] > 0  # (h, w)
    if reach <= 0 or not mask.any():
        return ab
    if ab.shape[-2:] != mask.shape or L.shape != mask.shape:
        raise ValueError(f"L {L.shape}, ab {ab.shape[-2:]} and the hint map {mask.shape} differ in size")
    ab = np.asarray(ab, np.float32)
    f = max(1, -(-min(mask.shape) // GRID))  # distances on a grid f times coarser: bounded work per hint
    coarse = (-(-mask.shape[0] // f), -(-mask.shape[1] // f))
    Lc = _resized(np.asarray(L, np.float32), coarse, "area")  # (hc, wc)
    gy, gx = np.gradient(Lc.astype(np.float64))
    edge_px = edge * min(mask.shape)  # pixels of distance per unit of L
    cost = f + edge_px * np.hypot(gy, gx)  # (hc, wc): a coarse step is f pixels, plus the lightness it crosses
    scale = reach * min(mask.shape)  # pixels of the working size
    shifted = np.zeros((2, *coarse), np.float64)  # (2, hc, wc): the weighted shifts
    weight = np.zeros(coarse, np.float64)  # (hc, wc)
    patches = _patches(hint_map, mask)
    for patch, colour in patches:
        shift = colour - ab[:, patch].mean(1)  # (2,): what the model misses at this hint
        seeds = _resized(patch.astype(np.float32), coarse, "area") > 0  # (hc, wc): cells the patch touches
        dist, _ = MCP_Geometric(cost).find_costs(np.argwhere(seeds))  # (hc, wc), 0 on the patch
        w = np.exp(-((dist / scale) ** 2))  # (hc, wc)
        shifted += w * shift[:, None, None]
        weight += w
    # Normalised where hints overlap (weights summing over 1), fading alone where only one reaches.
    field = (shifted / np.maximum(weight, 1.0)).astype(np.float32)  # (2, hc, wc)
    out = ab + np.stack([_resized(c, mask.shape, "bilinear") for c in field])
    for patch, colour in patches:  # each patch exactly on its own hint's colour, texture kept
        out[:, patch] = ab[:, patch] + (colour - ab[:, patch].mean(1))[:, None]
    return out


def _resized(x: np.ndarray, shape: Tuple[int, int], mode: str) -> np.ndarray:
    """A (h, w) plane resized to ``shape`` ("area" to shrink, "bilinear" to grow)."""
    if x.shape == tuple(shape):
        return x
    t = torch.from_numpy(np.ascontiguousarray(x))[None, None]
    kw = {"align_corners": False} if mode == "bilinear" else {}
    return F.interpolate(t, size=tuple(shape), mode=mode, **kw)[0, 0].numpy()


def _patches(hint_map: np.ndarray, mask: np.ndarray) -> List[Tuple[np.ndarray, np.ndarray]]:
    """[(patch mask (h, w), its colour (2,) in Lab units)]: the connected pieces of the hint mask of
    one colour (two touching hints of different colours stay two patches)."""
    given = hint_map[:2] * AB_SCALE  # (2, h, w)
    out = []
    for colour in np.unique(given[:, mask].T, axis=0):  # (2,) each
        same = mask & (given[0] == colour[0]) & (given[1] == colour[1])
        pieces, n = label(same, connectivity=2, return_num=True)
        out += [(pieces == i, colour.astype(np.float64)) for i in range(1, n + 1)]
    return out
