"""Video decode and encode with PyAV (FFmpeg's libraries ship in the ``av`` wheel; no system
ffmpeg). Frames stream through one at a time: memory does not grow with the video's length.

``transcode(src, dst, fn)`` decodes the first video stream of a local file, passes every frame
(uint8 RGB) through ``fn`` and encodes the results into ``dst``, keeping:

- the frame count and every frame's timestamp (pts copied in the input stream's time base: constant
  and variable frame rate alike), the nominal frame rate;
- the resolution, odd sizes included. Codec: H.264 (``libx264``, CRF ``CRF``) when the wheel has it,
  else MPEG-4 Part 2 (``mpeg4``, qscale 2) as the stated fallback. Pixel format: ``yuv420p`` (what
  every player takes) when width and height are even; ``yuv444p`` (no chroma subsampling, so odd
  sizes are legal; H.264 High 4:4:4) when either is odd. The fallback encoder has no 4:4:4 and
  refuses odd sizes;
- the rotation metadata (the display matrix: frames are decoded unrotated and written unrotated with
  the same rotation, so players show the output as they show the input);
- the audio streams, copied packet for packet (never re-encoded).

The output is written to a temporary name beside ``dst`` and renamed at the end: ``dst`` is either
the whole result or absent. A decode error after some frames (a corrupt or truncated tail) keeps
the frames before it and says so (``Result.corrupt_tail``). Inputs that cannot be colorized raise
``VideoError`` with a skip reason and a one-line message.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from fractions import Fraction
from typing import Callable, Optional, Tuple

import av
import numpy as np

from pipeline.core.transforms import DEFAULT_MAX_PIXELS
from pipeline.runtime import formats

CRF = "17"  # x264 constant quality: visually lossless for most footage

# skip reasons (besides pipeline.core.skips' empty / too_large)
NOT_VIDEO = "not_video"
NO_VIDEO_STREAM = "no_video_stream"
NO_FRAMES = "no_frames"
TOO_LARGE = "too_large"
CORRUPT = "corrupt"
ODD_SIZE = "odd_size_unsupported"

CONTAINERS = formats.VIDEO_CONTAINERS  # kept as they are; any other input becomes Matroska
VIDEO_SUFFIXES = formats.VIDEO_SUFFIXES
# FFmpeg demuxers that read still images or text, not videos
_NOT_VIDEO_FORMATS = ("image2", "tty", "lavfi")


class VideoError(ValueError):
    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass
class Result:
    frames: int  # frames written
    declared: int  # frames the container announced (0 when unknown)
    corrupt_tail: bool  # decoding stopped on an error; the frames before it were kept
    width: int
    height: int
    rotation: int
    audio_streams: int
    codec: str
    pix_fmt: str


def video_name(rel: str, suffix: str = "") -> str:
    """Output name for an input video: MP4/MOV/MKV kept, anything else -> ``.mkv``; ``suffix``
    goes before the extension (the signature ``outputs.plan`` calls)."""
    root, ext = os.path.splitext(rel)
    return root + suffix + (ext if ext.lower() in CONTAINERS else ".mkv")


def video_codec() -> str:
    return "libx264" if "libx264" in av.codecs_available else "mpeg4"


def pixel_format(width: int, height: int, codec: str) -> str:
    even = width % 2 == 0 and height % 2 == 0
    if even:
        return "yuv420p"
    if codec == "libx264":
        return "yuv444p"
    raise VideoError(ODD_SIZE, f"{width}x{height}: the fallback encoder {codec} needs even sizes")


def _open(src: str):
    if os.path.getsize(src) == 0:
        raise VideoError("empty", "an empty file")
    try:
        c = av.open(src, "r", metadata_errors="ignore")
    except av.error.EOFError:  # a container FFmpeg recognises that ends before any frame
        raise VideoError(NO_FRAMES, "no frames: the file ends before the first one") from None
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as e:
        raise VideoError(NOT_VIDEO, f"not a video FFmpeg can read ({type(e).__name__})") from None
    name = c.format.name or ""
    if any(n in _NOT_VIDEO_FORMATS for n in name.split(",")) or name.endswith("_pipe"):
        c.close()
        raise VideoError(NOT_VIDEO, f"not a video (FFmpeg reads it as {name})")
    if not c.streams.video:
        c.close()
        raise VideoError(NO_VIDEO_STREAM, "the file has no video stream")
    return c


def _first_frame_rotation(src: str) -> int:
    """The display rotation (degrees), read off the first decoded frame (its display-matrix side
    data) in a separate short pass: every output stream must exist before the first packet is
    written. No decodable frame: ``VideoError``."""
    with av.open(src, "r", metadata_errors="ignore") as c:
        try:
            for frame in c.decode(c.streams.video[0]):
                return int(round(getattr(frame, "rotation", 0) or 0)) % 360
        except av.error.FFmpegError:
            raise VideoError(CORRUPT, "the first frame does not decode") from None
    raise VideoError(NO_FRAMES, "the video stream has no frames")


def frame_geometry(src: str) -> Tuple[int, int, int]:
    """(width, height, rotation) of a local video's frames as stored, before ``transcode``: what
    points on its first frame are checked against. ``VideoError`` as ``transcode`` raises it."""
    inp = _open(src)
    try:
        cc = inp.streams.video[0].codec_context
        W, H = cc.width, cc.height
    finally:
        inp.close()
    return W, H, _first_frame_rotation(src)


def transcode(
    src: str,
    dst: str,
    fn: Callable[[np.ndarray], np.ndarray],
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: Optional[Callable[[int, int], None]] = None,
    comment: Optional[str] = None,
    threads: Tuple[int, int] = (0, 0),
) -> Result:
    """Colorize ``src`` into ``dst`` (local paths) frame by frame with ``fn`` (see the module doc);
    ``comment`` goes into the output container's comment tag. ``threads``: (decoder, encoder)
    threads, 0 for FFmpeg's own choice (``pipeline.video.threads`` sizes them for the machine)."""
    inp = _open(src)
    try:
        return _transcode(inp, src, dst, fn, max_pixels, progress, comment, threads)
    finally:
        inp.close()


