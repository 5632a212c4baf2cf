"""How much colour hints help: PSNR (and the other scores of ``colorize eval``) on a photo list
against the number of true-colour hints, beside the all-grey baseline and a model without hints,
with the ab error at the hinted points (the prediction with those hints and without any).

    python bench/hint_curve.py --model shipped --baseline OLD_MODEL --test LIST --out docs/results/DATE-cpu

Hints are drawn from each photo's true colours as training draws them (``hints.sample_hints``:
patches of 1-9 px around the centre, each revealing its mean ab), exactly N per photo for N in
``--counts``, with a fixed seed, so every model and every N sees the same points (N+1 hints
extend N's). Photos are the centre squares at the model's working size (as ``colorize eval``),
the model's own temperature unless ``--temperature``. Each count is scored twice: the network
alone (``network``: what the hint channels learnt) and the product's result, where each hint's
colour is put on its patch and spread along the photo (``hint_spread``). Writes hints.json and
prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from cpu_figures import NAMES, photos, truths  # noqa: E402

from models.scaling import AB_SCALE  # noqa: E402
from pipeline import assets  # noqa: E402
from pipeline.core import color, hint_spread, hints, scoring  # noqa: E402
from pipeline.gan import model_ref, predict  # noqa: E402
from pipeline.runtime import progress


def hint_maps(crops, count: int, seed: int) -> torch.Tensor:
    """(N, 3, s, s) maps of ``count`` true-colour hints per crop; the k-th point of a photo is the
    same whatever ``count`` is (one generator per photo, seeded by its index)."""
    maps = []
    for i, rgb in enumerate(crops):
        ab = color.rgb_to_lab_torch(torch.from_numpy(rgb).permute(2, 0, 1)[None], dim=1)[:, 1:]  # (1,2,s,s)
        maps.append(hints.sample_hints(ab, np.random.default_rng([seed, i]), count=count))
    return torch.cat(maps)


def colorize(G, crops, maps, T, batch: int, name: str):
    """Each crop colorized at its own size with its hint map (None: no hints) -> (the network's
    colours alone, the product's with the hints spread; the same list twice without hints)."""
    net, spread = [], []
    with progress.bar(len(crops), name, "photo") as bar:
        for i in range(0, len(crops), batch):
            Ls = [predict.photo_L(r) for r in crops[i : i + batch]]
            x = torch.from_numpy(np.stack([predict.working_input(L, None) for L in Ls]))
            hm = None if maps is None else maps[i : i + batch]
            ab = predict.predict_ab_batch(G, x, T, torch.device("cpu"), hm, spread=0)  # (B, 2, s, s)
            net += [predict.join_full(L, a) for L, a in zip(Ls, ab, strict=True)]
            if hm is not None:
                for L, a, m in zip(Ls, ab, hm, strict=True):
                    spread.append(predict.join_full(L, torch.from_numpy(hint_spread.spread(L, a.numpy(), m.numpy()))))
            bar.update(len(Ls))
    return net, (spread if maps is not None else net)


def point_error(preds, maps) -> float:
    """Mean ab distance (Lab units) between each hint's colour and the prediction at its pixels."""
    total = count = 0.0
    for rgb, m in zip(preds, maps, strict=True):
        mask = m[2] > 0  # (s, s)
        if not mask.any():
            continue
        ab = color.rgb_to_lab_torch(torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None], dim=1)[0, 1:]
        given = m[:2] * AB_SCALE  # (2, s, s): the hinted ab, back in Lab units
        total += float(torch.linalg.vector_norm(ab[:, mask] - given[:, mask], dim=0).sum())
        count += int(mask.sum())
    return round(total / count, 3) if count else float("nan")


def scores(preds, crops, prior) -> dict:
    r = scoring.score_images(preds, crops, prior, threads=os.cpu_count() or 2)
    return {k: round(float(r[k]), 3) for k in NAMES}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=model_ref.SHIPPED, help="a model that takes hints")
    ap.add_argument("--baseline", default=None, help="a model without hints, scored beside (optional)")
    ap.add_argument("--test", required=True, help="list file of photos")
    ap.add_argument("--counts", default="0,1,2,5,10,20")
    ap.add_argument("--size", type=int, default=None, help="default: the model's working size")
    ap.add_argument("--temperature", type=float, default=None, help="default: the model's own")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    G, info = model_ref.resolve_generator(a.model)
    if not predict.takes_hints(G):
        sys.exit(f"{a.model}: this model takes no hints")
    size = a.size or predict.working_size(G)
    T = a.temperature or G.temperature
    prior = assets.default_prior()
    out = Path(a.out)
    tmp = out / "lists"
    tmp.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    crops = truths(photos(a.test), size, tmp, "test")
    for f in tmp.iterdir():
        f.unlink()
    tmp.rmdir()
    doc = {"model": info["ref"], "temperature": T, "size": size, "images": len(crops), "seed": a.seed}
    doc["grey"] = scores([scoring.grey_output(t) for t in crops], crops, prior)
    if a.baseline:
        B, binfo = model_ref.resolve_generator(a.baseline)
        doc["baseline"] = {"model": binfo["ref"], "temperature": B.temperature}
        doc["baseline"]["scores"] = scores(colorize(B, crops, None, B.temperature, 16, "baseline")[0], crops, prior)
    doc["hints"], doc["network"] = {}, {}
    plain = colorize(G, crops, None, T, 16, "no hints")[0]
    for n in (int(c) for c in a.counts.split(",")):
        maps = hint_maps(crops, n, a.seed)
        net, preds = colorize(G, crops, maps, T, 16, f"{n} hints")
        for key, got in (("network", net), ("hints", preds)):
            doc[key][str(n)] = scores(got, crops, prior)
            if n > 0:  # the same points, coloured by the model without them and with them
                doc[key][str(n)]["point_error_without"] = point_error(plain, maps)
                doc[key][str(n)]["point_error"] = point_error(got, maps)
        print(f"{n:>3} hints: {doc['hints'][str(n)]}\n    network alone: {doc['network'][str(n)]}", flush=True)
    doc["seconds"] = round(time.time() - t0)
    (out / "hints.json").write_text(json.dumps(doc, indent=1))
    print(f"{'':<18}" + "".join(f"{k:>16}" for k in NAMES) + "   ab error at the points (none -> hinted)")
    rows = [("grey", doc["grey"])] + ([("no-hint model", doc["baseline"]["scores"])] if a.baseline else [])
    rows += [(f"{n} hints", s) for n, s in doc["hints"].items()]
    rows += [(f"{n} network alone", s) for n, s in doc["network"].items() if n != "0"]
    for name, s in rows:
        at = f"{s['point_error_without']:>10.2f} -> {s['point_error']:.2f}" if "point_error" in s else ""
        print(f"{name:<18}" + "".join(f"{s[k]:>16.2f}" for k in NAMES) + at)


if __name__ == "__main__":
    main()
