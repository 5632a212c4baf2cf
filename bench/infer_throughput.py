"""Bulk ``colorize infer`` throughput on this machine: img/s of the folder path.

    python bench/infer_throughput.py [--images 64] [--preset tiny] [--size 256] [--repeats 2]

Measures ``pipeline.jobs.infer._run_on_ray``: CPU read/decode/resize tasks -> model actors batching
by working size -> CPU join + keep-L fit in torch + encode + write tasks. It colorizes real photos
(``../shared/data`` train split, their own sizes) with a generator of the chosen preset (random
weights: speed does not depend on training) into a fresh folder per run, after a warm-up run (Ray
start, actor start), and prints img/s per run and the best. When the machine has a GPU, the model
actors take one each: the same script measures there.

Measured 2026-11-26 (2 CPUs, no GPU, shared and loaded machine; 160 ImageNet-sample photos at their
own sizes, tiny preset, working size 256, best of 2): 5.81 img/s, bound by the model on one core.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--preset", default="tiny", help="model.preset of the generator (tiny, or the default: '')")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()

    import ray
    import torch

    from pipeline.config import ExperimentConfig
    from pipeline.data import storage
    from pipeline.gan import cgan, checkpoint, model_ref
    from pipeline.jobs import infer
    from pipeline.jobs.common import per_input

    tmp = Path(tempfile.mkdtemp(prefix="infer-bench-"))
    photos = tmp / "photos"
    photos.mkdir()
    for i, p in enumerate(common.split_paths("train", args.images)):
        (photos / f"{i:04d}{p.suffix.lower()}").symlink_to(p)
    cfg = ExperimentConfig().replace({"model.preset": args.preset} if args.preset else {})
    torch.manual_seed(0)
    G0 = cgan.build_generator(cfg.model)
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

    def one(run: int) -> float:
        out = tmp / f"out-{run}"
        a = infer.Options(input=str(photos), output=str(out), size=args.size, workers=args.workers, overwrite=True)
        todo = per_input.plan(a.input, a.output, paths, s3, a.overwrite)
        t = time.perf_counter()
        rows = infer._run_on_ray(G, info, todo, fs, a, s3)
        dt = time.perf_counter() - t
        written = sum(1 for r in rows if r["out"])
        assert written == len(paths), f"{written} of {len(paths)} written"
        return len(paths) / dt

    rates = []
    for run in range(args.repeats + 1):  # run 0 warms up (Ray workers, imports) and is not counted
        r = one(run)
        if run:
            rates.append(r)
        print(f"  run {run}{' (warm-up)' if not run else ''}: {r:6.2f} img/s")
    print(f"best of {args.repeats}: {max(rates):.2f} img/s")
    ray.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
