"""Per-image preprocessing at 256x256 on one core: ours vs the naive path vs decode alone.

    python bench/preprocess.py [--images 60]

- decode: PIL JPEG decode to a uint8 array (the floor);
- priors path (ours): decode + resize + bin per pixel (per-colour table) + histogram;
- Lab path (ours): decode + resize + Lab (float32 L, ab) + bins, what training/prepare need;
- naive: decode + skimage.color.rgb2lab + nearest-centre search over the Q bins.
Target: the whole preprocessing within 2x decode alone.
"""

import argparse
import io
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from pipeline.core import color, transforms  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=60)
    args = ap.parse_args()
    common.one_core()
    from skimage.color import rgb2lab

    jpegs = common.jpeg_256(common.split_paths("train", args.images))
    color.rgb_to_bin(np.zeros((1, 1, 3), np.uint8))  # build/load the tables outside the timing
    bins = color.ab_bins().astype(np.float32)

    def decode(b):
        return np.asarray(Image.open(io.BytesIO(b)).convert("RGB"))

    def priors_path(b):
        return transforms.bin_histogram_of(transforms.decode_image(b, size=256).rgb)

    def lab_path(b):
        return transforms.lab_planes(transforms.decode_image(b, size=256).rgb)

    def naive(b):
        lab = rgb2lab(decode(b)).reshape(-1, 3).astype(np.float32)
        ab = lab[:, 1:]
        d = (ab * ab).sum(1, keepdims=True) - 2 * ab @ bins.T + (bins * bins).sum(1)
        return np.bincount(d.argmin(1), minlength=len(bins))

    rows = [
        ("decode alone (floor)", common.per_item_ms(decode, jpegs)),
        ("ours, priors path (decode+resize+bin+hist)", common.per_item_ms(priors_path, jpegs)),
        ("ours, Lab path (decode+resize+Lab+bin)", common.per_item_ms(lab_path, jpegs)),
        ("naive (decode+skimage rgb2lab+nearest search)", common.per_item_ms(naive, jpegs, repeats=1)),
    ]
    floor = rows[0][1]
    print(f"per-image preprocessing, 256x256 JPEG, one core, {len(jpegs)} real photos")
    print(f"{'path':48s} {'ms/img':>8s} {'img/s':>8s} {'x decode':>9s}")
    for name, ms in rows:
        print(f"{name:48s} {ms:8.2f} {1e3 / ms:8.0f} {ms / floor:9.2f}")
    print(f"speed-up of ours (priors path) over naive: {rows[3][1] / rows[1][1]:.1f}x")


if __name__ == "__main__":
    main()
