"""``colorize train``, the end-to-end training job (``pipeline/run.py`` is its script entry, what
``ray job submit --working-dir . -- python pipeline/run.py ...`` runs).

Steps: make sure a colour prior exists (the given one, else the project's ``prior_probs.npy``, or
recompute it on the training data with ``--recompute-prior``), train the cGAN on Ray Train with
validation every epoch, record everything in MLflow, print where the results are.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from typing import FrozenSet, List, Optional

from pipeline import config as config_mod
from pipeline import credentials
from pipeline.data import storage
from pipeline.jobs.common import command_help, flags
from pipeline.runtime import outputs, stops

log = logging.getLogger("colorize.run")


@dataclass(kw_only=True)
class Options:
    config: Optional[str] = None
    overrides: List[str] = field(default_factory=list)
    out: str = "out"
    recompute_prior: bool = False
    address: Optional[str] = None
    verbose: bool = False
    given: Optional[FrozenSet[str]] = None  # the keys the config file and --set give (config.given_keys)
    checkpoints_at: Optional[str] = None  # where this run's checkpoints go, once known (said on a stop)


def parse_args(argv=None, prog: Optional[str] = None) -> Options:
    text = command_help.COMMANDS["train"]
    p = argparse.ArgumentParser(
        prog=prog,
        description=text.description,
        epilog="examples:\n" + text.examples,
        formatter_class=flags.HelpFormatter,
    )
    add_args(p)
    return flags.options(Options, p.parse_args(argv))


def add_args(p: argparse.ArgumentParser) -> None:
    """``colorize train`` arguments (its own parser: ``python pipeline/run.py`` reads the same)."""
    flags.add_config_args(p)
    flags.add_output_arg(
        p, "local folder for the run's MLflow store and sample grids when no server is set", default="out", dest="out"
    )
    p.add_argument("--recompute-prior", action="store_true", help="recompute the prior on data.train first")
    p.add_argument("--address", default=None, help="Ray address (default: RAY_ADDRESS or a local Ray)")
    p.add_argument("--verbose", action="store_true", help="show Ray's own logs and progress bars too")


def main(argv=None, prog: Optional[str] = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    args = parse_args(argv, prog)
    if args.verbose:
        os.environ["COLORIZE_VERBOSE"] = "1"
    stops.install()  # SIGTERM unwinds like Ctrl-C: every cleanup runs
    try:
        return _main(args)
    except (KeyboardInterrupt, stops.Stopped) as e:
        kept = args.checkpoints_at
        where = f"; checkpoints so far are kept in {kept} (the same train.run_name resumes)" if kept else ""
        print(stops.message("colorize train", e) + where, file=sys.stderr)
        return stops.EXIT_CODES[stops.signal_of(e)]


def _main(args) -> int:
    try:
        credentials.refuse_in_args(args)
        cfg = config_mod.load(args.config, args.overrides)
        args.given = config_mod.given_keys(args.config, args.overrides)
    except (config_mod.ConfigError, credentials.CredentialsInUri) as e:
        print(f"config error: {storage.redact(str(e))}", file=sys.stderr)
        return 2
    try:
        return run(cfg, args)
    except (storage.StorageError, FileNotFoundError, ValueError) as e:  # a user's data or settings, as the CLI
        print(f"error: {storage.redact(str(e))}", file=sys.stderr)  # no user:secret@ or ?token in a message
        return 2


def run(cfg, args) -> int:
    # Imported here, not at the top: parse errors and config errors answer before Ray and MLflow load.
    from ray.train import TrainingFailedError

    from pipeline.data import priors, sources
    from pipeline.train import tracking, trainer

    sources.ensure_ray(args.address)
    s3 = storage.S3Settings.from_config(cfg.data)
    out_dir = os.path.abspath(args.out)
    prior, _, artifacts = priors.training_prior(cfg, s3, out_dir, args.recompute_prior)
    run_name = cfg.train.run_name or time.strftime("colorize-%Y%m%d-%H%M%S")
    args.checkpoints_at = storage.redact(f"{cfg.train.storage_path.rstrip('/')}/{run_name}")
    tracking_uri = tracking.resolve_uri(cfg.tracking.uri, out_dir)
    warn_if_temporary(out_dir, cfg.train.storage_path, tracking_uri)
    artifact_dir = os.path.join(out_dir, "mlartifacts")
    started = time.time()
    try:
        launched = trainer.launch(
            cfg,
            prior,
            s3,
            tracking_uri,
            run_name,
            artifact_dir=artifact_dir,
            artifacts=artifacts,
            given=args.given,
        )
    except TrainingFailedError as e:  # Train V2 raises once FailureConfig's retries are spent
        print(f"training failed: {storage.redact(str(e))}", file=sys.stderr)
        print(f"MLflow: {storage.redact(tracking_uri)} (experiment {cfg.tracking.experiment!r}, run name {run_name!r})")
        return 1
    summary(launched, run_name, tracking_uri, artifact_dir, time.time() - started)
    if launched.result.error is not None:
        print(f"training failed: {storage.redact(str(launched.result.error))}", file=sys.stderr)
        return 1
    return 0


def summary(launched, run_name: str, tracking_uri: str, artifact_dir: str, seconds: float) -> None:
    """The run's closing lines: the data, the best checkpoint and its figures against the start,
    training speed and wall time, where everything is."""
    from pipeline.core import metrics
    from pipeline.train import progress, trainer

    cfg, result = launched.cfg, launched.result
    print(f"\n== colorize run {run_name} ({progress.duration(seconds)})")
    data_line = storage.redact(", ".join(f"{k} {v}" for k, v in launched.info.items()))
    print(f"data: {data_line}; skipped at training time {launched.skipped or 'none'}")
    m = result.metrics or {}
    if "train_img_per_s" in m:
        print(f"training speed: {m['train_img_per_s']:.1f} img/s (last epoch's steps; validation excluded)")
    best = launched.best()
    if best is not None:
        ckpt, bm = best
        val = {k[len("val_") :]: v for k, v in bm.items() if k.startswith("val_")}
        what = "the start (no epoch did better)" if bm.get("epoch") == -1 else f"epoch {bm.get('epoch', 0) + 1}"
        print(f"best checkpoint: {what}: {storage.redact(trainer.storage_uri(ckpt.path, cfg.train.storage_path))}")
        print(f"  {progress.figures(val)}")
        own = cfg.model.temperature
        scored = val.get("temperature")
        if scored is not None and metrics.temperature_key(scored) != metrics.temperature_key(own):
            print(
                f"  scored best at T {scored:g}; the model decodes at its T {own:g} (colorize export "
                f"--model CHECKPOINT --ship DIR --temperature {scored:g} ships it at that T)"
            )
        start = {k[len("start_") :]: v for k, v in bm.items() if k.startswith("start_")}
        if start and bm.get("epoch") != -1:
            print(f"  the start: {progress.figures(start)}")
    if result.checkpoint is not None:
        print("latest checkpoint:", storage.redact(trainer.storage_uri(result.checkpoint.path, cfg.train.storage_path)))
    print(f"MLflow: {storage.redact(tracking_uri)} (experiment {cfg.tracking.experiment!r}, run {launched.run_id})")
    if tracking_uri.startswith("sqlite:"):
        print(f"  browse with: mlflow ui --backend-store-uri {tracking_uri}")
        print(f"  sample grids: {artifact_dir}/<run>/artifacts/samples/")


def warn_if_temporary(out_dir: str, storage_path: str, tracking_uri: str, cwd: Optional[str] = None) -> List[str]:
    """Warn when results would live in a Ray job's unpacked ``--working-dir`` (``ray job submit``
    without ``--out``): Ray deletes it with the job's files. Returns what is affected."""
    cwd = cwd or os.getcwd()
    found = outputs.temporary_outputs(
        {"--output": out_dir, "train.storage_path": storage_path, "tracking.uri": tracking_uri}, cwd
    )
    if found:
        log.warning(
            "%s %s inside this job's temporary working dir %s, which Ray deletes with the job: pass "
            "--output /a/lasting/folder, set train.storage_path to s3://... (or a shared folder) and "
            "tracking.uri to an MLflow server to keep the results",
            ", ".join(found),
            "is" if len(found) == 1 else "are",
            cwd,
        )
    return found
