"""The command line: clear one-line errors, and the priors job end to end as a user runs it."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT


def run_cli(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_missing_data_is_a_one_line_error(tmp_path):
    r = run_cli("priors", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "p.npy"))
    assert r.returncode == 2
    assert f"no data at {tmp_path / 'nowhere'}" in r.stderr
    assert "Traceback" not in r.stderr


def test_bad_arguments_exit_nonzero(tmp_path):
    r = run_cli("priors", "--size", "abc")
    assert r.returncode == 2 and "--size" in r.stderr


@pytest.mark.ray
def test_priors_cli_on_builtin_photos(tmp_path):
    out = tmp_path / "prior_probs.npy"
    r = run_cli("priors", "--data", "skimage:", "--out", str(out), "--size", "64")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "top bins" in r.stdout and str(out) in r.stdout
    p = np.load(out)
    assert p.shape == (323,) and abs(p.sum() - 1) < 1e-12
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["images_used"] >= 8 and meta["data_uri"] == "skimage:"
    assert "AWS_SECRET_ACCESS_KEY" not in out.with_suffix(".json").read_text()
    assert os.environ["AWS_SECRET_ACCESS_KEY"] not in r.stdout + r.stderr


def test_train_subcommand_forwards_to_run_py(capsys):
    from pipeline import cli

    assert cli.main(["train", "--set", "train.epochs=0"]) == 2  # run.py's own config check answers
    assert "train.epochs must be >= 1" in capsys.readouterr().err
