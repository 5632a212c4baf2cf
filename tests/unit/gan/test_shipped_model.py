"""The model that ships inside the package: present, small, loads tensors-only, and colours a grey
photo it has never seen (scikit-image's bundled photos are in no training set) while keeping its L.

Floors: colourfulness (Hasler and Süsstrunk) of the result >= 20 on each photo (a grey photo
scores 0; the shipped model measured 45.0, 42.5 and 35.6 on astronaut, coffee and chelsea when it
was made, whose true colours score 72.6, 76.9 and 38.0), and |ΔL| <= 1 on average (the join keeps
the input's lightness; measured 0.06-0.07).
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from skimage import data as skdata

from pipeline import assets
from pipeline.core import color, metrics
from pipeline.gan import checkpoint, model_ref, predict

PHOTOS = ("astronaut", "coffee", "chelsea")
CF_FLOOR = 20.0


@pytest.fixture(scope="module")
def shipped():
    return model_ref.resolve_generator(model_ref.SHIPPED)


def test_the_shipped_model_is_in_the_package_small_and_fp16():
    folder = assets.shipped_model_dir()
    state = os.path.join(folder, checkpoint.STATE)
    assert os.path.getsize(state) <= checkpoint.SHIP_MAX_BYTES
    weights = checkpoint.load_state(folder)[checkpoint.GENERATOR_KEY]  # weights_only=True inside
    exact = ("bins", "rebalance_weights")  # the colour grid and the class weights are kept in fp32
    assert {v.dtype for k, v in weights.items() if v.is_floating_point() and k not in exact} == {torch.float16}
    for name in ("config.json", "meta.json", "MODEL_CARD.md"):
        assert os.path.isfile(os.path.join(folder, name)), name


def test_the_default_reference_is_the_shipped_model(shipped):
    G, info = shipped
    assert info["ref"] == model_ref.SHIPPED and not G.training
    assert info["config"]["data"]["resize"] == G.working_size  # the scale it was trained at


@pytest.mark.parametrize("name", PHOTOS)
def test_it_colours_a_grey_photo_and_keeps_its_lightness(shipped, name):
    G, _ = shipped
    truth = getattr(skdata, name)()
    grey = np.repeat(np.round(color.rgb_to_lab(truth)[..., :1] * 2.55).clip(0, 255).astype(np.uint8), 3, -1)
    out = predict.colorize(G, grey, G.working_size)
    assert out.shape == truth.shape and out.dtype == np.uint8
    cf = float(metrics.colourfulness(torch.from_numpy(out).permute(2, 0, 1)[None].float()))
    assert cf >= CF_FLOOR, f"{name}: colourfulness {cf:.1f} < {CF_FLOOR}"
    dL = np.abs(color.rgb_to_lab(out)[..., 0] - color.rgb_to_lab(grey)[..., 0]).mean()
    assert dL <= 1.0, f"{name}: mean |ΔL| {dL:.2f}"