def _transcode(inp, src, dst, fn, max_pixels, progress, comment=None, threads=(0, 0)) -> Result:
    vin = inp.streams.video[0]
    W, H = vin.codec_context.width, vin.codec_context.height
    if W * H > max_pixels:
        raise VideoError(TOO_LARGE, f"{W}x{H} is over the {max_pixels:,}-pixel limit")
    if min(W, H) < 8:
        raise VideoError("too_small", f"{W}x{H}: fewer than 8 pixels on a side")
    vin.thread_type = "AUTO"
    if threads[0]:
        vin.codec_context.thread_count = threads[0]
    audio_in = list(inp.streams.audio)
    declared = int(vin.frames or 0)
    rate = vin.average_rate or vin.guessed_rate or Fraction(25)
    codec = video_codec()
    pix_fmt = pixel_format(W, H, codec)
    rotation = _first_frame_rotation(src)
    ext = os.path.splitext(dst)[1].lower()
    fmt = CONTAINERS.get(ext, "matroska")
    parent = os.path.dirname(os.path.abspath(dst))
    os.makedirs(parent, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=parent, prefix="." + os.path.basename(dst) + ".", suffix=".tmp")
    os.close(fd)
    out = None
    try:
        out = av.open(tmp, "w", format=fmt)
        if comment:
            out.metadata["comment"] = comment
        vout = _video_stream(out, vin, codec, pix_fmt, rate, W, H, rotation, threads[1])
        amap = {a.index: out.add_stream_from_template(a) for a in audio_in}
        n, corrupt, last_pts = 0, False, None
        streams = [vin, *audio_in]
        demux = inp.demux(*streams)
        while True:
            try:
                packet = next(demux)
            except StopIteration:
                break
            except av.error.FFmpegError:
                corrupt = True
                break
            if packet.stream.type == "audio":
                if packet.dts is None:
                    continue  # the demuxer's flush packet
                packet.stream = amap[packet.stream.index]
                out.mux(packet)
                continue
            try:
                frames = packet.decode()
            except av.error.FFmpegError:
                if n == 0:
                    raise VideoError(CORRUPT, "the first frame does not decode") from None
                corrupt = True
                break
            for frame in frames:
                last_pts = _encode(out, vout, vin, frame, fn, n, rate, last_pts)
                n += 1
                if progress:
                    progress(n, declared)
        if n == 0:
            raise VideoError(NO_FRAMES, "the video stream has no frames")
        for p in vout.encode(None):
            out.mux(p)
        out.close()
        out = None
        corrupt = corrupt or _ends_early(inp, vin, n, declared, last_pts, rate)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, dst)
        return Result(n, declared, corrupt, W, H, rotation, len(audio_in), codec, pix_fmt)
    finally:
        if out is not None:
            try:
                out.close()
            except Exception:  # noqa: BLE001 - cleaning up after the error being raised
                pass
        if os.path.exists(tmp):
            os.unlink(tmp)


def container_comment(f) -> Optional[str]:
    """The comment tag of a video (a path or a seekable file object); None when it has none or
    does not open."""
    try:
        with av.open(f) as c:
            tags = {k.lower(): v for k, v in c.metadata.items()}
    except (av.error.FFmpegError, OSError, ValueError):
        return None
    return tags.get("comment")


def _ends_early(inp, vin, n: int, declared: int, last_pts, rate) -> bool:
    """Fewer frames than the container announced (a frame count, or else a duration: Matroska's
    demuxer skips a garbled tail silently, so its header's duration is what tells)."""
    if declared > 0:
        return n < declared
    if not inp.duration or last_pts is None or not vin.time_base:
        return False
    start = (inp.start_time or 0) / av.time_base
    end = float(last_pts * vin.time_base) - start + 1 / float(rate)
    return end < inp.duration / av.time_base - 2 / float(rate)  # more than two frames' time missing


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m


def _video_stream(out, vin, codec, pix_fmt, rate, W, H, rotation, threads=0):
    vout = out.add_stream(codec, rate=rate)
    vout.width, vout.height, vout.pix_fmt = W, H, pix_fmt
    vout.time_base = vin.time_base
    vout.codec_context.time_base = vin.time_base
    if codec == "libx264":
        vout.options = {"crf": CRF, "preset": "veryfast"}
    else:
        vout.options = {"qscale": "2"}
    if threads:
        vout.codec_context.thread_count = threads
    if rotation:
        vout.set_display_rotation(rotation)
    return vout


def _encode(out, vout, vin, frame, fn, n, rate, last_pts):
    rgb = frame.to_ndarray(format="rgb24")
    res = np.ascontiguousarray(fn(rgb), dtype=np.uint8)
    if res.shape != rgb.shape:
        raise ValueError(f"frame function changed the shape {rgb.shape} -> {res.shape}")
    f = av.VideoFrame.from_ndarray(res, format="rgb24")
    pts = frame.pts
    if pts is None:  # no timestamp: place it one nominal frame after the last
        pts = 0 if last_pts is None else last_pts + max(1, int(round(1 / (rate * vin.time_base))))
    if last_pts is not None and pts <= last_pts:
        pts = last_pts + 1  # encoders refuse non-increasing pts
    f.pts, f.time_base = pts, vin.time_base
    for p in vout.encode(f):
        out.mux(p)
    return pts
