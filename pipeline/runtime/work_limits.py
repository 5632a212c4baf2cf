"""How much work one photo (or one video frame) may ask for: the one rule that ``colorize serve``,
the registered MLflow model, ``colorize infer`` and ``colorize video`` apply before they decode or
resize anything.

The model sees a photo with its short side scaled to the working size, so a thin strip asks for a
working long side of size x aspect: an 881-byte 8x100000 PNG at size 1024 would be a
1024x12800000 working plane (52 GB of float32) and minutes of model time. Three bounds, each
checked on the photo's width and height alone (a header, a shape):

- full-resolution pixels: at most the caller's ``max_pixels`` (decompression bombs);
- aspect ratio: the long side at most ``MAX_ASPECT`` times the short side;
- working pixels: at most ``MAX_WORKING_PIXELS`` at the working size (a 2:1 photo at the largest
  working size, 2048, fits; a few seconds of model time on a CPU).
"""

from __future__ import annotations

import io
import warnings
from typing import Optional, Tuple

from PIL import Image

from pipeline.core import geometry

MAX_ASPECT = 20  # wider than any camera's panorama mode
MAX_WORKING_PIXELS = 2048 * 4096

# Why a photo is refused, as a skip reason (besides pipeline.skips' too_large for max_pixels).
TOO_THIN = "too_thin"
TOO_MUCH_WORK = "too_much_work"


class TooMuchWork(ValueError):
    """A photo over one of the bounds; ``reason`` is its skip reason, the message says which bound."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def check_shape(
    height: int, width: int, size: Optional[int], max_pixels: int, max_working: int = MAX_WORKING_PIXELS
) -> Tuple[int, int]:
    """The working shape (h, w) of a ``height`` x ``width`` photo at working size ``size`` (None: its
    own), or TooMuchWork naming the bound it is over (``max_working``: a caller's tighter bound on
    working pixels, as the online service's per request)."""
    from pipeline.core.skips import SKIP_TOO_LARGE

    if height * width > max_pixels:
        raise TooMuchWork(SKIP_TOO_LARGE, f"{width}x{height} is over the limit of {max_pixels} pixels")
    short, long_ = min(height, width), max(height, width)
    if long_ > MAX_ASPECT * max(short, 1):
        raise TooMuchWork(
            TOO_THIN, f"{width}x{height} is too thin: the long side may be at most {MAX_ASPECT}x the short side"
        )
    h, w = geometry.short_side_shape(height, width, size)
    if h * w > max_working:
        raise TooMuchWork(
            TOO_MUCH_WORK,
            f"{width}x{height} at working size {size} is {w}x{h}, over the limit of {max_working} "
            "working pixels: ask for a smaller size",
        )
    return h, w


def check_encoded(data: bytes, size: Optional[int], max_pixels: int, max_working: int = MAX_WORKING_PIXELS) -> None:
    """``check_shape`` on the size an encoded image's header states, before anything is decoded. Bytes
    that are no image pass: decoding says what is wrong with them."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's DecompressionBombWarning: checked here
            width, height = Image.open(io.BytesIO(data)).size
    except Exception:  # noqa: BLE001 - not an image PIL reads: the decoder's skip reason says so
        return
    check_shape(height, width, size, max_pixels, max_working)
