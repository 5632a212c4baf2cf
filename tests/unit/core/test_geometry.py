"""Image geometry (``pipeline.core.geometry``): the short-side resize and the crop windows."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipeline.core import geometry
from support import corpus


def test_short_side_shape():
    assert geometry.short_side_shape(300, 500, 64) == (64, 107)
    assert geometry.short_side_shape(500, 300, 64) == (107, 64)
    assert geometry.short_side_shape(20, 30, 40) == (40, 60)  # upscaling too
    assert geometry.short_side_shape(7, 7, 3) == (3, 3)
    assert geometry.short_side_shape(3, 2000, 1) == (1, 667)
    assert geometry.short_side_shape(31, 47, None) == (31, 47) == geometry.short_side_shape(31, 47, 0)


def test_resize_short_side_answers_in_kind():
    rgb = corpus.photo(1, 90, 150)
    out = geometry.resize_short_side(rgb, 48)
    assert isinstance(out, np.ndarray) and out.shape == (48, 80, 3) and out.dtype == np.uint8
    img = geometry.resize_short_side(Image.fromarray(rgb), 48)
    assert isinstance(img, Image.Image) and img.size == (80, 48)
    assert np.array_equal(np.asarray(img), out), "one resize for arrays and images"
    assert geometry.resize_short_side(rgb, 90) is rgb, "nothing to do: the same object"
    assert abs(out.astype(float).mean() - rgb.astype(float).mean()) < 3, "a resample, not a crop"


def test_centre_window_and_centre_crop():
    a = np.arange(10 * 20).reshape(10, 20)
    assert geometry.crop_window(10, 20, 6) == (2, 7, False)
    assert np.array_equal(geometry.crop_image(a, 6), a[2:8, 7:13])
    assert np.array_equal(geometry.centre_crop(a), a[:, 5:15]), "largest centre square"
    assert np.array_equal(geometry.centre_crop(a.T), a.T[5:15, :])
    assert np.array_equal(geometry.centre_crop(a, 4), a[3:7, 8:12])
    with pytest.raises(ValueError, match="does not fit"):
        geometry.crop_window(10, 20, 11)


def test_random_windows_cover_every_position_and_flip_half():
    h, w, crop = 9, 14, 5
    rng = np.random.default_rng(0)
    windows = [geometry.crop_window(h, w, crop, rng, flip=True) for _ in range(4000)]
    tops = {t for t, _, _ in windows}
    lefts = {l for _, l, _ in windows}  # noqa: E741
    assert tops == set(range(h - crop + 1)) and lefts == set(range(w - crop + 1)), "in bounds, all reached"
    assert 0.45 < np.mean([f for _, _, f in windows]) < 0.55
    assert not any(geometry.crop_window(h, w, crop, rng, flip=False).flipped for _ in range(200))
    again = [geometry.crop_window(h, w, crop, np.random.default_rng(0), flip=True) for _ in range(1)]
    assert again[0] == windows[0], "the rng decides: reproducible with a seed"


def test_apply_window_mirrors_and_is_contiguous():
    a = np.arange(6 * 8 * 2).reshape(6, 8, 2)
    out = geometry.apply_window(a, 4, geometry.Window(1, 3, True))
    assert out.shape == (4, 4, 2) and out.flags["C_CONTIGUOUS"]
    assert np.array_equal(out, a[1:5, 3:7][:, ::-1])
