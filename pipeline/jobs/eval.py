"""``colorize eval``: score models on a dataset beside the all-grey baseline, write ``metrics.json``
and ``report.html`` (``pipeline.apply.evaluate`` does the work)."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from typing import List, Optional

from pipeline.apply import evaluate
from pipeline.config import check_range
from pipeline.data import storage
from pipeline.jobs.common import flags, per_input


@dataclass(kw_only=True)
class Options(flags.ModelOptions, flags.S3Options):
    data: str
    out: str = "out/eval"
    compare: List[str] = field(default_factory=list)
    size: Optional[int] = None
    limit: Optional[int] = None
    batch: int = 16
    examples: int = 6
    reference: Optional[str] = None
    run_id: Optional[str] = None
    overwrite: bool = False


def add_args(p: argparse.ArgumentParser) -> None:
    """``colorize eval`` arguments."""
    flags.add_model_args(p)
    flags.add_data_arg(p, "folder, list file (.txt) or s3://bucket/prefix of colour photos")
    flags.add_output_arg(p, "folder for metrics.json and report.html", default="out/eval", dest="out")
    p.add_argument(
        "--compare", action="append", default=[], metavar="REF", help="another model to score beside (repeatable)"
    )
    p.add_argument(
        "--size",
        type=int,
        default=None,
        help="working size: each photo's short side is resized to this and centre-cropped square "
        "(default: the size the model was trained at, 128 for the shipped model)",
    )
    p.add_argument("--limit", type=int, default=None, help="first N photos only")
    p.add_argument("--batch", type=int, default=16, help="crops per pass through a model (default 16)")
    p.add_argument("--examples", type=int, default=6, help="example rows in the report")
    p.add_argument(
        "--reference",
        default=None,
        help="folder with Zhang's prior_probs.npy + pts_in_hull.npy for the "
        "rebalanced metrics (default: the project's prior_probs.npy)",
    )
    p.add_argument("--run-id", default=None, help="MLflow run to log to (default: MLFLOW_RUN_ID, else none)")
    flags.add_overwrite_arg(p, "metrics.json and report.html")
    flags.add_s3_args(p)


def run(args) -> int:
    o = flags.options(Options, args)
    if o.size is not None:
        check_range("--size", o.size, 16, 4096)  # >= the SSIM window; the crops are SIZE x SIZE
    if o.limit is not None:
        check_range("--limit", o.limit, 1, None)
    check_range("--examples", o.examples, 0, 1000)
    check_range("--batch", o.batch, 1, 4096)
    s3 = storage.S3Settings.from_env(endpoint=o.s3_endpoint, region=o.s3_region)
    settings = evaluate.settings_of(o, [o.model, *o.compare])
    if os.path.exists(os.path.join(o.out, evaluate.METRICS)) and not o.overwrite:  # the rerun rule, as per input
        return per_input.report_kept("colorize eval", o.out, settings, s3, read=evaluate.settings_at)
    return evaluate.evaluate(o, settings, s3)
