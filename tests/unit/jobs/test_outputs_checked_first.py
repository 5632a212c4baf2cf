"""Output locations are checked before any work starts: a bad one is one line, exit 2, and leaves
nothing behind (it used to fail after the whole export, or after the prior was computed)."""

from __future__ import annotations

import time

import pytest

from pipeline import cli
from pipeline.runtime.outputs import output_file_problem


@pytest.mark.parametrize(
    "uri, problem",
    [
        ("out/", "a folder"),
        ("out/.", "a folder"),
        (".", "a folder"),
        ("out/.npy", "not a file name"),
        ("s3://b/p/", "a folder"),
        ("out/prior.txt", "must end in .npy"),
    ],
)
def test_output_file_problems(uri, problem):
    assert problem in output_file_problem(uri, ".npy")


@pytest.mark.parametrize("uri", ["prior_probs.npy", "out/p.NPY", "s3://bucket/p/prior.npy"])
def test_good_output_file_names(uri):
    assert output_file_problem(uri, ".npy") is None


def _one_line(capsys):
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    "target, message",
    [
        ("nodir/x.onnx", "folder nodir does not exist"),
        ("dir/", "a folder"),
        ("dir", "is a folder"),
        ("g.txt", "must end in .onnx"),
        ("s3://bucket/g.onnx", "must be a local file"),
    ],
)
def test_export_checks_its_output_before_exporting(ckpt, tmp_path, monkeypatch, capsys, target, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dir").mkdir()
    t0 = time.perf_counter()
    assert cli.main(["export", "--model", str(ckpt), "--onnx", target]) == 2
    assert time.perf_counter() - t0 < 5  # no export ran (one takes tens of seconds)
    err = _one_line(capsys)
    assert f"--output {target}" in err and message in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir"] and not any((tmp_path / "dir").iterdir())


@pytest.mark.parametrize("out", ["res/", "res", "res/.npy"])
def test_priors_checks_its_output_before_computing(tmp_path, monkeypatch, capsys, out):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "res").mkdir()
    t0 = time.perf_counter()
    assert cli.main(["priors", "--data", "skimage:", "--out", out, "--limit", "2", "--size", "32"]) == 2
    assert time.perf_counter() - t0 < 5  # no Ray started, nothing computed
    assert f"--output {out}" in _one_line(capsys)
    assert list((tmp_path / "res").iterdir()) == []  # no res/.json, res/.png
