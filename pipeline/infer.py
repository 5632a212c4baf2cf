"""``colorize infer``: colorize one photo in-process, or a folder / list / ``s3://`` prefix on Ray
Data with the model in an actor pool (one GPU per actor when the cluster has GPUs).

Outputs keep the inputs' names (relative to the inputs' common folder) under ``--output``; PNG and
JPEG keep their format, anything else becomes PNG. A file that does not decode is skipped and
reported by reason; every other file is still written.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import posixpath
from typing import Dict, List, Optional

import numpy as np

from pipeline import predict, storage, transforms

log = logging.getLogger(__name__)

FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG"}
WRITE_FAILED = "write_failed"


def output_name(rel: str) -> str:
    root, ext = posixpath.splitext(rel)
    return rel if ext.lower() in FORMATS else root + ".png"


def encode(rgb: np.ndarray, name: str) -> bytes:
    from PIL import Image

    fmt = FORMATS.get(posixpath.splitext(name)[1].lower(), "PNG")
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buf.getvalue()


def colorize_file(G, data: bytes, size: Optional[int], temperature: Optional[float], device=None,
                  max_pixels: int = transforms.DEFAULT_MAX_PIXELS):
    """(uint8 (H, W, 3) colorized, None) or (None, skip reason) for one file's bytes."""
    d = transforms.decode_image(data, size=None, max_pixels=max_pixels)
    if d.rgb is None:
        return None, d.skip
    return predict.colorize(G, d.rgb, size, temperature, device), None


class Colorizer:
    """Ray Data actor: one generator per actor, rows {"path", "bytes"} -> {"path", "out", "skip"}."""

    def __init__(self, weights: list, size, temperature, in_root: str, out_root: str, s3: dict):
        import ray
        import torch

        from pipeline import checkpoint

        state, config = ray.get(weights[0])
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.G = checkpoint.generator_from_state(state, config).to(self.device)
        self.size, self.temperature = size, temperature
        self.in_root, self.out_root = in_root, out_root
        self.s3 = storage.S3Settings(**s3)

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, List[str]]:
        out: Dict[str, List[str]] = {"path": [], "out": [], "skip": []}
        for path, data in zip(batch["path"], batch["bytes"]):
            rgb, skip = colorize_file(self.G, bytes(data) if data is not None else b"", self.size, self.temperature, self.device)
            target = ""
            if rgb is not None:
                name = output_name(posixpath.relpath(path, self.in_root))
                target = posixpath.join(self.out_root, name)
                try:
                    storage.write_bytes_atomic(target, encode(rgb, name), self.s3)
                except (storage.StorageError, OSError) as e:
                    skip, target = f"{WRITE_FAILED}: {str(e)[:200]}", ""
            out["path"].append(path)
            out["out"].append(target)
            out["skip"].append(skip or "")
        return out


def _input_root(paths: List[str]) -> str:
    return posixpath.commonpath([posixpath.dirname(p) for p in paths]) if paths else ""


def _is_single_file(uri: str, paths: List[str]) -> bool:
    return len(paths) == 1 and not uri.endswith(storage.LIST_SUFFIXES) and posixpath.basename(uri.rstrip("/")) == posixpath.basename(paths[0])


def _summary(rows: List[Dict[str, str]]) -> Dict[str, object]:
    written = [r for r in rows if r["out"]]
    skipped: Dict[str, List[str]] = {}
    for r in rows:
        if not r["out"]:
            skipped.setdefault(r["skip"].split(":")[0], []).append(r["path"])
    return {"inputs": len(rows), "written": len(written), "skipped": {k: len(v) for k, v in skipped.items()},
            "skipped_examples": {k: v[:5] for k, v in skipped.items()}}


def run(args) -> int:
    from pipeline import model_ref

    s3 = storage.S3Settings.from_env(endpoint=args.s3_endpoint, region=args.s3_region)
    fs, paths = storage.list_inputs(args.input, s3)
    if not paths:
        raise storage.StorageError(f"no input files at {args.input}")
    G, info = model_ref.load_generator(args.model, args.tracking_uri)
    T = args.saturation
    if _is_single_file(args.input, paths):
        with fs.open_input_stream(paths[0]) as f:
            rgb, skip = colorize_file(G, f.read(), args.size, T)
        if rgb is None:
            print(f"colorize infer: skipped {args.input}: {skip}")
            return 1
        out = args.output
        if posixpath.splitext(out)[1].lower() not in FORMATS:  # a folder
            out = posixpath.join(out, output_name(posixpath.basename(paths[0])))
        storage.write_bytes_atomic(out, encode(rgb, out), s3)
        print(f"colorize infer: wrote {out} (model {info['ref']}, T={T or G.temperature})")
        return 0
    rows = _run_on_ray(G, info, paths, fs, args, s3)
    summary = _summary(rows)
    print(f"colorize infer: {summary['written']} of {summary['inputs']} written to {args.output} "
          f"(model {info['ref']}, T={T or G.temperature})")
    for reason, n in summary["skipped"].items():
        print(f"  skipped {n} ({reason}), e.g. {', '.join(summary['skipped_examples'][reason][:3])}")
    if summary["skipped"].get(WRITE_FAILED):
        return 1
    return 0 if summary["written"] else 1


def _run_on_ray(G, info, paths, fs, args, s3) -> List[Dict[str, str]]:
    import ray

    from pipeline import checkpoint, data

    storage.check_writable_parent(posixpath.join(args.output, "x"), s3)
    data.ensure_ray()
    gpus = int(ray.cluster_resources().get("GPU", 0))
    actors = args.workers or (gpus if gpus else max(1, min(4, int(ray.cluster_resources().get("CPU", 2)) // 2)))
    weights = ray.put((G.state_dict(), checkpoint.load_config(info["checkpoint"])))
    ds = data.read_paths(fs, paths, args.input, num_cpus=0.5, files_per_block=8)
    out_root = args.output if storage.is_s3(args.output) else os.path.abspath(args.output)
    ds = ds.map_batches(
        Colorizer,
        fn_constructor_kwargs=dict(weights=[weights], size=args.size, temperature=args.saturation,
                                   in_root=_input_root(paths), out_root=out_root,
                                   s3=dataclasses.asdict(s3)),
        batch_size=4,
        compute=ray.data.ActorPoolStrategy(size=actors),
        num_gpus=1 if gpus else 0,
        num_cpus=1 if not gpus else 0.5,
    )
    rows = ds.take_all()
    seen = {r["path"] for r in rows}
    rows += [{"path": p, "out": "", "skip": "missing"} for p in paths if p not in seen]  # listed, gone at read time
    return rows
