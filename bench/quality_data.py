"""The quality protocol's images: train (short side 256, for random 128 crops), val and test (256x256
centre crops, short side resized to 256 with bicubic).

``write_portable_copy`` writes them into one folder small enough to travel to a lent GPU machine
(the shared data stays outside the repo): train and val as JPEG q90 (only a transport copy, made
once), test as PNG (lossless: the scored truth). ``load`` reads either that folder or the shared
data directly. Resize and crop are ``pipeline.geometry``'s (``common.square_crop``).

    python bench/quality_data.py --out .quality_data      # then carry .quality_data
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict, List

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_DATA, open_rgb, split_paths, square_crop  # noqa: E402

from pipeline import geometry  # noqa: E402  (common put the repo root on sys.path)

SIZE = 256
REFERENCE = SHARED_DATA.parent / "reference"


def protocol_image(split: str, path) -> np.ndarray:
    """uint8 (H, W, 3) of one photo as the protocol uses it: train keeps its whole frame at short
    side 256 (random crops come later), val/test the centre 256x256 crop."""
    rgb = open_rgb(path)
    return geometry.resize_short_side(rgb, SIZE) if split == "train" else square_crop(rgb, SIZE)


def write_portable_copy(out: Path, limit: int = 0) -> None:
    """The three splits' protocol images (and Zhang's prior files) into the folder ``out``."""
    for split in ("train", "val", "test"):
        folder = out / split
        folder.mkdir(parents=True, exist_ok=True)
        paths = split_paths(split, limit)

        def write(ip, split=split, folder=folder):
            i, p = ip
            img = Image.fromarray(protocol_image(split, p))
            if split == "test":
                img.save(folder / f"{i:05d}.png")
            else:
                img.save(folder / f"{i:05d}.jpg", quality=90)

        with ThreadPoolExecutor(os.cpu_count()) as pool:
            list(pool.map(write, enumerate(paths)))
        (folder / "SOURCES.txt").write_text("\n".join(source_name(p) for p in paths) + "\n")
        size = sum(f.stat().st_size for f in folder.iterdir())
        print(f"{split}: {len(paths)} images, {size / 2**20:.1f} MiB")
    ref = out / "reference"  # Zhang's prior, for the rebalanced metrics
    ref.mkdir(exist_ok=True)
    for name in ("prior_probs.npy", "pts_in_hull.npy"):
        shutil.copyfile(REFERENCE / name, ref / name)


def source_name(path: Path) -> str:
    """'<dataset folder>/<file>', e.g. 'Kodak24/kodim01.png': which collection an image came from."""
    return f"{path.parent.name}/{path.name}"


def sources(source: str = "", split: str = "test", limit: int = 0) -> List[str]:
    """The split's image names in ``load``'s order, as ``source_name`` gives them."""
    if source:
        names = (Path(source) / split / "SOURCES.txt").read_text().split()
        names = names[:limit] if limit else names
        if any("/" not in n for n in names):
            raise SystemExit(f"{source} was written by an older bench/quality_data.py: write it again")
    else:
        names = [source_name(p) for p in split_paths(split, limit)]
    return names


def load(source: str = "", limit: int = 0, threads: int = 0) -> Dict[str, List[np.ndarray]]:
    """{split: [uint8 (H, W, 3)]} from a portable copy, or from the shared data when ``source`` is empty."""
    threads = threads or os.cpu_count() or 2
    out = {}
    for split in ("train", "val", "test"):
        if source:
            files = sorted(f for f in (Path(source) / split).iterdir() if f.suffix in (".jpg", ".png"))
            files = files[:limit] if limit else files
            read = open_rgb
        else:
            files = split_paths(split, limit)
            read = lambda f, s=split: protocol_image(s, f)  # noqa: E731
        with ThreadPoolExecutor(threads) as pool:
            out[split] = list(pool.map(read, files))
        if not out[split]:
            raise SystemExit(f"no {split} images in {source or 'the shared data'}")
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=".quality_data")
    ap.add_argument("--limit", type=int, default=0)
    a = ap.parse_args()
    write_portable_copy(Path(a.out), a.limit)
