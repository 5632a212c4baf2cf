"""What the registered model takes (``pipeline.gan.model_io``), in-process: every accepted row form,
the params, and clear refusals. The served form is tests/e2e/test_mlflow_serve.py."""

from __future__ import annotations

import base64

import numpy as np
import pandas as pd
import pytest

from pipeline.core import color
from pipeline.gan import model_io, model_ref
from support import ROOT, corpus


def test_every_row_form_comes_back_at_its_size_with_its_lightness(ckpt):
    G, _ = model_ref.resolve_generator(str(ckpt))
    rgb = corpus.photo(4, 30, 44)
    png = model_io.png(rgb)
    forms = [rgb, rgb[..., 1], rgb.tolist(), png, base64.b64encode(png).decode()]
    outs = model_io.colorize_rows(G, pd.DataFrame({"image": forms}), {"size": 32, "temperature": 0.2})
    for form, out in zip(forms, outs, strict=True):
        src = np.repeat(rgb[..., 1:2], 3, -1) if np.ndim(form) == 2 else rgb
        assert out.shape == rgb.shape and out.dtype == np.uint8
        assert np.abs(color.rgb_to_lab(out)[..., 0] - color.rgb_to_lab(src)[..., 0]).max() < 1.0
    as_png = model_io.colorize_rows(G, {"image": [rgb]}, {"format": "png", "size": 32})[0]
    assert isinstance(as_png, bytes) and as_png[:4] == b"\x89PNG"


def test_the_prior_correction_param_decodes_as_the_model_would_with_it_as_its_own(ckpt):
    import torch

    G, _ = model_ref.resolve_generator(str(ckpt))
    G.set_rebalance_weights(torch.linspace(-3, 3, G.num_bins).exp())
    rgb = corpus.photo(4, 30, 44)
    asked = model_io.colorize_rows(G, {"image": [rgb]}, {"size": 32, "prior_correction": 1.0})[0]
    G.prior_correction = 1.0
    own = model_io.colorize_rows(G, {"image": [rgb]}, {"size": 32})[0]
    undone = model_io.colorize_rows(G, {"image": [rgb]}, {"size": 32, "prior_correction": 0})[0]
    assert np.array_equal(asked, own) and not np.array_equal(own, undone)


@pytest.mark.parametrize(
    "row, why",
    [
        (b"not an image", "not a usable image"),
        (np.zeros((4, 4, 3), np.uint8), "outside 8x8"),
        (np.full((16, 16, 3), 300), "0..255"),
        (np.zeros((16, 16, 4), np.uint8), "expected uint8"),
    ],
)
def test_bad_rows_are_refused_by_name(ckpt, row, why):
    G, _ = model_ref.resolve_generator(str(ckpt))
    with pytest.raises(model_io.BadImage, match=why):
        model_io.colorize_rows(G, {"image": [row]})


def test_params_are_checked_and_the_signature_states_them():
    with pytest.raises(model_io.BadImage, match="temperature"):
        model_io.options({"temperature": -1}, 0.38)
    with pytest.raises(model_io.BadImage, match="size"):
        model_io.options({"size": 5000}, 0.38)
    assert model_io.options(None, 0.38) == (0.38, model_io.DEFAULT_SIZE, "array")
    assert model_io.prior_correction_of(None, 0.1) == 0.1
    assert model_io.prior_correction_of({"prior_correction": 1}, 0) == 1
    with pytest.raises(model_io.BadImage, match="prior_correction"):
        model_io.prior_correction_of({"prior_correction": 2}, 0.0)
    sig = model_io.signature(0.38, default_prior_correction=0.05)
    defaults = {p.name: p.default for p in sig.params.params}
    want = {"temperature": 0.38, "size": 256, "format": "array", "hint_spread": 0.4, "prior_correction": 0.05}
    assert defaults == want
    assert sig.inputs.input_names() == ["image", "hints"] and len(model_io.input_example()) == 2


def test_the_served_models_requirements_cover_what_its_code_imports(tmp_path):
    """Every installed distribution that loading and running the MLflow model imports is a stated
    requirement or one of theirs: a fresh serving environment built from the list can run it."""
    import json
    import subprocess
    import sys
    from importlib import metadata

    from packaging.requirements import Requirement

    probe = (
        "import json, sys; from importlib import metadata; "
        "from pipeline.gan import model_io, predict, checkpoint; "
        "names = {m.split('.')[0] for m in sys.modules}; "
        "dists = metadata.packages_distributions(); "
        "print(json.dumps(sorted({d for n in names for d in dists.get(n, [])})))"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    imported = {_canonical(d) for d in json.loads(out.stdout.splitlines()[-1])}
    closure, todo = set(), [Requirement(r).name for r in model_io.pip_requirements()]
    while todo:
        name = _canonical(todo.pop())
        if name in closure:
            continue
        closure.add(name)
        try:
            reqs = metadata.requires(name) or []
        except metadata.PackageNotFoundError:
            continue
        todo += [r.name for r in map(Requirement, reqs) if not r.marker or r.marker.evaluate({"extra": ""})]
    missing = imported - closure - {"colorize"}
    assert not missing, f"imported by the served model but not required: {sorted(missing)}"


def _canonical(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")
