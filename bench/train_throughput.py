"""Training-step throughput: the bare step on in-memory batches vs the same step fed by Ray Data
(decode + crop from files) through Ray Train, in one run (target on GPU: >= 95% of bare).

    python bench/train_throughput.py [--preset tiny] [--crop 128] [--batch 8] [--images 128] [--compile auto] [--json F]

Both paths use 1 worker and the product's model, optimisers, EMA and step (``pipeline.gan.cgan``),
with the same batch and crop; the Ray path's clock starts after two warm-up steps inside the
worker, so Ray/Train start-up is excluded.
"""

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import common  # noqa: E402
import pyarrow.fs as pafs  # noqa: E402
import ray  # noqa: E402
import ray.train  # noqa: E402
import ray.train.torch as rtt  # noqa: E402
import torch  # noqa: E402
from ray.train import RunConfig, ScalingConfig  # noqa: E402
from ray.train.torch import TorchTrainer  # noqa: E402

from pipeline.config import ExperimentConfig  # noqa: E402
from pipeline.data import sources  # noqa: E402
from pipeline.gan import batches, cgan  # noqa: E402
from pipeline.train.trainer import to_tensors  # noqa: E402

WARMUP = 2


def make(cfg, device):
    """The product's G, D, optimisers and EMA (``pipeline.gan.cgan``), seeded; unit class weights."""
    torch.manual_seed(0)
    gan = cgan.build(cfg, device)
    return gan, torch.ones(gan.G.num_bins, device=device)


def bare(cfg, steps_n):
    dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gan, w = make(cfg, dev)
    rgb = torch.randint(0, 256, (cfg.train.batch_size, cfg.data.crop, cfg.data.crop, 3), dtype=torch.uint8)
    for i in range(WARMUP + steps_n):
        if i == WARMUP:
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
        b = batches.batch_from_rgb(
            rgb, gan.G.logits_stride, device=dev
        )  # host->device copy included, like the fed path
        gan.train_step(b, i, w)
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return steps_n * cfg.train.batch_size / (time.perf_counter() - t)


def fed_loop(config):
    cfg = ExperimentConfig.from_dict(config["cfg"])
    dev = rtt.get_device()
    gan, w = make(cfg, dev)
    n, t = 0, None
    shard = ray.train.get_dataset_shard("train")
    rows = shard.iter_batches(batch_size=cfg.train.batch_size, batch_format="numpy", drop_last=True)
    for i, batch in enumerate(map(to_tensors, rows)):  # as pipeline.train.trainer.train_epoch feeds the step
        if i == WARMUP:
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t = time.perf_counter()
        b = batches.batch_from_rgb(batch["rgb"], gan.G.logits_stride, device=dev)
        gan.train_step(b, i, w)
        if i >= WARMUP:
            n += len(batch["rgb"])
    if dev.type == "cuda":
        torch.cuda.synchronize()
    # Train V2 keeps metrics only with a checkpoint: attach an empty one to carry the number out
    with tempfile.TemporaryDirectory() as d:
        ray.train.report({"img_s": n / (time.perf_counter() - t)}, checkpoint=ray.train.Checkpoint.from_directory(d))


def fed(cfg, paths):
    local = pafs.LocalFileSystem()  # local files: no S3 settings needed
    ds = sources.image_dataset(local, paths, cfg.data, train=True, s3=None, cpus_per_task=0.5)
    trainer = TorchTrainer(
        fed_loop,
        train_loop_config={"cfg": cfg.to_dict()},
        run_config=RunConfig(storage_path=tempfile.mkdtemp(prefix="bench-train-")),
        scaling_config=ScalingConfig(num_workers=1, use_gpu=torch.cuda.is_available(), resources_per_worker={"CPU": 1}),
        datasets={"train": ds},
    )
    return trainer.fit().metrics["img_s"]


def photo_paths(n: int, size: int):
    """The benchmark photos' first ``n`` (shared data), else ``n`` synthetic JPEGs (smooth colour
    fields plus noise, ~2x the working size, so decode and resize still cost) in a temporary folder:
    a GPU machine may hold no photo set."""
    if common.SHARED_DATA.joinpath("splits", "train.txt").exists():
        return [str(p) for p in common.split_paths("train", n)]
    import numpy as np
    from PIL import Image

    d, rng = Path(tempfile.mkdtemp(prefix="bench-photos-")), np.random.default_rng(0)
    yy, xx = np.mgrid[0 : 2 * size, 0 : 2 * size] / (2 * size)
    for i in range(n):
        c = rng.uniform(0, 255, (3, 3))
        img = np.stack([c[k, 0] + c[k, 1] * xx + c[k, 2] * yy for k in range(3)], -1) / 2
        img = np.clip(img + rng.normal(0, 12, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(img).save(d / f"p{i}.jpg", quality=90)
    print(f"no benchmark photos ({common.SHARED_DATA}): {n} synthetic JPEGs of {2 * size}² in {d}")
    return [str(p) for p in sorted(d.glob("*.jpg"))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--images", type=int, default=96)
    ap.add_argument("--compile", choices=("auto", "on", "off"), default="auto", help="train.compile (auto: on on CUDA)")
    ap.add_argument("--num-cpus", type=int, default=min(os.cpu_count() or 4, 16), help="Ray's CPUs (decode)")
    ap.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    args = ap.parse_args()
    cfg = ExperimentConfig.from_dict(
        {
            "model": {"preset": args.preset},
            "data": {"resize": max(args.crop, 64), "crop": args.crop},
            "train": {"batch_size": args.batch, "compile": args.compile},
        }
    )
    paths = photo_paths(args.images, max(args.crop, 64))
    steps_n = max(3, args.images // args.batch - WARMUP)
    ray.init(num_cpus=args.num_cpus, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    b = bare(cfg, steps_n)
    f = fed(cfg, paths)
    dev = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({os.cpu_count()} cores)"
    print(
        f"training step, preset {args.preset}, {args.crop}x{args.crop}, batch {args.batch}, 1 worker, {dev}, "
        f"train.compile={args.compile}"
    )
    print(f"  bare step (in-memory batch):           {b:8.1f} img/s")
    print(f"  fed by Ray Data through Ray Train:     {f:8.1f} img/s")
    print(f"  ratio fed / bare: {100 * f / b:.0f}%")
    if args.json:
        row = {**vars(args), "device": dev, "bare_img_s": b, "fed_img_s": f, "fed_over_bare": f / b}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(row, indent=1))
    ray.shutdown()


if __name__ == "__main__":
    main()
