"""Temporal consistency for video (``colorize video --temporal flow``). Pure numpy + OpenCV, no Ray.

Per-frame colorization flickers: every frame's ab is guessed alone, so a wall can turn blue then
brown from one frame to the next. The choice made here (measured in
``bench/video.py``):

1. the model predicts each frame's ab as for a photo, at the working size;
2. optical flow on the *grey* frames at that working size (OpenCV DIS, ``PRESET_FAST``: a few ms per
   frame at 256 px, far less than the model) carries the previous *output* ab to this frame
   (backward flow t -> t-1, bilinear remap);
3. a per-pixel confidence says how far to trust the carried colour: forward-backward agreement of
   the two flows (a pixel whose round trip t -> t-1 -> t lands far from where it started is
   occluded or mis-tracked), the lightness match between this frame and the warped previous one,
   and whether the source lies inside the previous frame. Occluded / new pixels get the new
   prediction;
4. the output is ``ab = c * KEEP * warped + (1 - c * KEEP) * predicted``: a motion-compensated
   exponential average (``KEEP`` < 1 keeps a share of every frame's own prediction, so colour can
   still change where the model changes its mind for a reason, and errors never last forever);
5. at a scene cut (the L histograms of two frames differ by more than ``CUT_THRESHOLD`` in L1) the
   state resets: the first frame of a shot is its own prediction;
6. colour hints on the first frame travel as points along the forward flow (``carry_points``), so
   that the model is told at every frame where the hinted object now is; a point the flow loses is
   dropped, and a cut drops them all (``pipeline.video.colorize.FrameColorizer`` says why).

Blending in ab only: L always comes from the input frame (the caller joins it at full resolution).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from pipeline.core.hints import Hint

KEEP = 0.85  # share of the motion-compensated past where the flow is trusted
FB_SIGMA = 1.0  # px: forward-backward disagreement at which confidence falls to exp(-1/2)
L_SIGMA = 6.0  # L units: lightness mismatch of the warped previous frame at which confidence falls to exp(-1/2)
CUT_THRESHOLD = 0.6  # L1 distance of two normalised 32-bin L histograms (0..2) above which a new shot starts
HIST_BINS = 32
HINT_TRUST = 0.3  # least trust where a hint lands for it to go on: ~1.5 px forward-backward disagreement


def grey_u8(L: np.ndarray) -> np.ndarray:
    """L (H, W) in 0..100 -> uint8 0..255, what the flow sees."""
    return np.clip(L * 2.55 + 0.5, 0, 255).astype(np.uint8)


def l_histogram(L: np.ndarray) -> np.ndarray:
    h, _ = np.histogram(L, bins=HIST_BINS, range=(0.0, 100.0))
    return h / max(1, h.sum())


def is_cut(hist_prev: np.ndarray, hist: np.ndarray, threshold: float = CUT_THRESHOLD) -> bool:
    """A new shot: the lightness distributions of two consecutive frames jump."""
    return float(np.abs(hist_prev - hist).sum()) > threshold


def _grid(h: int, w: int) -> Tuple[np.ndarray, np.ndarray]:
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    return xs, ys


def warp(img: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """``img`` sampled at ``x + flow(x)`` (bilinear, edges replicated): for backward flow t -> t-1,
    frame t-1's content moved to where it is in frame t."""
    h, w = flow.shape[:2]
    xs, ys = _grid(h, w)
    return cv2.remap(img, xs + flow[..., 0], ys + flow[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


class FlowEstimator:
    """Dense optical flow on uint8 grey frames (OpenCV DIS). One per video: not thread-safe."""

    def __init__(self):
        self.dis = cv2.DISOpticalFlow_create(cv2.DISOPTICAL_FLOW_PRESET_FAST)

    def __call__(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """Flow (H, W, 2) float32 from ``a`` to ``b``: ``a(x) ~ b(x + flow(x))``."""
        return self.dis.calc(a, b, None)


def confidence(
    back: np.ndarray, fwd: np.ndarray, L: np.ndarray, L_prev_warped: np.ndarray, fb_sigma: float = FB_SIGMA
) -> np.ndarray:
    """(H, W) in 0..1: trust in the colour carried by ``back`` (flow t -> t-1) to frame t."""
    h, w = back.shape[:2]
    xs, ys = _grid(h, w)
    fwd_at = warp(fwd, back)  # the forward flow at the point each pixel of t came from
    fb = np.sum((back + fwd_at) ** 2, axis=-1)  # 0 where the round trip returns home
    c = np.exp(-fb / (2 * fb_sigma**2))
    c *= np.exp(-((L - L_prev_warped) ** 2) / (2 * L_SIGMA**2))
    sx, sy = xs + back[..., 0], ys + back[..., 1]
    inside = (sx >= 0) & (sx <= w - 1) & (sy >= 0) & (sy <= h - 1)
    return (c * inside).astype(np.float32)


@dataclass
class Motion:
    """How frame t follows frame t-1, at the working size."""

    back: np.ndarray  # (h, w, 2) float32 flow t -> t-1
    fwd: np.ndarray  # (h, w, 2) float32 flow t-1 -> t
    trust: np.ndarray  # (h, w) float32 in 0..1: ``confidence`` of what the flow carries to each pixel of t


class TemporalSmoother:
    """Feed frames in order: ``advance(L)`` then ``blend(ab_pred) -> ab`` (or ``step(L, ab_pred)``
    for both), L and ab at the working size. ``advance`` comes first so that what follows the motion
    (hints carried along it) is known before the model predicts the frame. Holds one frame of state
    (the previous L, output ab and histogram), so memory does not grow with the video."""

    def __init__(self, keep: float = KEEP, cut_threshold: float = CUT_THRESHOLD):
        self.keep, self.cut_threshold = keep, cut_threshold
        self.flow = FlowEstimator()
        self.prev: Optional[Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = None  # L, grey, ab, hist
        self.current: Optional[Tuple[np.ndarray, np.ndarray, np.ndarray, Optional[Motion]]] = None  # L, grey, hist
        self.cuts = 0

    def reset(self) -> None:
        self.prev = None

    def advance(self, L: np.ndarray) -> Optional[Motion]:
        """Frame t's motion from frame t-1; None for a first frame, a new shot (a cut) or a change of
        size: nothing carries over then."""
        L = np.asarray(L, np.float32)
        grey, hist = grey_u8(L), l_histogram(L)
        motion = None
        if self.prev is not None and self.prev[0].shape == L.shape:
            L_prev, grey_prev, _, hist_prev = self.prev
            if is_cut(hist_prev, hist, self.cut_threshold):
                self.cuts += 1
            else:
                back = self.flow(grey, grey_prev)
                fwd = self.flow(grey_prev, grey)
                motion = Motion(back, fwd, confidence(back, fwd, L, warp(L_prev, back)))
        self.current = (L, grey, hist, motion)
        return motion

    def blend(self, ab_pred: np.ndarray) -> np.ndarray:
        """The frame ``advance`` was given: its predicted ab (h, w, 2) -> the output ab (h, w, 2)."""
        if self.current is None:
            raise RuntimeError("advance(L) comes before blend(ab)")
        L, grey, hist, motion = self.current
        out = np.asarray(ab_pred, np.float32)
        if motion is not None:
            k = (self.keep * motion.trust)[..., None]
            out = k * warp(self.prev[2], motion.back) + (1 - k) * out
        self.prev, self.current = (L, grey, np.ascontiguousarray(out, np.float32), hist), None
        return out

    def step(self, L: np.ndarray, ab_pred: np.ndarray) -> np.ndarray:
        self.advance(L)
        return self.blend(ab_pred)


def carry_points(points: Sequence[Hint], motion: Motion, min_trust: float = HINT_TRUST) -> List[Hint]:
    """Hints of frame t-1 (points at the working size) moved to where the forward flow takes them in
    frame t. One that leaves the frame, or lands where the flow is not trusted (occluded or
    mis-tracked: ``Motion.trust``), is dropped for good: a hint must not paint what it did not name."""
    h, w = motion.trust.shape
    out = []
    for p in points:
        dx, dy = motion.fwd[min(h - 1, int(p.y)), min(w - 1, int(p.x))]
        x, y = p.x + float(dx), p.y + float(dy)
        if 0 <= x < w and 0 <= y < h and motion.trust[int(y), int(x)] >= min_trust:
            out.append(replace(p, x=x, y=y))
    return out


def warping_error(frames: list, flows_back: list, masks: list) -> float:
    """Lai et al. (ECCV 2018) warping error: mean over t of the mean |O_t - warp(O_{t-1})| over the
    non-occluded pixels (``masks[t-1]``), ``flows_back[t-1]`` the flow t -> t-1 (from the *truth*
    frames, so that the measure does not grade itself). Frames (H, W, C) in any consistent unit."""
    errs = []
    for t in range(1, len(frames)):
        cur = frames[t].astype(np.float32)
        prev = warp(frames[t - 1].astype(np.float32), flows_back[t - 1])
        m = masks[t - 1]
        if m.sum() == 0:
            continue
        d = np.abs(cur - prev)
        d = d.mean(-1) if d.ndim == 3 else d
        errs.append(float(d[m].mean()))
    return float(np.mean(errs)) if errs else 0.0


def occlusion_mask(back: np.ndarray, fwd: np.ndarray, thresh: float = 1.0) -> np.ndarray:
    """Non-occluded pixels of frame t: forward-backward round trip within ``thresh`` px and the
    source inside frame t-1 (bool (H, W))."""
    h, w = back.shape[:2]
    xs, ys = _grid(h, w)
    fb = np.sqrt(np.sum((back + warp(fwd, back)) ** 2, axis=-1))
    sx, sy = xs + back[..., 0], ys + back[..., 1]
    return (fb < thresh) & (sx >= 0) & (sx <= w - 1) & (sy >= 0) & (sy <= h - 1)
