"""The online service's request maths and rules, pure (no Ray, no HTTP server): what ``colorize serve``
accepts, the errors it answers with, and one photo split into the CPU and model halves so that
requests of the same working shape can share one forward pass.

A request's photo is decoded at full resolution (``transforms.decode_image``); its L goes to the
model at the working size (``geometry.short_side_shape``, as ``pipeline.gan.predict``); the ab that
comes back is upsampled to the photo's size and joined with its own L (``predict.join_l_ab``), so
the answer has the input's size and lightness. ``colorize_batch`` is the model half for a list
of such inputs, one forward per (working shape, temperature) group.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from models.scaling import L_to_input
from pipeline.core import color, geometry, transforms, work_limits
from pipeline.core.skips import SKIP_TOO_LARGE
from pipeline.gan import predict

# Limits (the defaults of `colorize serve`; its flags and the README say the same).
DEFAULT_MAX_BYTES = 32 * 1024 * 1024  # request body
DEFAULT_MAX_PIXELS = 25_000_000  # decoded width x height (a 25 MP photo: ~1.5 GB of float Lab at most)
DEFAULT_BODY_TIMEOUT_S = 60.0  # a whole request body must arrive within this (32 MiB at ~4 Mbit/s)
DEFAULT_SIZE = 256
SIZE_RANGE = (16, 1024)  # the working short side a request may ask for
TEMPERATURE_RANGE = (0.01, 10.0)
IMAGE_TYPES = ("image/jpeg", "image/png", "image/webp", "image/tiff")
FORMATS = {"png": ("PNG", "image/png"), "jpeg": ("JPEG", "image/jpeg"), "webp": ("WEBP", "image/webp")}


class RequestError(ValueError):
    """A request the service refuses: ``status`` is its HTTP status, the message its JSON ``error``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def media_type(content_type: Optional[str]) -> str:
    """``image/png; charset=...`` -> ``image/png`` (lower case; '' when absent)."""
    return (content_type or "").split(";", 1)[0].strip().lower()


def check_content_type(content_type: Optional[str]) -> str:
    """The media type of an image body, or RequestError 415."""
    mt = media_type(content_type)
    if mt == "image/jpg":
        mt = "image/jpeg"
    if mt not in IMAGE_TYPES:
        raise RequestError(
            415, f"unsupported content type {mt or '(none)'!r}: send {', '.join(IMAGE_TYPES)} or multipart/form-data"
        )
    return mt


def check_length(n: Optional[int], max_bytes: int) -> None:
    if n is not None and n > max_bytes:
        raise RequestError(413, f"request body of {n} bytes is over the limit of {max_bytes} bytes")


