"""The online service's request maths and rules, pure (no Ray, no HTTP server): what ``colorize serve``
accepts, the errors it answers with, and one photo split into the CPU and model halves so that
requests of the same working shape can share one forward pass.

A request's photo is decoded at full resolution (``transforms.decode_image``); its L goes to the
model at the working size (``geometry.short_side_shape``, as ``pipeline.gan.predict``); the ab that
comes back is upsampled to the photo's size and joined with its own L (``predict.join_l_ab``), so
the answer has the input's size and lightness. ``colorize_batch`` is the model half for a list
of such inputs, one forward per (working shape, temperature, prior correction) group.

Colour hints (``pipeline.core.hints``) come as a JSON list of points of the photo; ``prepare``
checks them against the decoded photo and turns them into the model's hint map at the working size,
so the model half only stacks maps. ``suggest_input`` is the same for the palette (``/suggest``).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from models.generator import HINT_CHANNELS
from models.scaling import L_to_input, input_to_L
from pipeline.config import ConfigError, check_prior_correction, check_temperature
from pipeline.core import color, geometry, hint_spread, transforms
from pipeline.core import hints as hint_maps
from pipeline.core.hints import Hint, HintError
from pipeline.core.skips import SKIP_TOO_LARGE
from pipeline.gan import predict
from pipeline.runtime import formats, work_limits

# Limits (the defaults of `colorize serve`; its flags and the README say the same).
DEFAULT_MAX_BYTES = 32 * 1024 * 1024  # request body
DEFAULT_MAX_PIXELS = 25_000_000  # decoded width x height (a 25 MP photo: ~1.5 GB of float Lab at most)
DEFAULT_BODY_TIMEOUT_S = 60.0  # a whole request body must arrive within this (32 MiB at ~4 Mbit/s)
DEFAULT_SIZE = 256
# The model replica's memory grows with the working pixels it has in flight (~0.7 GB per million on
# a CPU for the shipped model: activations, not weights). One request may ask for a 2:1 photo at the
# largest size; everything in flight in a replica (batches and /suggest together) for two of those.
# docs/serving-in-production.md has the measured peak.
DEFAULT_MAX_WORKING_PIXELS = 1024 * 2048
DEFAULT_PIXELS_IN_FLIGHT = 2 * DEFAULT_MAX_WORKING_PIXELS
SIZE_RANGE = (16, 1024)  # the working short side a request may ask for
IMAGE_TYPES = tuple(f.media_type for f in formats.IMAGES.values())  # what a request may send
FORMATS = {name: (f.pil, f.media_type) for name, f in formats.written_by("serve").items()}  # what it may ask for
# The JSON of MAX_HINTS points with room to spare: longer text is refused before it is parsed.
MAX_HINTS_CHARS = 128 * hint_maps.MAX_HINTS
SUGGEST_K = (1, 32)  # how many colours /suggest may be asked for


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
    try:
        t = check_temperature(t)
    except ConfigError as e:
        raise RequestError(400, str(e)) from None
    if not (SIZE_RANGE[0] <= s <= SIZE_RANGE[1]):
        raise RequestError(400, f"size must be in {SIZE_RANGE[0]}..{SIZE_RANGE[1]}, got {s}")
    f = (fmt or "png").lower()
    f = "jpeg" if f == "jpg" else f
    if f not in FORMATS:
        raise RequestError(400, f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return t, s, f


def parse_hints(text: Optional[str], takes_hints: bool) -> List[Hint]:
    """The ``hints`` of a request (JSON text, from the query or a form field; None or '' for none)
    -> Hints; RequestError 400 saying why for bad JSON, a bad point or colour, too many points, or
    hints for a model that takes none. Points are checked against the photo in ``prepare``."""
    if text is None or not text.strip():
        return []
    if len(text) > MAX_HINTS_CHARS:
        raise RequestError(400, f"hints: {len(text)} characters of JSON, at most {MAX_HINTS_CHARS}")
    try:
        hints = hint_maps.hints_from_json(text)
    except HintError as e:
        raise RequestError(400, str(e)) from None
    if hints and not takes_hints:
        raise RequestError(400, "this model takes no colour hints: send the photo without hints")
    return hints


def parse_point(x: Optional[str], y: Optional[str], k: Optional[str]) -> Tuple[float, float, int]:
    """/suggest's query: the point (x, y) of the photo in its pixels, and how many colours (default 8);
    RequestError 400 on bad ones (the point is checked against the photo in ``suggest_input``)."""
    try:
        px, py = float(x), float(y)  # type: ignore[arg-type]
        n = 8 if k in (None, "") else int(k)
    except (TypeError, ValueError):
        raise RequestError(
            400, f"x and y must be numbers (pixels of the photo), k an integer: {x!r}, {y!r}, {k!r}"
        ) from None
    if not (SUGGEST_K[0] <= n <= SUGGEST_K[1]):
        raise RequestError(400, f"k must be in {SUGGEST_K[0]}..{SUGGEST_K[1]}, got {n}")
    return px, py, n


@dataclass
class Prepared:
    """The CPU half of one request before the model: the photo's L, its model input and hint map."""

    L: np.ndarray  # (H, W) float32, 0..100, the photo's own lightness
    x: np.ndarray  # (h, w) float32, the network input at the working size
    hints: Optional[np.ndarray] = None  # (3, h, w) float32 hint map at the working size; None: no hints


