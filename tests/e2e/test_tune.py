"""A real Ray Tune sweep of tiny trials (CPU): ASHA decisions, MLflow parent and child runs, the
best config round-trips into pipeline/run.py, and a sweep whose driver is killed is restored
without rerunning finished trials."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from pipeline import config as config_mod
from pipeline import run as run_job
from support import ROOT, corpus
from support.training import set_args, tiny_settings

EPOCHS = 2
SAMPLES = 3


def sweep_cmd(tmp, photos):
    sets = tiny_settings(
        "train.batch_size=4",
        "train.num_workers=1",
        "tracking.sample_images=1",
        f"train.epochs={EPOCHS}",
        f"data.train={photos}",
        "data.val_fraction=0.3",
        f"train.storage_path={tmp / 'runs'}",
        without=["train.log_every"],
    )
    return [
        sys.executable,
        "-m",
        "pipeline.cli",
        "tune",
        "--num-samples",
        str(SAMPLES),
        "--name",
        "sw",
        "--out",
        str(tmp / "out"),
        *set_args(sets),
    ]


def persisted_ended(sweep_dir):
    """Trials Tune's saved experiment state records as TERMINATED (what a restore will keep)."""
    import glob

    ended = set()
    for f in glob.glob(str(sweep_dir / "experiment_state-*.json")):
        try:
            for t in json.loads(open(f).read())["trial_data"]:
                j = json.loads(t[0])
                if j.get("status") == "TERMINATED":
                    ended.add(j["trial_id"])
        except (ValueError, KeyError, OSError):
            pass  # being written right now
    return ended


def finished_trials(decisions_file):
    """Trials the scheduler has ended (a STOP at an ASHA rung or at the last epoch), from its log."""
    if not decisions_file.exists():
        return set()
    recs = [json.loads(x) for x in decisions_file.read_text().splitlines() if x.strip()]
    return {r["trial"] for r in recs if r["decision"] == "STOP" or r["iteration"] >= EPOCHS}


def test_sweep_killed_restored_and_recorded(tmp_path):
    from PIL import Image

    photos = tmp_path / "photos"
    photos.mkdir()
    for i in range(10):
        Image.fromarray(corpus.photo(200 + i, 48, 64)).save(photos / f"p{i}.png")
    env = dict(os.environ, RAY_ADDRESS="local", PYTHONPATH=str(ROOT))
    cmd = sweep_cmd(tmp_path, photos)
    db = tmp_path / "out" / "mlflow.db"
    decisions_file = tmp_path / "out" / "sw" / "scheduler_decisions.jsonl"
    log1 = open(tmp_path / "first.log", "w")
    first = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log1, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 400
    sweep_dir = tmp_path / "runs" / "sw"
    while time.monotonic() < deadline and not persisted_ended(sweep_dir) and first.poll() is None:
        time.sleep(1)
    assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
    done_before = persisted_ended(sweep_dir)
    assert done_before <= finished_trials(decisions_file)
    assert done_before, "no trial finished in time"
    os.killpg(first.pid, signal.SIGKILL)  # the driver dies mid-sweep, its local Ray with it
    first.wait(30)

    second = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    out = second.stdout + second.stderr
    (tmp_path / "second.log").write_text(out)
    errors = "\n".join(ln[:300] for ln in out.splitlines() if "rror" in ln or "colorize tune" in ln)
    assert second.returncode == 0, errors[-4000:]
    assert "resuming sweep sw" in out

    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{db}")
    exp = client.get_experiment_by_name("colorize")
    (parent,) = client.search_runs([exp.experiment_id], filter_string="tags.`colorize.kind` = 'sweep'")
    children = client.search_runs(
        [exp.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'"
    )
    assert len({c.data.tags["colorize.trial_id"] for c in children}) == SAMPLES == len(children)
    assert all(c.info.status == "FINISHED" for c in children)
    decisions_log = tmp_path / "out" / "sw" / "scheduler_decisions.jsonl"
    decisions = [json.loads(x) for x in decisions_log.read_text().splitlines()]
    by_trial = {}
    for d in decisions:
        by_trial.setdefault(d["trial"], []).append(d["iteration"])
    assert set(by_trial) == {c.data.tags["colorize.trial_id"] for c in children}, "ASHA saw every trial"
    for c in children:
        tid = c.data.tags["colorize.trial_id"]
        hist = client.get_metric_history(c.info.run_id, "val/objective")
        steps = [m.step for m in hist]
        assert len(steps) == len(set(steps)), f"{tid}: an epoch was trained twice"
        if tid in done_before:  # finished before the kill: not rerun after the restore
            assert by_trial[tid] == sorted(set(by_trial[tid])), f"{tid} was rerun: {by_trial[tid]}"
        stopped = any(d["trial"] == tid and d["decision"] == "STOP" for d in decisions)
        assert len(hist) == EPOCHS or stopped, f"{tid}: {len(hist)} epochs without a STOP decision"
        for key in ("loss.lambda_adv", "loss.lambda_ce", "loss.lambda_l1"):
            assert 0 < float(c.data.params[key])
    best = [c for c in children if c.data.tags.get("colorize.best_trial") == "true"]
    assert len(best) == 1 and parent.data.tags["best_run_id"] == best[0].info.run_id

    best_yaml = tmp_path / "out" / "sw" / "best_config.yaml"
    args = run_job.parse_args(["--config", str(best_yaml)])  # what pipeline/run.py --config does
    cfg = config_mod.load(args.config, args.overrides)
    for key in ("loss.lambda_adv", "loss.lambda_ce", "loss.lambda_l1"):
        assert cfg.flat()[key] == pytest.approx(float(best[0].data.params[key]))
    assert cfg.train.run_name is None and cfg.model.preset == "tiny"
