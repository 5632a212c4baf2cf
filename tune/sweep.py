"""A Ray Tune sweep over the loss weights, one Ray Train run per trial.

- Trials: a Tune function that builds a ``TorchTrainer`` (Train V2 pattern) and forwards its
  per-epoch reports with ``TuneReportCallback``; resources per trial are the trainer's own
  (``--gpus-per-trial`` workers with a GPU each, or the config's CPU workers); at most
  ``--max-concurrent`` trials run at once.
- Objective: ``val_objective`` = rebalanced AuC - 0.5 x colourfulness gap (``pipeline.core.metrics``,
  which says why); both parts are reported. ASHA stops weak trials early; its decisions are logged
  and written to ``scheduler_decisions.jsonl`` in the sweep folder.
- MLflow: a parent run for the sweep, a child run per trial (its flat config as params, its
  training metrics); the best trial is tagged, and the best config is written as YAML that
  ``pipeline/run.py --config`` accepts as is (also logged to the parent run).
- Resume: the same ``--name`` again restores the sweep (``Tuner.restore``): finished trials are
  kept, unfinished ones continue from their last checkpoint, errored ones are retried. A failing
  trial never ends the sweep. Only a state this sweep's driver wrote is restored (Tune unpickles
  it): ``tune.state_guard`` checks it against the digests recorded under ``--output``
  (``--trust-storage`` skips the check).
- The parent run is closed FAILED when the sweep raises (Ctrl-C included) or no trial finishes.
"""

from __future__ import annotations

import json
import logging
import os
import posixpath
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

import mlflow
import numpy as np
import pyarrow.fs as pafs
from ray import tune
from ray.tune import CLIReporter
from ray.tune.integration.ray_train import TuneReportCallback
from ray.tune.schedulers import ASHAScheduler

from pipeline import config as config_mod
from pipeline.config import ExperimentConfig
from pipeline.data import priors, sources, storage
from pipeline.train import tracking, trainer
from tune import space, state_guard

log = logging.getLogger("colorize.tune")

METRIC, MODE = "val_objective", "max"
PARENT_TAG = "colorize.sweep"


