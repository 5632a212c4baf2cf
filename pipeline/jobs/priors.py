"""``colorize priors``: the ab-bin prior of a dataset (``pipeline.data.priors`` does the work), kept
on a rerun with the same settings (``pipeline.runtime.made_with``)."""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from typing import Optional

from pipeline.config import check_range
from pipeline.data import priors, storage
from pipeline.jobs.common import flags
from pipeline.runtime import made_with, outputs


@dataclass(kw_only=True)
class Options(flags.S3Options):
    data: str = "skimage:"
    out: str = "prior_probs.npy"
    size: int = 256
    limit: Optional[int] = None
    keep_grey: bool = False
    workers: Optional[int] = None
    overwrite: bool = False


def add_args(p: argparse.ArgumentParser) -> None:
    """``colorize priors`` arguments."""
    flags.add_data_arg(
        p, "folder, list file (.txt), s3://bucket/prefix, or skimage: (scikit-image's photos)", default="skimage:"
    )
    flags.add_output_arg(
        p, "output .npy (local or s3://); its .json and .png go beside it", default="prior_probs.npy", dest="out"
    )
    flags.add_resize_arg(p, "each whole photo's short side is resized to this")
    p.add_argument("--limit", type=int, default=None, help="use only the first N files (sorted)")
    p.add_argument("--keep-grey", action="store_true", help="count fully grey images too (skipped by default)")
    tasks = p.add_argument(
        "--tasks",
        "--workers",
        dest="workers",
        type=int,
        default=None,
        metavar="N",
        help="max concurrent decode tasks (default: all CPUs)",
    )
    flags.hide(tasks, "--workers")
    flags.add_overwrite_arg(p, "a prior")
    flags.add_s3_args(p)


def run(args) -> int:
    o = flags.options(Options, args)
    check_range("--resize", o.size, 8, 8192)
    for flag, value in (("--limit", o.limit), ("--tasks", o.workers)):
        if value is not None:
            check_range(flag, value, 1, None)
    s3 = storage.S3Settings.from_env(endpoint=o.s3_endpoint, region=o.s3_region)
    is_folder = not storage.is_s3(o.out) and os.path.isdir(o.out)
    problem = outputs.output_file_problem(o.out, ".npy")
    problem = "is a folder; give a file name ending in .npy" if is_folder else problem
    if problem:  # before the work; a folder would leave DIR/.json and DIR/.png behind
        raise storage.StorageError(f"--output {storage.redact(o.out)}: {problem} (its .json and .png go beside it)")
    storage.check_writable_parent(o.out, s3)  # fail before the work, not after
    if not o.overwrite and storage.exists(o.out, s3):
        return _rerun(o, s3)
    result = priors.compute_prior(
        o.data, size=o.size, limit=o.limit, skip_grey=not o.keep_grey, s3=s3, workers=o.workers
    )
    meta = priors.provenance(result, o.data, o.size, not o.keep_grey, o.limit)
    written = priors.write_prior(result, o.out, meta, s3)
    print(priors.summary(result, written))
    return 0


def _rerun(o: Options, s3: Optional[storage.S3Settings]) -> int:
    """A prior exists at --output: kept when its provenance shows these settings (exit 0), else one
    line saying what differs (exit 1). Never replaced without --overwrite."""
    meta = priors.read_provenance(o.out, s3)
    asked = {"data_uri": storage.redact(o.data), "size": o.size, "skip_grey": not o.keep_grey, "limit": o.limit}
    recorded = None if meta is None else {k: meta.get(k) for k in asked}
    return made_with.report("colorize priors", storage.redact(o.out), recorded, asked)
