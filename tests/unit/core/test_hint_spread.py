"""A hint's colour on its patch and along the object around it (``hint_spread``), and
``predict_ab_batch`` applying it after the network."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.scaling import AB_SCALE, L_to_input
from pipeline.core import hint_spread
from pipeline.gan import predict

H, W = 64, 96


def hint_map(points, h=H, w=W, patch=3):
    """(3, h, w) map of [(x, y, a, b)] in Lab units, each a ``patch``-px square."""
    m = np.zeros((3, h, w), np.float32)
    for x, y, a, b in points:
        rows, cols = slice(y - patch // 2, y + patch - patch // 2), slice(x - patch // 2, x + patch - patch // 2)
        m[0, rows, cols], m[1, rows, cols], m[2, rows, cols] = a / AB_SCALE, b / AB_SCALE, 1
    return m


def textured_ab(seed=0):
    """(2, H, W) a model's guess: brownish with texture."""
    noise = np.random.default_rng(seed).normal(0, 3, (2, H, W))
    return (np.array([8.0, 15.0])[:, None, None] + noise).astype(np.float32)


def test_without_hints_nothing_changes():
    L, ab = np.full((H, W), 50.0, np.float32), textured_ab()
    assert hint_spread.spread(L, ab, np.zeros((3, H, W), np.float32)) is ab
    assert hint_spread.spread(L, ab, hint_map([(20, 20, 60, -40)]), reach=0) is ab


def test_the_patch_takes_the_hints_colour_and_keeps_the_models_texture():
    L, ab = np.full((H, W), 50.0, np.float32), textured_ab()
    out = hint_spread.spread(L, ab, hint_map([(20, 30, 60, -40)]))
    patch = out[:, 29:32, 19:22].reshape(2, -1)
    assert np.allclose(patch.mean(1), [60, -40], atol=1e-3)
    before = ab[:, 29:32, 19:22].reshape(2, -1)
    assert np.allclose(patch - patch.mean(1, keepdims=True), before - before.mean(1, keepdims=True), atol=1e-4)


def test_the_shift_fades_with_distance():
    L, ab = np.full((H, W), 50.0, np.float32), np.zeros((2, H, W), np.float32)
    out = hint_spread.spread(L, ab, hint_map([(5, 32, 50, 0)]), reach=0.25)  # 1/e at 16 px
    along = out[0, 32, 5:]
    assert np.all(np.diff(along) <= 1e-6) and along[0] == pytest.approx(50)
    assert along[16] == pytest.approx(50 / np.e, rel=0.15)
    assert along[-1] < 0.01  # 85 px away: the model's own colour


def edge_shares(k: int, edge: float = hint_spread.EDGE):
    """A photo k times the base size, its left part dark (L 10) and its right light (L 90), a hint
    4 px (times k) left of the edge -> (the hint's share 12 px (times k) left of it, right of it)."""
    L = np.full((H * k, W * k), 10.0, np.float32)
    L[:, 48 * k :] = 90.0
    ab = np.zeros((2, H * k, W * k), np.float32)
    hint = hint_map([(44 * k, 32 * k, 40, 40)], H * k, W * k, 3 * k)
    out = hint_spread.spread(L, ab, hint, reach=0.3, edge=edge)
    assert np.allclose(out[:, hint[2] > 0], 40, atol=1e-3)  # the patch: exact
    return out[0, 32 * k, (44 - 12) * k] / 40, out[0, 32 * k, (44 + 12) * k] / 40


def test_a_lightness_edge_stops_the_colour():
    same_side, across = edge_shares(1)
    assert across < 0.6 * same_side, (same_side, across)
    assert edge_shares(1, edge=0)[1] == pytest.approx(same_side, rel=0.05)  # no edge cost: the same share


def test_the_spread_is_the_same_at_four_times_the_size():
    """Distances are in short sides, and a big working size is worked out on a coarser grid."""
    assert edge_shares(4) == pytest.approx(edge_shares(1), rel=0.1, abs=0.02)


def test_touching_hints_of_two_colours_each_keep_their_own():
    L, ab = np.full((H, W), 50.0, np.float32), np.zeros((2, H, W), np.float32)
    out = hint_spread.spread(L, ab, hint_map([(30, 30, 70, 0), (33, 30, -50, 50)]))  # the squares touch
    assert np.allclose(out[:, 29:32, 29:32].reshape(2, -1).mean(1), [70, 0], atol=1e-3)
    assert np.allclose(out[:, 29:32, 32:35].reshape(2, -1).mean(1), [-50, 50], atol=1e-3)
    between = out[:, 45, 31]  # equally near both: a blend, not either colour
    assert -50 < between[0] < 70 and 0 < between[1] < 50


