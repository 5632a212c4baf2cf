"""The README's training command, as a user types it, on a folder of 24 photos and a local Ray that
starts with the machine's CPUs: it finishes (no worker layout that starves Ray Data's reads), says
what it does in lines for people (no raw reports, no Ray chatter, no traceback) and records its
speed in MLflow. One epoch instead of the default ten keeps it to about two minutes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"


def photos(folder: Path, n: int = 24) -> Path:
    """``n`` photos of everyday-val (read-only shared data) copied into ``folder``."""
    names = (SHARED / "splits" / "everyday-val.txt").read_text().split()[:n]
    folder.mkdir()
    for i, name in enumerate(names):
        shutil.copy(SHARED / name, folder / f"{i:02d}{Path(name).suffix}")
    return folder


@pytest.mark.skipif(not (SHARED / "splits" / "everyday-val.txt").exists(), reason="needs ../shared/data")
def test_the_readmes_training_command_finishes_and_talks_to_people(tmp_path):
    folder = photos(tmp_path / "my-photos")
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE", "COLORIZE_VERBOSE")}
    argv = [sys.executable, "-m", "pipeline.cli", "train", "--set", f"data.train={folder}"]
    argv += ["--set", "train.init_from=shipped", "--set", "train.run_name=mine", "--set", "train.epochs=1"]
    done = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1200)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-4000:]
    for noise in ("Traceback", "Token authentication", "TrainingReport(", "core_worker.cc", "(pid="):
        assert noise not in out, f"{noise!r} in the output:\n{out[-4000:]}"
    assert "val the start:" in out and "val epoch 1:" in out
    assert "best checkpoint:" in out and "img/s" in out
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{tmp_path / 'out' / 'mlflow.db'}")
    run = client.search_runs([client.get_experiment_by_name("colorize").experiment_id])[0]
    assert run.data.metrics["train/img_per_s"] > 0
    import json

    shipped = json.loads((ROOT / "pipeline" / "assets" / "model" / "config.json").read_text())
    assert shipped["model"]["temperature"] != 0.38  # else the check below could not tell them apart
    # the shipped model's own temperature and scale, not the config defaults (0.38, 256)
    assert float(run.data.params["model.temperature"]) == shipped["model"]["temperature"]
    assert run.data.params["data.resize"] == str(shipped["data"]["resize"]) != "256"
