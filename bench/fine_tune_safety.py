"""What a small-batch fine-tune does to the shipped model, suspect by suspect: `make demo`'s recipe
(batches of 2, 64x64 crops of scikit-image's photos at short side 128, lr 5e-5, adversarial
warm-up 20 steps) for a number of steps through ``GAN.train_step``, with each of the four safeguards
training now has switched off alone and all together, scored on validation photos as training
validates (centre crops, the model's own temperature).

    python bench/fine_tune_safety.py --train prep/skimage-128 --val prep/everyday-val-128 [--steps 40] [--val-photos 80]

The safeguards: the EMA of a fine-tune goes on at its full decay (``EMA.settle``), BatchNorm frozen on
small batches (``train.freeze_bn``), D learning before G hears from it (``cgan.D_LEAD_STEPS``),
a quarter of the photos without hints (``train.hint_none``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parent.parent), str(Path(__file__).resolve().parent)]

import numpy as np  # noqa: E402
import torch  # noqa: E402
from temperature_sweep import crops  # noqa: E402

from pipeline import config as config_mod  # noqa: E402
from pipeline.gan import batches, cgan, checkpoint, model_ref  # noqa: E402
from pipeline.train import trainer  # noqa: E402

SUSPECTS = {  # name: (EMA settled, freeze_bn, D lead steps, hint_none)
    "all safeguards (now)": (True, "auto", cgan.D_LEAD_STEPS, 0.25),
    "EMA warm-up from the start": (False, "auto", cgan.D_LEAD_STEPS, 0.25),
    "BatchNorm trained on batches of 2": (True, "off", cgan.D_LEAD_STEPS, 0.25),
    "D learning only from the ramp": (True, "auto", 0, 0.25),
    "hints on every photo": (True, "auto", cgan.D_LEAD_STEPS, 0.0),
    "none (as before)": (False, "off", 0, 0.0),
}


def _figures(v: dict) -> dict:
    return {k: round(v[k], 2) for k in ("auc", "auc_rebalanced", "psnr", "cf_pred", "cf_true", "cf_gap", "objective")}


class _Shard:
    """The ``iter_batches`` face of a Ray Data shard over in-memory crops (validation reads it)."""

    def __init__(self, batches):
        self.batches = batches

    def iter_batches(self, batch_size, batch_format):
        for L, ab in self.batches:
            yield {"L": L.numpy(), "ab": ab.numpy(), "id": np.array([""] * len(L))}


def run(name, settle, freeze, lead, hint_none, args, init, init_cfg, train, val, prior):
    cfg = config_mod.load("pipeline/configs/demo.yaml", [f"train.freeze_bn={freeze}", f"train.hint_none={hint_none}"])
    cfg = trainer.with_model_of(cfg, init_cfg, frozenset())
    cgan.D_LEAD_STEPS = lead  # the ablation: the module constant the GAN reads
    torch.manual_seed(0)
    gan = cgan.build(cfg, torch.device("cpu"))
    checkpoint.apply_init(gan, init)
    if not settle:
        gan.ema.updates = 0
    w = batches.class_weights_tensor(prior, cfg.loss)
    rng = np.random.default_rng(0)
    for i in range(args.steps):
        L, ab = train[rng.integers(len(train))]
        pick = rng.choice(len(L), min(cfg.train.batch_size, len(L)), replace=False)
        y, x = rng.integers(0, L.shape[1] - cfg.data.crop + 1, 2)
        c = cfg.data.crop
        b = batches.batch_from_lab(L[pick, y : y + c, x : x + c], ab[pick, y : y + c, x : x + c], gan.G.logits_stride)
        gan.train_step(b, i, w)
    v = trainer.validate(gan.generator(), _Shard(val), cfg, torch.tensor(prior), torch.device("cpu"))[0]
    return _figures(v)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", required=True, help="prepared shards of the fine-tune's photos (short side 128)")
    ap.add_argument("--val", required=True, help="prepared validation shards")
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--val-photos", type=int, default=80)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    init, init_cfg, _ = model_ref.load_init("shipped")
    prior = np.load(Path(__file__).resolve().parent.parent / "prior_probs.npy")
    train = list(crops(args.train, 128, 8))
    val = []
    for L, ab in crops(args.val, 128, 32):
        val.append((L, ab))
        if sum(len(b[0]) for b in val) >= args.val_photos:
            break
    out = {}
    start_cfg = trainer.with_model_of(config_mod.load("pipeline/configs/demo.yaml"), init_cfg, frozenset())
    G = model_ref.resolve_generator("shipped")[0]
    v = trainer.validate(G, _Shard(val), start_cfg, torch.tensor(prior), torch.device("cpu"))[0]
    out["the start"] = {
        k: round(v[k], 2) for k in ("auc", "auc_rebalanced", "psnr", "cf_pred", "cf_true", "cf_gap", "objective")
    }
    for name, (settle, freeze, lead, hint_none) in SUSPECTS.items():
        out[name] = run(name, settle, freeze, lead, hint_none, args, init, init_cfg, train, val, prior)
    for name, v in out.items():
        print(
            f"{name:36s} AuC {v['auc']:5.1f}  rebal {v['auc_rebalanced']:5.1f}  PSNR {v['psnr']:5.2f}  "
            f"colourfulness {v['cf_pred']:5.1f} (truth {v['cf_true']:.1f})"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
