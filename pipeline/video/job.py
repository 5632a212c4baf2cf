"""``colorize video``: colorize videos frame by frame with a trained generator, with colour that holds
still from frame to frame (``--temporal flow``, default; ``pipeline.video.temporal``) or per frame
(``--temporal none``).

One video runs in-process; a folder, list file or ``s3://`` prefix runs one video per Ray Data
task, the model in an actor pool (one GPU per actor when the cluster has GPUs), with Ray Data's
progress bars. Output names are planned before any work (``pipeline.core.outputs``: inside ``--output``,
never over an input, existing outputs kept unless ``--overwrite``); MP4/MOV/MKV keep their
container, anything else becomes ``.mkv``. Decode/encode, timestamps, audio, rotation and the
never-half-written rule: ``pipeline.video.codec``. Every frame: predict ab at the working size (as for
photos), smooth it over time, upsample, join with the frame's full-resolution L (keep-L gamut fit,
``pipeline.core.color``): L of every output frame is the input's, up to rounding and the encoder's loss.
"""

from __future__ import annotations

import argparse
import os
import posixpath
import shutil
import tempfile
import time
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from pipeline import cli_args
from pipeline.apply import infer, per_input
from pipeline.config import check_range
from pipeline.core import color, made_with, outputs, progress
from pipeline.core import hints as hint_points
from pipeline.core.hints import Hint, HintError
from pipeline.core.skips import SKIP_UNREADABLE
from pipeline.core.stops import remove_partials
from pipeline.core.work_limits import TooMuchWork, check_shape
from pipeline.data import storage
from pipeline.gan import model_ref, predict
from pipeline.video import codec, temporal, threads

TEMPORAL = ("flow", "none")
WRITE_FAILED = "write_failed"
COPY_CHUNK = 8 << 20
COLOUR_SUFFIX = infer.COLOUR_SUFFIX  # old.mp4 -> old-colour.mp4 when no --output is given


def add_args(p: argparse.ArgumentParser) -> None:
    cli_args.add_input_args(p, "a video, folder, list file (.txt) or s3://bucket/prefix")
    cli_args.add_output_arg(
        p,
        "output video file (for one video) or folder / s3:// prefix (default: VIDEO-colour.EXT next to a "
        "video, FOLDER-colour/ beside a folder)",
    )
    cli_args.add_model_args(p)
    infer.add_size_arg(p)
    p.add_argument(
        "--temporal",
        choices=TEMPORAL,
        default="flow",
        help="flow: colour follows the motion (optical flow), colour hints too until a scene cut; none: "
        "every frame alone, colour hints on the first frame only",
    )
    p.add_argument("--workers", type=int, default=None, help="model actors (default: one per GPU, else CPUs/2 up to 4)")
    infer.add_hint_args(p, "the first frame, as a player shows it,")
    cli_args.add_overwrite_arg(p)
    cli_args.add_s3_args(p)


