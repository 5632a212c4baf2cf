"""A trained generator on videos, frame by frame, with colour that holds still from frame to frame
(mode ``flow``; ``pipeline.video.temporal``) or per frame (``none``): one video in-process
(``colorize_video``, ``process``) or one per Ray Data task (the ``VideoColorizer`` actor).

MP4/MOV/MKV keep their container, anything else becomes ``.mkv``. Decode/encode, timestamps, audio,
rotation and the never-half-written rule: ``pipeline.video.codec``. Every frame: predict ab at the
working size (as for photos), smooth it over time, upsample, join with the frame's full-resolution L
(keep-L gamut fit, ``pipeline.core.color``): L of every output frame is the input's, up to rounding
and the encoder's loss.
"""

from __future__ import annotations

import os
import posixpath
import tempfile
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from pipeline.core import color
from pipeline.core import hints as hint_points
from pipeline.core.hint_spread import REACH as DEFAULT_HINT_SPREAD
from pipeline.core.hints import Hint
from pipeline.core.skips import SKIP_UNREADABLE, SKIP_WRITE_FAILED
from pipeline.data import storage
from pipeline.gan import predict
from pipeline.runtime import made_with
from pipeline.runtime.work_limits import TooMuchWork, check_shape
from pipeline.video import codec, temporal, threads

TEMPORAL = ("flow", "none")


class FrameColorizer:
    """uint8 RGB frame -> uint8 RGB frame, frames fed in order (it holds the temporal state).

    ``hints``: colour hints on the first frame, points at its stored size (``stored_hints``). The
    first frame is predicted with them. With ``--temporal flow`` the hint *points* then travel with
    the motion: each frame, every point moves along the forward optical flow and the model is given
    the hint map at the points' new places (``temporal.carry_points``); a point that is occluded,
    mis-tracked or leaves the frame is dropped, and a scene cut drops them all. Giving the first
    frame alone the hints and letting the flow carry its colours would be simpler, but the blend
    keeps ``temporal.KEEP`` of the carried colour per frame (0.85^t: under a fifth after ten
    frames), so the model's own guess wins the hinted object back within a second (measured on a
    pan: a hint's pull was gone by frame 15 that way, and held when carried); moving the points
    keeps telling the model, where the object now is, what colour it has. Points are moved,
    not a warped map: the map stays crisp 0/1 patches that the model was trained on, never a
    bilinear smear. Without flow there is no motion to follow: the first frame alone takes the hints.
    """

    def __init__(
        self,
        G,
        size: Optional[int],
        temperature: Optional[float],
        mode: str = "flow",
        device=None,
        hints: Sequence[Hint] = (),
        hint_spread: float = DEFAULT_HINT_SPREAD,
    ):
        if mode not in TEMPORAL:
            raise ValueError(f"--temporal must be one of {TEMPORAL}, got {mode!r}")
        predict.check_takes_hints(G, hints)
        self.G, self.size, self.temperature, self.device = G, size, temperature, device
        self.smoother = temporal.TemporalSmoother() if mode == "flow" else None
        self.hints, self.hint_spread = list(hints), hint_spread
        self.points: Optional[List[Hint]] = None  # the hints at the working size; None before the first frame
        self.seconds = {"model": 0.0, "temporal": 0.0}

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        try:  # the frame's size is the decoder's, already within the pixel limit: the other bounds here
            check_shape(rgb.shape[0], rgb.shape[1], self.size, codec.DEFAULT_MAX_PIXELS)
        except TooMuchWork as e:
            raise codec.VideoError(e.reason, str(e)) from None
        L = color.rgb_to_lab(rgb)[..., 0].astype(np.float64)
        Ls = predict.working_L(L, self.size)  # (h, w)
        t0 = time.perf_counter()
        motion = self.smoother.advance(Ls) if self.smoother is not None else None
        points = self._points(L.shape, Ls.shape, motion)
        t1 = time.perf_counter()
        ab = predict.predict_ab(  # (h, w, 2)
            self.G, Ls, self.size, self.temperature, self.device, points, self.hint_spread
        )
        t2 = time.perf_counter()
        if self.smoother is not None:
            ab = self.smoother.blend(ab)
        self.seconds["model"] += t2 - t1
        self.seconds["temporal"] += (t1 - t0) + (time.perf_counter() - t2)
        return predict.join_l_ab(L, predict.upsample_ab(ab, *L.shape))

    def _points(self, full: tuple, work: tuple, motion: Optional[temporal.Motion]) -> List[Hint]:
        """This frame's hints at the working size ``work`` (h, w): the user's on the first frame (of
        size ``full`` (H, W)); later those carried by ``motion``, none after a cut or without flow."""
        if self.points is None:
            (H, W), (h, w) = full, work
            self.points = [Hint(p.x * w / W, p.y * h / H, p.rgb) for p in self.hints]
        elif self.points:
            self.points = temporal.carry_points(self.points, motion) if motion is not None else []
        return self.points


