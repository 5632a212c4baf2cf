"""``colorize --version``: the package's version, plus the git revision when run from a checkout
(so a bug report names the exact code). Cheap: one ``git`` call at most, only when asked."""

from __future__ import annotations

import os
import subprocess

from pipeline import package_version  # the one reading of the installed version

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def git_revision(root: str = _ROOT) -> str:
    """The short commit of the checkout holding this code, "+changes" when files differ from it;
    "" outside a git checkout (an installed wheel) or without git."""
    if not os.path.exists(os.path.join(root, ".git")):
        return ""
    try:
        rev = subprocess.run(
            ["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5
        )
        dirty = subprocess.run(
            ["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    if rev.returncode != 0:
        return ""
    return rev.stdout.strip() + ("+changes" if dirty.returncode == 0 and dirty.stdout.strip() else "")


def text() -> str:
    rev = git_revision()
    return f"colorize {package_version()}" + (f" (git {rev})" if rev else "")