def parse_params(
    temperature: Optional[str],
    size: Optional[str],
    fmt: Optional[str],
    default_temperature: float,
    default_size: int = DEFAULT_SIZE,
) -> Tuple[float, int, str]:
    """Query parameters -> (temperature, working size, output format key); RequestError 400 on bad
    ones. The defaults are the model's own (its temperature, the size it was trained at)."""
    try:
        t = default_temperature if temperature in (None, "") else float(temperature)
        s = default_size if size in (None, "") else int(size)
    except ValueError:
        raise RequestError(400, f"temperature must be a number, size an integer: {temperature!r}, {size!r}") from None
    if not (TEMPERATURE_RANGE[0] <= t <= TEMPERATURE_RANGE[1]):  # also refuses nan
        raise RequestError(400, f"temperature must be in {TEMPERATURE_RANGE[0]}..{TEMPERATURE_RANGE[1]}, got {t}")
    if not (SIZE_RANGE[0] <= s <= SIZE_RANGE[1]):
        raise RequestError(400, f"size must be in {SIZE_RANGE[0]}..{SIZE_RANGE[1]}, got {s}")
    f = (fmt or "png").lower()
    f = "jpeg" if f == "jpg" else f
    if f not in FORMATS:
        raise RequestError(400, f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return t, s, f


@dataclass
class Prepared:
    """The CPU half of one request before the model: the photo's L and its model input."""

    L: np.ndarray  # (H, W) float64, 0..100, the photo's own lightness
    x: np.ndarray  # (h, w) float32, the network input at the working size


def prepare(data: bytes, size: int, max_pixels: int) -> Prepared:
    """Image bytes -> Prepared; RequestError 413 (over a work bound: ``work_limits``, checked on
    the header before anything is decoded) or 400 (not a readable image)."""
    try:
        work_limits.check_encoded(data, size, max_pixels)
    except work_limits.TooMuchWork as e:
        raise RequestError(413, f"image refused: {e}") from None
    d = transforms.decode_image(data, size=None, max_pixels=max_pixels)
    if d.rgb is None:
        if d.skip == SKIP_TOO_LARGE:
            raise RequestError(413, f"image is over the limit of {max_pixels} pixels")
        raise RequestError(400, f"not a readable image ({d.skip})")
    L = color.rgb_to_lab(d.rgb)[..., 0].astype(np.float64)
    return Prepared(L, working_input(L, size))


def grey_png(data: bytes, max_pixels: int) -> bytes:
    """The photo as the model sees it, its own lightness in grey, as PNG: the page's "before" side
    for any accepted format (browsers do not show TIFF). RequestError 413/400 as ``prepare``."""
    d = transforms.decode_image(data, size=None, max_pixels=max_pixels)
    if d.rgb is None:
        if d.skip == SKIP_TOO_LARGE:
            raise RequestError(413, f"image is over the limit of {max_pixels} pixels")
        raise RequestError(400, f"not a readable image ({d.skip})")
    L = color.rgb_to_lab(d.rgb)[..., 0]
    return encode(color.lab_to_rgb_u8(np.stack([L, np.zeros_like(L), np.zeros_like(L)], -1)), "png")


def working_input(L: np.ndarray, size: int) -> np.ndarray:
    """(H, W) L in 0..100 -> (h, w) float32 network input at the working size (as predict.predict_ab)."""
    H, W = L.shape
    x = L_to_input(torch.from_numpy(np.ascontiguousarray(L, dtype=np.float32))[None, None])
    h, w = geometry.short_side_shape(H, W, size)
    if (h, w) != (H, W):
        x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    return x[0, 0].numpy()


@torch.no_grad()
def colorize_batch(
    G: torch.nn.Module, xs: Sequence[np.ndarray], temperatures: Sequence[float], device: torch.device
) -> List[np.ndarray]:
    """The model half for many requests: network inputs (h, w) -> ab (2, h, w) float32 each, in order.
    Inputs of one working shape and temperature go through G together (one forward per group)."""
    groups: Dict[Tuple[int, int, float], List[int]] = {}
    for i, (x, t) in enumerate(zip(xs, temperatures, strict=True)):
        groups.setdefault((*x.shape, float(t)), []).append(i)
    out: List[Optional[np.ndarray]] = [None] * len(xs)
    use_bf16 = device.type == "cuda"
    for (_, _, t), idx in groups.items():
        batch = torch.from_numpy(np.stack([xs[i] for i in idx]))[:, None].to(device)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=use_bf16):
            ab = G(batch, t)[1].float().cpu().numpy()
        for j, i in enumerate(idx):
            out[i] = ab[j]
    return out  # type: ignore[return-value]


def finish(p: Prepared, ab: np.ndarray, fmt: str) -> bytes:
    """The CPU half after the model: ab (2, h, w) upsampled to the photo, joined with its L, encoded."""
    H, W = p.L.shape
    t = torch.from_numpy(np.ascontiguousarray(ab))[None]
    if t.shape[-2:] != (H, W):
        t = F.interpolate(t, size=(H, W), mode="bilinear", align_corners=False)
    rgb = predict.join_l_ab(p.L, t[0].permute(1, 2, 0).numpy())
    return encode(rgb, fmt)


def encode(rgb: np.ndarray, fmt: str) -> bytes:
    pil_fmt = FORMATS[fmt][0]
    buf = io.BytesIO()
    opts = {"quality": 95} if pil_fmt in ("JPEG", "WEBP") else {}
    Image.fromarray(rgb).save(buf, pil_fmt, **opts)
    return buf.getvalue()
