"""Helpers shared by the benchmarks: where the shared photos are, the protocol's square crop, a steady timer."""

from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path
from typing import Callable, List

import numpy as np
from PIL import Image, ImageOps

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from pipeline.core import geometry  # noqa: E402

SHARED_DATA = Path(os.environ.get("COLORIZE_SHARED_DATA", ROOT.parent / "shared" / "data"))


def split_paths(name: str = "train", limit: int = 0) -> List[Path]:
    lst = SHARED_DATA / "splits" / f"{name}.txt"
    if not lst.exists():
        raise SystemExit(f"benchmark data not found: {lst} (set COLORIZE_SHARED_DATA)")
    paths = [SHARED_DATA / line.strip() for line in lst.read_text().splitlines() if line.strip()]
    return paths[:limit] if limit else paths


def open_rgb(path) -> np.ndarray:
    """uint8 (H, W, 3) of a photo file, EXIF orientation applied."""
    with Image.open(path) as im:
        return np.asarray(ImageOps.exif_transpose(im).convert("RGB"))


def square_crop(rgb: np.ndarray, size: int = 256) -> np.ndarray:
    """The protocol's square: short side resized to ``size`` (``geometry.resize_short_side``),
    then the centre ``size`` x ``size`` crop."""
    return geometry.centre_crop(geometry.resize_short_side(rgb, size), size)


def jpeg_256(paths: List[Path], quality: int = 90) -> List[bytes]:
    """Centre 256x256 crops of real photos (``square_crop``), re-encoded as JPEG in memory."""
    out = []
    for p in paths:
        buf = io.BytesIO()
        Image.fromarray(square_crop(open_rgb(p))).save(buf, "JPEG", quality=quality)
        out.append(buf.getvalue())
    return out


def per_item_ms(fn: Callable, items: list, repeats: int = 3) -> float:
    """Best-of-``repeats`` mean milliseconds per item (best-of damps noise on a shared machine)."""
    fn(items[0])
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for x in items:
            fn(x)
        best = min(best, (time.perf_counter() - t) / len(items))
    return best * 1e3


def one_core() -> None:
    """Pin BLAS/torch to one thread so figures are per core."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
    np.seterr(all="ignore")
