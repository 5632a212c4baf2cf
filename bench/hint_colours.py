"""Which hint colours a model follows: for each colour, 25 hints (a 5 x 5 grid over the middle of
each example photo), the distance in the ab plane between each hint and the result at its point as
the photo shows it (``hints.distances`` after the gamut fit, what ``colorize serve`` answers in
``X-Hint-Distances``): without the hints, with them through the network alone, and with them as
the product gives them (each hint's colour put on its patch and spread: ``hint_spread``). A colour
followed drops to a few units; what stays is what the photo's lightness there cannot show.

    python bench/hint_colours.py                     # the shipped model, its working size
    python bench/hint_colours.py --model out/runs/my-run --size 256

The model card's sentence on hint colours comes from this script.
"""

from __future__ import annotations

import argparse
import sys
from importlib import resources
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from models.scaling import input_to_L  # noqa: E402
from pipeline.core import hint_spread, hints, transforms  # noqa: E402
from pipeline.gan import model_ref, predict  # noqa: E402

COLOURS = {
    "red": "#ff0000",
    "yellow": "#ffff00",
    "green": "#00ff00",
    "dark green": "#00c000",
    "cyan": "#00ffff",
    "blue": "#0000ff",
    "magenta": "#ff00ff",
    "brown": "#8b5a2b",
}


def grid(W: int, H: int, colour: str) -> list:
    return [
        hints.Hint(W * (0.3 + 0.1 * i), H * (0.3 + 0.1 * j), hints.parse_colour(colour))
        for i in range(5)
        for j in range(5)
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="shipped")
    ap.add_argument("--size", type=int, default=None, help="working size (default: the model's own)")
    args = ap.parse_args()
    torch.manual_seed(0)
    G, info = model_ref.resolve_generator(args.model)
    size = predict.working_size(G, args.size)
    folder = resources.files("pipeline.assets") / "examples"
    photos = sorted(p.name for p in folder.iterdir() if p.name.endswith(".jpg"))
    rows = {name: ([], [], []) for name in COLOURS}
    for photo in photos:
        rgb = transforms.decode_image((folder / photo).read_bytes(), size=None).rgb
        L = predict.photo_L(rgb)
        H, W = L.shape
        x = torch.from_numpy(predict.working_input(L, size))[None]
        Lw = input_to_L(x[0, 0]).numpy()  # (h, w): the lightness the result is shown at
        plain = predict.predict_ab_batch(G, x).cpu().numpy()[0]
        for name, colour in COLOURS.items():
            points = grid(W, H, colour)
            maps = predict.working_hints(G, points, H, W, x)
            for k, spread in ((1, 0), (2, hint_spread.REACH)):
                hinted = predict.predict_ab_batch(G, x, hints=maps, spread=spread).cpu().numpy()[0]
                rows[name][k].extend(hints.distances(points, hinted, H, W, L=Lw))
            rows[name][0].extend(hints.distances(points, plain, H, W, L=Lw))
    print(f"hint colours, model {info['ref']}, working size {size}, {len(photos)} photos x 25 hints each")
    print(f"{'colour':>11} {'hex':>8} {'without':>8} {'network':>8} {'with':>8}   (median ab distance to the hint)")
    for name, (without, network, with_) in rows.items():
        a, n, b = (float(np.median(r)) for r in (without, network, with_))
        print(f"{name:>11} {COLOURS[name]:>8} {a:>8.1f} {n:>8.1f} {b:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
