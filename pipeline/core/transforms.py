"""Per-image transforms that Ray Data's map_batches calls: decode, resize, bins. Pure (no Ray).

Decoding never raises on bad input: it returns a reason, and the caller counts it. Odd but valid
images are converted, not dropped: CMYK, 16-bit, palette, RGBA (composited on white; the alpha kept
beside the RGB at full size, for results that keep it), EXIF-rotated.
Every per-file step returns ``(rows, skipped)``, ``skipped`` a list of (path, reason) pairs
(``pipeline.core.skips``; ``pipeline.data.sources.ReportSkips`` hands them to the job's collector).
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Optional

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from pipeline.core import color, geometry, split
from pipeline.core.skips import (  # noqa: F401  (re-exported: the decode reasons' historical home)
    SKIP_CORRUPT,
    SKIP_EMPTY,
    SKIP_GREY,
    SKIP_NOT_IMAGE,
    SKIP_REASONS,
    SKIP_TOO_LARGE,
    SKIP_TOO_SMALL,
)

# Decompression-bomb guard: refuse images with more pixels than this before decoding them.
DEFAULT_MAX_PIXELS = 64_000_000


@dataclass
class Decoded:
    rgb: Optional[np.ndarray]  # (H, W, 3) uint8 sRGB, None when skipped
    skip: Optional[str] = None  # one of SKIP_REASONS when skipped
    alpha: Optional[np.ndarray] = None  # (H, W) uint8 when the picture has transparency (full size only)


def _alpha(img: Image.Image) -> Optional[np.ndarray]:
    """The picture's alpha channel, None when it has none or is opaque everywhere."""
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode not in ("RGBA", "LA", "PA", "RGBa", "La"):
        return None
    alpha = np.asarray(img.getchannel("A"), dtype=np.uint8)
    return None if alpha.min() == 255 else np.ascontiguousarray(alpha)


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit RGB, keeping what the picture looks like."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        # 16-bit / 32-bit grey: scale the full range to 8 bits (PIL's convert("L") would clip).
        a = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if mode.startswith("I;16") or a.max() > 255 else 255.0
        if mode == "F":
            hi = 1.0 if a.max() <= 1.0 else 255.0
        a = np.clip(a / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(np.repeat(a[..., None], 3, -1), "RGB")
    if mode == "P":
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    # CMYK (PIL undoes Adobe's inverted CMYK), YCbCr, L, 1, LAB, HSV ...
    return img.convert("RGB")


def decode_image(
    data: bytes,
    size: Optional[int] = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> Decoded:
    """Bytes -> Decoded with (H, W, 3) uint8 sRGB, or a skip reason. Never raises for bad data.

    ``size``: when given, the image is resized so its short side is ``size`` (whole image, no crop);
    JPEGs are decoded straight at the nearest larger DCT scale (``draft``), much faster for big
    photos. EXIF orientation is applied.
    """
    if not data:
        return Decoded(None, SKIP_EMPTY)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # PIL's DecompressionBombWarning: we check ourselves
            img = Image.open(io.BytesIO(data))
            mode = img.mode
            w, h = img.size
            if w * h > max_pixels:
                return Decoded(None, SKIP_TOO_LARGE)
            if min(w, h) < 8:
                return Decoded(None, SKIP_TOO_SMALL)
            if size is not None and img.format == "JPEG" and mode in ("RGB", "L", "CMYK"):
                s = size / min(w, h)
                if s < 1:
                    img.draft(img.mode, (max(1, int(w * s + 1)), max(1, int(h * s + 1))))
            img.load()
            img = ImageOps.exif_transpose(img)
            rgb_img = _to_rgb(img)
            alpha = _alpha(img) if size is None else None
            if size is not None:
                rgb_img = geometry.resize_short_side(rgb_img, size)
            rgb = np.asarray(rgb_img, dtype=np.uint8)
    except UnidentifiedImageError:
        return Decoded(None, SKIP_NOT_IMAGE)
    except Image.DecompressionBombError:
        return Decoded(None, SKIP_TOO_LARGE)
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, MemoryError):
        return Decoded(None, SKIP_CORRUPT)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        return Decoded(None, SKIP_CORRUPT)
    return Decoded(np.ascontiguousarray(rgb), alpha=alpha)


def bin_histogram_of(rgb: np.ndarray) -> np.ndarray:
    """(Q,) int64 histogram of an image's ab bins; the per-image step of the priors job."""
    return color.bin_histogram(color.rgb_to_bin(rgb))


def lab_planes(rgb: np.ndarray):
    """(H, W, 3) uint8 -> (L (H, W) float32, ab (H, W, 2) float32, q (H, W) uint16)."""
    lab = color.rgb_to_lab(rgb)
    return lab[..., 0], lab[..., 1:], color.rgb_to_bin(rgb)


def decode_rows(batch: dict, size: int, skip_grey: bool, max_pixels: int):
    """Yield (path, rgb or None, skip reason or None) for each {"path", "bytes"} row of a batch:
    the per-file decode every Ray Data job shares (one bad file never affects its neighbours)."""
    for path, data in zip(batch["path"], batch["bytes"], strict=True):
        d = decode_image(bytes(data) if data is not None else b"", size=size, max_pixels=max_pixels)
        reason = d.skip
        if reason is None and skip_grey and color.is_grey(d.rgb):
            reason = SKIP_GREY
        yield str(path), (d.rgb if reason is None else None), reason


def histogram_batch(
    batch: dict,
    size: int = 256,
    skip_grey: bool = True,
    max_pixels: int = DEFAULT_MAX_PIXELS,
):
    """One batch of {"path", "bytes"} rows -> (one row of sums, skipped): the priors job's map step.

    Row columns (each of length 1): ``hist`` (1, Q) int64 bin counts; ``images`` and ``pixels``
    used. ``skipped``: (path, reason) of every file not used. Decoded pixels never leave here.
    """
    hist = np.zeros(color.num_bins(), np.int64)
    images = pixels = 0
    skipped = []
    for path, rgb, reason in decode_rows(batch, size, skip_grey, max_pixels):
        if reason is not None:
            skipped.append((path, reason))
            continue
        hist += bin_histogram_of(rgb)
        images += 1
        pixels += rgb.shape[0] * rgb.shape[1]
    row = {"hist": hist[None, :], "images": np.array([images], np.int64), "pixels": np.array([pixels], np.int64)}
    return row, skipped


def training_batch(
    batch: dict,
    resize: int,
    crop: int,
    train: bool,
    flip: bool = True,
    skip_grey: bool = True,
    seed: Optional[int] = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    root: str = "",
):
    """{"path", "bytes"} rows -> ({"rgb": (n, crop, crop, 3) uint8, "id"} for the good ones, skipped
    (path, reason) pairs). ``id``: the path relative to ``root`` (``pipeline.core.split.photo_id``).

    Training rows get a random crop and flip (fresh every epoch unless ``seed`` is set); validation
    rows the deterministic centre crop. Decoded at ``resize`` (short side) first, so a crop sees the
    same scale whatever the source resolution.
    """
    rng = None
    if train:
        rng = np.random.default_rng(seed) if seed is not None else np.random.default_rng()
    out, ids, skipped = [], [], []
    for path, rgb, reason in decode_rows(batch, resize, skip_grey, max_pixels):
        if reason is not None:
            skipped.append((path, reason))
            continue
        out.append(geometry.crop_image(rgb, crop, rng, flip))
        ids.append(split.photo_id(path, root))
    rgb = np.stack(out) if out else np.zeros((0, crop, crop, 3), np.uint8)
    return {"rgb": rgb, "id": np.array(ids, dtype=object)}, skipped


# ----------------------------------------------------------------------------- prepared shards


def encode_lab(rgb: np.ndarray):
    """uint8 (H, W, 3) -> (L uint8 (H, W), ab int8 (H, W, 2), bin uint16 (H, W)): the stored form
    (``color.L_to_u8``, ``color.ab_to_i8``)."""
    lab = color.rgb_to_lab(rgb)
    return color.L_to_u8(lab[..., 0]), color.ab_to_i8(lab[..., 1:]), color.rgb_to_bin(rgb)


def prepared_rows(batch: dict, size: int, skip_grey: bool, root: str, max_pixels: int = DEFAULT_MAX_PIXELS):
    """{"path", "bytes"} rows -> rows of a prepared shard: id (path relative to ``root``), height,
    width, L/ab/bin planes as bytes; plus the (path, reason) list of skipped files."""
    cols = {k: [] for k in ("id", "height", "width", "L", "ab", "bin")}
    skipped = []
    for path, rgb, reason in decode_rows(batch, size, skip_grey, max_pixels):
        if reason is not None:
            skipped.append((path, reason))
            continue
        L, ab, bins = encode_lab(rgb)
        cols["id"].append(split.photo_id(path, root))
        cols["height"].append(rgb.shape[0])
        cols["width"].append(rgb.shape[1])
        cols["L"].append(L.tobytes())
        cols["ab"].append(ab.tobytes())
        cols["bin"].append(bins.astype("<u2").tobytes())
    out = {
        "id": np.array(cols["id"], dtype=object),
        "height": np.array(cols["height"], np.int32),
        "width": np.array(cols["width"], np.int32),
        "L": np.array(cols["L"], dtype=object),
        "ab": np.array(cols["ab"], dtype=object),
        "bin": np.array(cols["bin"], dtype=object),
    }
    return out, skipped


def shard_crops(batch: dict, crop: int, train: bool, flip: bool = True, seed: Optional[int] = None) -> dict:
    """Prepared rows -> {"L": (n, crop, crop) uint8, "ab": (n, crop, crop, 2) int8, "id"}: random
    crop + flip for training (fresh every epoch), centre crop for validation."""
    rng = (np.random.default_rng(seed) if seed is not None else np.random.default_rng()) if train else None
    Ls, abs_, ids = [], [], []
    for i in range(len(batch["id"])):
        h, w = int(batch["height"][i]), int(batch["width"][i])
        window = geometry.crop_window(h, w, crop, rng, flip)  # one window for both planes
        Ls.append(geometry.apply_window(np.frombuffer(batch["L"][i], np.uint8).reshape(h, w), crop, window))
        abs_.append(geometry.apply_window(np.frombuffer(batch["ab"][i], np.int8).reshape(h, w, 2), crop, window))
        ids.append(str(batch["id"][i]))
    if not Ls:
        return {
            "L": np.zeros((0, crop, crop), np.uint8),
            "ab": np.zeros((0, crop, crop, 2), np.int8),
            "id": np.array([], dtype=object),
        }
    return {"L": np.stack(Ls), "ab": np.stack(abs_), "id": np.array(ids, dtype=object)}
