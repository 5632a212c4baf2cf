"""A trained generator on photos: one photo's bytes in-process (``colorize_file``), and the three
stages that ``colorize infer`` runs on many, on Ray Data or (without Ray) in this process,
CPU -> GPU -> CPU:

1. CPU tasks (``read_decode``): read each file's bytes straight through the pyarrow file system (the
   listing already knows the files: no second stat per path, as ``read_binary_files`` would do on
   S3), decode, take L at full resolution and the model's input at the working size;
2. the model (``BatchModel``; on Ray ``ModelActor``, a GPU each when the cluster has GPUs): ab for a
   batch of inputs, grouped by working size so that each group is one pass through G;
3. CPU tasks (``finish``): ab upsampled and joined with the full-resolution L, fitted to the gamut
   keeping L (``color.lab_to_rgb_u8``, vectorised torch), encoded and written.

A grid is, instead of the colour photo, a comparison sheet per photo: its L and its colorization at
each temperature side by side, labelled (named ``<name>-grid.<ext>``). PNG and JPEG keep their
format, anything else becomes PNG; a photo with transparency keeps its alpha in a PNG.
"""

from __future__ import annotations

import io
import posixpath
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from PIL import Image

from pipeline.core import hints as hint_points
from pipeline.core import pictures, transforms
from pipeline.core.hint_spread import REACH as DEFAULT_HINT_SPREAD
from pipeline.core.hints import Hint
from pipeline.core.skips import SKIP_MISSING, SKIP_UNREADABLE, SKIP_WRITE_FAILED
from pipeline.data import storage
from pipeline.gan import checkpoint, predict
from pipeline.runtime import made_with, outputs, progress
from pipeline.runtime.work_limits import TooMuchWork, check_encoded

GRID_SUFFIX = "-grid"


def encode(rgb: np.ndarray, name: str, settings: Optional[dict] = None) -> bytes:
    """PNG or JPEG bytes by ``name``'s extension, recording ``settings`` (``made_with``) inside."""
    fmt = outputs.FORMATS.get(posixpath.splitext(name)[1].lower(), "PNG")
    buf = io.BytesIO()
    options = {"quality": 95} if fmt == "JPEG" else {}
    Image.fromarray(rgb).save(buf, fmt, **options, **made_with.save_options(fmt, settings))
    return buf.getvalue()


def colorize_file(
    G,
    data: bytes,
    size: Optional[int],
    temperature: Optional[float],
    device=None,
    max_pixels: int = transforms.DEFAULT_MAX_PIXELS,
    grid: Optional[Sequence[float]] = None,
    show_progress: bool = False,
    hints: Optional[Sequence[Hint]] = None,
    keep_alpha: bool = False,
    hint_spread: float = DEFAULT_HINT_SPREAD,
):
    """(uint8 (H, W, 3) colorized, None) or (None, skip reason) for one file's bytes; with ``grid``
    the comparison sheet at those temperatures (``pictures.grid_sheet``). ``show_progress``: a bar of the
    steps for photos big enough to take a while. ``hints``: points of this photo (HintError when
    one lies outside it), their colours spread ``hint_spread`` short sides (0: the network alone,
    ``predict.predict_ab_batch``). ``keep_alpha``: a photo with transparency comes back (H, W, 4), its
    alpha channel as it was."""
    try:
        check_encoded(data, size, max_pixels)
    except TooMuchWork as e:
        return None, f"{e.reason} ({e})"
    d = transforms.decode_image(data, size=None, max_pixels=max_pixels)
    if d.rgb is None:
        return None, d.skip
    if hints:
        hint_points.check_hints(hints, d.rgb.shape[1], d.rgb.shape[0])
    big = show_progress and d.rgb.shape[0] * d.rgb.shape[1] > progress.BIG_PHOTO_PIXELS
    with progress.bar(2 + (len(grid) if grid else 1), "colorize", "step", enabled=big) as steps:
        steps.update()  # decoded
        L = predict.photo_L(d.rgb)
        steps.update()
        if not grid:
            rgb = predict.join_l_ab(L, predict.predict_ab(G, L, size, temperature, device, hints, hint_spread))
            steps.update()
            return (with_alpha(rgb, d.alpha) if keep_alpha else rgb), None
        x = torch.from_numpy(predict.working_input(L, size))[None]
        hint_map = predict.working_hints(G, hints, *L.shape, x)
        rgbs = []
        for t in grid:
            rgbs.append(predict.join_full(L, predict.predict_ab_batch(G, x, t, device, hint_map, hint_spread)[0]))
            steps.update()
        return pictures.grid_sheet(L, rgbs, grid), None


def with_alpha(rgb: np.ndarray, alpha: Optional[np.ndarray]) -> np.ndarray:
    """``rgb`` with the source's alpha channel as a fourth one, when it had one of the same size."""
    if alpha is None or alpha.shape != rgb.shape[:2]:
        return rgb
    return np.dstack([rgb, alpha])


def keeps_alpha(name: str) -> bool:
    """Whether a result named ``name`` can hold transparency (PNG; JPEG has none)."""
    return outputs.FORMATS.get(posixpath.splitext(name)[1].lower(), "PNG") == "PNG"


