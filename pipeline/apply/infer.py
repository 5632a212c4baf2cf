"""``colorize infer``: colorize one photo in-process, or a folder / list / ``s3://`` prefix on Ray
Data, CPU -> GPU -> CPU:

1. CPU tasks (``read_decode``): read each file's bytes straight through the pyarrow file system (the
   listing already knows the files: no second stat per path, as ``read_binary_files`` would do on
   S3), decode, take L at full resolution and the model's input at the working size;
2. model actors (``ModelActor``, a GPU each when the cluster has GPUs): ab for a batch of inputs,
   grouped by working size so that each group is one pass through G;
3. CPU tasks (``finish``): ab upsampled and joined with the full-resolution L, fitted to the gamut
   keeping L (``color.lab_to_rgb_u8``, vectorised torch), encoded and written.

``--grid T1,T2,...`` writes, instead of the colour photo, a comparison sheet per photo: its L and
its colorization at each temperature side by side, labelled (named ``<name>-grid.<ext>``).

Outputs keep the inputs' names (relative to the inputs' common folder) under ``--output``; PNG and
JPEG keep their format, anything else becomes PNG. Every name is planned before any work starts
(``pipeline.core.outputs``): it cannot leave ``--output``, never replaces an input, two inputs never
share one, and an existing output is kept unless ``--overwrite``. A file that does not decode is
skipped and reported by reason; every other file is still written.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import posixpath
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw

from pipeline import cli_args
from pipeline.apply import per_input
from pipeline.config import ConfigError, check_range, check_temperature
from pipeline.core import color, made_with, outputs, progress, transforms
from pipeline.core import hints as hint_points
from pipeline.core.hints import Hint, HintError
from pipeline.core.skips import SKIP_MISSING, SKIP_NOT_IMAGE, SKIP_UNREADABLE
from pipeline.core.stops import remove_partials
from pipeline.core.work_limits import TooMuchWork, check_encoded
from pipeline.data import storage
from pipeline.gan import checkpoint, model_ref, predict

log = logging.getLogger(__name__)

FORMATS = outputs.FORMATS
output_name = outputs.output_name
WRITE_FAILED = "write_failed"
GRID_SUFFIX = "-grid"
COLOUR_SUFFIX = "-colour"  # old.jpg -> old-colour.jpg when no --output is given
MAX_HINTS_FILE = 1 << 20  # bytes of a --hints file: MAX_HINTS points take a few KiB
SIZE_RANGE = (16, 2048)  # working short side: below, nothing to see; above, the model's activations outgrow memory


def add_size_arg(p: argparse.ArgumentParser) -> None:
    """--size: the working size (infer and video); None means the model's own training scale."""
    p.add_argument(
        "--size",
        type=int,
        default=None,
        help=f"working size: the short side the model sees, {SIZE_RANGE[0]} to {SIZE_RANGE[1]} "
        "(default: the size the model was trained at, 128 for the shipped model)",
    )


def add_hint_args(p: argparse.ArgumentParser, where: str = "the photo") -> None:
    """--hint (repeatable) and --hints FILE.json: colour hints (infer and video)."""
    p.add_argument(
        "--hint",
        action="append",
        type=_hint,
        default=[],
        metavar="X,Y,#RRGGBB",
        help=f"a colour hint: the point X,Y (pixels of {where} at its own size, from the top left) has "
        "this colour; repeat for more points",
    )
    p.add_argument(
        "--hints",
        metavar="FILE.json",
        default=None,
        help='colour hints from a JSON file: [{"x": 10, "y": 20, "color": "#aa3300"}, ...]',
    )


