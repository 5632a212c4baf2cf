"""The main job submitted with ``ray job submit`` to a real two-node cluster on this machine."""

import json
import subprocess

import pytest

from support import ROOT
from support.ray_cluster import RAY, TwoNodeCluster
from support.training import set_args, tiny_settings

# A tiny two-epoch run; a loaded 2-core machine (CI, or this one running other work) needs several minutes.
JOB_TIMEOUT_S = 1500


@pytest.fixture
def two_nodes(tmp_path):
    c = TwoNodeCluster(tmp_path).start()
    try:
        yield c
    finally:
        c.stop()


def test_job_submit_trains_across_two_nodes(two_nodes, tmp_path, monkeypatch):
    out, runs = tmp_path / "out", tmp_path / "runs"
    sets = tiny_settings(
        "train.epochs=2",
        "train.cpus_per_worker=1",
        "train.placement_strategy=STRICT_SPREAD",
        f"train.storage_path={runs}",
        "train.run_name=mn",
        "data.val_fraction=0.4",
        without=["train.log_every"],
    )
    job_id = "colorize-two-nodes"
    cmd = [
        RAY,
        "job",
        "submit",
        "--address",
        two_nodes.dashboard,
        "--working-dir",
        str(ROOT),
        "--runtime-env",
        str(ROOT / "cluster" / "runtime_env.yaml"),
        "--submission-id",
        job_id,
        "--",
        "python",
        "pipeline/run.py",
        "--out",
        str(out),
        *set_args(sets),
    ]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=JOB_TIMEOUT_S, env=two_nodes.env())
    except subprocess.TimeoutExpired:
        logs = subprocess.run(
            [RAY, "job", "logs", "--address", two_nodes.dashboard, job_id],
            capture_output=True,
            text=True,
            timeout=120,
            env=two_nodes.env(),
        )
        pytest.fail(
            f"the job did not end in {JOB_TIMEOUT_S}s; its log ends:\n{logs.stdout[-4000:]}{logs.stderr[-1000:]}"
        )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert "succeeded" in (r.stdout + r.stderr)
    from ray.job_submission import JobSubmissionClient

    # the client takes RAY_API_SERVER_ADDRESS, else RAY_ADDRESS, over its address argument, and this
    # process has RAY_ADDRESS=local (conftest): it would look for "the" Ray on the host and fail with
    # "Found multiple active Ray instances" whenever another one runs there (or pick another one)
    monkeypatch.setenv("RAY_API_SERVER_ADDRESS", two_nodes.dashboard)
    info = JobSubmissionClient(two_nodes.dashboard).get_job_info(job_id)
    assert info.runtime_env["env_vars"]["COLORIZE_RUNTIME_ENV"] == "cluster/runtime_env.yaml"  # the file was applied
    cks = sorted(p for p in (runs / "mn").glob("checkpoint_*") if (p / "meta.json").exists())
    assert cks and json.loads((cks[-1] / "meta.json").read_text())["epoch"] == 1
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    exp = client.get_experiment_by_name("colorize")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.data.tags["ray.worker_nodes"] == "2", "workers must have run on both nodes"
    assert client.get_metric_history(run.info.run_id, "val/auc")
    assert "samples/epoch_001.png" in {a.path for a in client.list_artifacts(run.info.run_id, "samples")}
