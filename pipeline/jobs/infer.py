"""``colorize infer``: colorize one photo in-process, or a folder / list / ``s3://`` prefix on Ray
Data, CPU -> GPU -> CPU (the stages: ``pipeline.apply.infer``).

``--grid T1,T2,...`` writes, instead of the colour photo, a comparison sheet per photo: its L and
its colorization at each temperature side by side, labelled (named ``<name>-grid.<ext>``).
"""

from __future__ import annotations

import argparse
import os
import posixpath
from dataclasses import dataclass
from typing import Dict, List, Optional

from PIL import Image

from pipeline.apply import infer
from pipeline.config import ConfigError, check_range, check_temperature
from pipeline.core.skips import SKIP_NOT_IMAGE, SKIP_UNREADABLE
from pipeline.data import storage
from pipeline.jobs.common import flags, per_input
from pipeline.runtime import made_with, outputs, progress


@dataclass(kw_only=True)
class Options(per_input.Options):
    batch: int = 16
    grid: Optional[List[float]] = None


def add_args(p: argparse.ArgumentParser) -> None:
    """``colorize infer`` arguments."""
    per_input.add_args(p, "photo", _own_args, "the photo")


def _own_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--batch", type=int, default=16, help="photos per model call in an actor (default 16)")
    p.add_argument(
        "--grid",
        type=_temperatures,
        default=None,
        metavar="T1,T2,...",
        help="write a comparison sheet per photo instead: its L and its colorization at each temperature "
        f"side by side, labelled (named <name>{infer.GRID_SUFFIX}.<ext>)",
    )


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


def run(args) -> int:
    o = flags.options(Options, args)
    check_range("--batch", o.batch, 1, 4096)
    return per_input.run(Photos(o))


class Photos(per_input.PerInputJob):
    command, noun = "colorize infer", "photo"
    read = staticmethod(per_input.photo_settings_at)

    def __init__(self, o: Options):
        super().__init__(o)
        self.suffix = infer.GRID_SUFFIX if o.grid else ""
        self.temperatures = list(o.grid or [o.temperature])

    def target(self, src: str) -> str:
        """``--output`` itself when it names a PNG/JPEG file; the same name as PNG when it names a file
        of another picture format (``astro.tif`` -> ``astro.png``); else (or when a folder has that
        name) a file of the input's name inside that folder."""

        def as_file(out: str) -> Optional[str]:
            ext = posixpath.splitext(out.rstrip("/"))[1].lower()
            folder = out.endswith("/") or (not storage.is_s3(out) and os.path.isdir(os.path.expanduser(out)))
            return outputs.output_name(out) if ext in Image.registered_extensions() and not folder else None

        name = lambda base: outputs.output_name(base, self.suffix)  # noqa: E731
        return per_input.single_target(self.o.input, self.o.output, src, as_file, name)

    def settings(self, G, info) -> dict:
        temperatures = list(self.o.grid or [self.o.temperature or G.temperature])
        return made_with.photo_settings(info["ref"], temperatures, self.o.size)

    def about(self, G, info) -> str:
        o = self.o
        shown = ",".join(f"{t:g}" for t in o.grid) if o.grid else f"{o.temperature or G.temperature:g}"
        return f"model {info['ref']}, T={shown}"

    def one(self, G, info, fs, path, out, s3, settings, hints):
        try:
            with fs.open_input_stream(path) as f:
                data = f.read()
        except OSError as e:
            return "", f"{SKIP_UNREADABLE} ({e.strerror or type(e).__name__})"
        o = self.o
        rgb, skip = infer.colorize_file(
            G,
            data,
            o.size,
            o.temperature,
            grid=o.grid,
            show_progress=True,
            hints=hints,
            keep_alpha=infer.keeps_alpha(out),
            hint_spread=o.hint_spread,
        )
        if rgb is None:
            video = skip == SKIP_NOT_IMAGE and posixpath.splitext(path)[1].lower() in outputs.VIDEO_SUFFIXES
            return "", skip + (f": a video? colorize video {o.input}" if video else "")
        try:  # created exclusively: a result another run wrote meanwhile follows the rerun rule
            storage.write_bytes_atomic(out, infer.encode(rgb, out, settings), s3, exclusive=not o.overwrite)
        except FileExistsError:
            raise  # the skeleton's rerun rule
        except OSError as e:
            why = e.strerror or type(e).__name__
            raise storage.StorageError(f"cannot write {storage.redact(out)}: {why}") from None
        return self.about(G, info), ""

    def many(self, G, info, todo, fs, s3, settings):
        try:
            import ray  # noqa: F401  (only whether it is there)
        except ModuleNotFoundError:  # the light install: the same three stages, in this process
            return _run_here(G, todo, fs, self.o, s3, settings)
        return _run_on_ray(G, info, todo, fs, self.o, s3, settings)


def _run_here(G, todo: List[outputs.Target], fs, o: Options, s3: storage.S3Settings, settings=None) -> List[Dict]:
    """The planned photos one batch at a time in this process: read/decode, the model, join/write."""
    model = infer.BatchModel(G, list(o.grid) if o.grid else [o.temperature])
    rows: List[Dict] = []
    with progress.bar(len(todo), "colorize", "photo") as bar:  # each write is atomic: a stop leaves no part
        for i in range(0, len(todo), o.batch):
            part = todo[i : i + o.batch]
            decoded = infer.read_decode({"path": [t.path for t in part], "out": [t.out for t in part]}, fs, o.size)
            done = infer.finish(model(decoded), s3.to_dict(), o.grid, settings, overwrite=o.overwrite)
            rows += [dict(zip(done, values, strict=True)) for values in zip(*done.values(), strict=True)]
            bar.update(len(part))
    return rows


def _run_on_ray(G, info, todo: List[outputs.Target], fs, o: Options, s3: storage.S3Settings, settings=None):
    """The planned photos on Ray Data: CPU read/decode -> model actors -> CPU join/write."""
    temperatures = list(o.grid) if o.grid else [o.temperature]

    def stages(ray, ds, weights, actors, gpus):
        ds = ds.map_batches(
            infer.read_decode, fn_kwargs=dict(fs=fs, size=o.size), batch_size=None, num_cpus=0.5, batch_format="numpy"
        )
        ds = ds.map_batches(
            infer.ModelActor,
            fn_constructor_kwargs=dict(weights=[weights], temperatures=temperatures),
            batch_size=o.batch,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_gpus=1 if gpus else 0,
            num_cpus=1 if not gpus else 0.5,
        )
        finish = dict(s3=s3.to_dict(), grid=o.grid, settings=settings, overwrite=o.overwrite)
        return ds.map_batches(infer.finish, fn_kwargs=finish, batch_size=4, num_cpus=0.5, batch_format="numpy")

    return per_input.ray_rows(todo, G, info, o.workers, stages, per_block=8)