def test_sizes_that_differ_are_an_error():
    with pytest.raises(ValueError, match="differ in size"):
        hint_spread.spread(np.zeros((H, W)), np.zeros((2, H, W)), hint_map([(5, 5, 1, 1)], h=H, w=W + 1))


def test_predict_puts_the_hints_colour_on_its_patch_and_spread_0_is_the_network_alone():
    from pipeline.config import ExperimentConfig
    from pipeline.gan import cgan

    G = cgan.build_generator(ExperimentConfig().replace({"model.preset": "tiny", "model.hints": True}).model).eval()
    rng = np.random.default_rng(0)
    L = rng.uniform(20, 80, (2, 1, 32, 48)).astype(np.float32)
    x = torch.from_numpy(L_to_input(L))
    maps = torch.from_numpy(np.stack([hint_map([(10, 10, 60, -30)], 32, 48), np.zeros((3, 32, 48), np.float32)]))
    net = predict.predict_ab_batch(G, x, 0.38, torch.device("cpu"), maps, spread=0)
    out = predict.predict_ab_batch(G, x, 0.38, torch.device("cpu"), maps)
    assert out.shape == net.shape == (2, 2, 32, 48)
    assert np.allclose(out[0, :, 9:12, 9:12].reshape(2, -1).mean(1).numpy(), [60, -30], atol=1e-3)
    assert not np.allclose(net[0, :, 9:12, 9:12].reshape(2, -1).mean(1).numpy(), [60, -30], atol=5)
    assert torch.equal(out[1], net[1])  # the photo without hints: the network's colours


@pytest.mark.parametrize("h, w", [(130, 200), (1000, 1000), (16, 1), (1, 40)])
def test_any_working_shape_puts_a_one_pixel_corner_hint_on_its_pixel(h, w):
    """Odd sizes (cells that do not divide the photo), a big one, and one pixel wide."""
    L = np.random.default_rng(1).uniform(0, 100, (h, w)).astype(np.float32)
    ab = np.zeros((2, h, w), np.float32)
    m = np.zeros((3, h, w), np.float32)
    m[:, h - 1, w - 1] = [30 / AB_SCALE, -20 / AB_SCALE, 1]
    out = hint_spread.spread(L, ab, m)
    assert out.shape == (2, h, w) and np.isfinite(out).all()
    assert np.allclose(out[:, h - 1, w - 1], [30, -20], atol=1e-3)
    assert np.abs(out[0]).max() <= 30 + 1e-3  # a blend of shifts never overshoots the hint


def test_two_hints_of_one_colour_apart_each_correct_what_the_model_has_there():
    """Left the model says green, right it says red: a blue hint on each side moves each patch by
    its own shift, not by their mean."""
    L = np.full((H, W), 50.0, np.float32)
    ab = np.zeros((2, H, W), np.float32)
    ab[0, :, :48], ab[0, :, 48:] = -40, 40
    out = hint_spread.spread(L, ab, hint_map([(10, 32, 10, -50), (85, 32, 10, -50)]))
    for x in (10, 85):
        assert np.allclose(out[:, 31:34, x - 1 : x + 2].reshape(2, -1).mean(1), [10, -50], atol=1e-3)


def test_colours_that_share_a_but_not_b_are_two_hints():
    L, ab = np.full((H, W), 50.0, np.float32), np.zeros((2, H, W), np.float32)
    out = hint_spread.spread(L, ab, hint_map([(30, 30, 20, 40), (33, 30, 20, -40)]))
    assert np.allclose(out[:, 29:32, 29:32].reshape(2, -1).mean(1), [20, 40], atol=1e-3)
    assert np.allclose(out[:, 29:32, 32:35].reshape(2, -1).mean(1), [20, -40], atol=1e-3)


def test_the_shipped_setting_slows_the_colour_at_an_edge():
    """At the reach and edge cost that ship, on a 128-px photo: a black-to-white edge takes a clear
    share off the colour beyond it (it slows it; a far stronger cost scored lower on photos)."""
    L = np.full((128, 192), 10.0, np.float32)
    L[:, 96:] = 90.0
    out = hint_spread.spread(L, np.zeros((2, 128, 192), np.float32), hint_map([(92, 64, 40, 0)], 128, 192))
    same_side, across = out[0, 64, 92 - 12] / 40, out[0, 64, 92 + 12] / 40
    assert across < same_side - 0.08, (same_side, across)