class FrameColorizer:
    """uint8 RGB frame -> uint8 RGB frame, frames fed in order (it holds the temporal state).

    ``hints``: colour hints on the first frame, points at its stored size (``stored_hints``). The
    first frame is predicted with them. With ``--temporal flow`` the hint *points* then travel with
    the motion: each frame, every point moves along the forward optical flow and the model is given
    the hint map at the points' new places (``temporal.carry_points``); a point that is occluded,
    mis-tracked or leaves the frame is dropped, and a scene cut drops them all. Giving the first
    frame alone the hints and letting the flow carry its colours would be simpler, but the blend
    keeps ``temporal.KEEP`` of the carried colour per frame (0.85^t: under a fifth after ten
    frames), so the model's own guess wins the hinted object back within a second (measured on a
    pan: a hint's pull was gone by frame 15 that way, and held when carried); moving the points
    keeps telling the model, where the object now is, what colour it has. Points are moved,
    not a warped map: the map stays crisp 0/1 patches that the model was trained on, never a
    bilinear smear. Without flow there is no motion to follow: the first frame alone takes the hints.
    """

    def __init__(
        self,
        G,
        size: Optional[int],
        temperature: Optional[float],
        mode: str = "flow",
        device=None,
        hints: Sequence[Hint] = (),
    ):
        if mode not in TEMPORAL:
            raise ValueError(f"--temporal must be one of {TEMPORAL}, got {mode!r}")
        predict.check_takes_hints(G, hints)
        self.G, self.size, self.temperature, self.device = G, size, temperature, device
        self.smoother = temporal.TemporalSmoother() if mode == "flow" else None
        self.hints = list(hints)
        self.points: Optional[List[Hint]] = None  # the hints at the working size; None before the first frame
        self.seconds = {"model": 0.0, "temporal": 0.0}

    def __call__(self, rgb: np.ndarray) -> np.ndarray:
        try:  # the frame's size is the decoder's, already within the pixel limit: the other bounds here
            check_shape(rgb.shape[0], rgb.shape[1], self.size, codec.DEFAULT_MAX_PIXELS)
        except TooMuchWork as e:
            raise codec.VideoError(e.reason, str(e)) from None
        L = color.rgb_to_lab(rgb)[..., 0].astype(np.float64)
        Ls = predict.working_L(L, self.size)  # (h, w)
        t0 = time.perf_counter()
        motion = self.smoother.advance(Ls) if self.smoother is not None else None
        points = self._points(L.shape, Ls.shape, motion)
        t1 = time.perf_counter()
        ab = predict.predict_ab(self.G, Ls, self.size, self.temperature, self.device, points)  # (h, w, 2)
        t2 = time.perf_counter()
        if self.smoother is not None:
            ab = self.smoother.blend(ab)
        self.seconds["model"] += t2 - t1
        self.seconds["temporal"] += (t1 - t0) + (time.perf_counter() - t2)
        return predict.join_l_ab(L, predict.upsample_ab(ab, *L.shape))

    def _points(self, full: tuple, work: tuple, motion: Optional[temporal.Motion]) -> List[Hint]:
        """This frame's hints at the working size ``work`` (h, w): the user's on the first frame (of
        size ``full`` (H, W)); later those carried by ``motion``, none after a cut or without flow."""
        if self.points is None:
            (H, W), (h, w) = full, work
            self.points = [Hint(p.x * w / W, p.y * h / H, p.rgb) for p in self.hints]
        elif self.points:
            self.points = temporal.carry_points(self.points, motion) if motion is not None else []
        return self.points


def colorize_video(
    G,
    src: str,
    dst: str,
    size,
    temperature,
    mode: str = "flow",
    device=None,
    progress=None,
    settings=None,
    hints: Sequence[Hint] = (),
):
    """Colorize the local video ``src`` into the local file ``dst`` (``codec.Result``), recording
    ``settings`` (``made_with``) in its comment tag. ``hints``: points of the first frame as a
    player shows it, checked against it before any frame is written (HintError)."""
    if hints:
        hints = stored_hints(hints, *codec.frame_geometry(src))
    colorizer = FrameColorizer(G, size, temperature, mode, device, hints)
    comment = made_with.comment(settings) if settings else None
    pools = threads.share()  # the model, flow and codecs sized together for the machine
    return codec.transcode(
        src, dst, colorizer, progress=progress, comment=comment, threads=(pools.decode, pools.encode)
    )


