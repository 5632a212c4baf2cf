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


def grid_sheet(L: np.ndarray, rgbs: Sequence[np.ndarray], temperatures: Sequence[float]) -> np.ndarray:
    """One uint8 image: the photo's L (as grey) and each colorization side by side, each under a
    label ("L", "T=0.38", ...) in PIL's built-in font (no font files)."""
    H, W = L.shape
    zero = np.zeros_like(L)
    grey = color.lab_to_rgb_u8(np.stack([L, zero, zero], -1))  # the grey of each pixel's L
    panels = [grey, *rgbs]
    labels = ["L"] + [f"T={t:g}" for t in temperatures]
    band, gap = max(14, min(H, W) // 12), 4
    sheet = Image.new("RGB", (len(panels) * W + (len(panels) - 1) * gap, H + band), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    try:
        from PIL import ImageFont

        font = ImageFont.load_default(size=max(10, band - 4))
    except (TypeError, OSError):  # older Pillow: a fixed-size bitmap font
        font = None
    for i, (panel, label) in enumerate(zip(panels, labels, strict=True)):
        x = i * (W + gap)
        sheet.paste(Image.fromarray(panel), (x, band))
        draw.text((x + 2, 1), label, fill=(0, 0, 0), font=font)
    return np.asarray(sheet)
