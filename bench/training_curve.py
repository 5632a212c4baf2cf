"""A training run's validation curve from MLflow: rebalanced AuC and the colourfulness gap (ΔCF)
against steps and wall-clock time, as a table (and JSON with ``--json``). Several runs (stages of
one schedule, e.g. 64x64 crops then 128x128 from its weights) are chained in the order given.

    python bench/training_curve.py --tracking-uri sqlite:///out/mlflow.db RUN_NAME [RUN_NAME ...] [--json F]
"""

from __future__ import annotations

import argparse
import json

from mlflow.tracking import MlflowClient

KEYS = ("val/auc_rebalanced", "val/cf_gap", "val/auc", "val/psnr", "val/objective")


def curve(client: MlflowClient, run_name: str, experiment: str):
    exp = client.get_experiment_by_name(experiment)
    runs = client.search_runs([exp.experiment_id], f"attributes.run_name = '{run_name}'")
    if not runs:
        raise SystemExit(f"no run named {run_name!r} in experiment {experiment!r}")
    run = runs[0]
    start = run.info.start_time
    hist = {k: client.get_metric_history(run.info.run_id, k) for k in KEYS}
    rows = []
    for i, m in enumerate(hist[KEYS[0]]):
        row = {"run": run_name, "step": m.step, "minutes": (m.timestamp - start) / 60000}
        for k in KEYS:
            row[k.split("/", 1)[1]] = hist[k][i].value if i < len(hist[k]) else None
        rows.append(row)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+")
    ap.add_argument("--tracking-uri", required=True)
    ap.add_argument("--experiment", default="colorize")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    client = MlflowClient(tracking_uri=a.tracking_uri)
    rows, offset_min, offset_step = [], 0.0, 0
    for name in a.runs:
        part = curve(client, name, a.experiment)
        for r in part:
            r["total_minutes"] = round(offset_min + r["minutes"], 1)
            r["total_steps"] = offset_step + r["step"]
        if part:
            offset_min, offset_step = part[-1]["total_minutes"], part[-1]["total_steps"]
        rows += part
    print(f"{'run':<16}{'steps':>7}{'minutes':>9}{'AuC rebal':>11}{'ΔCF':>7}{'AuC':>7}{'PSNR':>7}")
    for r in rows:
        print(
            f"{r['run']:<16}{r['total_steps']:>7}{r['total_minutes']:>9.1f}{r['auc_rebalanced']:>11.2f}"
            f"{r['cf_gap']:>7.2f}{r['auc']:>7.2f}{r['psnr']:>7.2f}"
        )
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
