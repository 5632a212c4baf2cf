"""A command prints what its user needs; --verbose (every command's) shows what the libraries
underneath say too, Ray's logs included (through COLORIZE_VERBOSE)."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from pipeline import cli
from pipeline.apply import infer
from pipeline.data import storage
from pipeline.jobs.common import flags
from support import ROOT


@pytest.mark.parametrize("command", [c for c in cli.COMMANDS if c not in cli.FORWARDED])
def test_every_command_takes_verbose(command, capsys):
    with pytest.raises(SystemExit) as done:
        cli.main([command, "--help"])
    assert done.value.code == 0 and "--verbose" in capsys.readouterr().out


def test_verbose_asks_ray_for_its_logs(monkeypatch, capsys):
    monkeypatch.delenv(flags.VERBOSE_ENV, raising=False)
    assert cli.main(["config"]) == 0
    assert flags.VERBOSE_ENV not in os.environ
    assert cli.main(["config", "--verbose"]) == 0
    assert os.environ[flags.VERBOSE_ENV] == "1"


SAY = """
import logging, sys
from pipeline.jobs.common import flags
flags.set_verbosity(sys.argv[1] == "verbose")
logging.getLogger("onnxscript.optimizer").info("a library's INFO line")
logging.getLogger("pipeline.apply.infer").info("colorize's own INFO line")
"""


@pytest.mark.parametrize("mode", ["quiet", "verbose"])
def test_libraries_info_lines_only_when_verbose(mode):
    said = subprocess.run([sys.executable, "-c", SAY, mode], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert "colorize's own INFO line" in said.stderr
    assert ("a library's INFO line" in said.stderr) == (mode == "verbose"), said.stderr


def test_joining_read_only_rows_warns_nothing(tmp_path):
    """Ray Data hands the join stage read-only arrays; torch.from_numpy warns about those."""
    L = np.full((12, 16), 50.0, np.float32)
    ab = np.zeros((1, 2, 6, 8), np.float32)
    L.flags.writeable = ab.flags.writeable = False
    batch = {"path": ["a.png"], "out": [str(tmp_path / "a.png")], "skip": [""], "L": [L], "ab": [ab]}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        done = infer.finish(batch, storage.S3Settings().to_dict())
    assert done["out"] == [str(tmp_path / "a.png")] and (tmp_path / "a.png").exists()
