"""Helpers shared by the tests (importable as ``support.*``: tests/ is on pytest's ``pythonpath``).

Test modules import from here, never from each other or from conftest.py."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]  # the repository
SHARED = ROOT.parent / "shared"
REFERENCE = SHARED / "reference"  # Zhang et al.'s pts_in_hull.npy, prior_probs.npy
DATA = SHARED / "data"
