"""The Lab encoding of prepared shards and their crops, without Ray or S3 (``pipeline.core.transforms``)."""

from __future__ import annotations

import numpy as np

from pipeline.core import color, transforms
from support import corpus


def test_encode_lab_round_trip_is_close():
    rgb = corpus.photo(0, 40, 56)
    L, ab, bins = transforms.encode_lab(rgb)
    lab = color.rgb_to_lab(rgb)
    assert L.dtype == np.uint8 and ab.dtype == np.int8 and bins.dtype == np.uint16
    assert np.abs(color.u8_to_L(L) - lab[..., 0]).max() <= 0.5 / color.L_U8_SCALE + 1e-5
    assert np.abs(ab - lab[..., 1:]).max() <= 0.5 + 1e-6
    assert np.array_equal(bins, color.rgb_to_bin(rgb))


def test_shard_crops_share_one_window_for_L_and_ab():
    rgb = corpus.photo(1, 40, 56)
    L, ab, _ = transforms.encode_lab(rgb)
    batch = {
        "id": np.array(["a"], dtype=object),
        "height": np.array([40]),
        "width": np.array([56]),
        "L": np.array([L.tobytes()], dtype=object),
        "ab": np.array([ab.tobytes()], dtype=object),
    }
    out = transforms.shard_crops(batch, 32, train=False)
    assert out["L"].shape == (1, 32, 32) and out["ab"].shape == (1, 32, 32, 2)
    assert np.array_equal(out["L"][0], L[4:36, 12:44]) and np.array_equal(out["ab"][0], ab[4:36, 12:44])
    # random crops + flips: L and ab stay aligned (the crop of the stacked planes is one window)
    out = transforms.shard_crops(batch, 32, train=True, seed=3)
    lab = np.concatenate([L[..., None].astype(int), ab.astype(int)], -1)
    win = np.concatenate([out["L"][0][..., None].astype(int), out["ab"][0].astype(int)], -1)
    assert any(
        np.array_equal(win, lab[top : top + 32, left : left + 32])
        or np.array_equal(win, lab[top : top + 32, left : left + 32][:, ::-1])
        for top in range(9)
        for left in range(25)
    )
