"""Train the model colorize would ship, with the product's own code, and write it small.

``pipeline/configs/default-model.yaml`` on ``large-train``, built by ``pipeline.gan.cgan.build``
and stepped by ``GAN.train_step`` (the step ``pipeline/train/trainer.py`` runs) in a plain loop, so a
GPU machine needs torch and the data, not Ray. The EMA of G is
written as a colorize generator checkpoint (``state.pt`` loads with ``weights_only=True``; its
floating weights in fp16, the colour bins in fp32, so ``colorize infer --model DIR`` reads it as
any checkpoint) with ``config.json``, ``meta.json`` and ``MODEL_CARD.md``.

``bench/quality.py --ship DIR`` writes the same from the protocol's "ours" (so the card carries
the protocol's figures); this script trains for its own budget:

    python bench/ship_model.py --data .quality_data --budget 300 --out out/default-model
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Dict, Optional

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from pipeline import config as config_mod  # noqa: E402
from pipeline.config import ExperimentConfig  # noqa: E402
from pipeline.gan import batches, cgan, checkpoint  # noqa: E402


def save(
    out: Path,
    G: torch.nn.Module,
    cfg: ExperimentConfig,
    steps: int,
    train: Dict,
    figures: Optional[Dict] = None,
    device: str = "",
) -> Dict:
    """``G`` (give it ``GAN.generator()``, the EMA) as colorize ships a model
    (``checkpoint.save_shipped``: fp16, size cap, read back) plus this protocol's model card."""
    meta = {"step": int(steps), "train": train}
    size = checkpoint.save_shipped(str(out), G, cfg.to_dict(), meta)
    (out / "MODEL_CARD.md").write_text(card(cfg, steps, train, figures or {}, size, device))
    print(f"shipped {out}: {size / 1e6:.1f} MB, {steps} steps", flush=True)
    return {"path": str(out), "bytes": size}


def card(cfg: ExperimentConfig, n_steps: int, train: Dict, figures: Dict, size: int, device: str) -> str:
    lines = [
        "# colorize default model\n",
        f"- Weights: `{checkpoint.STATE}`, the EMA of G (decay {cfg.train.ema_decay}), fp16, {size / 1e6:.1f} MB; "
        "loads with `weights_only=True` (`colorize infer --model THIS_FOLDER`).",
        f"- Model: preset `{cfg.model.preset}`, default temperature {cfg.model.temperature}.",
        f"- Data: {train.get('train', 'large-train')} (10,093 photos: ImageNet sample, BSDS500, Intel scenes, "
        "Caltech-101, cats and dogs), random 128x128 crops with flips; tuned on large-val only. "
        "Research use inside this project only (see shared/data's licences).",
        f"- Training: {n_steps} steps, batch {train.get('batch')}, {train.get('budget_s')} s wall clock on "
        f"{device or 'the GPU'}, bf16, through `pipeline/gan/cgan.py` (`build`, `GAN.train_step`).",
        "- Config: `config.json` beside the weights (from `pipeline/configs/default-model.yaml`).",
    ]
    if figures:
        lines.append(f"- Decoding temperature chosen on large-val: {figures.get('temperature')}.")
        lines.append("\n| set | AuC | AuC rebal | ΔCF | PSNR | SSIM |\n|---|---|---|---|---|---|")
        for name in ("large-test", "test.txt"):
            f = figures.get(name)
            if f:
                lines.append(
                    f"| {name} | {f['auc']:.1f} | {f['auc_rebalanced']:.1f} | {f['cf_gap']:.1f} | "
                    f"{f['psnr']:.1f} | {f.get('ssim', float('nan')):.3f} |"
                )
        lines.append("\nFigures from `bench/quality.py` (protocol v2), same run.")
    return "\n".join(lines) + "\n"


def main(argv=None) -> Dict:
    import quality_data

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="", help="portable copy (bench/quality_data.py); default: the shared data")
    ap.add_argument("--config", default=str(quality_data.DEFAULT_CONFIG))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--prior", default=str(ROOT / "prior_probs.npy"))
    ap.add_argument("--budget", type=float, default=300.0, help="training seconds")
    ap.add_argument("--limit", type=int, default=0)
    ap.add_argument("--out", default="out/default-model")
    a = ap.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    cfg = config_mod.load(a.config, a.set)
    images = quality_data.load(a.data, a.limit, splits=("train",))["train"]
    torch.manual_seed(cfg.data.seed)
    gan = cgan.build(cfg, device)
    weights = batches.class_weights_tensor(np.load(a.prior, allow_pickle=False), cfg.loss, device)
    crops = quality_data.Crops(images, cfg.data.crop, device, cfg.data.seed)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    n, t0 = 0, time.perf_counter()
    while True:  # the product's step, in a plain loop
        b = batches.batch_from_rgb(
            crops.batch(cfg.train.batch_size), gan.G.logits_stride, cfg.loss.soft_k, cfg.loss.soft_sigma
        )
        gan.train_step(b, n, weights)
        n += 1
        if n % 10 == 0 or device.type != "cuda":
            sync()
            if time.perf_counter() - t0 >= a.budget:
                break
    train = {"budget_s": a.budget, "batch": cfg.train.batch_size, "images_seen": n * cfg.train.batch_size}
    train.update(quality_data.SPLITS)
    dev = torch.cuda.get_device_name() if device.type == "cuda" else "cpu"
    return save(Path(a.out), gan.generator(), cfg, n, train, device=dev)


if __name__ == "__main__":
    main()
