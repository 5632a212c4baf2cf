"""``colorize prepare``: raw photos decoded once into Parquet shards and a manifest
(``pipeline.data.prepare`` does the work; the rerun rule: ``pipeline.runtime.made_with``)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Optional

from pipeline.config import check_range
from pipeline.data import shards, storage
from pipeline.data.prepare import prepare, summary
from pipeline.jobs.common import flags
from pipeline.runtime import made_with


@dataclass(kw_only=True)
class Options(flags.S3Options):
    data: str
    out: str
    size: int = 256
    limit: Optional[int] = None
    keep_grey: bool = False
    shard_mb: int = 256
    overwrite: bool = False


def add_args(p: argparse.ArgumentParser) -> None:
    """``colorize prepare`` arguments."""
    flags.add_data_arg(p, "folder, list file (.txt) or s3://bucket/prefix of raw photos")
    flags.add_output_arg(p, "output folder or s3:// prefix (shards + manifest.json)", required=True, dest="out")
    flags.add_resize_arg(p, "each photo's short side is resized to this (default 256: train with data.resize=256)")
    p.add_argument("--limit", type=int, default=None, help="first N files only")
    p.add_argument("--keep-grey", action="store_true", help="keep fully grey photos (skipped by default)")
    p.add_argument("--shard-mb", type=int, default=256, help="target shard size in MiB (default 256)")
    flags.add_overwrite_arg(p, "prepared shards")
    flags.add_s3_args(p)


def run(args) -> int:
    """Builds the S3 settings, runs, prints the summary."""
    o = flags.options(Options, args)
    check_range("--resize", o.size, 8, 8192)
    check_range("--shard-mb", o.shard_mb, 1, 65536)
    if o.limit is not None:
        check_range("--limit", o.limit, 1, None)
    s3 = storage.S3Settings.from_env(endpoint=o.s3_endpoint, region=o.s3_region)
    if not o.overwrite and shards.is_prepared(o.out, s3):
        old = shards.read_manifest(o.out, s3)  # the rerun rule
        asked = {"source": storage.redact(o.data), "size": o.size, "skip_grey": not o.keep_grey, "limit": o.limit}
        return made_with.report("colorize prepare", storage.redact(o.out), {k: old.get(k) for k in asked}, asked)
    manifest = prepare(o.data, o.out, size=o.size, limit=o.limit, skip_grey=not o.keep_grey, s3=s3, shard_mb=o.shard_mb)
    print(summary(manifest, o.out))
    return 0