def stored_hints(hints: Sequence[Hint], width: int, height: int, rotation: int) -> List[Hint]:
    """Points on the first frame as a player shows it -> the same points on the frame as stored
    (``width`` x ``height``, shown turned ``rotation`` degrees counter-clockwise, as
    ``codec.transcode`` reads it); HintError for a point outside the frame shown. A point maps by
    its pixel's centre, so it stays inside the stored frame."""
    quarter = (rotation // 90) % 4
    shown_w, shown_h = (height, width) if quarter % 2 else (width, height)
    hint_points.check_hints(hints, shown_w, shown_h, f"the first frame ({shown_w}x{shown_h} as shown)")
    out = []
    for p in hints:
        x, y = int(p.x) + 0.5, int(p.y) + 0.5  # the pixel's centre
        x, y = ((x, y), (width - y, x), (width - x, height - y), (y, height - x))[quarter]
        out.append(Hint(x, y, p.rgb))
    return out


def settings_of(opts: dict, ref: str, G, hints: Sequence[Hint] = ()) -> dict:
    """The settings a colorized video records: model, temperature, size, temporal mode, and its
    colour hints when it has any."""
    t = opts["temperature"] or G.temperature
    more = {"hints": [h.to_json() for h in hints]} if hints else {}
    return made_with.photo_settings(ref, [t], opts["size"], temporal=opts["temporal"], **more)


def video_settings_at(fs, path: str) -> Optional[dict]:
    """The settings recorded in a stored video's comment tag (``made_with``)."""
    with fs.open_input_file(path) as f:
        return made_with.from_comment(codec.container_comment(f))


def _fetch(uri_or_path: str, fs, path: str, workdir: str) -> str:
    """A local path to read the input from (S3 objects are copied to ``workdir`` first, streamed)."""
    if not storage.is_s3(uri_or_path):
        return path
    local = os.path.join(workdir, "input" + os.path.splitext(path)[1])
    with fs.open_input_stream(path) as f, open(local, "wb") as g:
        shutil.copyfileobj(f, g, COPY_CHUNK)
    return local


def _process(
    G,
    fs,
    src_path: str,
    input_uri: str,
    target: str,
    args_like: dict,
    s3: storage.S3Settings,
    device=None,
    work_root: Optional[str] = None,
    progress=None,
):
    """One video: read, colorize, write ``target`` (local, or S3 through a local temp). Returns
    (result or None, skip reason, message). ``args_like["settings"]`` is recorded in the video. Its
    temporary folder goes inside ``work_root`` when given (the folder a stopped run removes as a whole)."""
    if work_root:
        os.makedirs(work_root, exist_ok=True)  # another node of the cluster: its own
    with tempfile.TemporaryDirectory(prefix="colorize-video-", dir=work_root) as work:
        try:
            local_in = _fetch(input_uri, fs, src_path, work)
        except OSError as e:
            return None, SKIP_UNREADABLE, e.strerror or type(e).__name__
        local_out = target if not storage.is_s3(target) else os.path.join(work, "out" + posixpath.splitext(target)[1])
        try:
            r = colorize_video(
                G,
                local_in,
                local_out,
                args_like["size"],
                args_like["temperature"],
                args_like["temporal"],
                device,
                progress,
                args_like.get("settings"),
                args_like.get("hints", ()),
            )
        except codec.VideoError as e:
            return None, e.reason, str(e)
        if storage.is_s3(target):
            out_fs, out_path = storage.resolve(target, s3)
            try:  # an S3 object appears only when its upload completes: never half-written
                with open(local_out, "rb") as f, out_fs.open_output_stream(out_path) as g:
                    shutil.copyfileobj(f, g, COPY_CHUNK)
            except OSError as e:
                return None, WRITE_FAILED, storage.redact(str(e))[:200]
        return r, "", ""


def _describe(r: codec.Result) -> str:
    s = f"{r.frames} frames {r.width}x{r.height}, {r.codec} {r.pix_fmt}"
    if r.audio_streams:
        s += f", {r.audio_streams} audio stream(s) copied"
    if r.rotation:
        s += f", rotation {r.rotation}"
    if r.corrupt_tail:
        s += f"; corrupt tail: kept the {r.frames} frames before it" + (f" of {r.declared}" if r.declared else "")
    return s


class VideoColorizer:
    """Ray Data actor: one generator per actor; rows {"path", "out"} -> {"path", "out", "skip", "note"}."""

    def __init__(self, weights: list, input_uri: str, opts: dict, s3: dict, work_root: Optional[str] = None):
        import ray  # not at the top: one video runs without Ray

        state, config = ray.get(weights[0])
        from pipeline.gan import checkpoint

        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.G = checkpoint.generator_from_state(state, config).to(self.device)
        self.s3 = storage.S3Settings.from_dict(s3)
        self.fs, _ = storage.resolve(input_uri, self.s3)
        self.input_uri, self.opts, self.work_root = input_uri, opts, work_root

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, List[str]]:
        out: Dict[str, List[str]] = {"path": [], "out": [], "skip": [], "note": []}
        for path, target in zip(batch["path"], batch["out"], strict=True):
            r, skip, msg = _process(
                self.G, self.fs, str(path), self.input_uri, str(target), self.opts, self.s3, self.device, self.work_root
            )
            out["path"].append(str(path))
            out["out"].append(str(target) if r is not None else "")
            out["skip"].append(skip)
            out["note"].append(_describe(r) if r is not None else msg)
        return out


def run(args) -> int:
    if args.size is not None:
        check_range("--size", args.size, *infer.SIZE_RANGE)
    if args.workers is not None:
        check_range("--workers", args.workers, 1, 1024)
    args.input = cli_args.input_of(args)
    hints = infer.hints_of(args)
    s3 = storage.S3Settings.from_env(endpoint=args.s3_endpoint, region=args.s3_region)
    fs, paths, skipped = per_input.list_inputs(args.input, s3)
    opts = {"size": args.size, "temperature": args.temperature, "temporal": args.temporal}
    single = per_input.is_single_file(args.input, paths)
    if hints and not single:
        raise HintError("colour hints are points of one video: give a single video with --hint/--hints")
    args.output = args.output or per_input.default_output(args.input, single, codec.video_name, COLOUR_SUFFIX)
    if single:
        return _one_video(args, fs, paths[0], s3, opts, hints)
    listed = len(paths) + skipped.total
    planned = per_input.plan(args.input, args.output, paths, s3, args.overwrite, name=codec.video_name)
    G, info = model_ref.resolve_generator(args.model, args.tracking_uri)
    opts["size"] = predict.working_size(G, opts["size"])
    opts["settings"] = settings_of(opts, info["ref"], G)
    planned = per_input.check_kept(planned, opts["settings"], s3, read=video_settings_at)
    skipped.add_all((t.path, t.skip) for t in planned if not t.out)
    todo = [t for t in planned if t.out]
    rows = _run_on_ray(G, info, todo, args, s3, opts) if todo else []
    written = [r for r in rows if r["out"]]
    skipped.add_all((r["path"], r["skip"]) for r in rows if not r["out"])
    print(
        f"colorize video: {len(written)} of {listed} written to {storage.redact(args.output)} "
        f"(model {info['ref']}, temporal {args.temporal}, T={args.temperature or G.temperature})"
    )
    for r in written:
        if "corrupt tail" in r["note"]:
            print(f"  {storage.redact(r['path'])}: {r['note']}")
    per_input.print_skips(skipped)
    return per_input.exit_code(len(written), skipped, WRITE_FAILED)


