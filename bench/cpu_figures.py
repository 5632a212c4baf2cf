"""Figures of a trained model with ``colorize eval``'s code, beside the all-grey baseline:

1. the decoding temperature T chosen on the validation photos alone (the selection objective of
   training, ``metrics.selection_objective``, over a grid of T);
2. at that T: the in-distribution test photos, and each out-of-distribution test source apart.

    python bench/cpu_figures.py --model shipped --val LIST --test LIST --ood LIST --out docs/results/DATE-cpu

``--ood`` photos are grouped by source (the first folder under the list's folder that differs
between photos, e.g. Kodak24 / McMaster). Every set is scored at ``--size`` (default: the model's
working size: the short side it was trained at), centre squares, as ``colorize eval`` does.
Writes metrics.json ({set: {"grey": ..., "shipped": ...}}, T sweep, sizes) and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from pipeline import assets  # noqa: E402
from pipeline.apply import evaluate  # noqa: E402
from pipeline.core import metrics, scoring  # noqa: E402
from pipeline.data import storage  # noqa: E402
from pipeline.gan import model_ref  # noqa: E402

NAMES = ("auc", "auc_rebalanced", "cf_pred", "cf_true", "cf_gap", "psnr", "ssim")


def photos(list_file: str) -> list:
    """Absolute paths of a list's photos: relative to the list's folder, or to the folder above it
    (a data folder whose lists live in splits/)."""
    names = [x.strip() for x in open(list_file) if x.strip()]
    here = os.path.dirname(os.path.abspath(list_file))
    root = here if os.path.exists(os.path.join(here, names[0])) else os.path.dirname(here)
    return [os.path.join(root, n) for n in names]


def by_source(paths: list) -> dict:
    """{source folder: paths}: the first path component where the photos' folders differ."""
    parts = [p.split(os.sep) for p in paths]
    i = 0
    while len({q[i] for q in parts}) == 1:
        i += 1
    out: dict = {}
    for p, q in zip(paths, parts, strict=True):
        out.setdefault(q[i], []).append(p)
    return out


def truths(paths: list, size: int, tmp: Path, name: str):
    lst = tmp / f"{name}.txt"
    lst.write_text("\n".join(paths) + "\n")
    return evaluate.load_truth(str(lst), size, None, storage.S3Settings())[1]


def score(G, crops, T, prior, name) -> dict:
    preds = evaluate.colorize_all(G, crops, T, torch.device("cpu"), 16, name)
    r = scoring.score_images(preds, crops, prior, threads=os.cpu_count() or 2)
    return {k: round(float(r[k]), 3) for k in NAMES}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=model_ref.SHIPPED)
    ap.add_argument("--val", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--ood", required=True)
    ap.add_argument("--size", type=int, default=None, help="default: the model's working size")
    ap.add_argument("--temperatures", default="0.2,0.3,0.38,0.5,0.7,1.0")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    G, info = model_ref.resolve_generator(a.model)
    size = a.size or int(info["config"]["data"]["resize"])
    prior = assets.default_prior()
    out = Path(a.out)
    tmp = out / "lists"
    tmp.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    doc = {"model": info["ref"], "step": info["step"], "size": size, "sets": {}, "temperature_sweep_val": {}}
    val = truths(photos(a.val), size, tmp, "val")
    best = None
    for T in (float(x) for x in a.temperatures.split(",")):
        r = score(G, val, T, prior, f"val T={T}")
        r["objective"] = round(metrics.selection_objective(r["auc_rebalanced"], r["cf_gap"]), 3)
        doc["temperature_sweep_val"][str(T)] = r
        print(f"val T={T}: {r}", flush=True)
        best = T if best is None or r["objective"] > doc["temperature_sweep_val"][str(best)]["objective"] else best
    doc["temperature"] = best
    sets = {"large-test": photos(a.test), **by_source(photos(a.ood))}
    for name, paths in sets.items():
        crops = truths(paths, size, tmp, name)
        grey = scoring.score_images([scoring.grey_output(t) for t in crops], crops, prior, threads=2)
        doc["sets"][name] = {
            "images": len(crops),
            "grey": {k: round(float(grey[k]), 3) for k in NAMES},
            "shipped": score(G, crops, best, prior, name),
        }
    for f in tmp.iterdir():
        f.unlink()
    tmp.rmdir()
    doc["seconds"] = round(time.time() - t0)
    (out / "metrics.json").write_text(json.dumps(doc, indent=1))
    print(f"T chosen on val: {best}")
    print(f"{'set':<12}{'model':<9}" + "".join(f"{k:>16}" for k in NAMES))
    for name, s in doc["sets"].items():
        for row in ("grey", "shipped"):
            print(f"{name:<12}{row:<9}" + "".join(f"{s[row][k]:>16.2f}" for k in NAMES))


if __name__ == "__main__":
    main()
