"""The package data (``pipeline.assets``) in the source checkout: the shipped prior is the top-level
``prior_probs.npy`` (a link, not a copy that could go stale), the defaults resolve as before in a
checkout and to the packaged copy when the project root has none, and a zipped install still gives a
real file. tests/e2e/test_wheel.py checks the same from an installed wheel."""

from __future__ import annotations

import os
import sys
import zipfile

import numpy as np
import pytest

from pipeline import assets
from pipeline.apply import evaluate
from pipeline.config import ExperimentConfig
from pipeline.data import priors
from support import ROOT
from tune import space


def test_the_shipped_prior_is_the_top_level_file():
    for name in ("prior_probs.npy", "prior_probs.json"):
        link = ROOT / "pipeline" / "assets" / name
        assert link.is_symlink() and os.readlink(link) == f"../../{name}", f"{link} must link to the top-level file"
    assert os.path.realpath(assets.default_prior_path()) == str((ROOT / "prior_probs.npy").resolve())
    expected = np.load(ROOT / "prior_probs.npy")
    np.testing.assert_array_equal(assets.default_prior(), expected)
    np.testing.assert_array_equal(evaluate._project_prior(), expected)  # eval without --reference


def test_loss_prior_default_resolves_to_the_root_then_to_the_packaged_copy(tmp_path, monkeypatch):
    default = ExperimentConfig().loss.prior
    assert default == assets.PRIOR_NAME
    monkeypatch.chdir(tmp_path)  # no prior_probs.npy in the working dir
    assert priors.resolve_prior_path(default) == os.path.join(priors.PROJECT_ROOT, default)  # a checkout: as before
    monkeypatch.setattr(priors, "PROJECT_ROOT", str(tmp_path / "site-packages"))  # installed: no file at the "root"
    assert priors.resolve_prior_path(default) == assets.default_prior_path()
    # A relative path the user gave still means the project root, found or not (a clear error later).
    assert priors.resolve_prior_path("priors/mine.npy") == str(tmp_path / "site-packages" / "priors" / "mine.npy")
    (tmp_path / default).write_bytes(b"")
    assert priors.resolve_prior_path(default) == default  # one in the working dir wins, as before


def test_default_space_is_the_packaged_yaml():
    assert space.default_space_path() == str(ROOT / "tune" / "space.yaml")
    assert set(space.load_space()) == {"loss.lambda_adv", "loss.lambda_ce", "loss.lambda_l1"}


def test_a_missing_file_and_a_zipped_package(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="nothing.yaml is missing from the installed package tune"):
        assets.packaged_path("tune", "nothing.yaml")
    archive = tmp_path / "zipped.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("zpkg/__init__.py", "")
        z.writestr("zpkg/data.yaml", "a: 1\n")
    monkeypatch.syspath_prepend(str(archive))
    try:
        path = assets.packaged_path("zpkg", "data.yaml")  # imported from the zip: extracted to a real file
        assert os.path.isfile(path) and open(path).read() == "a: 1\n"
    finally:
        sys.modules.pop("zpkg", None)
