"""Bulk ``colorize infer`` throughput, old path vs new, side by side in one run on this machine.

    python bench/infer_throughput.py [--images 64] [--preset tiny] [--size 256] [--repeats 2] [--old-commit REF]

- old: the infer path before issue 16, loaded from git (``git show REF:pipeline/apply/infer.py`` into a
  temporary module; its folder goes on the Ray workers' PYTHONPATH): ``read_binary_files`` -> one actor
  per model that decodes, colour-converts, predicts, fits the gamut in float64 numpy, encodes and
  writes (0.5 CPU per actor on GPU machines);
- new: ``pipeline.apply.infer._run_on_ray``: CPU read/decode/resize tasks -> model actors batching by
  working size -> CPU join + keep-L fit in torch + encode + write tasks.

Both colorize the same real photos (``../shared/data`` train split, their own sizes) with the same
generator (random weights of the chosen preset: speed does not depend on training) into fresh
folders, after a warm-up run each (Ray start, actor start). Prints img/s per run and the ratio.
When the machine has a GPU, the model actors take one each: the same script measures there.

Measured here 2026-11-26 (2 CPUs, no GPU, shared and loaded machine; 160 ImageNet-sample photos at
their own sizes, tiny preset, working size 256, best of 2): old 6.94 img/s, new 5.81 img/s, new/old
0.84x (an earlier 48-photo run: 5.04 vs 4.62, 0.92x). On two CPU cores both paths are bound by
the model on one core; the new one pays for shipping full-resolution L between its three stages.
Its point is a GPU that no longer waits on decode/colour/encode work in its actor: not measured
yet (no GPU run in this session).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from argparse import Namespace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

OLD_COMMIT = "4c7e5dc"  # the last commit before issue 16's bulk pipeline


def load_old(ref: str, tmp: Path):
    """pipeline/apply/infer.py as of ``ref``, as a module named ``infer_old`` in ``tmp`` (put on the Ray
    workers' PYTHONPATH before Ray starts, so its actor class imports there too)."""
    src = subprocess.run(
        ["git", "show", f"{ref}:pipeline/apply/infer.py"], cwd=common.ROOT, capture_output=True, text=True, check=True
    ).stdout
    path = tmp / "infer_old.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("infer_old", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["infer_old"] = mod
    spec.loader.exec_module(mod)
    os.environ["PYTHONPATH"] = os.pathsep.join([str(tmp), str(common.ROOT), os.environ.get("PYTHONPATH", "")])
    return mod


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--preset", default="tiny", help="model.preset of the generator (tiny, or the default: '')")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--old-commit", default=OLD_COMMIT)
    args = ap.parse_args()

    import ray
    import torch

    from pipeline.apply import infer
    from pipeline.config import ExperimentConfig
    from pipeline.data import storage
    from pipeline.gan import builder, checkpoint, model_ref

    tmp = Path(tempfile.mkdtemp(prefix="infer-bench-"))
    old = load_old(args.old_commit, tmp)
    photos = tmp / "photos"
    photos.mkdir()
    for i, p in enumerate(common.split_paths("train", args.images)):
        (photos / f"{i:04d}{p.suffix.lower()}").symlink_to(p)
    cfg = ExperimentConfig().replace({"model.preset": args.preset} if args.preset else {})
    torch.manual_seed(0)
    G0 = builder.build_generator(cfg.model)
    checkpoint.save_generator(str(tmp / "ckpt"), G0, 0, 0, cfg.to_dict())
    G, info = model_ref.resolve_generator(str(tmp / "ckpt"))

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray.init(address="local", num_cpus=os.cpu_count(), log_to_driver=False, include_dashboard=False)
    s3 = storage.S3Settings.from_env()
    fs, paths = storage.list_inputs(str(photos), s3)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    print(
        f"{len(paths)} photos, preset {args.preset or 'default'}, working size {args.size}, "
        f"{os.cpu_count()} CPUs, {gpus} GPUs ({torch.cuda.get_device_name(0) if gpus else 'CPU only'})"
    )

    def one(name: str, fn, run: int) -> float:
        out = tmp / f"out-{name}-{run}"
        a = Namespace(
            input=str(photos), output=str(out), size=args.size, workers=args.workers, overwrite=True,
            saturation=None, temperature=None, batch=16, grid=None,
        )  # fmt: skip
        todo = infer._plan(a, paths, s3)
        t = time.perf_counter()
        rows = fn(G, info, todo, fs, a, s3)
        dt = time.perf_counter() - t
        written = sum(1 for r in rows if r["out"])
        assert written == len(paths), f"{name}: {written} of {len(paths)} written"
        return len(paths) / dt

    rates = {"old": [], "new": []}
    for run in range(args.repeats + 1):  # run 0 warms up (Ray workers, imports) and is not counted
        for name, fn in (("old", old._run_on_ray), ("new", infer._run_on_ray)):
            r = one(name, fn, run)
            if run:
                rates[name].append(r)
            print(f"  run {run}{' (warm-up)' if not run else ''} {name}: {r:6.2f} img/s")
    best = {k: max(v) for k, v in rates.items()}
    ratio = best["new"] / best["old"]
    print(f"best of {args.repeats}: old {best['old']:.2f} img/s, new {best['new']:.2f} img/s, new/old {ratio:.2f}x")
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
