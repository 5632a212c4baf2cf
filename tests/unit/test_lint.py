"""The tree stays ruff-clean: lint rules and formatting as configured in pyproject.toml."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from support import ROOT

RUFF = Path(sys.executable).with_name("ruff")


def test_ruff_check_and_format_are_clean():
    lint = subprocess.run(
        [str(RUFF), "check", "--output-format", "concise", "."], cwd=ROOT, capture_output=True, text=True
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = subprocess.run([str(RUFF), "format", "--check", "."], cwd=ROOT, capture_output=True, text=True)
    assert fmt.returncode == 0, "run `ruff format .`:\n" + fmt.stdout + fmt.stderr