_NONE = np.zeros((1, 1), np.float32)  # the L / input of a skipped row (Ray's tensor columns want an array)
_OPAQUE = np.zeros((1, 1), np.uint8)  # the alpha of a photo without transparency


def read_decode(batch: Dict[str, np.ndarray], fs, size: int, max_pixels: int = transforms.DEFAULT_MAX_PIXELS):
    """CPU stage: rows {"path", "out"} -> {"path", "out", "skip", "L" (H, W) float32 full
    resolution, "x" (1, h, w) the model's input at the working size, "alpha" (H, W) uint8 of a
    photo with transparency}. A file that cannot be read or decoded keeps its row, with a skip
    reason and placeholder arrays."""
    rows: Dict[str, list] = {"path": [], "out": [], "skip": [], "L": [], "x": [], "alpha": []}
    for path, out in zip(batch["path"], batch["out"], strict=True):
        skip, L, x, alpha = "", _NONE, _NONE[None], _OPAQUE
        try:
            with fs.open_input_stream(path) as f:
                data = f.read()
        except FileNotFoundError:
            skip = SKIP_MISSING  # listed, gone by read time
        except OSError:
            skip = SKIP_UNREADABLE
        if not skip:
            try:
                check_encoded(data, size, max_pixels)
            except TooMuchWork as e:
                skip = e.reason
        if not skip:
            d = transforms.decode_image(data, size=None, max_pixels=max_pixels)
            if d.rgb is None:
                skip = d.skip
            else:
                L = predict.photo_L(d.rgb)
                x = predict.working_input(L, size)
                alpha = _OPAQUE if d.alpha is None else d.alpha
        for k, v in (("path", path), ("out", out), ("skip", skip), ("L", L), ("x", x), ("alpha", alpha)):
            rows[k].append(v)
    return rows


class BatchModel:
    """The model stage: rows with "x" -> the same rows with "ab" (k, 2, h, w) float32 for k
    temperatures, "x" dropped. Inputs of one working size go through G together (photos of one
    shape share a size)."""

    def __init__(self, G, temperatures: list, device=None):
        self.G, self.temperatures = G, temperatures
        self.device = device or torch.device("cpu")

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, list]:
        xs, skips = list(batch["x"]), list(batch["skip"])
        ab: List[np.ndarray] = [np.zeros((len(self.temperatures), 2, 1, 1), np.float32)] * len(xs)
        groups: Dict[tuple, List[int]] = {}
        for i, (x, skip) in enumerate(zip(xs, skips, strict=True)):
            if not skip:
                groups.setdefault(tuple(x.shape), []).append(i)
        for idx in groups.values():
            x = torch.from_numpy(np.stack([xs[i] for i in idx]))
            outs = [predict.predict_ab_batch(self.G, x, t, self.device).cpu().numpy() for t in self.temperatures]
            for j, i in enumerate(idx):
                ab[i] = np.stack([o[j] for o in outs])
        rows = {k: list(batch[k]) for k in ("path", "out", "L", "alpha") if k in batch}
        return {**rows, "skip": skips, "ab": ab}


class ModelActor(BatchModel):
    """Ray Data actor: ``BatchModel`` with one generator per actor (a GPU when it has one)."""

    def __init__(self, weights: list, temperatures: list):
        import ray  # not at the top: one photo runs without Ray

        state, config = ray.get(weights[0])
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        super().__init__(checkpoint.generator_from_state(state, config).to(device), temperatures, device)


def finish(
    batch: Dict[str, np.ndarray],
    s3: dict,
    grid: Optional[List[float]] = None,
    settings: Optional[dict] = None,
    overwrite: bool = True,
) -> Dict[str, List[str]]:
    """CPU stage: join each row's ab with its full-resolution L (keep-L gamut fit in torch), encode
    and write to its planned target -> {"path", "out", "skip"} ("out" empty when not written).
    Without ``overwrite`` a target that another run wrote meanwhile is kept (skip ``exists``)."""
    s3_settings = storage.S3Settings.from_dict(s3)
    res: Dict[str, List[str]] = {"path": [], "out": [], "skip": []}
    alphas = batch["alpha"] if "alpha" in batch else [None] * len(batch["path"])
    cols = (batch["path"], batch["out"], batch["skip"], batch["L"], batch["ab"], alphas)
    for path, target, skip, L, ab, alpha in zip(*cols, strict=True):
        if skip:
            target = ""
        else:
            # copies: Ray hands read-only arrays, which torch.from_numpy warns about
            L = np.array(L, np.float32)
            rgbs = [predict.join_full(L, torch.from_numpy(np.array(a, np.float32))) for a in ab]
            rgb = pictures.grid_sheet(L, rgbs, grid) if grid else rgbs[0]
            if not grid and keeps_alpha(target):
                rgb = with_alpha(rgb, alpha)
            try:
                storage.write_bytes_atomic(target, encode(rgb, target, settings), s3_settings, exclusive=not overwrite)
            except FileExistsError:
                skip, target = outputs.EXISTS, ""
            except (storage.StorageError, OSError) as e:
                skip, target = f"{SKIP_WRITE_FAILED}: {storage.redact(str(e))[:200]}", ""
        res["path"].append(str(path))
        res["out"].append(str(target))
        res["skip"].append(str(skip or ""))
    return res
