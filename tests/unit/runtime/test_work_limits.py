"""The per-photo work bound (pipeline/runtime/work_limits.py), one rule applied where a photo enters: the
service's request, the MLflow model's rows, ``colorize infer`` and ``colorize video``. A thin strip
is refused by its header size, before the working-size plane (gigabytes for an 8x100000 strip at a
large working size) is ever allocated."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from pipeline.apply import infer
from pipeline.gan import model_io, model_ref
from pipeline.runtime import work_limits
from pipeline.serve import handling
from pipeline.video import codec
from pipeline.video import colorize as video


def png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


STRIP = png(np.full((8, 3000), 128, np.uint8))  # 375:1, a few hundred bytes


def test_the_rule_names_the_bound_it_refuses():
    assert work_limits.check_shape(300, 400, 256, 10**6) == (256, 341)
    assert work_limits.check_shape(8, 160, 64, 10**6) == (64, 1280)  # 20:1 is still a photo
    with pytest.raises(work_limits.TooMuchWork, match="too thin") as e:
        work_limits.check_shape(8, 100_000, 1024, 10**6)
    assert e.value.reason == work_limits.TOO_THIN
    with pytest.raises(work_limits.TooMuchWork, match="working pixels") as e:
        work_limits.check_shape(2000, 10_000, 2048, 10**8)  # 5:1 at 2048: 2048x10240
    assert e.value.reason == work_limits.TOO_MUCH_WORK
    with pytest.raises(work_limits.TooMuchWork, match="over the limit of 1000 pixels"):
        work_limits.check_shape(40, 40, None, 1000)


def test_a_header_is_enough_to_refuse():
    huge_strip = png(np.zeros((8, 100_000), np.uint8))  # under a kilobyte
    with pytest.raises(work_limits.TooMuchWork, match="too thin"):
        work_limits.check_encoded(huge_strip, 1024, 10**7)
    work_limits.check_encoded(b"not an image", 256, 10**7)  # the decoder says what is wrong with it


def test_the_service_answers_413_for_a_strip():
    with pytest.raises(handling.RequestError, match="too thin") as e:
        handling.prepare(STRIP, 16, max_pixels=10**6)
    assert e.value.status == 413


def test_the_mlflow_model_refuses_strips_and_ragged_rows_by_row(ckpt):
    G, _ = model_ref.resolve_generator(str(ckpt))
    strip = np.full((8, 3000, 3), 128, np.uint8)
    for rows in ([strip], [png(strip)], [[[1, 2, 3]] * 8 + [[1, 2]]]):
        with pytest.raises(model_io.BadImage, match="row 0"):
            model_io.colorize_rows(G, {"image": rows}, {"size": 16})


@pytest.mark.parametrize("params", [{"temperature": 0}, {"size": 0}, {"temperature": float("inf")}, {"size": "x"}])
def test_the_mlflow_model_takes_zero_as_a_value_not_as_the_default(params):
    with pytest.raises(model_io.BadImage):
        model_io.options(params, 0.38)


def test_infer_skips_a_strip_by_reason(ckpt):
    G, _ = model_ref.resolve_generator(str(ckpt))
    rgb, skip = infer.colorize_file(G, STRIP, 16, None)
    assert rgb is None and skip.startswith(work_limits.TOO_THIN)


def test_video_refuses_a_strip_frame(ckpt):
    G, _ = model_ref.resolve_generator(str(ckpt))
    with pytest.raises(codec.VideoError) as e:
        video.FrameColorizer(G, 16, None, "none")(np.zeros((8, 3000, 3), np.uint8))
    assert e.value.reason == work_limits.TOO_THIN