class LoggedASHA(ASHAScheduler):
    """ASHA that records each decision in ``decisions_path`` (JSON lines) and logs each stop, so
    users (and tests) can see what it did and why."""

    def __init__(self, decisions_path: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.decisions_path = decisions_path

    def on_trial_result(self, tune_controller, trial, result):
        decision = super().on_trial_result(tune_controller, trial, result)
        rec = {
            "trial": trial.trial_id,
            "iteration": result.get("training_iteration"),
            "objective": result.get(METRIC),
            "decision": decision,
        }
        if decision != "CONTINUE":
            log.warning(
                "ASHA: trial %s stopped at epoch %s (objective %.3f below its rung)",
                trial.trial_id,
                rec["iteration"],
                rec["objective"] or float("nan"),
            )
        os.makedirs(os.path.dirname(self.decisions_path), exist_ok=True)
        with open(self.decisions_path, "a") as f:
            f.write(json.dumps(rec) + "\n")
        return decision


def _asha(max_t: int, grace: int, decisions_path: str) -> LoggedASHA:
    return LoggedASHA(
        decisions_path,
        time_attr="training_iteration",
        metric=METRIC,
        mode=MODE,
        max_t=max_t,
        grace_period=grace,
        reduction_factor=2,
    )


def sweep_storage(storage_path: str, name: str, s3: storage.S3Settings) -> Tuple[str, str, Optional[pafs.FileSystem]]:
    """(Tune's ``storage_path``, the sweep's experiment folder, their filesystem) for a sweep
    ``name`` under ``train.storage_path``: ``trainer.storage_for``'s rule, the one Ray Train's runs
    use (local paths absolute; ``s3://`` as is, or scheme-less with an explicit S3 filesystem when
    an endpoint or region is set). The folder is what ``Tuner.can_restore``/``restore`` take,
    with the same filesystem."""
    root, fs = trainer.storage_for(storage_path, s3)
    return root, posixpath.join(root.rstrip("/"), name), fs


def trial_fn(params: Dict[str, Any], private: Optional[Dict[str, Any]] = None) -> None:
    """One trial: the sampled keys over the base config, one tracked Ray Train run (``trainer.launch``)
    whose per-epoch reports reach Tune through ``TuneReportCallback``."""
    meta = params["_sweep"] | (private or {})  # the real base config and tracking URI: see sweep_state
    sampled = {k: v for k, v in params.items() if not k.startswith("_")}
    trial_id = tune.get_context().get_trial_id()
    run_name = f"{meta['name']}-{trial_id}"
    cfg = ExperimentConfig.from_dict(meta["base"]).replace(sampled | {"train.run_name": run_name})
    s3 = storage.S3Settings.from_dict(meta["s3"])
    done_before = _last_epoch(cfg, s3) >= cfg.train.epochs - 1
    tags = {"mlflow.parentRunId": meta["parent_run_id"], "colorize.trial_id": trial_id, PARENT_TAG: meta["name"]}
    launched = trainer.launch(
        cfg,
        np.asarray(meta["prior"]),
        s3,
        meta["tracking_uri"],
        run_name,
        artifact_dir=meta["artifact_dir"],
        tags=tags,
        callbacks=[TuneReportCallback()],
        val_prior=meta.get("val_prior"),
    )
    result = launched.result
    if result.error is not None:  # Train V1; V2's fit raises, and launch re-raises it: the trial errors either way
        raise RuntimeError(f"trial {trial_id} failed: {result.error}")
    if done_before and result.metrics:
        # A restored sweep reruns a trial Tune had not yet recorded as ended: its Train run resumes
        # past the last epoch and reports nothing, so hand Tune the final metrics it already earned.
        tune.report({k: v for k, v in result.metrics.items() if isinstance(v, (int, float))})


def sweep_state(base: ExperimentConfig, tracking_uri: str, **rest: Any) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(what Tune may save, what it must not): Tune writes the param space into its experiment state
    and every trial's params.json under ``train.storage_path`` (perhaps a shared bucket), so the
    base config and tracking URI go there redacted; the real ones reach trials by ``with_parameters``."""
    real = base.to_dict()
    shown = {
        section: {k: storage.redact(v) if isinstance(v, str) else v for k, v in values.items()}
        for section, values in real.items()
    }
    state = {**rest, "base": shown, "tracking_uri": storage.redact(tracking_uri)}
    return state, {"base": real, "tracking_uri": tracking_uri}


def _last_epoch(cfg: ExperimentConfig, s3) -> int:
    """The newest saved epoch of this trial's Train run (-1 if none): local or s3:// storage."""
    fs, root = storage.resolve(posixpath.join(cfg.train.storage_path, cfg.train.run_name), s3)
    epochs = [-1]
    for info in fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True)):
        if info.path.endswith("/meta.json") and "/checkpoint_" in info.path:
            with fs.open_input_stream(info.path) as f:
                epochs.append(int(json.loads(f.read()).get("epoch", -1)))
    return max(epochs)


@dataclass(frozen=True)
class Sweep:
    """One sweep as the driver sees it: its name and folders, the base config and search space,
    where Tune keeps its state (``sweep_storage``), MLflow, S3 and the prior every trial trains with."""

    name: str
    out_dir: str
    base: ExperimentConfig
    spec: Dict[str, Any]
    where: Tuple[str, str, Optional[pafs.FileSystem]]
    tracking_uri: str
    s3: storage.S3Settings
    prior: np.ndarray
    val_prior: Optional[List[float]] = None  # train.val_prior, read once here as the prior is

    @property
    def record(self) -> str:
        return state_guard.record_path(self.out_dir, self.name)

    @property
    def decisions(self) -> str:
        return os.path.join(self.out_dir, self.name, "scheduler_decisions.jsonl")

    @property
    def artifact_dir(self) -> str:
        return os.path.join(self.out_dir, "mlartifacts")

    def shown(self) -> str:
        """The sweep folder as a message may show it."""
        return storage.redact(trainer.storage_uri(self.where[1], self.base.train.storage_path))

    def state_fs(self) -> Tuple[pafs.FileSystem, str]:
        """(filesystem, folder) of the sweep's saved state."""
        _, folder, fs = self.where
        return (fs, folder) if fs is not None else storage.resolve(folder, self.s3)


