"""``colorize tune``: a Ray Tune sweep over the loss weights, one Ray Train run per trial
(``tune.sweep`` does the work: trials, ASHA, MLflow parent and child runs, resume)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import List, Optional

from pipeline.jobs.common import flags


@dataclass(kw_only=True)
class Options:
    config: Optional[str] = None
    set: List[str] = field(default_factory=list)
    space: Optional[str] = None
    num_samples: int = 8
    max_concurrent: int = 1
    gpus_per_trial: int = 0
    grace_period: int = 1
    name: Optional[str] = None
    out: str = "out/tune"
    address: Optional[str] = None
    trust_storage: bool = False


def add_args(p: argparse.ArgumentParser) -> None:
    """``colorize tune`` arguments."""
    p.add_argument("--config", default=None, help="base config YAML (as for colorize train)")
    p.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="override a base config value (repeatable)"
    )
    p.add_argument("--space", default=None, help="search space YAML (default: tune/space.yaml)")
    p.add_argument("--num-samples", type=int, default=8, help="trials to sample (default 8)")
    p.add_argument("--max-concurrent", type=int, default=1, help="trials running at once (default 1)")
    p.add_argument(
        "--gpus-per-trial", type=int, default=0, help="GPU workers per trial (sets train.num_workers, use_gpu)"
    )
    p.add_argument("--grace-period", type=int, default=1, help="epochs before ASHA may stop a trial (default 1)")
    p.add_argument("--name", default=None, help="sweep name; the same name again resumes it")
    flags.add_output_arg(
        p, "local folder: best_config.yaml, ASHA decisions, default MLflow store", default="out/tune", dest="out"
    )
    p.add_argument("--address", default=None, help="Ray address (default: RAY_ADDRESS or a local Ray)")
    p.add_argument(
        "--trust-storage",
        action="store_true",
        help="restore the sweep's saved Tune state even if it does not match the digests recorded under --output "
        "(Tune unpickles it: only for storage nobody else can write)",
    )


def run(args) -> int:
    from tune import sweep  # Ray Tune and MLflow load only when the command runs

    return sweep.run_sweep(flags.options(Options, args))