def _hint(text: str) -> Hint:
    try:
        return hint_points.parse_hint(text)
    except HintError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def hints_of(args) -> List[Hint]:
    """The hints of --hint and --hints together (HintError for an unreadable file, bad entries, or
    more than ``MAX_HINTS``); [] when neither is given."""
    hints = list(getattr(args, "hint", None) or [])
    path = getattr(args, "hints", None)
    if path:
        try:
            with open(path, "rb") as f:
                text = f.read(MAX_HINTS_FILE + 1)
        except OSError as e:
            raise HintError(f"--hints {path}: {e.strerror or type(e).__name__}") from None
        if len(text) > MAX_HINTS_FILE:
            raise HintError(
                f"--hints {path}: too large, over {MAX_HINTS_FILE >> 20} MiB (at most {hint_points.MAX_HINTS} hints)"
            )
        try:
            hints += hint_points.hints_from_json(text)
        except HintError as e:
            raise HintError(f"--hints {path}: {e}") from None
    if len(hints) > hint_points.MAX_HINTS:
        raise HintError(f"{len(hints)} hints: at most {hint_points.MAX_HINTS}")
    return hints


def add_args(p: argparse.ArgumentParser) -> None:
    """``colorize infer`` arguments."""
    cli_args.add_input_args(p, "a photo, folder, list file (.txt) or s3://bucket/prefix")
    cli_args.add_output_arg(
        p,
        "output file (for one photo) or folder / s3:// prefix (default: PHOTO-colour.EXT next to a photo, "
        "FOLDER-colour/ beside a folder)",
    )
    cli_args.add_model_args(p)
    add_size_arg(p)
    p.add_argument("--workers", type=int, default=None, help="model actors (default: one per GPU, else CPUs/2 up to 4)")
    p.add_argument("--batch", type=int, default=16, help="photos per model call in an actor (default 16)")
    p.add_argument(
        "--grid",
        type=_temperatures,
        default=None,
        metavar="T1,T2,...",
        help="write a comparison sheet per photo instead: its L and its colorization at each temperature "
        f"side by side, labelled (named <name>{GRID_SUFFIX}.<ext>)",
    )
    add_hint_args(p)
    cli_args.add_overwrite_arg(p)
    cli_args.add_s3_args(p)


