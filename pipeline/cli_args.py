"""Argument groups that several ``colorize`` subcommands share. Pure argparse: the job modules'
``add_args`` use these, so a flag is defined once and reads the same in every command."""

from __future__ import annotations

import argparse


def add_s3_args(p: argparse.ArgumentParser) -> None:
    """--s3-endpoint, --s3-region: where s3:// URIs go (the job builds its S3Settings from them)."""
    p.add_argument("--s3-endpoint", default=None, help="S3-compatible endpoint URL (default: AWS_ENDPOINT_URL or AWS)")
    p.add_argument("--s3-region", default=None, help="S3 region (default: AWS_REGION)")


def add_model_args(p: argparse.ArgumentParser) -> None:
    """--model, --temperature (alias --saturation), --tracking-uri: which trained generator to load,
    and how vivid it decodes. The value lands in ``args.temperature``."""
    p.add_argument(
        "--model",
        required=True,
        help="checkpoint folder, Ray Train run folder, runs:/<id>/generator or models:/name@alias",
    )
    p.add_argument(
        "--temperature",
        "--saturation",
        dest="temperature",
        type=float,
        default=None,
        metavar="T",
        help="annealed-mean temperature T > 0: lower = more vivid, higher = more muted (default: the model's "
        "own, 0.38 in Zhang et al.); --saturation is the same knob under its older name",
    )
    p.add_argument(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI for runs:/ and models:/ (default: MLFLOW_TRACKING_URI)",
    )
