"""Per-file decoding and the priors map step, without Ray."""

import json

import numpy as np
import pytest
from PIL import Image

import corpus
from pipeline import color, transforms


@pytest.mark.parametrize("name", sorted(corpus.bad_files()))
def test_bad_inputs_are_skipped_with_their_reason(name):
    data, reason = corpus.bad_files()[name]
    d = transforms.decode_image(data)
    if reason == "grey":
        assert d.skip is None and transforms.is_grey(d.rgb)
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
        assert not transforms.is_grey(transforms.decode_image(data).rgb), name


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
    out = transforms.histogram_batch(batch, size=48)
    assert out["hist"].shape == (1, len(color.ab_bins()))
    assert out["images"][0] == 2 and out["pixels"][0] == 2 * 48 * 64 == out["hist"].sum()
    reasons = {r: int(out[f"skipped_{r}"][0]) for r in transforms.SKIP_REASONS}
    expected = {}
    for _, why in corpus.bad_files().values():
        expected[why] = expected.get(why, 0) + 1
    assert {k: v for k, v in reasons.items() if v} == expected
    paths = json.loads(str(out["skipped_paths"][0]))
    assert sorted(paths["grey"]) == ["grey_16bit.png", "grey_l.jpg", "grey_rgb.jpg"]
    kept = transforms.histogram_batch(batch, size=48, skip_grey=False)
    assert kept["images"][0] == 5 and kept["skipped_grey"][0] == 0


def test_train_val_split_is_deterministic_and_moves_with_the_data():
    from pipeline.data import split_train_val

    a = [f"/data/a/img{i}.jpg" for i in range(200)]
    b = [p.replace("/data/a", "/mnt/other/place") for p in a]
    ta, va = split_train_val(a, 0.2)
    tb, vb = split_train_val(b, 0.2)
    assert [p.split("/")[-1] for p in va] == [p.split("/")[-1] for p in vb]
    assert len(va) == 40 and len(ta) + len(va) == 200 and not set(ta) & set(va)
    assert split_train_val(list(reversed(a)), 0.2)[1] == list(reversed(va))
    assert len(split_train_val(a[:10], 0.05, min_val=2)[1]) == 2, "at least one file per worker"
    assert len(split_train_val(a[:2], 0.9)[0]) == 1, "never all files to validation"
