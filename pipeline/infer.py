"""``colorize infer``: colorize one photo in-process, or a folder / list / ``s3://`` prefix on Ray
Data with the model in an actor pool (one GPU per actor when the cluster has GPUs).

Outputs keep the inputs' names (relative to the inputs' common folder) under ``--output``; PNG and
JPEG keep their format, anything else becomes PNG. Every name is planned before any work starts
(``pipeline.outputs``): it cannot leave ``--output``, never replaces an input, two inputs never
share one, and an existing output is kept unless ``--overwrite``. A file that does not decode is
skipped and reported by reason; every other file is still written.
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import posixpath
from typing import Dict, List, Optional, Set

import numpy as np
import pyarrow.fs as pafs
import torch
from PIL import Image

from pipeline import checkpoint, cli_args, model_ref, outputs, predict, storage, transforms
from pipeline.config import check_range
from pipeline.skips import SKIP_MISSING, SKIP_UNREADABLE, Skips

log = logging.getLogger(__name__)

FORMATS = outputs.FORMATS
output_name = outputs.output_name
WRITE_FAILED = "write_failed"
SIZE_RANGE = (16, 2048)  # working short side: below, nothing to see; above, the model's activations outgrow memory


def add_args(p: argparse.ArgumentParser) -> None:
    """``colorize infer`` arguments."""
    cli_args.add_model_args(p)
    p.add_argument("--input", required=True, help="a photo, folder, list file (.txt) or s3://bucket/prefix")
    p.add_argument("--output", required=True, help="output file (for one photo) or folder / s3:// prefix")
    p.add_argument(
        "--size",
        type=int,
        default=256,
        help=f"working size: short side the model sees, {SIZE_RANGE[0]} to {SIZE_RANGE[1]} (default 256)",
    )
    p.add_argument("--workers", type=int, default=None, help="model actors (default: one per GPU, else CPUs/2 up to 4)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace outputs that already exist (default: keep them, counted as 'exists')",
    )
    cli_args.add_s3_args(p)


def encode(rgb: np.ndarray, name: str) -> bytes:
    fmt = FORMATS.get(posixpath.splitext(name)[1].lower(), "PNG")
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buf.getvalue()


def colorize_file(
    G,
    data: bytes,
    size: Optional[int],
    temperature: Optional[float],
    device=None,
    max_pixels: int = transforms.DEFAULT_MAX_PIXELS,
):
    """(uint8 (H, W, 3) colorized, None) or (None, skip reason) for one file's bytes."""
    d = transforms.decode_image(data, size=None, max_pixels=max_pixels)
    if d.rgb is None:
        return None, d.skip
    return predict.colorize(G, d.rgb, size, temperature, device), None


class Colorizer:
    """Ray Data actor: one generator per actor, rows {"path", "bytes"} -> {"path", "out", "skip"}.
    Each input's output path was planned on the driver (``targets``: input path -> output URI)."""

    def __init__(self, weights: list, targets: list, size, temperature, s3: dict):
        import ray  # not at the top: see _run_on_ray

        state, config = ray.get(weights[0])
        self.targets: Dict[str, str] = ray.get(targets[0])
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.G = checkpoint.generator_from_state(state, config).to(self.device)
        self.size, self.temperature = size, temperature
        self.s3 = storage.S3Settings.from_dict(s3)

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, List[str]]:
        out: Dict[str, List[str]] = {"path": [], "out": [], "skip": []}
        for path, data in zip(batch["path"], batch["bytes"], strict=True):
            data = bytes(data) if data is not None else b""
            rgb, skip = colorize_file(self.G, data, self.size, self.temperature, self.device)
            target = ""
            if rgb is not None:
                target = self.targets.get(path, "")  # every row was planned; a path Ray spells otherwise is not written
                skip = "" if target else outputs.UNSAFE_NAME
            if target:
                try:
                    storage.write_bytes_atomic(target, encode(rgb, target), self.s3)
                except (storage.StorageError, OSError) as e:
                    skip, target = f"{WRITE_FAILED}: {storage.redact(str(e))[:200]}", ""
            out["path"].append(path)
            out["out"].append(target)
            out["skip"].append(skip or "")
        return out


