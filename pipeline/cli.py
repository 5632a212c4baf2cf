"""``colorize`` command line: one subcommand per job. Thin: parse, then call the job's ``run``."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import List, Optional


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
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    from pipeline.storage import StorageError

    try:
        if args.command == "priors":
            from pipeline import priors

            return priors.run(args)
    except (StorageError, ValueError) as e:
        print(f"colorize {args.command}: error: {e}", file=sys.stderr)
        return 2
    return 1


if __name__ == "__main__":
    sys.exit(main())