def prepare(
    data: bytes,
    size: int,
    max_pixels: int,
    hints: Sequence[Hint] = (),
    max_working: int = DEFAULT_MAX_WORKING_PIXELS,
) -> Prepared:
    """Image bytes (and hints: points of that photo) -> Prepared; RequestError 413 (over a work
    bound: ``work_limits`` with ``max_working`` working pixels, checked on the header before
    anything is decoded) or 400 (not a readable image, a hint outside the photo)."""
    try:
        work_limits.check_encoded(data, size, max_pixels, max_working)
    except work_limits.TooMuchWork as e:
        raise RequestError(413, f"image refused: {e}") from None
    d = transforms.decode_image(data, size=None, max_pixels=max_pixels)
    if d.rgb is None:
        if d.skip == SKIP_TOO_LARGE:
            raise RequestError(413, f"image is over the limit of {max_pixels} pixels")
        raise RequestError(400, f"not a readable image ({d.skip})")
    L = predict.photo_L(d.rgb)  # float32, in row chunks: no full-size Lab of a 25 MP photo
    x = working_input(L, size)
    return Prepared(L, x, working_hint_map(hints, L.shape, x.shape))


def working_hint_map(hints: Sequence[Hint], shape: Tuple[int, int], working: Tuple[int, int]) -> Optional[np.ndarray]:
    """Hints on a photo of ``shape`` (H, W) -> its (3, h, w) hint map at the ``working`` shape, or
    None without hints; RequestError 400 for a point outside the photo."""
    if not hints:
        return None
    (H, W), (h, w) = shape, working
    check_hint_points(hints, H, W)
    return hint_maps.hint_map(hints, H, W, h, w)


def check_hint_points(hints: Sequence[Hint], H: int, W: int) -> None:
    """RequestError 400 naming the first hint outside an H x W photo."""
    try:
        hint_maps.check_hints(hints, W, H)
    except HintError as e:
        raise RequestError(400, str(e)) from None


@dataclass(frozen=True)
class Busy:
    """What the model replica answers instead of a result when its pixel budget is spent: a 503."""

    message: str = "overloaded: the model has as many pixels in flight as it may, retry shortly"


class PixelBudget:
    """The working pixels a model replica has in flight, batches and /suggest together, at most
    ``limit``: what bounds its memory however the requests arrive. Used from one event loop."""

    def __init__(self, limit: int):
        self.limit, self.used = limit, 0

    def take(self, n: int) -> bool:
        """Reserve ``n`` pixels: False (nothing reserved) when they do not fit beside those in flight."""
        if self.used + n > self.limit:
            return False
        self.used += n
        return True

    def give(self, n: int) -> None:
        self.used -= n


@dataclass
class SuggestInput:
    """What /suggest sends the model: the photo at the working size, the point and hints on it."""

    L: np.ndarray  # (h, w) float32, 0..100, the working-size lightness
    x: float  # the point, in working-size pixels
    y: float
    hints: List[Hint]  # the hints placed so far, in working-size pixels


def suggest_input(p: Prepared, x: float, y: float, hints: Sequence[Hint]) -> SuggestInput:
    """The point (x, y) and hints of an H x W photo, scaled to its working size (only that much goes
    to the model replica, however large the photo); RequestError 400 for a point outside the photo."""
    H, W = p.L.shape
    if not (0 <= x < W and 0 <= y < H):
        raise RequestError(400, f"point ({x:g}, {y:g}) lies outside the photo: x must be in [0, {W}), y in [0, {H})")
    check_hint_points(hints, H, W)
    h, w = p.x.shape
    sx, sy = w / W, h / H

    def scaled(px: float, py: float) -> Tuple[float, float]:  # kept inside the working photo despite rounding
        return min(px * sx, w - 1e-3), min(py * sy, h - 1e-3)

    return SuggestInput(
        input_to_L(p.x),
        *scaled(x, y),
        [Hint(*scaled(hint.x, hint.y), hint.rgb) for hint in hints],
    )