def _is_single_file(uri: str, paths: List[str]) -> bool:
    named = posixpath.basename(uri.rstrip("/")) == posixpath.basename(paths[0])
    return len(paths) == 1 and not uri.endswith(storage.LIST_SUFFIXES) and named


def _canonical(uri: str) -> str:
    """A local path with links resolved, or an S3 ``bucket/key`` normalised: what two spellings of
    one place share (StorageError for an S3 key that climbs out of its bucket)."""
    if storage.is_s3(uri):
        key = outputs.normalise(uri[len("s3://") :], s3=True)
        if key is None:
            raise storage.StorageError(f"unsafe S3 location {storage.redact(uri)}: no empty, '.' or '..' parts allowed")
        return "s3://" + key
    return os.path.realpath(os.path.expanduser(uri))


def _output_root(uri: str) -> str:
    """``--output`` as ``outputs.plan`` wants it: a normalised absolute folder or ``bucket/prefix``."""
    if storage.is_s3(uri):
        return _canonical(uri)[len("s3://") :]
    return os.path.normpath(os.path.abspath(os.path.expanduser(uri)))


def _existing(output: str, s3: storage.S3Settings) -> Set[str]:
    """Files already below ``--output``, in ``outputs.plan``'s form (listed once, before work)."""
    fs, path = storage.resolve(output, s3)
    path = _output_root(output)
    try:
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.File:
            raise storage.StorageError(
                f"--output {storage.redact(output)} is a file: a folder of inputs needs an output folder"
            )
        infos = fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
    except OSError as e:
        why = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
        raise storage.StorageError(f"cannot list --output {storage.redact(output)}: {storage.redact(why)}") from None
    return {i.path for i in infos if i.type == pafs.FileType.File}


def _exists(uri: str, s3: storage.S3Settings) -> bool:
    fs, path = storage.resolve(uri, s3)
    try:
        return fs.get_file_info(path).type != pafs.FileType.NotFound
    except OSError as e:
        raise storage.StorageError(f"cannot reach {storage.redact(uri)}: {str(e).splitlines()[0][:200]}") from None


def run(args) -> int:
    check_range("--size", args.size, *SIZE_RANGE)
    if args.workers is not None:
        check_range("--workers", args.workers, 1, 1024)
    s3 = storage.S3Settings.from_env(endpoint=args.s3_endpoint, region=args.s3_region)
    skipped = Skips()
    fs, paths = storage.list_inputs(args.input, s3, skipped)
    if not paths:
        raise storage.StorageError(
            f"no input files at {storage.redact(args.input)}" + (f" (skipped {skipped.counts})" if skipped else "")
        )
    if _is_single_file(args.input, paths):
        return _one_photo(args, fs, paths[0], s3)
    listed = len(paths) + skipped.total
    planned = _plan(args, paths, s3)
    skipped.add_all((t.path, t.skip) for t in planned if not t.out)
    todo = [t for t in planned if t.out]
    G, info = model_ref.resolve_generator(args.model, args.tracking_uri)
    written = 0
    if todo:
        rows = _run_on_ray(G, info, todo, fs, args, s3)
        written = sum(1 for r in rows if r["out"])
        skipped.add_all((r["path"], r["skip"].split(":")[0]) for r in rows if not r["out"])
    print(
        f"colorize infer: {written} of {listed} written to {storage.redact(args.output)} "
        f"(model {info['ref']}, T={args.saturation or G.temperature})"
    )
    for reason, n in skipped.counts.items():
        hint = " (--overwrite replaces them)" if reason == outputs.EXISTS else ""
        examples = ", ".join(storage.redact(p) for p in skipped.examples.get(reason, [])[:3])
        print(f"  skipped {n} ({reason}){hint}" + (f", e.g. {examples}" if examples else ""))
    if skipped.counts.get(WRITE_FAILED):
        return 1
    # success: some input has its result (written now, or kept from before: a rerun answers as the first run did)
    return 0 if written + skipped.counts.get(outputs.EXISTS, 0) else 1


