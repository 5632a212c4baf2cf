"""Image geometry, one rule each: the short-side resize and the crop windows. Pure numpy/PIL.

- Resize: the short side becomes ``size``, the aspect ratio is kept, each side rounded
  (``short_side_shape``). Photos are resampled with PIL's bicubic filter, antialiased
  (``resize_short_side``); tensors (``pipeline.gan.predict``) follow the same shape rule.
- Crops: a window is (top, left, flipped). Without an rng it is the centre one, unflipped
  (validation, evaluation, benchmarks); with one it is uniform over every position, mirrored on a
  coin flip when ``flip`` (training). ``centre_crop`` with no size takes the largest centre square.
"""

from __future__ import annotations

from typing import NamedTuple, Optional, Tuple, Union

import numpy as np
from PIL import Image


def short_side_shape(h: int, w: int, size: Optional[int]) -> Tuple[int, int]:
    """(h, w) scaled so the short side is ``size``, aspect kept; unchanged when ``size`` is None/0."""
    if not size:
        return h, w
    s = size / min(h, w)
    return max(1, round(h * s)), max(1, round(w * s))


def resize_short_side(img: Union[Image.Image, np.ndarray], size: int) -> Union[Image.Image, np.ndarray]:
    """Resize (bicubic, antialiased) so the short side is ``size``; a PIL image or a uint8
    (H, W[, C]) array, answered in kind (the same object when the size already fits)."""
    if isinstance(img, np.ndarray):
        out = resize_short_side(Image.fromarray(img), size)
        return img if out.size == (img.shape[1], img.shape[0]) else np.asarray(out)
    w, h = img.size
    new_h, new_w = short_side_shape(h, w, size)
    if (new_w, new_h) == (w, h):
        return img
    # reducing_gap: a big downscale first shrinks by a whole factor (box filter, leaving at least
    # 3x the target), then finishes bicubic: much faster, visually the same.
    return img.resize((new_w, new_h), Image.BICUBIC, reducing_gap=3.0)


class Window(NamedTuple):
    top: int
    left: int
    flipped: bool  # mirrored left-right


def crop_window(h: int, w: int, crop: int, rng: Optional[np.random.Generator] = None, flip: bool = False) -> Window:
    """A ``crop`` x ``crop`` window in an h x w image: random (and a coin-flip mirror when ``flip``)
    with ``rng``, the centre one without. Raises when the image is smaller than the crop."""
    if crop > min(h, w):
        raise ValueError(f"a {crop}x{crop} crop does not fit a {h}x{w} image")
    if rng is None:
        return Window((h - crop) // 2, (w - crop) // 2, False)
    top, left = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
    return Window(top, left, bool(flip and rng.random() < 0.5))


def apply_window(a: np.ndarray, crop: int, window: Window) -> np.ndarray:
    """(H, W, ...) -> (crop, crop, ...) contiguous: ``window`` cut out (and mirrored)."""
    top, left, flipped = window
    out = a[top : top + crop, left : left + crop]
    return np.ascontiguousarray(out[:, ::-1] if flipped else out)


def crop_image(a: np.ndarray, crop: int, rng: Optional[np.random.Generator] = None, flip: bool = False) -> np.ndarray:
    """(H, W, ...) -> (crop, crop, ...): random crop (and flip) with ``rng``, centre crop without."""
    return apply_window(a, crop, crop_window(a.shape[0], a.shape[1], crop, rng, flip))


def centre_crop(a: np.ndarray, size: Optional[int] = None) -> np.ndarray:
    """The centre ``size`` x ``size`` square of (H, W, ...); the largest one when ``size`` is None."""
    return crop_image(a, size or min(a.shape[:2]))
