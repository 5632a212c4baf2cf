"""Protocol v2's images: train on ``large-train``, tune on ``large-val``, score on
``large-test`` (in distribution) and on ``test.txt`` (Kodak24 + McMaster, out of distribution).

=========  ===============  ==============================================================
split      list             what the protocol uses
=========  ===============  ==============================================================
train      large-train      the whole frame at short side ``TRAIN_SHORT`` (random 128 crops later)
val        large-val        128x128 centre crop after resizing the short side to 128
test       large-test       128x128 centre crop after resizing the short side to 128
ood        test             256x256 centre crop after resizing the short side to 256
=========  ===============  ==============================================================

``write_portable_copy`` writes them into one folder small enough to copy to a GPU machine
(about 50 MiB): train re-encoded at short side
``TRAIN_SHORT`` as JPEG q``TRAIN_QUALITY`` (a transport copy), val and test as the source files' own bytes (the
scale photos are already small JPEGs; the crop is made on load, by the same code either way), ood
as lossless PNG of its 256x256 crops (the scored truth). ``load`` reads either that folder or the
shared data directly. Resize and crop are ``pipeline.core.geometry``'s (``common.square_crop``).

    python bench/quality_data.py --out .quality_data      # prints each split's size
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
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_DATA, open_rgb, split_paths, square_crop  # noqa: E402

from pipeline.core import geometry  # noqa: E402  (common put the repo root on sys.path)

SPLITS = {"train": "large-train", "val": "large-val", "test": "large-test", "ood": "test"}
SQUARE = {"val": 128, "test": 128, "ood": 256}  # centre-crop size of each scored split
# Training photos' short side and transport JPEG quality. Measured on this data (10,093 photos):
# short side 144 at q85 packs to 77 MiB, 128 at q85 to 63 MiB, 128 at q70 to 42 MiB, 128 at q65
# (optimised Huffman tables) to 38 MiB: the last keeps the whole copy, with the scored splits
# (~12 MiB), near 50 MiB.
TRAIN_SHORT = 128
TRAIN_QUALITY = 65
# Our model, loss and optimiser: the config the product would ship (`pipeline/run.py --config` takes it).
DEFAULT_CONFIG = Path(__file__).resolve().parent.parent / "pipeline" / "configs" / "default-model.yaml"
RAW = ("val", "test")  # splits the copy keeps as the source bytes (cropped on load)
REFERENCE = SHARED_DATA.parent / "reference"


def protocol_image(split: str, path) -> np.ndarray:
    """uint8 (H, W, 3) of one photo as the protocol uses it (see the table above)."""
    rgb = open_rgb(path)
    return geometry.resize_short_side(rgb, TRAIN_SHORT) if split == "train" else square_crop(rgb, SQUARE[split])


def folder_size(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def write_portable_copy(out: Path, limit: int = 0) -> int:
    """Every split (and Zhang's prior files) into the folder ``out``; prints and returns its bytes."""
    for split, listing in SPLITS.items():
        folder = out / split
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        paths = split_paths(listing, limit)

        def write(ip, split=split, folder=folder):
            i, p = ip
            if split in RAW:
                shutil.copyfile(p, folder / f"{i:05d}{p.suffix.lower()}")
                return
            img = Image.fromarray(protocol_image(split, p))
            if split == "ood":
                img.save(folder / f"{i:05d}.png")
            else:
                img.save(folder / f"{i:05d}.jpg", quality=TRAIN_QUALITY, optimize=True)

        with ThreadPoolExecutor(os.cpu_count()) as pool:
            list(pool.map(write, enumerate(paths)))
        (folder / "SOURCES.txt").write_text("\n".join(source_name(p) for p in paths) + "\n")
        print(f"{split} ({listing}): {len(paths)} images, {folder_size(folder) / 2**20:.1f} MiB")
    ref = out / "reference"  # Zhang's prior, for the rebalanced metrics
    ref.mkdir(exist_ok=True)
    for name in ("prior_probs.npy", "pts_in_hull.npy"):
        shutil.copyfile(REFERENCE / name, ref / name)
    total = folder_size(out)
    print(f"portable copy {out}: {total / 2**20:.1f} MiB ({total} bytes)")
    return total


def source_name(path: Path) -> str:
    """'<dataset folder>/<file>', e.g. 'Kodak24/kodim01.png': which collection an image came from."""
    return f"{path.parent.name}/{path.name}"


def sources(source: str = "", split: str = "ood", limit: int = 0) -> List[str]:
    """The split's image names in ``load``'s order, as ``source_name`` gives them."""
    if source:
        f = Path(source) / split / "SOURCES.txt"
        if not f.exists():
            raise SystemExit(f"{source} was written by an older bench/quality_data.py: write it again")
        names = f.read_text().split()
        return names[:limit] if limit else names
    return [source_name(p) for p in split_paths(SPLITS[split], limit)]


def load(source: str = "", limit: int = 0, threads: int = 0, splits=tuple(SPLITS)) -> Dict[str, List[np.ndarray]]:
    """{split: [uint8 (H, W, 3)]} from a portable copy, or from the shared data when ``source`` is
    empty; the same images either way (up to the train split's transport JPEG)."""
    threads = threads or os.cpu_count() or 2
    out = {}
    for split in splits:
        if source:
            folder = Path(source) / split
            if not folder.is_dir():
                raise SystemExit(f"{folder} missing: write the copy again (python bench/quality_data.py)")
            files = sorted(f for f in folder.iterdir() if f.name != "SOURCES.txt")
            files = files[:limit] if limit else files
            read = (lambda f, s=split: protocol_image(s, f)) if split in RAW else open_rgb  # noqa: E731
        else:
            files = split_paths(SPLITS[split], limit)
            read = lambda f, s=split: protocol_image(s, f)  # noqa: E731
        with ThreadPoolExecutor(threads) as pool:
            out[split] = list(pool.map(read, files))
        if not out[split]:
            raise SystemExit(f"no {split} images in {source or 'the shared data'}")
    return out


class Crops:
    """Random crop x flip batches from uint8 (H, W, 3) images kept on the device; each epoch visits
    every image once (shuffled)."""

    def __init__(self, images: List[np.ndarray], crop: int, device, seed: int):
        self.images = [torch.tensor(im).to(device) for im in images]
        self.crop = crop
        self.rng = np.random.default_rng(seed)
        self.order: List[int] = []
        self.seen = 0

    def batch(self, n: int) -> torch.Tensor:
        out = []
        for _ in range(n):
            if not self.order:
                self.order = list(self.rng.permutation(len(self.images)))
            im = self.images[self.order.pop()]
            top, left, flipped = geometry.crop_window(im.shape[0], im.shape[1], self.crop, self.rng, flip=True)
            c = im[top : top + self.crop, left : left + self.crop]  # the window, cut from the device tensor
            out.append(c.flip(1) if flipped else c)
        self.seen += n
        return torch.stack(out)  # (B, crop, crop, 3) uint8


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=".quality_data")
    ap.add_argument("--limit", type=int, default=0)
    a = ap.parse_args()
    write_portable_copy(Path(a.out), a.limit)