def _one_photo(args, fs, path: str, s3: storage.S3Settings) -> int:
    """One photo, in-process: its target checked before the model loads."""
    out = _single_target(args.input, args.output, path)
    storage.check_writable_parent(out, s3)
    if _exists(out, s3) and not args.overwrite:
        print(f"colorize infer: kept {storage.redact(out)}: it exists (--overwrite replaces it)")
        return 0
    G, info = model_ref.resolve_generator(args.model, args.tracking_uri)
    try:
        with fs.open_input_stream(path) as f:
            data = f.read()
    except OSError as e:
        why = e.strerror or type(e).__name__
        print(f"colorize infer: skipped {storage.redact(args.input)}: {SKIP_UNREADABLE} ({why})")
        return 1
    rgb, skip = colorize_file(G, data, args.size, args.saturation)
    if rgb is None:
        print(f"colorize infer: skipped {storage.redact(args.input)}: {skip}")
        return 1
    try:
        storage.write_bytes_atomic(out, encode(rgb, out), s3)
    except OSError as e:
        raise storage.StorageError(f"cannot write {storage.redact(out)}: {e.strerror or type(e).__name__}") from None
    print(f"colorize infer: wrote {storage.redact(out)} (model {info['ref']}, T={args.saturation or G.temperature})")
    return 0


def _single_target(input_uri: str, output: str, src: str) -> str:
    """Where one photo's result goes: ``--output`` itself when it names a PNG/JPEG file, else a file
    of the input's name inside that folder. Never the input itself."""
    src_uri = ("s3://" + src) if storage.is_s3(input_uri) else src
    out = output
    if _canonical(out) != _canonical(src_uri) and posixpath.splitext(out)[1].lower() not in FORMATS:  # a folder
        out = posixpath.join(out, output_name(posixpath.basename(src)))
    if _canonical(out) == _canonical(src_uri):
        raise storage.StorageError(
            f"--output {storage.redact(out)} is the input itself: colorize never writes over "
            "its input; give another file or folder"
        )
    return out


def _plan(args, paths: List[str], s3: storage.S3Settings) -> List[outputs.Target]:
    """Every input's output path (or why it gets none), decided before any work starts."""
    s3_in, s3_out = storage.is_s3(args.input), storage.is_s3(args.output)
    root = _output_root(args.output)
    a_folder = not args.input.endswith(storage.LIST_SUFFIXES)
    if s3_in == s3_out and a_folder and _canonical(args.input) == _canonical(args.output):
        raise storage.StorageError(
            f"--output {storage.redact(args.output)} is the input folder: colorize never writes "
            "over its inputs; give another folder"
        )
    existing = _existing(args.output, s3)
    storage.check_writable_parent(posixpath.join(args.output, "x"), s3)  # fail before the work, not after
    return outputs.plan(paths, root, s3_inputs=s3_in, s3_output=s3_out, existing=existing, overwrite=args.overwrite)


def _run_on_ray(G, info, todo: List[outputs.Target], fs, args, s3: storage.S3Settings) -> List[Dict[str, str]]:
    # Ray (and pipeline.data, which imports it) here, not at the top: one photo is colorized
    # in-process (_one_photo) and never pays the seconds that importing Ray takes.
    import ray

    from pipeline import data

    data.ensure_ray()
    gpus = int(ray.cluster_resources().get("GPU", 0))
    actors = args.workers or (gpus if gpus else max(1, min(4, int(ray.cluster_resources().get("CPU", 2)) // 2)))
    weights = ray.put((G.state_dict(), info["config"]))
    targets = ray.put({t.path: t.out for t in todo})
    paths = [t.path for t in todo]
    ds = data.read_paths(fs, paths, storage.redact(args.input), num_cpus=0.5, files_per_block=8)
    ds = ds.map_batches(
        Colorizer,
        fn_constructor_kwargs=dict(
            weights=[weights], targets=[targets], size=args.size, temperature=args.saturation, s3=s3.to_dict()
        ),
        batch_size=4,
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_gpus=1 if gpus else 0,
        num_cpus=1 if not gpus else 0.5,
    )
    rows = ds.take_all()
    seen = {r["path"] for r in rows}
    rows += [{"path": p, "out": "", "skip": SKIP_MISSING} for p in paths if p not in seen]  # listed, gone at read time
    return rows
