"""Decoding temperature (and prior correction) on validation photos: one forward pass per batch,
every T decoded from the same logits, scored as training's validation scores them (AuC, rebalanced
AuC, PSNR, colourfulness gap, the selection objective, the purple share against the truth's:
``trainer.score_validation``).

    python bench/temperature_sweep.py --model shipped --shards prep/everyday-val-128 [--t 0.2,0.38,0.85] \
        [--prior-correction 0,0.1,0.2] [--json F]

Each ``--prior-correction`` A decodes with ``model.prior_correction`` A (the model's own when not
given): one sweep over T per A; with more than one A the JSON has ``by_prior_correction``.

Photos are prepared shards (``colorize prepare``) at the model's working size; each is scored on its
centre crop of ``--crop`` pixels, without hints. Pick T on validation photos only.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402

from pipeline.config import ExperimentConfig, check_prior_correction  # noqa: E402
from pipeline.data import priors  # noqa: E402
from pipeline.gan import model_ref  # noqa: E402
from pipeline.train import trainer  # noqa: E402


def crops(shards: str, size: int, batch: int):
    """(L uint8 (B,s,s), ab int8 (B,s,s,2)) centre crops of every prepared photo, in batches."""
    for path in sorted(glob.glob(os.path.join(shards, "*", "*.parquet"))):
        rows = pq.read_table(path).to_pylist()
        for i in range(0, len(rows), batch):
            Ls, abs_ = [], []
            for r in rows[i : i + batch]:
                H, W = r["height"], r["width"]
                y, x = (H - size) // 2, (W - size) // 2
                Ls.append(np.frombuffer(r["L"], np.uint8).reshape(H, W)[y : y + size, x : x + size])
                abs_.append(np.frombuffer(r["ab"], np.int8).reshape(H, W, 2)[y : y + size, x : x + size])
            yield torch.from_numpy(np.stack(Ls)), torch.from_numpy(np.stack(abs_))


def sweep(G, shards: str, temperatures, prior: torch.Tensor, size: int = 128, batch: int = 32) -> dict:
    """{T: figures} and the truth's purple share, for generator ``G`` on ``shards``: training's own
    validation scoring (``trainer.score_validation``) at each T."""
    rows = ({"L": L.numpy(), "ab": ab.numpy()} for L, ab in crops(shards, size, batch))
    cfg = ExperimentConfig()  # validation's soft encoding; fp32 on a CPU
    per_t, _ = trainer.score_validation(G, rows, cfg, prior, torch.device("cpu"), [float(t) for t in temperatures])
    first = next(iter(per_t.values()))
    return {"temperatures": per_t, "truth_purple_pct": first["purple_true_pct"], "photos": int(first["images"])}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="shipped")
    ap.add_argument("--shards", required=True)
    ap.add_argument("--t", default="0.2,0.3,0.38,0.5,0.6,0.85,1.0")
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--prior", default="prior_probs.npy", help="the prior rebalanced AuC weighs pixels by")
    ap.add_argument(
        "--prior-correction", default=None, help="comma-separated values in 0..1 (default: the model's own)"
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    G, _ = model_ref.resolve_generator(args.model)
    prior = torch.tensor(priors.load_prior(priors.resolve_prior_path(args.prior), None), dtype=torch.float64)
    corrections = [None] if args.prior_correction is None else args.prior_correction.split(",")
    by_a = {}
    for a in corrections:
        G.prior_correction = G.prior_correction if a is None else check_prior_correction(a, "--prior-correction")
        res = by_a[G.prior_correction] = sweep(G, args.shards, [float(t) for t in args.t.split(",")], prior, args.crop)
        print(
            f"{args.model} on {args.shards} ({res['photos']} photos, centre {args.crop}²), prior correction "
            f"{G.prior_correction:g}; truth purple {res['truth_purple_pct']:.2f} %"
        )
        print("   T    AuC  rebal   PSNR  cf_gap  cf_pred/true  objective  purple %")
        for T, v in res["temperatures"].items():
            print(
                f"{T:5.2f}  {v['auc']:5.1f}  {v['auc_rebalanced']:5.1f}  {v['psnr']:5.2f}  {v['cf_gap']:6.2f}  "
                f"{v['cf_pred']:5.1f}/{v['cf_true']:4.1f}  {v['objective']:9.2f}  {v['purple_pct']:8.2f}"
            )
    if len(by_a) > 1:
        res = {"by_prior_correction": {f"{a:g}": r for a, r in by_a.items()}}
    if args.json:
        Path(args.json).write_text(json.dumps({**vars(args), **res}, indent=1, default=float))


if __name__ == "__main__":
    main()