def run_sweep(args) -> int:
    """The sweep ``args`` (``pipeline.jobs.tune.Options``) ask for, under its MLflow parent run."""
    config_mod.check_range("--num-samples", args.num_samples, 1, 10_000)  # Tune reads -1 as "sample forever"
    config_mod.check_range("--max-concurrent", args.max_concurrent, 1, 1024)
    config_mod.check_range("--gpus-per-trial", args.gpus_per_trial, 0, 1024)
    config_mod.check_range("--grace-period", args.grace_period, 1, None)
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # the classic table: trial, params, objective
    os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "5")  # persist trial states often: a restore reruns less
    sw = _plan(args)
    resume = _may_resume(sw, args.trust_storage)
    sources.ensure_ray(args.address)
    sweep_params = {f"space.{k}": json.dumps(v) for k, v in sw.spec.items()}
    sweep_params |= {"sweep.num_samples": args.num_samples, "sweep.max_concurrent": args.max_concurrent}
    parent_id = tracking.start_or_resume_run(
        sw.tracking_uri, sw.base.tracking.experiment, sw.name, sweep_params, artifact_dir=sw.artifact_dir
    )
    if parent_id is None:
        raise storage.StorageError(
            f"MLflow is unreachable at {storage.redact(sw.tracking_uri)}: a sweep needs its parent run"
        )
    parent = tracking.Tracker(sw.tracking_uri, parent_id)
    try:
        parent.tags({PARENT_TAG: sw.name, "colorize.kind": "sweep"})
        code = _sweep(sw, args, resume, parent)
    except BaseException:  # an error, Ctrl-C: the parent run never stays RUNNING
        parent.finish("FAILED")
        raise
    parent.finish("FINISHED" if code == 0 else "FAILED")
    return code


def _plan(args) -> Sweep:
    """The sweep ``args`` ask for; the prior is read before Ray starts (a bad one fails fast)."""
    base = config_mod.load(args.config, args.set)
    spec = space.load_space(args.space, base)
    if args.gpus_per_trial:
        base = base.replace({"train.num_workers": args.gpus_per_trial, "train.use_gpu": True})
    if base.train.num_workers is None or base.train.cpus_per_worker is None:
        # a trial is one of several at once: not the whole cluster each (what an unset layout fits)
        t = base.train
        base = base.replace(
            {"train.num_workers": t.num_workers or 1, "train.cpus_per_worker": t.cpus_per_worker or 1.0}
        )
    name = args.name or time.strftime("sweep-%Y%m%d-%H%M%S")
    out_dir = os.path.abspath(args.out)
    s3 = storage.S3Settings.from_config(base.data)
    return Sweep(
        name=name,
        out_dir=out_dir,
        base=base,
        spec=spec,
        where=sweep_storage(base.train.storage_path, name, s3),
        tracking_uri=tracking.resolve_uri(base.tracking.uri, out_dir),
        s3=s3,
        prior=priors.load_prior(priors.resolve_prior_path(base.loss.prior), s3),
        val_prior=trainer.read_val_prior(base, s3),
    )


