"""The ab-bin histogram of a corpus computed straight in numpy: the reference the priors job is
checked against."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterable

import numpy as np
from PIL import Image

from pipeline.core import color


def direct_histogram(root: Path, names: Iterable[str]) -> np.ndarray:
    """PIL decode, white-composite alpha, our Lab, brute-force nearest bin. Independent of the job's
    per-colour lookup table and of Ray."""
    bins = color.ab_bins().astype(np.float64)
    hist = np.zeros(len(bins), np.int64)
    for n in names:
        img = Image.open(root / n)
        if img.mode in ("RGBA", "P"):
            rgba = img.convert("RGBA")
            img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
        rgb = np.asarray(img.convert("RGB"))
        ab = color.rgb_to_lab(rgb)[..., 1:].reshape(-1, 2).astype(np.float64)
        d = ((ab[:, None, :] - bins[None]) ** 2).sum(-1)
        hist += np.bincount(d.argmin(1), minlength=len(bins))
    return hist


def count_reasons(skip: Dict[str, str]) -> Dict[str, int]:
    """{file: reason} -> {reason: how many files}."""
    out: Dict[str, int] = {}
    for reason in skip.values():
        out[reason] = out.get(reason, 0) + 1
    return out
