"""``colorize`` command line: one subcommand per job. Thin: parse, then call the job's ``run``."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import List, Optional


# subcommand -> module with run(args); imported on use, so `colorize --help` stays fast
JOBS = {
    "priors": "pipeline.priors",
    "prepare": "pipeline.prepared",
    "tune": "tune.sweep",
    "infer": "pipeline.infer",
    "eval": "pipeline.evaluate",
    "export": "pipeline.export",
}


def _add_s3(p: argparse.ArgumentParser) -> None:
    p.add_argument("--s3-endpoint", default=None, help="S3-compatible endpoint URL (default: AWS_ENDPOINT_URL or AWS)")
    p.add_argument("--s3-region", default=None, help="S3 region (default: AWS_REGION)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="colorize", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("priors", help="recompute the ab-bin prior (prior_probs.npy) of a dataset on Ray Data")
    p.add_argument("--data", default="skimage:", help="folder, list file (.txt), s3://bucket/prefix, or skimage: (built-in photos)")
    p.add_argument("--out", default="prior_probs.npy", help="output .npy (local or s3://); .json and .png go beside it")
    p.add_argument("--size", type=int, default=256, help="resize each whole image so its short side is SIZE (default 256)")
    p.add_argument("--limit", type=int, default=None, help="use only the first N files (sorted)")
    p.add_argument("--keep-grey", action="store_true", help="count fully grey images too (skipped by default)")
    p.add_argument("--workers", type=int, default=None, help="max concurrent decode tasks (default: all CPUs)")
    _add_s3(p)

    # `colorize train ARGS` is `python pipeline/run.py ARGS` (forwarded whole in main()).
    sub.add_parser("train", help="the main job, as pipeline/run.py (same arguments: --config, --set, --out, ...)", add_help=False)

    p = sub.add_parser("prepare", help="decode raw photos once into Parquet shards (L, ab, bins) that training and priors read")
    p.add_argument("--data", required=True, help="folder, list file (.txt) or s3://bucket/prefix of raw photos")
    p.add_argument("--out", required=True, help="output folder or s3:// prefix (shards + manifest.json)")
    p.add_argument("--size", type=int, default=256, help="short side after resize (default 256: train with data.resize=256)")
    p.add_argument("--limit", type=int, default=None, help="first N files only")
    p.add_argument("--keep-grey", action="store_true", help="keep fully grey photos (skipped by default)")
    p.add_argument("--shard-mb", type=int, default=256, help="target shard size in MiB (default 256)")
    _add_s3(p)

    p = sub.add_parser("tune", help="Ray Tune sweep over the loss weights (ASHA, MLflow parent/child runs, best config YAML)")
    p.add_argument("--config", default=None, help="base config YAML (as for pipeline/run.py)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a base config value (repeatable)")
    p.add_argument("--space", default=None, help="search space YAML (default: tune/space.yaml)")
    p.add_argument("--num-samples", type=int, default=8, help="trials to sample (default 8)")
    p.add_argument("--max-concurrent", type=int, default=1, help="trials running at once (default 1)")
    p.add_argument("--gpus-per-trial", type=int, default=0, help="GPU workers per trial (sets train.num_workers, use_gpu)")
    p.add_argument("--grace-period", type=int, default=1, help="epochs before ASHA may stop a trial (default 1)")
    p.add_argument("--name", default=None, help="sweep name; the same name again resumes it")
    p.add_argument("--out", default="out/tune", help="local folder: best_config.yaml, ASHA decisions, default MLflow store")
    p.add_argument("--address", default=None, help="Ray address (default: RAY_ADDRESS or a local Ray)")

    p = sub.add_parser("infer", help="colorize photos with a trained model (one file in-process; folders/prefixes on Ray Data)")
    _add_model(p)
    p.add_argument("--input", required=True, help="a photo, folder, list file (.txt) or s3://bucket/prefix")
    p.add_argument("--output", required=True, help="output file (for one photo) or folder / s3:// prefix")
    p.add_argument("--size", type=int, default=256, help="working size: short side the model sees (default 256)")
    p.add_argument("--workers", type=int, default=None, help="model actors (default: one per GPU, else CPUs/2 up to 4)")
    _add_s3(p)

    p = sub.add_parser("eval", help="score models on photos beside the all-grey baseline; metrics.json + report.html")
    _add_model(p)
    p.add_argument("--data", required=True, help="folder, list file (.txt) or s3://bucket/prefix of colour photos")
    p.add_argument("--out", default="out/eval", help="folder for metrics.json and report.html")
    p.add_argument("--compare", action="append", default=[], metavar="REF", help="another model to score beside (repeatable)")
    p.add_argument("--size", type=int, default=256, help="photos are resized to short side SIZE and centre-cropped square")
    p.add_argument("--limit", type=int, default=None, help="first N photos only")
    p.add_argument("--examples", type=int, default=6, help="example rows in the report")
    p.add_argument("--reference", default=None, help="folder with Zhang's prior_probs.npy + pts_in_hull.npy for the "
                   "rebalanced metrics (default: the project's prior_probs.npy)")
    p.add_argument("--run-id", default=None, help="MLflow run to log to (default: MLFLOW_RUN_ID, else none)")
    _add_s3(p)

    p = sub.add_parser("export", help="export the generator as ONNX, checked by onnxruntime")
    _add_model(p)
    p.add_argument("--onnx", required=True, help="output .onnx file")
    return parser


def _add_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="checkpoint folder, Ray Train run folder, runs:/<id>/generator or models:/name@alias")
    p.add_argument("--saturation", type=float, default=None,
                   help="annealed-mean temperature T (lower = more vivid; default: the model's own)")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI for runs:/ and models:/ (default: MLFLOW_TRACKING_URI)")


def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["train"]:
        from pipeline import run as run_job

        return run_job.main(argv[1:])
    args = build_parser().parse_args(argv)
    from pipeline.storage import StorageError

    if getattr(args, "saturation", None) is not None and args.saturation <= 0:
        print(f"colorize {args.command}: error: --saturation must be > 0, got {args.saturation}", file=sys.stderr)
        return 2
    try:
        return importlib.import_module(JOBS[args.command]).run(args)
    except (StorageError, ValueError) as e:  # ConfigError is a ValueError
        print(f"colorize {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
