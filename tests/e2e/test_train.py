"""Training on Ray Train (local runtime): checkpoints, MLflow run and samples, resume, fault."""

import json
import threading
from pathlib import Path

import numpy as np
import pytest

from pipeline import run as run_job
from pipeline.core import color
from support import corpus
from support.training import args_for


def mlflow_runs(tmp: Path):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp / 'out' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("colorize")
    return client, client.search_runs([exp.experiment_id])


def checkpoints(tmp: Path, name: str):
    root = tmp / "runs" / name
    return sorted(p for p in root.glob("checkpoint_*") if (p / "meta.json").exists()) if root.exists() else []


def ema_updates(ckpt: Path) -> int:
    """How many steps the checkpoint's EMA of G has averaged (train.ema_decay is on by default)."""
    import torch

    return int(torch.load(ckpt / "state.pt", weights_only=True)["ema"]["updates"])


def test_train_then_resume_same_run(ray_local, tmp_path, capsys):
    # a uniform validation prior weighs every pixel alike: rebalanced AuC is plain AuC; the val
    # photos are the guard set too (data.val_guard), split among the workers as val is
    uniform = tmp_path / "uniform.npy"
    np.save(uniform, np.full(color.num_bins(), 1.0 / color.num_bins()))
    guard = tmp_path / "val"
    scoring = ("train.val_temperatures=[0.5,1.0]", f"train.val_prior={uniform}", f"data.val_guard={guard}")
    assert run_job.main(args_for(tmp_path, "r1", "train.epochs=2", *scoring)) == 0
    summary = capsys.readouterr().out.split("best checkpoint:")[-1].splitlines()
    assert "guard set: PSNR" in summary[1], "the run's summary shows the best checkpoint's guard figures"
    cks = checkpoints(tmp_path, "r1")
    assert cks, "a checkpoint must exist"
    meta = json.loads((cks[-1] / "meta.json").read_text())
    assert meta["epoch"] == 1 and meta["step"] > 0
    # scored at each temperature, recorded at the one it would ship with
    val = meta["val"]
    assert val["temperature"] in (0.38, 0.5, 1.0) and val["objective_t0.5"] != val["objective_t1"]
    assert val["objective"] == val[f"objective_t{val['temperature']:g}"]
    assert val["auc_rebalanced"] == pytest.approx(val["auc"], abs=1e-9), "validation weighs by train.val_prior"
    assert val["guard_images"] == val["images"] == 4, "every guard photo scored once across the workers"
    for key in ("objective", "objective_t0.5", "auc", "auc_rebalanced", "psnr", "cf_gap", "purple_pct"):
        assert val[f"guard_{key}"] == pytest.approx(val[key], rel=1e-6), key
    assert meta["start"] is None, "no init_from: no start to hold checkpoints to"
    assert ema_updates(cks[-1]) == meta["step"], "the EMA of G is checkpointed, updated once per step"
    assert_records_its_class_weights(cks[-1])
    client, runs = mlflow_runs(tmp_path)
    assert len(runs) == 1
    run = runs[0]
    assert run.data.tags["ray.world_size"] == "2"
    assert len(client.get_metric_history(run.info.run_id, "val/auc")) == 2
    assert len(client.get_metric_history(run.info.run_id, "val/objective_t0.5")) == 2
    assert run.data.params["train.val_prior"] == str(uniform)
    assert run.data.params["data.val_guard"] == str(guard) and run.data.tags["guard_files"] == "4"
    assert len(client.get_metric_history(run.info.run_id, "val/guard_objective")) == 2
    assert [a.path for a in client.list_artifacts(run.info.run_id, "val_prior")] == ["val_prior/uniform.npy"]
    assert run.data.params["train.num_workers"] == "2"
    skipped = {k: v for k, v in run.data.metrics.items() if k.startswith("data/skipped_")}
    expected = {}
    for reason in corpus.write_corpus(tmp_path / "again")["skip"].values():
        expected[f"data/skipped_{reason}"] = expected.get(f"data/skipped_{reason}", 0) + 1
    assert skipped == expected, "every bad file skipped once and counted by reason"
    arts = {a.path for a in client.list_artifacts(run.info.run_id, "samples")}
    assert "samples/epoch_001.png" in arts
    assert any(a.path == "generator" for a in client.list_artifacts(run.info.run_id)) or client.search_logged_models(
        experiment_ids=[run.info.experiment_id]
    )

    # same run name, one more epoch: continues from the saved step in the same MLflow run
    assert run_job.main(args_for(tmp_path, "r1", "train.epochs=3", *scoring)) == 0
    meta2 = json.loads((checkpoints(tmp_path, "r1")[-1] / "meta.json").read_text())
    # one more epoch's steps on top of the saved ones (how many varies: rows are split among
    # workers as they read, without dropping any, and an epoch lasts as long as its longest share)
    assert meta2["epoch"] == 2 and 0 < meta2["step"] - meta["step"] <= meta["step"]
    assert ema_updates(checkpoints(tmp_path, "r1")[-1]) == meta2["step"], "resume continues the saved EMA"
    client, runs = mlflow_runs(tmp_path)
    assert len(runs) == 1 and runs[0].info.run_id == run.info.run_id
    assert len(client.get_metric_history(run.info.run_id, "val/auc")) == 3
    assert client.get_metric_history(run.info.run_id, "train/resumed_from_epoch")[0].value == 1


