"""The one table of file formats: which image formats colorize reads and writes, and where, and the
video containers it keeps. Serve, infer, video and the MLflow model all read it; adding a format
(or letting one more place write it) is one line here."""

from __future__ import annotations

from typing import Dict, NamedTuple, Tuple


class ImageFormat(NamedTuple):
    pil: str  # PIL's name for it
    media_type: str  # what an HTTP request or answer names it
    extensions: Tuple[str, ...]  # file names that mean it (the first is the one written)
    written_by: Tuple[str, ...]  # where colorize writes it: "files" (infer keeps it), "serve", "model" (MLflow)


# Every image format serve accepts, by the name a request or a parameter gives. Order is the order
# messages list them in.
IMAGES: Dict[str, ImageFormat] = {
    "png": ImageFormat("PNG", "image/png", (".png",), ("files", "serve", "model")),
    "jpeg": ImageFormat("JPEG", "image/jpeg", (".jpg", ".jpeg"), ("files", "serve")),
    "webp": ImageFormat("WEBP", "image/webp", (".webp",), ("serve",)),
    "tiff": ImageFormat("TIFF", "image/tiff", (".tif", ".tiff"), ()),
}

# Video containers kept as they are (extension -> PyAV's container); any other input becomes
# Matroska, which takes any audio codec (copying e.g. PCM audio into MP4 would fail).
VIDEO_CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska"}
# What `colorize video` takes as a video (and `colorize infer` points a video given to it there).
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".mkv", ".avi", ".webm", ".mpg", ".mpeg", ".ts", ".wmv", ".flv", ".3gp")


def written_by(place: str) -> Dict[str, ImageFormat]:
    """The formats ``place`` ("files", "serve", "model") writes, by name."""
    return {name: f for name, f in IMAGES.items() if place in f.written_by}


def file_formats() -> Dict[str, str]:
    """{extension: PIL format} of the photo files colorize keeps in their own format."""
    return {ext: f.pil for f in written_by("files").values() for ext in f.extensions}
