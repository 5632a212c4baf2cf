"""``ray job submit --working-dir . -- python pipeline/run.py ...`` without ``--out``: the results
would land in the job's unpacked working dir, which Ray deletes; the job says so in its log."""

from __future__ import annotations

import logging

from pipeline.jobs import train as train_job
from pipeline.runtime.outputs import temporary_outputs
from pipeline.train import tracking

JOB_DIR = "/tmp/ray/session_1/runtime_resources/working_dir_files/_ray_pkg_0123abcd"


def test_outputs_under_a_job_working_dir_are_found():
    where = {
        "--output": f"{JOB_DIR}/out",
        "train.storage_path": "out/runs",
        "tracking.uri": f"sqlite:///{JOB_DIR}/out/mlflow.db",
    }
    assert temporary_outputs(where, JOB_DIR) == ["--output", "train.storage_path", "tracking.uri"]
    lasting = {
        "--output": "/data/colorize",
        "train.storage_path": "s3://bucket/runs",
        "tracking.uri": "http://mlflow:5000",
    }
    assert temporary_outputs(lasting, JOB_DIR) == []
    assert temporary_outputs(where, "/home/me/colorize") == []  # not a Ray job: nothing to say


def test_run_py_warns_when_results_would_vanish_with_the_job(tmp_path, caplog):
    job_dir = tmp_path / "runtime_resources" / "working_dir_files" / "_ray_pkg_0123abcd"
    job_dir.mkdir(parents=True)
    out = job_dir / "out"
    uri = tracking.resolve_uri(None, str(out))  # the default store: its folder is made
    assert out.is_dir() and uri == f"sqlite:///{out / 'mlflow.db'}"
    with caplog.at_level(logging.WARNING, logger="colorize.run"):
        found = train_job.warn_if_temporary(str(out), "out/runs", uri, cwd=str(job_dir))
    assert found == ["--output", "train.storage_path", "tracking.uri"]
    text = caplog.text
    assert "temporary working dir" in text and "--output /a/lasting/folder" in text and "train.storage_path" in text
    caplog.clear()
    assert train_job.warn_if_temporary("/data/out", "s3://b/runs", "http://mlflow:5000", cwd=str(job_dir)) == []
    assert caplog.text == ""


def test_a_failed_job_leaves_no_empty_output_folder(tmp_path, capsys):
    from pipeline import cli

    empty = tmp_path / "photos"
    empty.mkdir()
    assert cli.main(["priors", "--data", str(empty), "--out", str(tmp_path / "new" / "prior_probs.npy")]) == 2
    assert cli.main(["prepare", "--data", str(empty), "--out", str(tmp_path / "shards" / "x")]) == 2
    assert "no input files" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photos"]
