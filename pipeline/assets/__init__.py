"""The data files the package ships beside its code, read with ``importlib.resources`` so the same
calls work in a source checkout (also under ``ray job submit --working-dir .``, where the project is
on PYTHONPATH, not installed) and from an installed wheel.

- The default colour prior: ``prior_probs.npy`` (+ its ``.json`` provenance). Here they are
  symlinks to the top-level files that ``colorize priors --out prior_probs.npy`` regenerates;
  building a wheel copies the bytes they point to.
- The shipped generator (``shipped_model_dir``): the model ``--model`` defaults to.
- Any package's data file as a real path (``packaged_path``): ``tune`` uses it for its default
  search space, ``tune/space.yaml``.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import pathlib
from importlib import resources

import numpy as np

PRIOR_NAME = "prior_probs.npy"  # = the default of loss.prior
MODEL_DIR = "model"  # the shipped generator: state.pt (fp16, weights only), config.json, meta.json, MODEL_CARD.md

_extracted = contextlib.ExitStack()  # files extracted from a zipped install, removed at exit
atexit.register(_extracted.close)


def packaged_path(package: str, name: str) -> str:
    """A local path to the data file ``name`` shipped in ``package``: the file itself for a package
    installed as files (the usual case, and a checkout), else a temporary copy kept until exit."""
    ref = resources.files(package) / name
    if not ref.is_file():
        raise FileNotFoundError(f"{name} is missing from the installed package {package} (a broken install?)")
    if isinstance(ref, pathlib.Path):
        return str(ref)
    return str(_extracted.enter_context(resources.as_file(ref)))


def default_prior_path() -> str:
    """The project's colour prior as shipped with the code (the top-level ``prior_probs.npy``)."""
    return packaged_path(__name__, PRIOR_NAME)


def shipped_model_dir() -> str:
    """The folder of the generator that ships with colorize (``pipeline/assets/model``), as a local
    path (extracted from a zipped install when needed)."""
    ref = resources.files(__name__) / MODEL_DIR
    if not (ref / "state.pt").is_file():
        raise FileNotFoundError("the shipped model is missing from this installation (pipeline/assets/model/state.pt)")
    if isinstance(ref, pathlib.Path):
        return str(ref)
    return str(_extracted.enter_context(resources.as_file(ref)))


def default_prior() -> np.ndarray:
    """The project's colour prior, (Q,) float64 summing to 1."""
    return np.load(io.BytesIO((resources.files(__name__) / PRIOR_NAME).read_bytes()), allow_pickle=False)