def _single_target(input_uri: str, output: str, src: str) -> str:
    src_uri = ("s3://" + src) if storage.is_s3(input_uri) else src
    out = output
    ext = posixpath.splitext(out.rstrip("/"))[1].lower()
    is_folder = not storage.is_s3(out) and os.path.isdir(out)
    if ext and ext not in codec.CONTAINERS and not is_folder:  # x.gif, x.avi: never a folder or a mislabelled file
        raise storage.StorageError(
            f"--output {storage.redact(out)}: colorize video writes {', '.join(codec.CONTAINERS)} files; "
            "give such a name, or a folder"
        )
    is_file = bool(ext) and not is_folder
    if per_input.canonical(out) != per_input.canonical(src_uri) and not is_file:
        out = posixpath.join(out, codec.video_name(posixpath.basename(src)))
    if per_input.canonical(out) == per_input.canonical(src_uri):
        raise storage.StorageError(f"--output {storage.redact(out)} is the input itself: give another file or folder")
    return out


def _one_video(args, fs, path: str, s3: storage.S3Settings, opts: dict, hints: Sequence[Hint] = ()) -> int:
    out = _single_target(args.input, args.output, path)
    storage.check_writable_parent(out, s3)
    G, info = model_ref.resolve_generator(args.model, args.tracking_uri)
    predict.check_takes_hints(G, hints)
    opts = {**opts, "size": predict.working_size(G, opts["size"]), "hints": list(hints)}
    opts["settings"] = settings_of(opts, info["ref"], G, hints)
    if storage.exists(out, s3) and not args.overwrite:
        return per_input.report_kept("colorize video", out, opts["settings"], s3, read=video_settings_at)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    G = G.to(device)
    t0 = time.perf_counter()
    with progress.bar(None, posixpath.basename(path), "frame") as b:
        r, skip, msg = _process(G, fs, path, args.input, out, opts, s3, device, progress=progress.frames_callback(b))
    if r is None:
        print(f"colorize video: skipped {storage.redact(args.input)}: {skip} ({msg})")
        return 1
    fps = r.frames / max(1e-9, time.perf_counter() - t0)
    print(
        f"colorize video: wrote {storage.redact(out)} ({_describe(r)}; {fps:.1f} frames/s; "
        f"model {info['ref']}, temporal {args.temporal}, T={args.temperature or G.temperature})"
    )
    return 0


def _run_on_ray(G, info, todo: List[outputs.Target], args, s3: storage.S3Settings, opts: dict) -> List[dict]:
    import ray

    from pipeline.data import sources

    sources.ensure_ray()
    gpus = int(ray.cluster_resources().get("GPU", 0))
    cpus = int(ray.cluster_resources().get("CPU", 2))
    actors = min(len(todo), args.workers or (gpus if gpus else max(1, min(4, cpus // 2))))
    weights = ray.put((G.state_dict(), info["config"]))
    ds = ray.data.from_items([{"path": t.path, "out": t.out} for t in todo], override_num_blocks=len(todo))
    work_root = tempfile.mkdtemp(prefix="colorize-video-")  # every actor's temporary folders, removed as one
    ds = ds.map_batches(
        VideoColorizer,
        fn_constructor_kwargs=dict(
            weights=[weights], input_uri=args.input, opts=opts, s3=s3.to_dict(), work_root=work_root
        ),
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_gpus=1 if gpus else 0,
        num_cpus=1 if not gpus else 0.5,
    )
    try:
        return ds.take_all()
    except BaseException:  # a stop or a failure: the actors go first, then what they left half-written
        ray.shutdown()
        remove_partials([t.out for t in todo])
        raise
    finally:
        shutil.rmtree(work_root, ignore_errors=True)
