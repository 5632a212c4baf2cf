"""Pictures people would rather look at than read: values on the ab plane, image grids. PIL only."""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from pipeline.core import color

_CELL = 16  # pixels per ab bin in the plane plots


def ab_plane(values: np.ndarray, title: str, log: bool = True) -> Image.Image:
    """One value per bin drawn on the ab grid: each cell in its own colour, brightness = value.

    a runs left to right, b bottom to top. Log scale by default (priors span 8 decades).
    """
    v = np.asarray(values, np.float64)
    v = np.log10(np.maximum(v, 1e-12)) if log else v
    lo, hi = np.percentile(v, 1), v.max()
    t = np.clip((v - lo) / max(hi - lo, 1e-12), 0, 1)
    bins = color.ab_bins()
    side = color.GRID_SIDE * _CELL
    img = Image.new("RGB", (side, side + 20), (255, 255, 255))
    lab = np.stack([15 + 75 * t, bins[:, 0], bins[:, 1]], -1)
    rgb = color.lab_to_rgb_u8(lab)
    draw = ImageDraw.Draw(img)
    for (a, b), c in zip(bins, rgb, strict=True):
        x = int(round(a / color.GRID_STEP)) + color.GRID_HALF
        y = color.GRID_HALF - int(round(b / color.GRID_STEP))
        draw.rectangle([x * _CELL, 20 + y * _CELL, (x + 1) * _CELL - 1, 20 + (y + 1) * _CELL - 1], fill=tuple(c))
    mid = color.GRID_HALF * _CELL + _CELL // 2
    draw.line([mid, 20, mid, side + 20], fill=(200, 200, 200))
    draw.line([0, 20 + mid, side, 20 + mid], fill=(200, 200, 200))
    draw.text((4, 4), title, fill=(0, 0, 0))
    return img


def side_by_side(images: Sequence[Image.Image], gap: int = 8) -> Image.Image:
    w = sum(i.width for i in images) + gap * (len(images) - 1)
    h = max(i.height for i in images)
    out = Image.new("RGB", (w, h), (255, 255, 255))
    x = 0
    for i in images:
        out.paste(i, (x, 0))
        x += i.width + gap
    return out


def png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
