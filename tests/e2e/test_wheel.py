"""A non-editable install carries the files the commands read from the package:
the wheel built from this checkout, installed into a clean folder outside it and run from a folder
outside it, loads the default prior as `colorize train` / `colorize tune` resolve it (``loss.prior``),
runs `colorize eval` without ``--reference`` (the default prior again), and loads the default Tune
search space as `colorize tune` does without ``--space``."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support import ROOT, corpus

# Shipped file in the installed package -> the checkout file whose bytes it must carry.
SHIPPED = {
    "pipeline/assets/prior_probs.npy": ROOT / "prior_probs.npy",
    "pipeline/assets/prior_probs.json": ROOT / "prior_probs.json",
    "tune/space.yaml": ROOT / "tune" / "space.yaml",
    "pipeline/assets/index.html": ROOT / "pipeline" / "assets" / "index.html",
    **{  # the web page's example photos
        f"pipeline/assets/examples/{p.name}": p
        for p in sorted((ROOT / "pipeline" / "assets" / "examples").glob("*.jpg"))
    },
    **{  # the shipped model: every --model's default
        f"pipeline/assets/model/{p.name}": p for p in sorted((ROOT / "pipeline" / "assets" / "model").iterdir())
    },
}

# What `colorize train` (pipeline/run.py) and `colorize tune` (tune/sweep.py) do to get the prior
# and the space before Ray starts: priors.resolve_prior_path(loss.prior) + load_prior, load_space(None, ...).
PROBE = """
import json
import pipeline, tune
from pipeline.data import priors
from pipeline.config import ExperimentConfig
from tune import space
cfg = ExperimentConfig()
path = priors.resolve_prior_path(cfg.loss.prior)
prior = priors.load_prior(path, None)
spec = space.load_space(None, cfg)
print("PROBE " + json.dumps({"pipeline": pipeline.__file__, "tune": tune.__file__, "prior_path": path,
      "shape": list(prior.shape), "sum": float(prior.sum()), "space": sorted(spec)}))
"""


def _copy_sources(dst: Path) -> None:
    """What a wheel is built from: the top-level files and the packages pyproject.toml lists
    (symlinks kept as links, so pipeline/assets points into the copy as it does in the checkout)."""
    text = (ROOT / "pyproject.toml").read_text()
    packages = re.search(r"^packages = \[(.*?)\]$", text, re.M | re.S).group(1)
    top = {name.split(".")[0] for name in re.findall(r'"([^"]+)"', packages)}  # comments and all
    dst.mkdir()
    for f in ROOT.iterdir():
        if f.is_file() and not f.is_symlink():
            shutil.copy2(f, dst / f.name)
    for name in sorted(top):
        shutil.copytree(ROOT / name, dst / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The wheel of this checkout, installed (no dependencies: they are this venv's) into a clean folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    assert not tmp.is_relative_to(ROOT), "the install must live outside the checkout"
    _copy_sources(tmp / "src")  # built from a copy: no build/ or egg-info left in the checkout
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    dist = tmp / "dist"
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(dist), str(tmp / "src")],
        check=True,
        timeout=300,
    )
    (wheel,) = dist.glob("colorize-*.whl")
    subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(tmp / "site"), str(wheel)], check=True)
    return tmp / "site"


def _run(site: Path, cwd: Path, *cmd: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(site))  # the installed copy first, ahead of the editable checkout
    cwd.mkdir(exist_ok=True)
    return subprocess.run(list(cmd), cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_wheel_carries_the_files_the_commands_read(site):
    missing = [rel for rel in SHIPPED if not (site / rel).is_file() or (site / rel).is_symlink()]
    assert not missing, f"not in the wheel as files: {missing}"
    for rel, source in SHIPPED.items():
        assert (site / rel).read_bytes() == source.read_bytes(), f"{rel} differs from {source.relative_to(ROOT)}"


def test_train_and_tune_defaults_load_from_the_installed_package(site, tmp_path):
    r = _run(site, tmp_path / "elsewhere", sys.executable, "-c", PROBE)
    assert r.returncode == 0, r.stdout + r.stderr
    got = json.loads(next(line for line in r.stdout.splitlines() if line.startswith("PROBE "))[6:])
    for module in ("pipeline", "tune"):
        assert Path(got[module]).is_relative_to(site), f"{module} was imported from {got[module]}, not the install"
    assert Path(got["prior_path"]) == site / "pipeline" / "assets" / "prior_probs.npy"
    from pipeline.core import color

    assert got["shape"] == [color.num_bins()] and got["sum"] == pytest.approx(1.0)
    assert got["space"] == ["loss.lambda_adv", "loss.lambda_ce", "loss.lambda_l1"]


def test_eval_without_reference_runs_from_the_installed_package(site, ckpt, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name, data in corpus.good_files(3).items():
        (photos / name).write_bytes(data)
    out = tmp_path / "eval"
    colorize = site / "bin" / "colorize"  # the wheel's console script
    args = ["eval", "--model", str(ckpt), "--data", str(photos), "--out", str(out), "--size", "32"]
    r = _run(site, tmp_path / "elsewhere", str(colorize), *args)  # no --reference: the project's prior
    assert r.returncode == 0, r.stdout + r.stderr
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["images"] == 3 and doc["rebalance_prior"] == "prior_probs.npy"
    assert 0 <= doc["results"]["model"]["auc_rebalanced"] <= 100
