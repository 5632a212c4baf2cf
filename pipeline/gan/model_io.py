"""What the registered MLflow model takes and gives (``pipeline/gan/pyfunc.py`` runs it): images in,
colour images out. Pure (numpy, PIL, torch via ``pipeline.gan.predict``); mlflow only for the signature.

Rows, one image each, in a column ``image`` (a pandas DataFrame, a dict, or a plain list):

- a uint8 array (H, W, 3) or (H, W) (grey), or nested lists of 0..255 (what JSON carries);
- encoded bytes (JPEG, PNG, WebP, TIFF, ...), or the same base64-encoded in a string (JSON).

An optional column ``hints`` gives a row's colour hints (a model trained with them): a JSON list
(or the list itself) of ``{"x": .., "y": .., "color": "#rrggbb"}``, points of that image at its own
size; empty or null for none.

Each comes back the same size with its own L (colour inputs are made grey first), as a uint8
(H, W, 3) array, or PNG bytes with ``format="png"`` (base64 in MLflow's JSON answer).
``params``: ``temperature`` (0.01..10, lower = more vivid), ``size`` (the working short side),
``format`` ("array" or "png"), ``hint_spread`` (how far each hint's colour carries, in short sides
of the image, 0..10; 0: the network's own answer to the hints), ``prior_correction`` (0..1, the
share of the training's class rebalancing that decoding divides back out; the model's own by default).
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any, List, Optional

import numpy as np
from PIL import Image

from pipeline.config import ConfigError, check_prior_correction, check_temperature
from pipeline.core import hint_spread as spreading
from pipeline.core import hints as hint_points
from pipeline.core import transforms
from pipeline.gan import predict
from pipeline.runtime import formats, work_limits

COLUMN = "image"
HINTS_COLUMN = "hints"
SIZE_RANGE = (16, 2048)  # as colorize infer
DEFAULT_SIZE = 256
FORMATS = ("array", *formats.written_by("model"))
MAX_PIXELS = 50_000_000  # per image: a decompression bomb or a huge array is refused, not decoded


class BadImage(ValueError):
    """A row that is not an image this model takes (the message says which row and why)."""


def rows(model_input: Any) -> List[Any]:
    """The images of a pyfunc input: DataFrame / dict column ``image``, or a list / array of images."""
    try:
        import pandas as pd

        if isinstance(model_input, pd.DataFrame):
            if COLUMN not in model_input.columns:
                raise BadImage(f"expected a column {COLUMN!r}, got {list(model_input.columns)}")
            return list(model_input[COLUMN])
    except ImportError:  # pandas comes with mlflow; without it only plain inputs arrive
        pass
    if isinstance(model_input, dict):
        if COLUMN not in model_input:
            raise BadImage(f"expected a key {COLUMN!r}, got {sorted(model_input)}")
        v = model_input[COLUMN]
        return list(v) if isinstance(v, (list, tuple)) else [v]
    if isinstance(model_input, np.ndarray) and model_input.dtype == np.uint8 and model_input.ndim in (3, 4):
        return [model_input] if model_input.ndim == 3 and model_input.shape[-1] in (3,) else list(model_input)
    if isinstance(model_input, (bytes, bytearray)):
        return [model_input]
    try:
        return list(model_input)
    except TypeError:  # a scalar: no rows
        raise BadImage(f"expected rows of images, got {type(model_input).__name__}") from None


def row_hints(model_input: Any, n: int) -> List[Optional[list]]:
    """Each row's hints (a list of ``Hint`` or None) from the optional ``hints`` column of a
    DataFrame or dict input: one entry per row whenever the images are rows (a list, even of one),
    the image's own hints when ``image`` is a single image; BadImage naming the row when they are
    not hints."""
    column = None
    try:
        import pandas as pd

        if isinstance(model_input, pd.DataFrame) and HINTS_COLUMN in model_input.columns:
            column = list(model_input[HINTS_COLUMN])
    except ImportError:
        pass
    if isinstance(model_input, dict) and HINTS_COLUMN in model_input:
        v = model_input[HINTS_COLUMN]  # one value per row when the images are rows (as ``rows`` reads them)
        per_row = isinstance(model_input.get(COLUMN), (list, tuple)) and isinstance(v, (list, tuple))
        column = list(v) if per_row else [v]
    if column is None:
        return [None] * n
    if len(column) != n:
        raise BadImage(f"{len(column)} rows of {HINTS_COLUMN} for {n} images")
    out = []
    for i, v in enumerate(column):
        if v is None or (isinstance(v, float) and v != v) or (isinstance(v, (str, list)) and len(v) == 0):
            out.append(None)  # null, NaN (a missing cell in pandas) or empty: no hints
            continue
        try:
            out.append(hint_points.hints_from_json(v.tolist() if isinstance(v, np.ndarray) else v))
        except hint_points.HintError as e:
            raise BadImage(f"row {i}: {e}") from None
    return out


def to_rgb(row: Any, i: int = 0, max_pixels: int = MAX_PIXELS, size: Optional[int] = None) -> np.ndarray:
    """One row -> uint8 (H, W, 3); BadImage when it is none of the accepted forms or over a work
    bound at working size ``size`` (``work_limits``, checked before decoding or converting)."""
    if isinstance(row, str):
        try:
            row = base64.b64decode(row, validate=False)
        except (binascii.Error, ValueError):
            raise BadImage(f"row {i}: a string that is not base64-encoded image bytes") from None
    if isinstance(row, (bytes, bytearray, memoryview)):
        _check_work(lambda: work_limits.check_encoded(bytes(row), size, max_pixels), i)
        d = transforms.decode_image(bytes(row), size=None, max_pixels=max_pixels)
        if d.rgb is None:
            raise BadImage(f"row {i}: not a usable image ({d.skip})")
        return d.rgb
    try:
        a = np.asarray(row)
    except (ValueError, TypeError):  # ragged nested lists: numpy refuses to make an array of them
        raise BadImage(f"row {i}: expected uint8 (H, W, 3) or (H, W), got rows of unequal length") from None
    if a.dtype == object or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] != 3):
        raise BadImage(f"row {i}: expected uint8 (H, W, 3) or (H, W), got {a.dtype} {a.shape}")
    if a.shape[0] < 8 or a.shape[1] < 8 or a.shape[0] * a.shape[1] > max_pixels:
        raise BadImage(f"row {i}: {a.shape[0]}x{a.shape[1]} pixels is outside 8x8 .. {max_pixels} pixels")
    _check_work(lambda: work_limits.check_shape(a.shape[0], a.shape[1], size, max_pixels), i)
    if a.dtype != np.uint8:
        if (
            not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating))
            or a.min() < 0
            or a.max() > 255
            or not np.all(a == np.rint(a))
        ):
            raise BadImage(f"row {i}: pixel values must be whole numbers 0..255")
        a = a.astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, -1)
    return np.ascontiguousarray(a)


def _check_work(check, i: int) -> None:
    try:
        check()
    except work_limits.TooMuchWork as e:
        raise BadImage(f"row {i}: {e}") from None


def options(params: Optional[dict], default_temperature: float, default_size: int = DEFAULT_SIZE):
    """(temperature, size, format) from pyfunc ``params``, checked (BadImage when out of range). An
    absent or null param takes its default; 0 is a value like any other (and out of range)."""
    params = params or {}
    try:
        t = float(_given(params, "temperature", default_temperature))
        size = int(_given(params, "size", default_size))
    except (TypeError, ValueError):
        raise BadImage(f"temperature must be a number, size an integer: {params}") from None
    fmt = str(_given(params, "format", "array")).lower()
    try:
        t = check_temperature(t)
    except ConfigError as e:
        raise BadImage(str(e)) from None
    if not SIZE_RANGE[0] <= size <= SIZE_RANGE[1]:
        raise BadImage(f"size must be {SIZE_RANGE[0]}..{SIZE_RANGE[1]}, got {size}")
    if fmt not in FORMATS:
        raise BadImage(f"format must be one of {FORMATS}, got {fmt!r}")
    return t, size, fmt


def hint_spread_of(params: Optional[dict]) -> float:
    """The ``hint_spread`` param (``hint_spread.parse_reach``), its default when absent or null;
    BadImage for a bad one."""
    value = _given(params or {}, "hint_spread", None)
    if value is None:
        return spreading.REACH
    try:
        return spreading.parse_reach(value)
    except ValueError as e:
        raise BadImage(f"hint_spread {e}") from None


def prior_correction_of(params: Optional[dict], default: float) -> float:
    """The ``prior_correction`` param (0..1), the model's own ``default`` when absent or null;
    BadImage for a bad one."""
    value = _given(params or {}, "prior_correction", None)
    if value is None:
        return default
    try:
        return check_prior_correction(value, "prior_correction")
    except ConfigError as e:
        raise BadImage(str(e)) from None


def _given(params: dict, name: str, default):
    value = params.get(name)
    return default if value is None or value == "" else value


def png(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()


def colorize_rows(G, model_input: Any, params: Optional[dict] = None, device=None) -> List[Any]:
    """The pyfunc's answer: one colour image per input row (see the module's docstring)."""
    t, size, fmt = options(params, G.temperature, predict.working_size(G))
    reach = hint_spread_of(params)
    correction = prior_correction_of(params, float(getattr(G, "prior_correction", 0.0)))
    images = [to_rgb(r, i, size=size) for i, r in enumerate(rows(model_input))]  # every row checked before any work
    hints = row_hints(model_input, len(images))
    for i, (rgb, h) in enumerate(zip(images, hints, strict=True)):
        try:
            predict.check_takes_hints(G, h)
            hint_points.check_hints(h or [], rgb.shape[1], rgb.shape[0])
        except hint_points.HintError as e:
            raise BadImage(f"row {i}: {e}") from None
    pairs = zip(images, hints, strict=True)
    out = [predict.colorize(G, rgb, size, t, device, h, reach, correction) for rgb, h in pairs]
    return [png(o) for o in out] if fmt == "png" else out


def signature(default_temperature: float, default_size: int = DEFAULT_SIZE, default_prior_correction: float = 0.0):
    """The model's MLflow signature: a column ``image`` of any of the accepted forms, an optional
    column ``hints``, and the params with their defaults (``temperature`` and ``prior_correction``
    the model's own)."""
    from mlflow.models import ModelSignature
    from mlflow.types.schema import AnyType, ColSpec, ParamSchema, ParamSpec, Schema

    return ModelSignature(
        inputs=Schema([ColSpec(AnyType(), COLUMN), ColSpec(AnyType(), HINTS_COLUMN, required=False)]),
        params=ParamSchema(
            [
                ParamSpec("temperature", "double", float(default_temperature)),
                ParamSpec("size", "long", int(default_size)),
                ParamSpec("format", "string", "array"),
                ParamSpec("hint_spread", "double", spreading.REACH),
                ParamSpec("prior_correction", "double", float(default_prior_correction)),
            ]
        ),
    )


def pip_requirements() -> List[str]:
    """What the served model imports (numpy, PIL, torch, yaml, scikit-image for the hints' spread,
    tqdm for progress bars, mlflow and its pandas), pinned to this environment: stated, so that logging skips MLflow's
    requirement inference (a subprocess that loads the model: ~20 s per logged model)."""
    import mlflow
    import pandas
    import PIL
    import skimage
    import torch
    import tqdm
    import yaml

    torch_version = torch.__version__.split("+")[0]  # a local CUDA/CPU tag is not on PyPI
    return [
        f"mlflow=={mlflow.__version__}",
        f"torch=={torch_version}",
        f"numpy=={np.__version__}",
        f"pillow=={PIL.__version__}",
        f"pyyaml=={yaml.__version__}",
        f"pandas=={pandas.__version__}",
        f"scikit-image=={skimage.__version__}",
        f"tqdm=={tqdm.__version__}",
    ]


def input_example():
    """Two small photos as PNG bytes (a batch of two: nothing downstream may freeze a batch of one)."""
    import pandas as pd

    rng = np.random.default_rng(0)
    photos = [rng.integers(0, 256, (24, 32, 3), dtype=np.uint8) for _ in range(2)]
    return pd.DataFrame({COLUMN: [base64.b64encode(png(p)).decode() for p in photos]})
