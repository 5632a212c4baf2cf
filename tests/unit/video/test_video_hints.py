"""Colour hints in ``colorize video``, the parts below the codec: points on the frame as shown map
to the frame as stored (display rotation), hint points travel along the optical flow, and which
frames take them (carried with --temporal flow until a cut; the first frame alone without flow).
The model's response to hints and the CLI: tests/e2e/test_video.py."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.core import color
from pipeline.core.hints import Hint, HintError
from pipeline.gan import model_ref
from pipeline.video import colorize as job
from pipeline.video import temporal
from support.training import tiny_generator_checkpoint
from support.video import DX, DY, pan_frames

RED = (255, 0, 0)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def hint_model(tmp_path_factory):
    """A tiny untrained hint model: it takes hints (it does not follow them: that needs training)."""
    G, _ = model_ref.resolve_generator(str(tiny_generator_checkpoint(tmp_path_factory.mktemp("h"), hints=True)))
    return G


@pytest.mark.parametrize("rotation", [0, 90, 180, 270])
def test_points_on_the_shown_frame_land_on_the_same_pixel_of_the_stored_one(rotation):
    """A player shows the stored frame turned ``rotation`` degrees counter-clockwise (np.rot90)."""
    H, W = 5, 7
    stored = np.arange(H * W).reshape(H, W)
    shown = np.rot90(stored, rotation // 90)
    for yd in range(shown.shape[0]):
        for xd in range(shown.shape[1]):
            (p,) = job.stored_hints([Hint(xd + 0.7, yd + 0.2, RED)], W, H, rotation)
            assert 0 <= p.x < W and 0 <= p.y < H
            assert stored[int(p.y), int(p.x)] == shown[yd, xd], (xd, yd)


def test_a_point_outside_the_shown_frame_is_refused():
    job.stored_hints([Hint(4, 6, RED)], 7, 5, 90)  # inside the 5x7 frame shown
    with pytest.raises(HintError, match=r"outside the first frame \(5x7 as shown\): x must be in \[0, 5\)"):
        job.stored_hints([Hint(6, 1, RED)], 7, 5, 90)  # inside the 7x5 frame stored, not the one shown


def _working_L(rgb):
    return color.rgb_to_lab(rgb)[..., 0].astype(np.float32)


def test_points_travel_with_the_motion_and_are_dropped_where_it_is_lost():
    """Two frames of a known pan: a point moves as the content does (left/up by DX, DY); one that
    the motion takes out of the frame, or that lands where the flow is not trusted, is dropped."""
    a, b = pan_frames(2, 96, 72)
    s = temporal.TemporalSmoother()
    s.advance(_working_L(a))
    s.blend(np.zeros((72, 96, 2), np.float32))
    motion = s.advance(_working_L(b))
    inside, leaving = Hint(50.5, 30.5, RED), Hint(0.5, 30.5, RED)
    (moved,) = temporal.carry_points([inside, leaving], motion)
    assert moved.rgb == RED
    assert (moved.x, moved.y) == pytest.approx((50.5 - DX, 30.5 - DY), abs=0.5)
    untrusted = temporal.Motion(motion.back, motion.fwd, np.zeros_like(motion.trust))
    assert temporal.carry_points([inside], untrusted) == []


def _feed(f, frames):
    seen = []
    for rgb in frames:
        f(rgb)
        seen.append(list(f.points))
    return seen


def test_with_flow_hints_follow_the_motion_until_a_scene_cut(hint_model):
    frames = list(pan_frames(3, 64, 48))
    cut = np.full_like(frames[0], 250)  # another shot: all bright
    f = job.FrameColorizer(hint_model, 32, None, "flow", hints=[Hint(40.5, 20.5, RED)])
    seen = _feed(f, [*frames, cut, frames[0]])
    xs = [p[0].x for p in seen[:3]]  # at the working size: 2/3 of the frame's
    assert xs == pytest.approx([(40.5 - DX * t) * 2 / 3 for t in range(3)], abs=0.5)
    assert seen[3] == [] and seen[4] == [] and f.smoother.cuts == 2  # gone at the cut, not back after the next


def test_without_flow_hints_colour_the_first_frame_only(hint_model):
    f = job.FrameColorizer(hint_model, 32, None, "none", hints=[Hint(40.5, 20.5, RED)])
    seen = _feed(f, pan_frames(3, 64, 48))
    assert [len(p) for p in seen] == [1, 0, 0]


def test_hints_to_a_model_without_them_are_refused(ckpt):
    G, _ = model_ref.resolve_generator(str(ckpt))
    with pytest.raises(HintError, match="takes no colour hints"):
        job.FrameColorizer(G, 48, None, "flow", hints=[Hint(1, 1, RED)])
    job.FrameColorizer(G, 48, None, "flow")  # no hints: any model


def test_hint_spread_reaches_the_frames(hint_model):
    """--hint-spread reaches the frame colorizer: a long reach turns the first frame toward the hint,
    reach 0 leaves the model's own answer."""
    frame = next(iter(pan_frames(1, 64, 48)))
    red = color.rgb_to_lab(np.array([[RED]], np.uint8))[0, 0, 1:]
    away = {}
    for reach in (0.0, 5.0):
        f = job.FrameColorizer(hint_model, 32, None, "none", hints=[Hint(40.5, 20.5, RED)], hint_spread=reach)
        away[reach] = np.linalg.norm(color.rgb_to_lab(f(frame))[..., 1:].mean((0, 1)) - red)
    assert away[5.0] < away[0.0] - 5, away
