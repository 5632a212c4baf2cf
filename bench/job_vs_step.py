"""The training job against its own step, on CPU, in one run: ``pipeline/run.py``'s training
(``trainer.launch``: Ray Train, Ray Data on prepared shards, validation, checkpoints, MLflow)
against the bare ``GAN.train_step`` of the same config on in-memory batches of the same shards.

    python bench/job_vs_step.py --shards prep/mix-train-128 --val prep/everyday-val-128 \
        [--config pipeline/configs/shipped-model.yaml] [--crop 128] [--batch 16] [--steps 40] [--json F]

Prints: the bare step's img/s; the job's ``train_img_per_s`` (crops per second over its training
steps, validation excluded: what it logs to MLflow as ``train/img_per_s``) and the ratio; the
whole job's img/s and the share of an epoch's wall time that validation and the checkpoint take.
Both paths use the same threads (``train.threads``), steps past the adversarial warm-up and the
same step numbers, so they run the same maths.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("RAY_AUTH_MODE", "disabled")

import numpy as np  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
import torch  # noqa: E402

from pipeline import config as config_mod  # noqa: E402
from pipeline.data import priors, sources, storage  # noqa: E402
from pipeline.gan import builder, steps  # noqa: E402
from pipeline.train import tracking, trainer  # noqa: E402


def shard_batches(shards: str, crop: int, batch: int, n: int):
    """``n`` batches of centre crops from the first prepared shard, as (L uint8, ab int8) tensors."""
    rows = pq.read_table(sorted(glob.glob(os.path.join(shards, "*", "*.parquet")))[0]).to_pylist()
    out, rng = [], np.random.default_rng(0)
    for _ in range(n):
        Ls, abs_ = [], []
        for r in rng.choice(len(rows), batch, replace=False):
            r = rows[r]
            H, W = r["height"], r["width"]
            y, x = (H - crop) // 2, (W - crop) // 2
            Ls.append(np.frombuffer(r["L"], np.uint8).reshape(H, W)[y : y + crop, x : x + crop])
            abs_.append(np.frombuffer(r["ab"], np.int8).reshape(H, W, 2)[y : y + crop, x : x + crop])
        out.append((torch.from_numpy(np.stack(Ls)), torch.from_numpy(np.stack(abs_))))
    return out


def bare(cfg, batches, first_step: int) -> float:
    """img/s of ``GAN.train_step`` on ``batches`` (the first two are warm-up), as the job runs it."""
    torch.set_num_threads(trainer.cpu_threads(cfg))
    torch.manual_seed(0)
    gan = builder.build(cfg, torch.device("cpu"))
    w = steps.class_weights_tensor(priors.load_prior(priors.resolve_prior_path(cfg.loss.prior), None), cfg.loss)
    for i, (L, ab) in enumerate(batches):
        if i == 2:
            t = time.perf_counter()
        b = steps.batch_from_lab(L, ab, gan.G.logits_stride)
        gan.train_step(b, first_step + i, w)
    return (len(batches) - 2) * len(batches[0][0]) / (time.perf_counter() - t)


def job(cfg, out: str) -> dict:
    """The training job's figures: train_img_per_s per epoch, the whole job's img/s, and the
    validation + checkpoint share of each epoch's wall time."""
    sources.ensure_ray("local")
    prior = priors.load_prior(priors.resolve_prior_path(cfg.loss.prior), None)
    uri = tracking.resolve_uri(None, out)
    t = time.perf_counter()
    launched = trainer.launch(cfg, prior, storage.S3Settings(), uri, "bench", artifact_dir=os.path.join(out, "art"))
    wall = time.perf_counter() - t
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)

    def series(key):
        return [m.value for m in client.get_metric_history(launched.run_id, key)]

    crops = cfg.train.epochs * cfg.train.max_steps_per_epoch * cfg.train.batch_size
    return {
        "train_img_per_s": float(np.mean(series("train/img_per_s"))),
        "job_img_per_s": crops / wall,
        "wall_s": wall,
        "steps_s": sum(series("train/steps_s")),
        "val_s": sum(series("train/val_s")),
        "checkpoint_s": sum(series("train/checkpoint_s")),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shards", required=True, help="prepared training shards (colorize prepare)")
    ap.add_argument("--val", required=True, help="prepared validation shards")
    ap.add_argument("--config", default="pipeline/configs/shipped-model.yaml")
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--steps", type=int, default=40, help="training steps per epoch (two epochs)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    warm = 0  # the adversarial term on from the first step: both paths run the full D + G step
    cfg = config_mod.load(
        args.config,
        [
            f"data.train={args.shards}",
            f"data.val={args.val}",
            f"data.crop={args.crop}",
            f"train.batch_size={args.batch}",
            f"train.threads={args.threads}",
            f"loss.adv_warmup_steps={warm}",
            "train.epochs=2",
            f"train.max_steps_per_epoch={args.steps}",
            "train.num_workers=1",
            "train.init_from=null",
            "tracking.sample_images=0",
        ],
    )
    with tempfile.TemporaryDirectory(prefix="bench-job-") as out:
        cfg = cfg.replace({"train.storage_path": os.path.join(out, "runs")})
        b1 = bare(cfg, shard_batches(args.shards, args.crop, args.batch, 2 + args.steps // 2), 0)
        j = job(cfg, out)
        b2 = bare(cfg, shard_batches(args.shards, args.crop, args.batch, 2 + args.steps // 2), 0)
    step = (b1 + b2) / 2
    print(
        f"{cfg.model.preset} preset, {args.crop}x{args.crop}, batch {args.batch}, {args.threads} threads, "
        f"amp {cfg.train.amp} ({'bf16' if steps.uses_bf16(torch.device('cpu'), cfg.train.amp) else 'fp32'})"
    )
    print(f"  bare step (before / after the job): {b1:.2f} / {b2:.2f} img/s")
    ratio = j["train_img_per_s"] / step
    print(f"  job, training steps (train/img_per_s): {j['train_img_per_s']:.2f} img/s = {ratio:.0%} of the step")
    print(f"  job, whole run (start-up, validation, checkpoints, MLflow model): {j['job_img_per_s']:.2f} img/s")
    epochs = j["steps_s"] + j["val_s"] + j["checkpoint_s"]
    print(
        f"  of the epochs' wall time ({epochs:.0f} s): validation {j['val_s'] / epochs:.0%}, "
        f"checkpoints and reports {j['checkpoint_s'] / epochs:.0%}; the whole job took {j['wall_s']:.0f} s"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({**vars(args), "bare": [b1, b2], **j}, indent=1))


if __name__ == "__main__":
    main()
