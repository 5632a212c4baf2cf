"""Per-file decoding and the priors map step, without Ray."""

import numpy as np
import pytest
from PIL import Image

from pipeline.core import color, transforms
from support import corpus


@pytest.mark.parametrize("name", sorted(corpus.bad_files()))
def test_bad_inputs_are_skipped_with_their_reason(name):
    data, reason = corpus.bad_files()[name]
    d = transforms.decode_image(data)
    if reason == "grey":
        assert d.skip is None and color.is_grey(d.rgb)
    else:
        assert d.rgb is None and d.skip == reason


def test_odd_but_valid_inputs_decode_to_the_same_picture():
    files = corpus.odd_but_valid_files()
    rgba = transforms.decode_image(files["odd_rgba.png"]).rgb
    assert rgba.shape == (48, 64, 3) and (rgba[:12, :16] == 255).all(), "transparent -> white"
    assert np.array_equal(rgba[20:, 20:], corpus.photo(10)[20:, 20:])
    assert np.array_equal(transforms.decode_image(files["odd_rgb16.png"]).rgb, corpus.photo(12))
    cmyk = transforms.decode_image(files["odd_cmyk.jpg"]).rgb.astype(int)
    assert np.abs(cmyk - corpus.photo(13)).mean() < 12  # lossy JPEG, but the same colours
    pal = transforms.decode_image(files["odd_palette.png"]).rgb.astype(int)
    assert np.abs(pal - corpus.photo(11)).mean() < 12
    for name, data in files.items():
        assert not color.is_grey(transforms.decode_image(data).rgb), name


def test_resize_keeps_aspect_and_uses_short_side():
    big = corpus.encode(Image.fromarray(corpus.photo(1, 300, 500)), "JPEG", quality=95)
    d = transforms.decode_image(big, size=64)
    assert d.rgb.shape == (64, 107, 3)
    up = transforms.decode_image(corpus.good_files(1, 20, 30)["good_0.png"], size=40)
    assert up.rgb.shape == (40, 60, 3)


def test_exif_orientation_is_applied():
    img = Image.fromarray(corpus.photo(2, 40, 60))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    data = corpus.encode(img, "JPEG", exif=exif.tobytes(), quality=95)
    assert transforms.decode_image(data).rgb.shape == (60, 40, 3)


def test_histogram_batch_counts_pixels_and_skips():
    files = {**corpus.good_files(2), **{k: v for k, (v, _) in corpus.bad_files().items()}}
    batch = {"path": np.array(list(files)), "bytes": np.array(list(files.values()), dtype=object)}
    row, skipped = transforms.histogram_batch(batch, size=48)
    assert row["hist"].shape == (1, len(color.ab_bins()))
    assert row["images"][0] == 2 and row["pixels"][0] == 2 * 48 * 64 == row["hist"].sum()
    assert dict(skipped) == {name: why for name, (_, why) in corpus.bad_files().items()}
    assert sorted(p for p, why in skipped if why == "grey") == ["grey_16bit.png", "grey_l.jpg", "grey_rgb.jpg"]
    kept, skipped = transforms.histogram_batch(batch, size=48, skip_grey=False)
    assert kept["images"][0] == 5 and "grey" not in {why for _, why in skipped}