def _temperatures(text: str) -> List[float]:
    try:
        ts = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected temperatures like 0.2,0.38,0.7, got {text!r}") from None
    if not ts or len(ts) > 16:
        raise argparse.ArgumentTypeError(f"expected 1 to 16 temperatures, got {text!r}")
    try:
        return [check_temperature(t, "--grid temperatures") for t in ts]
    except ConfigError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def grid_sheet(L: np.ndarray, rgbs: Sequence[np.ndarray], temperatures: Sequence[float]) -> np.ndarray:
    """One uint8 image: the photo's L (as grey) and each colorization side by side, each under a
    label ("L", "T=0.38", ...) in PIL's built-in font (no font files)."""
    H, W = L.shape
    zero = np.zeros_like(L)
    grey = color.lab_to_rgb_u8(np.stack([L, zero, zero], -1))  # the grey of each pixel's L
    panels = [grey, *rgbs]
    labels = ["L"] + [f"T={t:g}" for t in temperatures]
    band, gap = max(14, min(H, W) // 12), 4
    sheet = Image.new("RGB", (len(panels) * W + (len(panels) - 1) * gap, H + band), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    try:
        from PIL import ImageFont

        font = ImageFont.load_default(size=max(10, band - 4))
    except (TypeError, OSError):  # older Pillow: a fixed-size bitmap font
        font = None
    for i, (panel, label) in enumerate(zip(panels, labels, strict=True)):
        x = i * (W + gap)
        sheet.paste(Image.fromarray(panel), (x, band))
        draw.text((x + 2, 1), label, fill=(0, 0, 0), font=font)
    return np.asarray(sheet)


def encode(rgb: np.ndarray, name: str, settings: Optional[dict] = None) -> bytes:
    """PNG or JPEG bytes by ``name``'s extension, recording ``settings`` (``made_with``) inside."""
    fmt = FORMATS.get(posixpath.splitext(name)[1].lower(), "PNG")
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
):
    """(uint8 (H, W, 3) colorized, None) or (None, skip reason) for one file's bytes; with ``grid``
    the comparison sheet at those temperatures (``grid_sheet``). ``show_progress``: a bar of the
    steps for photos big enough to take a while. ``hints``: points of this photo (HintError when
    one lies outside it). ``keep_alpha``: a photo with transparency comes back (H, W, 4), its
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
            rgb = predict.join_l_ab(L, predict.predict_ab(G, L, size, temperature, device, hints))
            steps.update()
            return (with_alpha(rgb, d.alpha) if keep_alpha else rgb), None
        x = torch.from_numpy(predict.working_input(L, size))[None]
        hint_map = predict.working_hints(G, hints, *L.shape, x)
        rgbs = []
        for t in grid:
            rgbs.append(predict.join_full(L, predict.predict_ab_batch(G, x, t, device, hint_map)[0]))
            steps.update()
        return grid_sheet(L, rgbs, grid), None


def with_alpha(rgb: np.ndarray, alpha: Optional[np.ndarray]) -> np.ndarray:
    """``rgb`` with the source's alpha channel as a fourth one, when it had one of the same size."""
    if alpha is None or alpha.shape != rgb.shape[:2]:
        return rgb
    return np.dstack([rgb, alpha])


def keeps_alpha(name: str) -> bool:
    """Whether a result named ``name`` can hold transparency (PNG; JPEG has none)."""
    return FORMATS.get(posixpath.splitext(name)[1].lower(), "PNG") == "PNG"


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
        import ray  # not at the top: see _run_on_ray

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
            rgb = grid_sheet(L, rgbs, grid) if grid else rgbs[0]
            if not grid and keeps_alpha(target):
                rgb = with_alpha(rgb, alpha)
            try:
                storage.write_bytes_atomic(target, encode(rgb, target, settings), s3_settings, exclusive=not overwrite)
            except FileExistsError:
                skip, target = outputs.EXISTS, ""
            except (storage.StorageError, OSError) as e:
                skip, target = f"{WRITE_FAILED}: {storage.redact(str(e))[:200]}", ""
        res["path"].append(str(path))
        res["out"].append(str(target))
        res["skip"].append(str(skip or ""))
    return res


def run(args) -> int:
    if args.size is not None:
        check_range("--size", args.size, *SIZE_RANGE)
    if args.workers is not None:
        check_range("--workers", args.workers, 1, 1024)
    check_range("--batch", getattr(args, "batch", 16), 1, 4096)
    args.input = cli_args.input_of(args)
    hints = hints_of(args)
    s3 = storage.S3Settings.from_env(endpoint=args.s3_endpoint, region=args.s3_region)
    fs, paths, skipped = per_input.list_inputs(args.input, s3)
    single = per_input.is_single_file(args.input, paths)
    if hints and not single:
        raise HintError("colour hints are points of one photo: give a single photo with --hint/--hints")
    suffix = GRID_SUFFIX if getattr(args, "grid", None) else COLOUR_SUFFIX
    args.output = args.output or per_input.default_output(args.input, single, output_name, suffix)
    if single:
        return _one_photo(args, fs, paths[0], s3, hints)
    listed = len(paths) + skipped.total
    planned = _plan(args, paths, s3)
    G, info = model_ref.resolve_generator(args.model, args.tracking_uri)
    args.size = predict.working_size(G, args.size)
    settings = _settings(args, G, info)
    planned = per_input.check_kept(planned, settings, s3)
    skipped.add_all((t.path, t.skip) for t in planned if not t.out)
    todo = [t for t in planned if t.out]
    written = 0
    if todo:
        rows = _run_folder(G, info, todo, fs, args, s3, settings)
        written = sum(1 for r in rows if r["out"])
        skipped.add_all((r["path"], r["skip"].split(":")[0]) for r in rows if not r["out"])
    print(
        f"colorize infer: {written} of {listed} written to {storage.redact(args.output)} "
        f"(model {info['ref']}, T={_shown_t(args, G)})"
    )
    per_input.print_skips(skipped)
    return per_input.exit_code(written, skipped, WRITE_FAILED)


def _settings(args, G, info, hints: Sequence[Hint] = ()) -> dict:
    """The settings this run's results record (``made_with``): the model, its temperature(s), the
    size, and the hints when there are any."""
    temperatures = list(getattr(args, "grid", None) or [args.temperature or G.temperature])
    more = {"hints": [h.to_json() for h in hints]} if hints else {}
    return made_with.photo_settings(info["ref"], temperatures, args.size, **more)


def _one_photo(args, fs, path: str, s3: storage.S3Settings, hints: Sequence[Hint] = ()) -> int:
    """One photo, in-process: its target checked before any work."""
    out = _single_target(args.input, args.output, path, GRID_SUFFIX if getattr(args, "grid", None) else "")
    storage.check_writable_parent(out, s3)
    G, info = model_ref.resolve_generator(args.model, args.tracking_uri)
    predict.check_takes_hints(G, hints)
    args.size = predict.working_size(G, args.size)
    settings = _settings(args, G, info, hints)
    if storage.exists(out, s3) and not args.overwrite:
        return per_input.report_kept("colorize infer", out, settings, s3)
    try:
        with fs.open_input_stream(path) as f:
            data = f.read()
    except OSError as e:
        why = e.strerror or type(e).__name__
        print(f"colorize infer: skipped {storage.redact(args.input)}: {SKIP_UNREADABLE} ({why})")
        return 1
    grid = getattr(args, "grid", None)
    rgb, skip = colorize_file(
        G, data, args.size, args.temperature, grid=grid, show_progress=True, hints=hints, keep_alpha=keeps_alpha(out)
    )
    if rgb is None:
        video = skip == SKIP_NOT_IMAGE and posixpath.splitext(path)[1].lower() in outputs.VIDEO_SUFFIXES
        advice = f": a video? colorize video {args.input}" if video else ""
        print(f"colorize infer: skipped {storage.redact(args.input)}: {skip}{advice}")
        return 1
    try:  # created exclusively: a result another run wrote meanwhile follows the rerun rule
        storage.write_bytes_atomic(out, encode(rgb, out, settings), s3, exclusive=not args.overwrite)
    except FileExistsError:
        return per_input.report_kept("colorize infer", out, settings, s3)
    except OSError as e:
        raise storage.StorageError(f"cannot write {storage.redact(out)}: {e.strerror or type(e).__name__}") from None
    print(f"colorize infer: wrote {storage.redact(out)} (model {info['ref']}, T={_shown_t(args, G)})")
    return 0


def _shown_t(args, G) -> str:
    grid = getattr(args, "grid", None)
    return ",".join(f"{t:g}" for t in grid) if grid else f"{args.temperature or G.temperature:g}"


def _single_target(input_uri: str, output: str, src: str, suffix: str = "") -> str:
    """Where one photo's result goes: ``--output`` itself when it names a PNG/JPEG file; the same
    name as PNG when it names a file of another picture format (``astro.tif`` -> ``astro.png``);
    else (or when a folder has that name) a file of the input's name inside that folder. Never the
    input itself."""
    src_uri = ("s3://" + src) if storage.is_s3(input_uri) else src
    out = output
    if per_input.canonical(out) != per_input.canonical(src_uri):
        ext = posixpath.splitext(out.rstrip("/"))[1].lower()
        folder = out.endswith("/") or _is_local_folder(out)
        if ext in Image.registered_extensions() and not folder:
            out = output_name(out)  # a file: PNG and JPEG as named, other picture formats become PNG
        elif ext not in FORMATS or folder:  # a folder
            out = posixpath.join(out, output_name(posixpath.basename(src), suffix))
    if per_input.canonical(out) == per_input.canonical(src_uri):
        raise storage.StorageError(
            f"--output {storage.redact(out)} is the input itself: colorize never writes over "
            "its input; give another file or folder"
        )
    return out


def _is_local_folder(uri: str) -> bool:
    return not storage.is_s3(uri) and os.path.isdir(os.path.expanduser(uri))


def _plan(args, paths: List[str], s3: storage.S3Settings) -> List[outputs.Target]:
    """Every input's output path (or why it gets none), decided before any work starts."""
    suffix = GRID_SUFFIX if getattr(args, "grid", None) else ""
    return per_input.plan(args.input, args.output, paths, s3, args.overwrite, suffix=suffix)


def _run_folder(
    G, info, todo: List[outputs.Target], fs, args, s3: storage.S3Settings, settings: Optional[dict] = None
) -> List[Dict[str, str]]:
    """Colorize the planned inputs: on Ray Data when Ray is installed, else here, in this process
    (the light install), through the same three stages."""
    try:
        import ray  # noqa: F401  (only whether it is there)
    except ModuleNotFoundError:
        return _run_here(G, todo, fs, args, s3, settings)
    return _run_on_ray(G, info, todo, fs, args, s3, settings)


def _run_here(
    G, todo: List[outputs.Target], fs, args, s3: storage.S3Settings, settings: Optional[dict] = None
) -> List[Dict[str, str]]:
    """The planned inputs one batch at a time in this process: read/decode, the model, join/write."""
    grid = getattr(args, "grid", None)
    model = BatchModel(G, list(grid) if grid else [args.temperature])
    batch, rows = getattr(args, "batch", 16), []
    with progress.bar(len(todo), "colorize", "photo") as bar:  # each write is atomic: a stop leaves no part
        for i in range(0, len(todo), batch):
            part = todo[i : i + batch]
            decoded = read_decode({"path": [t.path for t in part], "out": [t.out for t in part]}, fs, args.size)
            done = finish(model(decoded), s3.to_dict(), grid, settings)
            rows += [dict(zip(done, values, strict=True)) for values in zip(*done.values(), strict=True)]
            bar.update(len(part))
    return rows


def _run_on_ray(
    G, info, todo: List[outputs.Target], fs, args, s3: storage.S3Settings, settings: Optional[dict] = None
) -> List[Dict[str, str]]:
    """Colorize the planned inputs on Ray Data (CPU read/decode -> model actors -> CPU join/write);
    one row {"path", "out", "skip"} per input."""
    # Ray (and pipeline.data.sources, which imports it) here, not at the top: one photo is colorized
    # in-process (_one_photo) and never pays the seconds that importing Ray takes.
    import ray

    from pipeline.data import sources

    sources.ensure_ray()
    sources.configure_io_retries()
    gpus = int(ray.cluster_resources().get("GPU", 0))
    actors = args.workers or (gpus if gpus else max(1, min(4, int(ray.cluster_resources().get("CPU", 2)) // 2)))
    grid = getattr(args, "grid", None)
    temperatures = list(grid) if grid else [args.temperature]
    weights = ray.put((G.state_dict(), info["config"]))
    files_per_block = 8
    ds = ray.data.from_items(
        [{"path": t.path, "out": t.out} for t in todo], override_num_blocks=max(1, -(-len(todo) // files_per_block))
    )
    ds = ds.map_batches(
        read_decode, fn_kwargs=dict(fs=fs, size=args.size), batch_size=None, num_cpus=0.5, batch_format="numpy"
    )
    ds = ds.map_batches(
        ModelActor,
        fn_constructor_kwargs=dict(weights=[weights], temperatures=temperatures),
        batch_size=getattr(args, "batch", 16),
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_gpus=1 if gpus else 0,
        num_cpus=1 if not gpus else 0.5,
    )
    ds = ds.map_batches(
        finish,
        fn_kwargs=dict(s3=s3.to_dict(), grid=grid, settings=settings, overwrite=args.overwrite),
        batch_size=4,
        num_cpus=0.5,
        batch_format="numpy",
    )
    try:
        rows = ds.take_all()
    except BaseException:  # a stop or a failure: the workers go first, then what they left half-written
        ray.shutdown()
        remove_partials([t.out for t in todo])
        raise
    seen = {r["path"] for r in rows}
    paths = [t.path for t in todo]
    rows += [{"path": p, "out": "", "skip": SKIP_MISSING} for p in paths if p not in seen]  # never lost silently
    return rows
