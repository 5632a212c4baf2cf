"""One table of file formats: serve, infer, video and the MLflow model take theirs from
pipeline/runtime/formats.py, and the table agrees with PIL about every extension."""

from __future__ import annotations

from PIL import Image

from pipeline.gan import model_io
from pipeline.runtime import formats, outputs
from pipeline.serve import handling
from pipeline.video import codec


def test_every_place_reads_the_one_table():
    assert outputs.FORMATS == {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}  # infer keeps these as they are
    assert outputs.output_name("a.webp") == "a.png" and outputs.output_name("a.JPG") == "a.JPG"
    assert set(handling.IMAGE_TYPES) == {"image/png", "image/jpeg", "image/webp", "image/tiff"}
    assert handling.FORMATS == {n: (f.pil, f.media_type) for n, f in formats.written_by("serve").items()}
    assert model_io.FORMATS == ("array", "png")
    assert codec.CONTAINERS is formats.VIDEO_CONTAINERS and codec.video_name("clip.avi") == "clip.mkv"


def test_the_table_agrees_with_pil():
    registered = Image.registered_extensions()
    for name, f in formats.IMAGES.items():
        assert all(registered.get(ext) == f.pil for ext in f.extensions), name
        assert f.media_type == Image.MIME.get(f.pil), name
        assert set(f.written_by) <= {"files", "serve", "model"}, name