def assert_records_its_class_weights(ckpt: Path) -> None:
    """G and its average carry the class weights of the run's cross-entropy (the project's prior,
    the default rebalancing): what decoding's model.prior_correction divides out."""
    import torch

    from pipeline.config import ExperimentConfig
    from pipeline.data import priors
    from pipeline.gan import batches

    state = torch.load(ckpt / "state.pt", weights_only=True)
    prior = np.load(priors.resolve_prior_path("prior_probs.npy"))
    want = batches.class_weights_tensor(prior, ExperimentConfig().loss)
    assert not torch.equal(want, torch.ones_like(want))
    for weights in (state["generator"], state["ema"]["weights"]):
        assert torch.allclose(weights["rebalance_weights"], want)


def _train_workers():
    """Ray Train worker processes of this test session's Ray (the raylet that ray.init started is a
    child of this process, and it starts the workers): never those of another Ray on the host."""
    import psutil

    out = {}
    for p in psutil.Process().children(recursive=True):
        try:
            if any("RayTrainWorker" in c for c in p.cmdline()):
                out[p.pid] = p
        except psutil.Error:  # gone meanwhile
            continue
    return out


def registered_epochs(tmp: Path, name: str):
    """Epochs of the checkpoints Ray Train has registered for run ``name``. Ray Train (2.60, train v2)
    registers a reported checkpoint in its controller's CheckpointManager, which then writes its
    state, the kept checkpoints with their reported metrics, to checkpoint_manager_snapshot.json in
    the run's folder (register_checkpoint -> _write_state_to_storage); a restart after a failure
    hands the workers the latest registered one. A checkpoint folder alone is not enough: it is
    written by rank 0 inside ``ray.train.report``, before the controller has collected every
    rank's report and registered it."""
    snapshot = tmp / "runs" / name / "checkpoint_manager_snapshot.json"
    try:
        state = json.loads(snapshot.read_text())
    except (FileNotFoundError, ValueError):  # none yet, or read while being rewritten (written in place)
        return []
    return sorted(r["metrics"]["epoch"] for r in state["checkpoint_results"])


def _kill_one_worker_once_a_checkpoint_is_registered(
    tmp: Path, name: str, done: dict, before: set, finished: threading.Event
):
    """Kill one Ray Train worker of this run as soon as Ray Train has registered a checkpoint (the
    run is then in its next epoch), so the restart must resume from a checkpoint; ``done`` gets the
    killed pid and the latest epoch registered before the kill."""
    import psutil

    while not finished.wait(0.2):
        epochs = registered_epochs(tmp, name)
        if not epochs:
            continue
        for pid, p in _train_workers().items():
            if pid in before:  # an idle one left by an earlier test, not a worker of this run
                continue
            try:
                p.kill()
            except psutil.NoSuchProcess:
                continue
            done["killed"], done["registered_epoch"] = pid, epochs[-1]
            return


def test_lost_worker_restores_from_checkpoint(ray_local, tmp_path):
    done, finished = {}, threading.Event()
    before = set(_train_workers())
    t = threading.Thread(
        target=_kill_one_worker_once_a_checkpoint_is_registered,
        args=(tmp_path, "f1", done, before, finished),
        daemon=True,
    )
    t.start()
    # batch 1: several steps per epoch, so the run is still training when the first checkpoint is registered
    try:
        rc = run_job.main(args_for(tmp_path, "f1", "train.epochs=5", "train.max_failures=1", "train.batch_size=1"))
    finally:
        finished.set()
        t.join(timeout=30)
    assert done.get("killed"), "the test must actually kill a worker"
    # killed with epochs left to train (epoch 4 is the last): the restart trains on, not just ends
    assert done["registered_epoch"] < 4, done
    assert rc == 0
    meta = json.loads((checkpoints(tmp_path, "f1")[-1] / "meta.json").read_text())
    assert meta["epoch"] == 4
    client, runs = mlflow_runs(tmp_path)
    resumed = client.get_metric_history(runs[0].info.run_id, "train/resumed_from_epoch")
    assert resumed and resumed[0].step > 0, "restarted from a checkpoint, not from scratch"
    # from the checkpoint registered before the kill (or a later one registered before the failure was seen)
    assert done["registered_epoch"] <= resumed[0].value < 4, (done, resumed[0].value)
