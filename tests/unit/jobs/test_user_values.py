"""A user's mistake in a config or on the command line is one line naming the key, exit 2, before
any work: values that cannot work are refused with the range that can."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline import cli
from pipeline import run as run_py
from pipeline.config import ConfigError, ExperimentConfig, load


@pytest.mark.parametrize(
    "override, message",
    [
        ("optim.lr_g=.inf", "optim.lr_g must be a finite number"),
        ("optim.lr_d=nan", "optim.lr_d must be a finite number"),
        ("model.temperature=.inf", "model.temperature must be a finite number"),
        ("loss.soft_sigma=-5", "loss.soft_sigma must be > 0"),
        ("loss.prior_sigma=0", "loss.prior_sigma must be > 0"),
        ("model.base_channels=-3", "model.base_channels must be in [1, 1024]"),
        ("model.depth=0", "model.depth must be in [1, 8]"),
        ("train.log_every=0", "train.log_every must be >= 1"),
        ("train.max_steps_per_epoch=-1", "train.max_steps_per_epoch must be >= 1"),
        ("train.epochs=2.5", "train.epochs must be an integer, got 2.5"),
    ],
)
def test_values_that_cannot_work_are_refused_naming_the_key(override, message):
    key, value = override.split("=")
    with pytest.raises(ConfigError) as e:
        ExperimentConfig().replace({key: value})
    assert message in str(e.value) and "\n" not in str(e.value)


def test_an_integral_float_is_an_integer():
    # YAML 1.1 reads 1e9 (no dot) as a string; it used to be refused as "must be an integer"
    assert ExperimentConfig().replace({"train.epochs": "1e9"}).train.epochs == 10**9
    assert ExperimentConfig().replace({"data.limit": 3.0}).data.limit == 3


def _one_line_exit_2(argv, capsys, main=cli.main):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize(
    "content, message",
    [
        (bytes(range(256)), "is not a YAML file"),
        (b"train: {epochs: [1,\n", "is not valid YAML (line"),
    ],
)
def test_unreadable_config_files_are_one_line(tmp_path, capsys, content, message):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(content)
    assert message in _one_line_exit_2(["--config", str(bad)], capsys, run_py.main)
    assert message in _one_line_exit_2(["tune", "--config", str(bad)], capsys)
    assert message in _one_line_exit_2(["tune", "--space", str(bad)], capsys)


def test_a_folder_as_config_is_one_line(tmp_path, capsys):
    assert "is a folder" in _one_line_exit_2(["--config", str(tmp_path)], capsys, run_py.main)
    assert "is a folder" in _one_line_exit_2(["tune", "--space", str(tmp_path)], capsys)
    with pytest.raises(ConfigError, match="is a folder"):
        load(str(tmp_path))


def test_bad_tune_space_range_is_one_line(tmp_path, capsys):
    space = tmp_path / "space.yaml"
    space.write_text("loss.lambda_adv: {uniform: [0, .inf]}\n")
    assert "finite numbers" in _one_line_exit_2(["tune", "--space", str(space)], capsys)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["tune", "--num-samples", "-1"], "--num-samples must be in [1, 10000], got -1"),
        (["tune", "--num-samples", "0"], "--num-samples must be in [1, 10000]"),
        (["tune", "--max-concurrent", "0"], "--max-concurrent must be in [1, 1024]"),
        (["priors", "--size", "0"], "--resize must be in [8, 8192], got 0"),
        (["priors", "--workers", "0"], "--tasks must be >= 1, got 0"),
        (["prepare", "--data", "x", "--out", "y", "--shard-mb", "0"], "--shard-mb must be in [1, 65536]"),
        (["prepare", "--data", "x", "--out", "y", "--limit", "-2"], "--limit must be >= 1"),
        (["eval", "--model", "m", "--data", "d", "--size", "8"], "--size must be in [16, 4096], got 8"),
    ],
)
def test_job_counts_have_a_range(argv, message, capsys):
    assert message in _one_line_exit_2(argv, capsys)


@pytest.mark.parametrize(
    "size, message",
    [("0", "--size must be in [16, 2048], got 0"), ("100000", "--size must be in [16, 2048], got 100000")],
)
def test_infer_size_is_bounded(ckpt, tmp_path, capsys, size, message):
    src = tmp_path / "a.png"
    from PIL import Image

    from support import corpus

    Image.fromarray(corpus.photo(0, 20, 20)).save(src)
    argv = ["infer", "--model", str(ckpt), "--input", str(src), "--output", str(tmp_path / "o.png"), "--size", size]
    assert message in _one_line_exit_2(argv, capsys)
    assert not (tmp_path / "o.png").exists()


def test_run_py_config_error_is_one_line_in_a_fresh_process(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(b"\xff\xfe\x00binary")
    p = subprocess.run(
        [sys.executable, run_py.__file__, "--config", str(bad)], capture_output=True, text=True, timeout=120
    )
    assert p.returncode == 2 and "Traceback" not in p.stderr and "not a YAML file" in p.stderr, p.stderr