def _may_resume(sw: Sweep, trust: bool) -> bool:
    """Whether the sweep folder holds a state to restore; raises ``StorageError`` (one line, exit 2)
    when that state is not one this sweep's driver wrote (``tune.state_guard``) unless ``trust``."""
    _, sweep_dir, sweep_fs = sw.where
    if not tune.Tuner.can_restore(sweep_dir, storage_filesystem=sweep_fs):
        return False
    if trust:
        log.warning("--trust-storage: restoring %s without checking it against %s", sw.shown(), sw.record)
        return True
    fs, folder = sw.state_fs()
    try:
        state_guard.check(fs, folder, sw.record, sw.shown())
    except state_guard.UntrustedState as e:
        raise storage.StorageError(str(e)) from None
    return True


def _sweep(sw: Sweep, args, resume: bool, parent: tracking.Tracker) -> int:
    """The sweep under its MLflow parent run (opened and closed by ``run``): fit, then close the
    trials' runs, write and log the best config, print the table."""
    trainable, param_space = _trainable(sw, parent.run_id)
    if resume:
        print(f"colorize tune: resuming sweep {sw.name} from {sw.shown()}")
        with state_guard.restoring_into(sw.record):  # Tune unpickles the state recorder from tuner.pkl
            tuner = tune.Tuner.restore(
                sw.where[1],
                trainable=trainable,
                resume_unfinished=True,
                resume_errored=True,
                param_space=param_space,
                storage_filesystem=sw.where[2],
            )
    else:
        tuner = _new_tuner(sw, args, trainable, param_space)
    results = tuner.fit()
    errors = [r for r in results if r.error is not None]
    ok = [r for r in results if r.error is None and r.metrics and METRIC in r.metrics]
    if not ok:
        print(f"colorize tune: no trial finished ({len(errors)} failed)")
        return 1
    best = max(ok, key=lambda r: r.metrics[METRIC])
    best_path = _write_best_config(sw, best)
    children = _close_trial_runs(sw, results)
    _record_best(sw, parent, best, children.get(best.metrics.get("trial_id")), best_path)
    _print_table(sw, ok, len(errors), best_path, parent.run_id)
    return 0


def _trainable(sw: Sweep, parent_id: str):
    """(the trial function with its resources, the param space): the space plus the sweep's state,
    redacted where Tune saves it (``sweep_state``)."""
    state, private = sweep_state(
        sw.base,
        sw.tracking_uri,
        name=sw.name,
        prior=[float(x) for x in sw.prior],
        val_prior=sw.val_prior,
        parent_run_id=parent_id,
        artifact_dir=sw.artifact_dir,
        s3=sw.s3.to_dict(),
    )
    # The trial function only drives its TorchTrainer, which asks for its own workers: a sliver of CPU.
    # with_parameters keeps `private` in the object store only: it is never written with Tune's state.
    trainable = tune.with_resources(tune.with_parameters(trial_fn, private=private), {"CPU": 0.1})
    return trainable, space.to_tune(sw.spec) | {"_sweep": state}


def _new_tuner(sw: Sweep, args, trainable, param_space) -> tune.Tuner:
    storage_path, _, sweep_fs = sw.where
    reporter = CLIReporter(
        parameter_columns=list(sw.spec),
        metric_columns=[METRIC, "val_auc_rebalanced", "val_cf_gap", "epoch"]
        + (["val_guard_objective"] if sw.base.data.val_guard else []),  # reported beside, not ranked by
        max_report_frequency=15,
    )
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            num_samples=args.num_samples,
            max_concurrent_trials=args.max_concurrent,
            scheduler=_asha(sw.base.train.epochs, args.grace_period, sw.decisions),
        ),
        run_config=tune.RunConfig(
            name=sw.name,
            storage_path=storage_path,
            storage_filesystem=sweep_fs,
            progress_reporter=reporter,
            verbose=2,
            failure_config=tune.FailureConfig(max_failures=1),
            callbacks=[state_guard.StateRecorder(sw.record)],
        ),
    )
    # tuner.pkl was just written straight to storage by the driver: the first entry of the record
    fs, folder = sw.state_fs()
    state_guard.add_to_record(sw.record, fs, folder, ["tuner.pkl"])
    return tuner


