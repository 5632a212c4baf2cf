"""Helpers shared by the benchmarks: where the shared photos are, a steady timer."""

from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import Callable, List

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("COLORIZE_SHARED_DATA", ROOT.parent / "shared" / "data"))


def split_paths(name: str = "train", limit: int = 0) -> List[Path]:
    lst = SHARED_DATA / "splits" / f"{name}.txt"
    if not lst.exists():
        raise SystemExit(f"benchmark data not found: {lst} (set COLORIZE_SHARED_DATA)")
    paths = [SHARED_DATA / line.strip() for line in lst.read_text().splitlines() if line.strip()]
    return paths[:limit] if limit else paths


def jpeg_256(paths: List[Path], quality: int = 90) -> List[bytes]:
    """Centre 256x256 crops of real photos, re-encoded as JPEG in memory."""
    out = []
    for p in paths:
        img = Image.open(p).convert("RGB")
        s = 256 / min(img.size)
        img = img.resize((max(256, round(img.width * s)), max(256, round(img.height * s))), Image.BICUBIC)
        l, t = (img.width - 256) // 2, (img.height - 256) // 2
        buf = io.BytesIO()
        img.crop((l, t, l + 256, t + 256)).save(buf, "JPEG", quality=quality)
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
