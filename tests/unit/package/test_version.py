"""The package version names the commit of a source checkout, read from git's files: importing
the package starts no process."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import pipeline
from support import ROOT

SHA_A = "a" * 40
SHA_B = "b" * 40


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout")
def test_the_version_names_this_checkouts_commit_without_running_git():
    assert pipeline.git_commit(str(ROOT)) == _git("rev-parse", "HEAD")
    code = (
        "import subprocess\n"
        "def refuse(*a, **k):\n    raise AssertionError('a process at import')\n"
        "subprocess.Popen = refuse\n"
        "import pipeline\nprint(pipeline.__version__)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().endswith("+g" + _git("rev-parse", "HEAD")[: pipeline.SHORT_SHA]), r.stdout


def _files(root: Path, files: dict) -> Path:
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


@pytest.mark.parametrize(
    "files, expected",
    [
        ({".git/HEAD": "ref: refs/heads/main\n", ".git/refs/heads/main": SHA_A + "\n"}, SHA_A),
        ({".git/HEAD": SHA_B + "\n"}, SHA_B),  # detached
        (  # a branch only in packed-refs
            {
                ".git/HEAD": "ref: refs/heads/main\n",
                ".git/packed-refs": f"# pack-refs\n{SHA_A} refs/heads/other\n{SHA_B} refs/heads/main\n",
            },
            SHA_B,
        ),
        (  # a linked worktree: .git is a file, refs in the common dir
            {
                ".git": "gitdir: repo/.git/worktrees/wt\n",
                "repo/.git/worktrees/wt/HEAD": "ref: refs/heads/wt\n",
                "repo/.git/worktrees/wt/commondir": "../..\n",
                "repo/.git/refs/heads/wt": SHA_A + "\n",
            },
            SHA_A,
        ),
        ({".git/HEAD": "ref: refs/heads/gone\n"}, None),  # a branch with no commit yet
        ({".git/HEAD": "garbage\n"}, None),
        ({}, None),  # not a checkout: an installed package
    ],
)
def test_git_commit_reads_heads_refs_packed_refs_and_worktrees(tmp_path, files, expected):
    assert pipeline.git_commit(str(_files(tmp_path, files))) == expected