def grey_png(data: bytes, max_pixels: int) -> bytes:
    """The photo as the model sees it, its own lightness in grey, as PNG: the page's "before" side
    for any accepted format (browsers do not show TIFF). RequestError 413/400 as ``prepare``."""
    d = transforms.decode_image(data, size=None, max_pixels=max_pixels)
    if d.rgb is None:
        if d.skip == SKIP_TOO_LARGE:
            raise RequestError(413, f"image is over the limit of {max_pixels} pixels")
        raise RequestError(400, f"not a readable image ({d.skip})")
    L = predict.photo_L(d.rgb)
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
    G: torch.nn.Module,
    xs: Sequence[np.ndarray],
    temperatures: Sequence[float],
    device: torch.device,
    hints: Optional[Sequence[Optional[np.ndarray]]] = None,
    prior_corrections: Optional[Sequence[Optional[float]]] = None,
) -> List[np.ndarray]:
    """The model half for many requests: network inputs (h, w) and hint maps (3, h, w) or None ->
    ab (2, h, w) float32 each, in order, decoded at each one's temperature and prior correction
    (None: the model's own). Inputs of one working shape, temperature and prior correction go
    through G together (one forward per group); in a group where some have hints, the others get
    an all-zero map, which is what a hint model sees without hints."""
    hints = list(hints) if hints is not None else [None] * len(xs)
    own = float(getattr(G, "prior_correction", 0.0))  # None asks for it: grouped with those that name it
    corrections = list(prior_corrections) if prior_corrections is not None else [None] * len(xs)
    groups: Dict[Tuple[int, int, float, float], List[int]] = {}
    for i, (x, t, a) in enumerate(zip(xs, temperatures, corrections, strict=True)):
        groups.setdefault((*x.shape, float(t), own if a is None else float(a)), []).append(i)
    out: List[Optional[np.ndarray]] = [None] * len(xs)
    for (h, w, t, a), idx in groups.items():
        batch = torch.from_numpy(np.stack([xs[i] for i in idx]))[:, None]  # (B, 1, h, w)
        maps = _stacked_hints([hints[i] for i in idx], h, w)  # (B, 3, h, w) or None
        # the network alone: the hints' spread is CPU work, done per request in ``finish``
        ab = predict.predict_ab_batch(G, batch, t, device, maps, spread=0, prior_correction=a)  # (B, 2, h, w)
        ab = ab.cpu().numpy()
        for j, i in enumerate(idx):
            out[i] = ab[j]
    return out  # type: ignore[return-value]


def _stacked_hints(maps: Sequence[Optional[np.ndarray]], h: int, w: int) -> Optional[torch.Tensor]:
    """Hint maps (3, h, w) or None of one group -> (B, 3, h, w), zeros for None; None when none has hints."""
    if all(m is None for m in maps):
        return None
    zeros = np.zeros((HINT_CHANNELS, h, w), np.float32)
    return torch.from_numpy(np.stack([zeros if m is None else m for m in maps]))


def parse_prior_correction(text: Optional[str], default: float) -> float:
    """The query's ``prior_correction`` (0..1, the share of the training's class rebalancing that
    decoding divides back out) or the model's own ``default``; RequestError 400 for a bad one."""
    if text in (None, ""):
        return default
    try:
        return check_prior_correction(text, "prior_correction")
    except ConfigError as e:
        raise RequestError(400, str(e)) from None


def parse_hint_spread(text: Optional[str]) -> float:
    """The query's ``hint_spread`` (short sides of the photo; 0: the network alone) or the default;
    RequestError 400 for a bad one."""
    if text in (None, ""):
        return hint_spread.REACH
    try:
        return hint_spread.parse_reach(text)
    except ValueError as e:
        raise RequestError(400, f"hint_spread: {e}") from None


def with_hints(p: Prepared, ab: np.ndarray, reach: float = hint_spread.REACH) -> np.ndarray:
    """The network's ab (2, h, w) for ``p`` -> the hints' colours put on their patches and spread
    ``reach`` short sides (``hint_spread``, as ``predict_ab`` does in one process); ``ab`` itself
    without hints or at reach 0."""
    if p.hints is None or reach <= 0:
        return ab
    return hint_spread.spread(input_to_L(p.x), ab, p.hints, reach)


def finish(
    p: Prepared, ab: np.ndarray, fmt: str, hints: Sequence[Hint] = (), reach: float = hint_spread.REACH
) -> Tuple[bytes, List[float]]:
    """The CPU half after the model: the network's ab (2, h, w) with the hints spread ``reach``,
    upsampled to the photo, joined with its L, encoded -> (the encoded photo, per hint the distance
    between its colour and the result's as shown: ``hints.distances``)."""
    ab = with_hints(p, ab, reach)
    far = hint_maps.distances(hints, ab, *p.L.shape, L=input_to_L(p.x)) if hints else []
    return _encoded_photo(p, ab, fmt), far


def _encoded_photo(p: Prepared, ab: np.ndarray, fmt: str) -> bytes:
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
