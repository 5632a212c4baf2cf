"""Builds small image corpora for tests: good photos plus every kind of bad or odd input."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path
from typing import Dict

import numpy as np
from PIL import Image


def png16_rgb(rgb16: np.ndarray) -> bytes:
    """A 16-bit-per-channel RGB PNG (PIL cannot write one)."""
    h, w, _ = rgb16.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + rgb16[y].astype(">u2").tobytes() for y in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def photo(seed: int, h: int = 48, w: int = 64) -> np.ndarray:
    """A smooth, colourful uint8 image (gradients + blobs), different per seed."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    chans = []
    for _ in range(3):
        fx, fy, ph = rng.uniform(1, 6, 3)
        chans.append(0.5 + 0.5 * np.sin(2 * np.pi * (fx * x + fy * y) + ph))
    return (np.stack(chans, -1) * 255).astype(np.uint8)


def good_files(n: int = 4, h: int = 48, w: int = 64) -> Dict[str, bytes]:
    """Lossless colour photos: every decoder gives the same pixels."""
    return {f"good_{i}.png": encode(Image.fromarray(photo(i, h, w)), "PNG") for i in range(n)}


def odd_but_valid_files(h: int = 48, w: int = 64) -> Dict[str, bytes]:
    """Valid images in unusual encodings: converted and used, not skipped."""
    rgba = np.dstack([photo(10, h, w), np.full((h, w), 255, np.uint8)])
    rgba[: h // 4, : w // 4, 3] = 0  # a transparent corner: composited on white
    pal = Image.fromarray(photo(11, h, w)).quantize(colors=256)
    rgb16 = photo(12, h, w).astype(np.uint16) * 257
    return {
        "odd_rgba.png": encode(Image.fromarray(rgba, "RGBA"), "PNG"),
        "odd_palette.png": encode(pal, "PNG"),
        "odd_rgb16.png": png16_rgb(rgb16),
        "odd_cmyk.jpg": encode(Image.fromarray(photo(13, h, w)).convert("CMYK"), "JPEG", quality=95),
    }


def bad_files(h: int = 48, w: int = 64) -> Dict[str, str]:
    """name -> bytes of inputs that must be skipped, and the reason each one is skipped for."""
    jpeg = encode(Image.fromarray(photo(20, 256, 256)), "JPEG", quality=90)
    grey = Image.fromarray(photo(21, h, w)).convert("L")
    grey16 = np.asarray(grey).astype(np.uint16) * 257
    return {
        "bad_empty.jpg": (b"", "empty"),
        "bad_text.jpg": (b"this is not an image\n" * 10, "not_image"),
        "bad_truncated.jpg": (jpeg[: len(jpeg) // 2], "corrupt"),
        "bad_garbage.png": (b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4, "not_image"),
        "bad_broken_jpeg.jpg": (jpeg[:200] + bytes(range(256)) * 8 + jpeg[-100:], "corrupt"),
        "bad_huge.png": (encode(Image.new("1", (9000, 8000)), "PNG"), "too_large"),
        "bad_tiny.png": (encode(Image.fromarray(photo(22, 4, 4)), "PNG"), "too_small"),
        "grey_l.jpg": (encode(grey, "JPEG", quality=90), "grey"),
        "grey_rgb.jpg": (encode(grey.convert("RGB"), "JPEG", quality=90), "grey"),
        "grey_16bit.png": (encode(Image.fromarray(grey16), "PNG"), "grey"),
    }


def write_corpus(root: Path, with_bad: bool = True) -> Dict[str, object]:
    """Write the corpus into ``root``; return {"good": {name: rgb}, "skip": {name: reason}}."""
    root.mkdir(parents=True, exist_ok=True)
    good = {**good_files(), **odd_but_valid_files()}
    for name, data in good.items():
        (root / name).write_bytes(data)
    skip = {}
    if with_bad:
        for name, (data, reason) in bad_files().items():
            (root / name).write_bytes(data)
            skip[name] = reason
    return {"good": sorted(good), "skip": skip}