def colorize_video(
    G,
    src: str,
    dst: str,
    size,
    temperature,
    mode: str = "flow",
    device=None,
    progress=None,
    settings=None,
    hints: Sequence[Hint] = (),
    hint_spread: float = DEFAULT_HINT_SPREAD,
):
    """Colorize the local video ``src`` into the local file ``dst`` (``codec.Result``), recording
    ``settings`` (``made_with``) in its comment tag. ``hints``: points of the first frame as a
    player shows it, checked against it before any frame is written (HintError), their colours
    spread ``hint_spread`` short sides (``predict.predict_ab_batch``)."""
    if hints:
        hints = stored_hints(hints, *codec.frame_geometry(src))
    colorizer = FrameColorizer(G, size, temperature, mode, device, hints, hint_spread)
    comment = made_with.comment(settings) if settings else None
    pools = threads.share()  # the model, flow and codecs sized together for the machine
    return codec.transcode(
        src, dst, colorizer, progress=progress, comment=comment, threads=(pools.decode, pools.encode)
    )


def stored_hints(hints: Sequence[Hint], width: int, height: int, rotation: int) -> List[Hint]:
    """Points on the first frame as a player shows it -> the same points on the frame as stored
    (``width`` x ``height``, shown turned ``rotation`` degrees counter-clockwise, as
    ``codec.transcode`` reads it); HintError for a point outside the frame shown. A point maps by
    its pixel's centre, so it stays inside the stored frame."""
    quarter = (rotation // 90) % 4
    shown_w, shown_h = (height, width) if quarter % 2 else (width, height)
    hint_points.check_hints(hints, shown_w, shown_h, f"the first frame ({shown_w}x{shown_h} as shown)")
    out = []
    for p in hints:
        x, y = int(p.x) + 0.5, int(p.y) + 0.5  # the pixel's centre
        x, y = ((x, y), (width - y, x), (width - x, height - y), (y, height - x))[quarter]
        out.append(Hint(x, y, p.rgb))
    return out


def settings_of(opts: dict, ref: str, G) -> dict:
    """The settings a colorized video records: model, temperature, size, temporal mode."""
    t = opts["temperature"] or G.temperature
    return made_with.photo_settings(ref, [t], opts["size"], temporal=opts["temporal"])


def video_settings_at(fs, path: str) -> Optional[dict]:
    """The settings recorded in a stored video's comment tag (``made_with``)."""
    with fs.open_input_file(path) as f:
        return made_with.from_comment(codec.container_comment(f))


def process(G, fs, src: str, input_uri: str, target: str, opts: dict, s3, device=None, work_root=None, progress=None):
    """One video: read ``src`` (of ``fs``), colorize it as ``opts`` say ("size", "temperature",
    "temporal", "settings" it records, "hints", "hint_spread"), write ``target``; S3 both ways through
    local files in a temporary folder, inside ``work_root`` when given (the folder a stopped run
    removes as a whole).
    Returns (result or None, skip reason, message)."""
    if work_root:
        os.makedirs(work_root, exist_ok=True)  # another node of the cluster: its own
    with tempfile.TemporaryDirectory(prefix="colorize-video-", dir=work_root) as work:
        local_in, local_out = src, target
        if storage.is_s3(target):
            local_out = os.path.join(work, "out" + posixpath.splitext(target)[1])
        if storage.is_s3(input_uri):
            local_in = os.path.join(work, "input" + os.path.splitext(src)[1])
            try:
                storage.download(fs, src, local_in)
            except OSError as e:
                return None, SKIP_UNREADABLE, e.strerror or type(e).__name__
        try:
            r = colorize_video(G, local_in, local_out, opts["size"], opts["temperature"], opts["temporal"], device,
                               progress, opts.get("settings"), opts.get("hints", ()),
                               opts.get("hint_spread", DEFAULT_HINT_SPREAD))  # fmt: skip
        except codec.VideoError as e:
            return None, e.reason, str(e)
        try:
            if local_out != target:
                storage.upload(local_out, target, s3)
        except OSError as e:
            return None, SKIP_WRITE_FAILED, storage.redact(str(e))[:200]
        return r, "", ""


def describe(r: codec.Result) -> str:
    s = f"{r.frames} frames {r.width}x{r.height}, {r.codec} {r.pix_fmt}"
    if r.audio_streams:
        s += f", {r.audio_streams} audio stream(s) copied"
    if r.rotation:
        s += f", rotation {r.rotation}"
    if r.corrupt_tail:
        s += f"; corrupt tail: kept the {r.frames} frames before it" + (f" of {r.declared}" if r.declared else "")
    return s


class VideoColorizer:
    """Ray Data actor: one generator per actor; rows {"path", "out"} -> {"path", "out", "skip", "note"}."""

    def __init__(self, weights: list, input_uri: str, opts: dict, s3: dict, work_root: Optional[str] = None):
        import ray  # not at the top: one video runs without Ray

        state, config = ray.get(weights[0])
        from pipeline.gan import checkpoint

        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.G = checkpoint.generator_from_state(state, config).to(self.device)
        self.s3 = storage.S3Settings.from_dict(s3)
        self.fs, _ = storage.resolve(input_uri, self.s3)
        self.input_uri, self.opts, self.work_root = input_uri, opts, work_root

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, List[str]]:
        out: Dict[str, List[str]] = {"path": [], "out": [], "skip": [], "note": []}
        for path, target in zip(batch["path"], batch["out"], strict=True):
            r, skip, msg = process(
                self.G, self.fs, str(path), self.input_uri, str(target), self.opts, self.s3, self.device, self.work_root
            )
            out["path"].append(str(path))
            out["out"].append(str(target) if r is not None else "")
            out["skip"].append(skip)
            out["note"].append(describe(r) if r is not None else msg)
        return out
