"""``colorize video``: colorize videos frame by frame (``pipeline.video.colorize``), with colour that
holds still from frame to frame (``--temporal flow``, default) or per frame (``--temporal none``).

One video runs in-process; a folder, list file or ``s3://`` prefix runs one video per Ray Data
task, the model in an actor pool (one GPU per actor when the cluster has GPUs), with Ray Data's
progress bars.
"""

from __future__ import annotations

import argparse
import os
import posixpath
import shutil
import tempfile
import time
from dataclasses import dataclass

import torch

from pipeline.data import storage
from pipeline.jobs.common import flags, per_input
from pipeline.runtime import progress
from pipeline.video import codec
from pipeline.video import colorize as video


@dataclass(kw_only=True)
class Options(per_input.Options):
    temporal: str = "flow"


def add_args(p: argparse.ArgumentParser) -> None:
    """``colorize video`` arguments."""
    per_input.add_args(p, "video", _own_args, "the first frame, as a player shows it,")


def _own_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--temporal",
        choices=video.TEMPORAL,
        default="flow",
        help="flow: colour follows the motion (optical flow), colour hints too until a scene cut; none: "
        "every frame alone, colour hints on the first frame only",
    )


def run(args) -> int:
    return per_input.run(Videos(flags.options(Options, args)))


def _single_target(input_uri: str, output: str, src: str) -> str:
    """``--output`` itself when it names a video file, else a file of the input's name inside it."""
    ext = posixpath.splitext(output.rstrip("/"))[1].lower()
    is_folder = not storage.is_s3(output) and os.path.isdir(output)
    if ext and ext not in codec.CONTAINERS and not is_folder:  # x.gif, x.avi: never a folder or a mislabelled file
        raise storage.StorageError(
            f"--output {storage.redact(output)}: colorize video writes {', '.join(codec.CONTAINERS)} files; "
            "give such a name, or a folder"
        )
    as_file = lambda out: out if ext and not is_folder else None  # noqa: E731
    return per_input.single_target(input_uri, output, src, as_file, codec.video_name)


class Videos(per_input.PerInputJob):
    command, noun = "colorize video", "video"
    name = staticmethod(codec.video_name)
    read = staticmethod(video.video_settings_at)

    def opts(self, **more) -> dict:
        return {"size": self.o.size, "temperature": self.o.temperature, "temporal": self.o.temporal, **more}

    def target(self, src: str) -> str:
        return _single_target(self.o.input, self.o.output, src)

    def settings(self, G, info) -> dict:
        return video.settings_of(self.opts(), info["ref"], G)

    def about(self, G, info) -> str:
        return f"model {info['ref']}, temporal {self.o.temporal}, T={self.o.temperature or G.temperature}"

    def one(self, G, info, fs, path, out, s3, settings, hints):
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        G = G.to(device)
        t0 = time.perf_counter()
        opts = self.opts(hints=list(hints), hint_spread=self.o.hint_spread, settings=settings)
        with progress.bar(None, posixpath.basename(path), "frame") as b:
            r, skip, msg = video.process(
                G, fs, path, self.o.input, out, opts, s3, device, progress=progress.frames_callback(b)
            )
        if r is None:
            return "", f"{skip} ({msg})"
        fps = r.frames / max(1e-9, time.perf_counter() - t0)
        return f"{video.describe(r)}; {fps:.1f} frames/s; {self.about(G, info)}", ""

    def many(self, G, info, todo, fs, s3, settings):
        work_root = tempfile.mkdtemp(prefix="colorize-video-")  # every actor's temporary folders, removed as one
        kwargs = dict(input_uri=self.o.input, opts=self.opts(settings=settings), s3=s3.to_dict(), work_root=work_root)

        def stages(ray, ds, weights, actors, gpus):
            return ds.map_batches(
                video.VideoColorizer,
                fn_constructor_kwargs=dict(weights=[weights], **kwargs),
                batch_size=1,
                compute=ray.data.ActorPoolStrategy(size=actors),
                num_gpus=1 if gpus else 0,
                num_cpus=1 if not gpus else 0.5,
            )

        try:
            return per_input.ray_rows(todo, G, info, self.o.workers, stages)
        finally:
            shutil.rmtree(work_root, ignore_errors=True)

    def report(self, written) -> None:
        for r in written:
            if "corrupt tail" in r.get("note", ""):
                print(f"  {storage.redact(r['path'])}: {r['note']}")