def _write_best_config(sw: Sweep, best) -> str:
    """best_config.yaml under --output: the base config with the best trial's sampled keys, which
    ``pipeline/run.py --config`` takes as is; credentials never go into it (redacted)."""
    sampled = {k: v for k, v in best.config.items() if not k.startswith("_")}
    best_cfg = ExperimentConfig.from_dict(sw.base.to_dict()).replace(sampled)
    os.makedirs(os.path.join(sw.out_dir, sw.name), exist_ok=True)
    best_path = os.path.join(sw.out_dir, sw.name, "best_config.yaml")
    m = best.metrics
    with open(best_path, "w") as f:
        f.write(
            f"# best trial of sweep {sw.name}: {METRIC} = {m[METRIC]:.3f} "
            f"(val_auc_rebalanced {m.get('val_auc_rebalanced', float('nan')):.2f}, "
            f"val_cf_gap {m.get('val_cf_gap', float('nan')):.2f})\n"
        )
        f.write(storage.redact(config_mod.dump(best_cfg)))  # credentials come from the environment, never a file
    return best_path


def _close_trial_runs(sw: Sweep, results) -> Dict[str, str]:
    """Close every trial's MLflow run (Tune ends a trial at max_t or an ASHA stop by killing it),
    tagged with the epochs it trained; -> {trial id: run id}."""
    client = mlflow.tracking.MlflowClient(sw.tracking_uri)
    exp = client.get_experiment_by_name(sw.base.tracking.experiment)
    children = {
        r.data.tags.get("colorize.trial_id"): r.info.run_id
        for r in client.search_runs([exp.experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{sw.name}'")
    }
    for r in results:
        tid = (r.metrics or {}).get("trial_id")
        if tid in children:
            epochs = (r.metrics or {}).get("training_iteration", 0)
            child_tracker = tracking.Tracker(sw.tracking_uri, children[tid])
            child_tracker.tags(
                {
                    "colorize.epochs_trained": epochs,
                    "colorize.stopped_early": str(r.error is None and epochs < sw.base.train.epochs).lower(),
                }
            )
            child_tracker.finish("FAILED" if r.error is not None else "FINISHED")
    return children


def _record_best(sw: Sweep, parent: tracking.Tracker, best, best_run: Optional[str], best_path: str) -> None:
    """The best trial on its own run (a tag) and on the parent run (tags, best/ metrics, the config
    and ASHA's decisions as artifacts)."""
    if best_run:
        tracking.Tracker(sw.tracking_uri, best_run).tags({"colorize.best_trial": "true"})
    parent.tags({"best_trial": best.metrics.get("trial_id"), "best_run_id": best_run or ""})
    best_val = {k: v for k, v in best.metrics.items() if k.startswith("val_") and isinstance(v, (int, float))}
    parent.metrics({f"best/{k}": v for k, v in best_val.items()}, 0)
    parent.artifact(best_path)
    if os.path.exists(sw.decisions):
        parent.artifact(sw.decisions)


def _print_table(sw: Sweep, ok, failed: int, best_path: str, parent_id: str) -> None:
    print(f"\n== colorize tune {sw.name}: {len(ok)} trials finished, {failed} failed")
    for r in sorted(ok, key=lambda r: -r.metrics[METRIC]):
        params = ", ".join(
            f"{k}={r.config[k]:.4g}" if isinstance(r.config[k], float) else f"{k}={r.config[k]}" for k in sw.spec
        )
        m = r.metrics
        print(
            f"  {m.get('trial_id')}: {METRIC}={m[METRIC]:.3f} "
            f"(auc_rebal {m.get('val_auc_rebalanced', float('nan')):.2f}, "
            f"cf_gap {m.get('val_cf_gap', float('nan')):.2f}, "
            f"epochs {m.get('training_iteration')}) {params}"
        )
    print(f"best config: {best_path}  (python pipeline/run.py --config {best_path})")
    print(f"MLflow: {storage.redact(sw.tracking_uri)} (parent run {parent_id})")
