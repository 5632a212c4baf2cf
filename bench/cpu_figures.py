"""Figures of a trained model with ``colorize eval``'s code, beside the all-grey baseline:

1. the decoding temperature T chosen on the validation photos alone (the selection objective of
   training, ``metrics.selection_objective``, over a grid of T), unless ``--temperature`` gives it;
2. at that T: each test list, and each out-of-distribution test source apart, with the purple
   share (``metrics.purple_share``) of prediction and truth.

    python bench/cpu_figures.py --model shipped --val LIST --test LIST[,LIST] --ood LIST --out docs/results/DATE-cpu \
        [--temperature T] [--compare NAME=MODEL[@T] ...]

A test list is named by its file's stem (``everyday-test``, ``large-test``). ``--ood`` photos are
grouped by source (the first folder under the list's folder that differs between photos, e.g.
Kodak24 / McMaster). ``--compare`` scores more models beside, each at its own T unless ``@T``.
Every set is scored at ``--size`` (default: the model's working size: the short side it was trained
at), centre squares, as ``colorize eval`` does. Writes metrics.json ({set: {"grey": ..., "shipped":
..., NAME: ...}}, the same as flat "rows" named "SET grey" / "SET shipped", T sweep, sizes) and
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

from pipeline import assets  # noqa: E402
from pipeline.apply import evaluate  # noqa: E402
from pipeline.core import color, metrics, scoring  # noqa: E402
from pipeline.data import storage  # noqa: E402
from pipeline.gan import model_ref  # noqa: E402

NAMES = ("auc", "auc_rebalanced", "cf_pred", "cf_true", "cf_gap", "psnr", "ssim")
SHOWN = (*NAMES, "purple_pct")


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


def purple_pct(images) -> float:
    """Purple share (%) over a list of (H,W,3) uint8 RGB images, pixels weighted alike."""
    hit = n = 0.0
    for rgb in images:
        ab = color.rgb_to_lab_torch(torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None], dim=1)[:, 1:]
        hit += float(metrics.purple_share(ab)[0]) * rgb.shape[0] * rgb.shape[1]
        n += rgb.shape[0] * rgb.shape[1]
    return round(100 * hit / n, 3)


def score(G, crops, T, prior, name) -> dict:
    preds = evaluate.colorize_all(G, crops, T, torch.device("cpu"), 16, name)
    r = scoring.score_images(preds, crops, prior, threads=os.cpu_count() or 2)
    return {**{k: round(float(r[k]), 3) for k in NAMES}, "purple_pct": purple_pct(preds), "temperature": T}


def sweep(G, val, temperatures, prior, doc) -> float:
    """The T of the highest selection objective on the validation crops (each T's figures in ``doc``)."""
    best = None
    for T in temperatures:
        r = score(G, val, T, prior, f"val T={T}")
        r["objective"] = round(metrics.selection_objective(r["auc_rebalanced"], r["cf_gap"]), 3)
        doc["temperature_sweep_val"][str(T)] = r
        print(f"val T={T}: {r}", flush=True)
        best = T if best is None or r["objective"] > doc["temperature_sweep_val"][str(best)]["objective"] else best
    return best


def compared(specs) -> list:
    """[(name, generator, T or None)] of ``--compare NAME=MODEL[@T]``."""
    out = []
    for spec in specs:
        name, _, ref = spec.partition("=")
        ref, _, t = ref.rpartition("@") if "@" in ref else (ref, "", "")
        if not name or not ref or name in ("grey", "shipped"):
            raise SystemExit(f"--compare {spec!r}: NAME=MODEL[@T], NAME not grey or shipped")
        out.append((name, model_ref.resolve_generator(ref)[0], float(t) if t else None))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=model_ref.SHIPPED)
    ap.add_argument("--val", required=True)
    ap.add_argument("--test", required=True, help="list file(s), comma-separated: one set each, named by stem")
    ap.add_argument("--ood", required=True)
    ap.add_argument("--size", type=int, default=None, help="default: the model's working size")
    ap.add_argument("--temperatures", default="0.2,0.3,0.38,0.5,0.7,1.0")
    ap.add_argument("--temperature", type=float, default=None, help="T chosen elsewhere on val: no sweep")
    ap.add_argument("--compare", action="append", default=[], metavar="NAME=MODEL[@T]")
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    G, info = model_ref.resolve_generator(a.model)
    others = compared(a.compare)
    size = a.size or int(info["config"]["data"]["resize"])
    prior = assets.default_prior()
    out = Path(a.out)
    tmp = out / "lists"
    tmp.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    doc = {
        "model": info["ref"],
        "step": info["step"],
        "size": size,
        "sets": {},
        "rows": {},
        "temperature_sweep_val": {},
    }
    if a.temperature is None:
        val = truths(photos(a.val), size, tmp, "val")
        doc["temperature"] = sweep(G, val, [float(x) for x in a.temperatures.split(",")], prior, doc)
    else:
        doc["temperature"] = a.temperature
    T = doc["temperature"]
    sets = {Path(t).stem: photos(t) for t in a.test.split(",")}
    sets.update(by_source(photos(a.ood)))
    for name, paths in sets.items():
        crops = truths(paths, size, tmp, name)
        grey = scoring.score_images([scoring.grey_output(t) for t in crops], crops, prior, threads=2)
        rows = {
            "grey": {**{k: round(float(grey[k]), 3) for k in NAMES}, "purple_pct": 0.0},
            "shipped": score(G, crops, T, prior, name),
        }
        for other, g, t in others:
            rows[other] = score(g, crops, t if t is not None else g.temperature, prior, f"{name} {other}")
        doc["sets"][name] = {"images": len(crops), "truth_purple_pct": purple_pct(crops), **rows}
        doc["rows"].update({f"{name} {row}": v for row, v in rows.items()})
        print(f"{name}: {doc['sets'][name]}", flush=True)
    for f in tmp.iterdir():
        f.unlink()
    tmp.rmdir()
    doc["seconds"] = round(time.time() - t0)
    (out / "metrics.json").write_text(json.dumps(doc, indent=1))
    print(f"T: {T} ({'given' if a.temperature is not None else 'chosen on val'})")
    print(f"{'set':<14}{'model':<12}" + "".join(f"{k:>15}" for k in SHOWN))
    for name, s in doc["sets"].items():
        for row in [r for r in s if isinstance(s[r], dict)]:
            print(f"{name:<14}{row:<12}" + "".join(f"{s[row][k]:>15.2f}" for k in SHOWN))
        print(f"{name:<14}{'truth':<12}" + " " * 15 * (len(SHOWN) - 1) + f"{s['truth_purple_pct']:>15.2f}")


if __name__ == "__main__":
    main()
