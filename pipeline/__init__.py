"""Grey-scale photo colorization on Ray: data, priors, training, tuning, inference."""

from __future__ import annotations

import os
from typing import Optional

SHORT_SHA = 7  # as `git rev-parse --short` prints it in a repository of this size


def _read(path: str) -> Optional[str]:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _git_dirs(root: str):
    """(the checkout's git dir, the dir its refs live in) for a checkout at ``root``, or None. A
    linked worktree's ``.git`` is a file naming its git dir, whose ``commondir`` holds the refs."""
    dotgit = os.path.join(root, ".git")
    if os.path.isdir(dotgit):
        return dotgit, dotgit
    pointer = _read(dotgit)
    if not pointer or not pointer.startswith("gitdir:"):
        return None
    gitdir = os.path.normpath(os.path.join(root, pointer[len("gitdir:") :].strip()))
    common = _read(os.path.join(gitdir, "commondir"))
    return gitdir, os.path.normpath(os.path.join(gitdir, common)) if common else gitdir


def git_commit(root: str) -> Optional[str]:
    """The commit checked out at ``root``, read from git's files (HEAD, the branch's ref, else
    packed-refs) rather than by running git: importing the package starts no process. None when
    ``root`` is not a checkout (an installed wheel) or the files say nothing clear."""
    dirs = _git_dirs(root)
    if dirs is None:
        return None
    gitdir, common = dirs
    head = _read(os.path.join(gitdir, "HEAD")) or ""
    if not head.startswith("ref:"):
        return head if _is_sha(head) else None  # a detached HEAD holds the commit itself
    ref = head[len("ref:") :].strip()
    for folder in (gitdir, common):
        sha = _read(os.path.join(folder, ref))
        if sha and _is_sha(sha):
            return sha
    for line in (_read(os.path.join(common, "packed-refs")) or "").splitlines():
        sha, _, name = line.partition(" ")
        if name == ref and _is_sha(sha):
            return sha
    return None


def _is_sha(text: str) -> bool:
    return len(text) in (40, 64) and all(c in "0123456789abcdef" for c in text)


def package_version() -> str:
    """The installed distribution's version; "0+unknown" in a checkout that was never installed."""
    try:
        from importlib.metadata import version

        return version("colorize")
    except Exception:
        return "0+unknown"


def _version() -> str:
    v = package_version()
    # A source checkout (pipeline/ at its top): add the commit so provenance names the exact code.
    sha = git_commit(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return f"{v}+g{sha[:SHORT_SHA]}" if sha else v


__version__ = _version()
