"""Generated test videos: a pan across a real photo (skimage's astronaut), so the true motion between
frames is known exactly (``DX``, ``DY`` pixels per frame), with an optional audio track."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Optional, Sequence

import av
import numpy as np

DX, DY = 2, 1  # the window moves right and down by this much per frame: content moves left/up


def pan_frames(n: int, width: int, height: int, dx: int = DX, dy: int = DY, scale: float = 1.0):
    """``n`` uint8 (height, width, 3) crops of the astronaut, window moving by (dx, dy) per frame."""
    from skimage import data, transform

    img = data.astronaut()
    if scale != 1.0:
        img = (transform.rescale(img, scale, channel_axis=-1, anti_aliasing=True) * 255).round().astype(np.uint8)
    for t in range(n):
        x, y = (t * dx) % (img.shape[1] - width), (t * dy) % (img.shape[0] - height)
        yield np.ascontiguousarray(img[y : y + height, x : x + width])


def write_video(
    path: Path,
    frames,
    fps: int = 12,
    audio: bool = True,
    pts: Optional[Sequence[int]] = None,
    rotation: int = 0,
    pix_fmt: str = "yuv420p",
    options: Optional[dict] = None,
) -> Path:
    """Encode ``frames`` (H.264; ``pts`` in 1/fps/10 units for variable frame rate) plus a 440 Hz AAC
    tone as long as the video."""
    frames = iter(frames)
    first = next(frames)
    h, w = first.shape[:2]
    out = av.open(str(path), "w", options=options or {})
    a = None
    if audio:  # every stream is added before the first packet is written
        a = out.add_stream("aac", rate=16000)
        a.layout = "mono"
    vs = out.add_stream("libx264", rate=fps)
    vs.width, vs.height, vs.pix_fmt = w, h, pix_fmt
    tb = Fraction(1, fps * 10)
    vs.time_base = tb
    vs.codec_context.time_base = tb
    if rotation:
        vs.set_display_rotation(rotation)
    n = 0
    for i, rgb in enumerate([first, *frames]):
        f = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        f.pts, f.time_base = (pts[i] if pts is not None else i * 10), tb
        for p in vs.encode(f):
            out.mux(p)
        n += 1
    for p in vs.encode(None):
        out.mux(p)
    if a is not None:
        secs = (pts[-1] / 10 + 1 if pts is not None else n) / fps
        total = int(secs * 16000)
        t = np.arange(total) / 16000
        tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        for s in range(0, total, 1024):
            chunk = tone[s : s + 1024][None]
            fr = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            fr.sample_rate, fr.pts = 16000, s
            for p in a.encode(fr):
                out.mux(p)
        for p in a.encode(None):
            out.mux(p)
    out.close()
    return path


def probe(path: Path) -> dict:
    """What a test compares: frame count, times (s), fps, size, rotation, audio packets, frames."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        times, frames, rotation = [], [], 0
        for i, f in enumerate(c.decode(v)):
            if i == 0:
                rotation = int(round(getattr(f, "rotation", 0) or 0)) % 360
            times.append(float(f.pts * f.time_base))
            frames.append(f.to_ndarray(format="rgb24"))
    with av.open(str(path)) as c:
        audio = [(p.size, p.pts) for p in c.demux(*c.streams.audio) if p.dts is not None] if c.streams.audio else []
        codec = c.streams.video[0].codec_context.name
        fps = float(c.streams.video[0].average_rate or 0)
        w, h = c.streams.video[0].codec_context.width, c.streams.video[0].codec_context.height
    return dict(
        n=len(times), times=times, fps=fps, size=(w, h), rotation=rotation, audio=audio, codec=codec, frames=frames
    )
