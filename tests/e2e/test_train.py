"""Training on Ray Train (local runtime): checkpoints, MLflow run and samples, resume, fault."""

import json
import threading
import time
from pathlib import Path

from pipeline import run as run_job
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


def test_train_then_resume_same_run(ray_local, tmp_path):
    assert run_job.main(args_for(tmp_path, "r1", "train.epochs=2")) == 0
    cks = checkpoints(tmp_path, "r1")
    assert cks, "a checkpoint must exist"
    meta = json.loads((cks[-1] / "meta.json").read_text())
    assert meta["epoch"] == 1 and meta["step"] > 0
    assert ema_updates(cks[-1]) == meta["step"], "the EMA of G is checkpointed, updated once per step"
    client, runs = mlflow_runs(tmp_path)
    assert len(runs) == 1
    run = runs[0]
    assert run.data.tags["ray.world_size"] == "2"
    assert len(client.get_metric_history(run.info.run_id, "val/auc")) == 2
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
    assert run_job.main(args_for(tmp_path, "r1", "train.epochs=3")) == 0
    meta2 = json.loads((checkpoints(tmp_path, "r1")[-1] / "meta.json").read_text())
    # one more epoch's steps on top of the saved ones (how many varies: rows are split among
    # workers as they read, without dropping any, and an epoch lasts as long as its longest share)
    assert meta2["epoch"] == 2 and 0 < meta2["step"] - meta["step"] <= meta["step"]
    assert ema_updates(checkpoints(tmp_path, "r1")[-1]) == meta2["step"], "resume continues the saved EMA"
    client, runs = mlflow_runs(tmp_path)
    assert len(runs) == 1 and runs[0].info.run_id == run.info.run_id
    assert len(client.get_metric_history(run.info.run_id, "val/auc")) == 3
    assert client.get_metric_history(run.info.run_id, "train/resumed_from_epoch")[0].value == 1


def _train_workers():
    import psutil

    return {
        p.pid: p
        for p in psutil.process_iter(["cmdline"])
        if any("RayTrainWorker" in c for c in (p.info["cmdline"] or []))
    }


def _kill_one_worker_after_first_checkpoint(tmp: Path, name: str, done: dict, before: set):
    deadline = time.monotonic() + 240
    # two checkpoints on disk: the first is surely registered (report is a barrier), so the
    # restart must come from a checkpoint
    while time.monotonic() < deadline and len(checkpoints(tmp, name)) < 2:
        time.sleep(0.2)
    time.sleep(1.0)  # land mid-epoch, not inside a report
    for pid, p in _train_workers().items():
        if pid not in before:  # a worker of this run, not an idle one left by an earlier test
            p.kill()
            done["killed"] = pid
            return


def test_lost_worker_restores_from_checkpoint(ray_local, tmp_path):
    done = {}
    before = set(_train_workers())
    t = threading.Thread(
        target=_kill_one_worker_after_first_checkpoint, args=(tmp_path, "f1", done, before), daemon=True
    )
    t.start()
    # batch 1: several steps per epoch, so the kill lands in training rather than in a report
    rc = run_job.main(args_for(tmp_path, "f1", "train.epochs=5", "train.max_failures=1", "train.batch_size=1"))
    t.join(timeout=5)
    assert done.get("killed"), "the test must actually kill a worker"
    assert rc == 0
    meta = json.loads((checkpoints(tmp_path, "f1")[-1] / "meta.json").read_text())
    assert meta["epoch"] == 4
    client, runs = mlflow_runs(tmp_path)
    resumed = client.get_metric_history(runs[0].info.run_id, "train/resumed_from_epoch")
    assert resumed and resumed[0].value >= 0 and resumed[0].step > 0, "restarted from a checkpoint, not from scratch"
