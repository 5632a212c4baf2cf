"""A sweep that fails never leaves its MLflow parent run RUNNING: here Tune
cannot create the sweep folder (``train.storage_path`` lies under a file), after the parent run is
open; the run is closed FAILED and the error reaches the caller."""

from __future__ import annotations

import pytest
from mlflow.tracking import MlflowClient

from pipeline import cli


def test_a_failing_sweep_closes_its_parent_run_failed(ray_local, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = tmp_path / "out"
    argv = ["tune", "--name", "broken", "--out", str(out), "--set", f"train.storage_path={blocker / 'runs'}"]
    with pytest.raises(OSError):
        cli.main(argv)
    client = MlflowClient(f"sqlite:///{out / 'mlflow.db'}")
    exp = client.get_experiment_by_name("colorize")
    (parent,) = client.search_runs([exp.experiment_id], filter_string="tags.`colorize.kind` = 'sweep'")
    assert parent.info.status == "FAILED"
