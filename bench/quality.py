"""Colorization quality at equal GPU budget, protocol v2: ours vs its unit-weights
ablation, pix2pix and all-grey, one command.

Every trained model gets the same wall-clock training budget (``--budget``, default 120 s) on the
same device (bf16 on CUDA), random 128x128 crops with flips of ``splits/large-train.txt`` (10,093
photos at short side 128, ``bench/quality_data.py``). Ours is built and stepped by the product's
code (``pipeline.gan.cgan.build`` and ``GAN.train_step``, as ``pipeline/train/trainer.py``) from
``pipeline/configs/default-model.yaml``, and predicts with the EMA of G, as ``colorize infer`` does.
Ours decodes by annealed mean at a temperature T; how T is chosen is a decoding rule
(``TEMPERATURE_RULES``): the table reports the pre-registered ``PRIMARY_RULE``, the other rules
sit beside it, and a sweep over T shows how far each rule lands from the best T. Only
``large-val`` steers the rules; the sweep on ``large-test`` is a diagnostic and chooses nothing.

Scored with ``colorize eval``'s code (``pipeline.core.scoring``) on ``large-test`` (128x128 centre crops
after resizing the short side to 128: the targets, in distribution) and on ``splits/test.txt``
("ood": 256x256 centre crops, reported by source, Kodak24 and McMaster). ``--ship DIR`` also writes
ours' EMA generator as a colorize checkpoint (fp16, weights_only) with a model card
(``bench/ship_model.py``).

On a GPU machine (about 8 minutes: 3 models x 120 s, loading and scoring; no Ray needed), with
the portable copy of the data (50.3 MiB) made once where the shared data is:

    python bench/quality_data.py --out .quality_data
    python bench/quality.py --data .quality_data --reference .quality_data/reference \
        --out out/quality --ship out/default-model

    python bench/quality.py --budget 2 --limit 8 --batch 4 --preset tiny --ngf 8   # CPU smoke run

Writes, as each model finishes: OUT/metrics.json, OUT/quality.md (the tables and the
protocol's targets, met / not met); at the end OUT/grid.png (grey | pix2pix | ours-unit | ours | truth, a few
large-test images).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List

import numpy as np
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import pix2pix  # noqa: E402
import quality_data  # noqa: E402
import ship_model  # noqa: E402

from models.scaling import L_to_input, ab_to_unit  # noqa: E402
from pipeline import config as config_mod  # noqa: E402
from pipeline.config import ExperimentConfig  # noqa: E402
from pipeline.core import color, metrics, scoring  # noqa: E402
from pipeline.gan import batches, cgan  # noqa: E402

TEMPERATURES = (0.1, 0.15, 0.2, 0.25, 0.3, 0.38, 0.5, 0.7, 1.0)
# How ours picks its annealed-mean temperature. Only val data (or none) steers a rule.
TEMPERATURE_RULES = {
    "val_objective": "global T maximising the Tune objective on val (rebalanced AuC - 0.5 x colourfulness gap)",
    "val_cf": "global T whose outputs' mean colourfulness is closest to the val truth's",
    "default": "the configured model.temperature (Zhang et al.'s 0.38): what colorize infer uses",
    "discriminator": "per image: the T whose output our PatchGAN scores most real (no data steers it)",
}
PRIMARY_RULE = "val_objective"  # declared before the run that reports it
MODELS = ("grey", "ours", "ours_unit", "pix2pix")  # "l1" (pix2pix without D) on request
LABELS = {
    "grey": "grey (no training)",
    "ours": "ours (rebalanced CE + adv)",
    "ours_unit": "ours, unit class weights",
    "pix2pix": "pix2pix L1+GAN",
    "l1": "L1 only",
}


# ----------------------------------------------------------------------------- data


def L_of(rgb: torch.Tensor) -> torch.Tensor:
    """uint8 (B,H,W,3) -> L (B,1,H,W) on the generator's input scale [-1, 1]."""
    return L_to_input(color.rgb_to_lab_torch(rgb.permute(0, 3, 1, 2), dim=1)[:, :1])


# ----------------------------------------------------------------------------- trainers


def ours_trainer(cfg: ExperimentConfig, prior: np.ndarray, device) -> Dict:
    """Ours through the product's code: ``pipeline.gan.cgan`` builds G, D, their optimisers and the
    EMA of G, and ``GAN.train_step`` is the step ``pipeline/train/trainer.py`` runs; ``GAN.generator()``
    (the EMA) predicts, as ``colorize infer`` would."""
    torch.manual_seed(cfg.data.seed)
    gan = cgan.build(cfg, device)
    weights = batches.class_weights_tensor(prior, cfg.loss, device)
    state = {"step": 0}

    def step(rgb: torch.Tensor) -> Dict:
        b = batches.batch_from_rgb(rgb, gan.G.logits_stride, cfg.loss.soft_k, cfg.loss.soft_sigma)
        stats = gan.train_step(b, state["step"], weights)
        state["step"] += 1
        return stats

    def predict(L: torch.Tensor, temperature: float) -> torch.Tensor:
        G = gan.generator()
        G.eval()
        with torch.no_grad(), batches.autocast(L.device, "bf16"):
            return G(L, temperature)[1].float()

    def realness(L: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
        """(B,1,H,W) L, (B,2,H,W) ab -> (B,) mean PatchGAN logit (higher: more real)."""
        gan.D.eval()
        with torch.no_grad(), batches.autocast(L.device, "bf16"):
            return gan.D(L, ab).float().flatten(1).mean(1)

    return {
        "step": step,
        "predict": predict,
        "realness": realness,
        "params": sum(p.numel() for p in gan.G.parameters()),
        "temperatures": TEMPERATURES,
        "default_temperature": cfg.model.temperature,
        "gan": gan,
        "cfg": cfg,
        "state": state,
    }


def pix2pix_trainer(ngf: int, crop: int, adversarial: bool, device, seed: int) -> Dict:
    torch.manual_seed(seed)
    G = pix2pix.UnetGenerator(int(math.log2(crop)), ngf).to(device)
    D = pix2pix.PatchDiscriminator70(ngf).to(device)
    G.apply(pix2pix.init_weights), D.apply(pix2pix.init_weights)
    if device.type == "cuda":
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    opt_g = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
    bce = F.binary_cross_entropy_with_logits

    def step(rgb: torch.Tensor) -> Dict:
        lab = color.rgb_to_lab_torch(rgb.permute(0, 3, 1, 2), dim=1)
        L, ab = L_to_input(lab[:, :1]), lab[:, 1:]
        G.train(), D.train()
        with batches.autocast(L.device, "bf16"):
            fake = G(L)
            stats = {}
            if adversarial:
                real_logit, fake_logit = D(L, ab), D(L, fake.detach())
                loss_d = 0.5 * (
                    bce(real_logit.float(), torch.ones_like(real_logit.float()))
                    + bce(fake_logit.float(), torch.zeros_like(fake_logit.float()))
                )
                opt_d.zero_grad(set_to_none=True)
                loss_d.backward()
                opt_d.step()
                stats["d_loss"] = loss_d.detach()
            l1 = ab_to_unit(fake.float() - ab).abs().mean()
            loss_g = 100.0 * l1
            if adversarial:
                D.requires_grad_(False)
                g_logit = D(L, fake).float()
                D.requires_grad_(True)
                loss_g = loss_g + bce(g_logit, torch.ones_like(g_logit))
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        stats["g_l1"] = l1.detach()
        return stats

    def predict(L: torch.Tensor, temperature=None) -> torch.Tensor:
        G.eval()
        with torch.no_grad(), batches.autocast(L.device, "bf16"):
            return G(L).float()

    return {"step": step, "predict": predict, "params": sum(p.numel() for p in G.parameters()), "temperatures": (None,)}


# ----------------------------------------------------------------------------- scoring


def _lab(images: torch.Tensor) -> torch.Tensor:
    return color.rgb_to_lab_torch(images.permute(0, 3, 1, 2), dim=1)  # (B,3,H,W)


def _to_uint8(L100: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """(B,1,H,W) L on 0..100 + (B,2,H,W) ab -> uint8 (B,H,W,3) sRGB on the device, by the
    conversion ``colorize infer`` uses (``color.lab_to_rgb_u8``: out-of-gamut colours keep L)."""
    return color.lab_to_rgb_u8(torch.cat([L100, ab.float()], 1), dim=1).permute(0, 2, 3, 1)


def colorize(predict: Callable, images: torch.Tensor, temperature, batch: int = 32) -> torch.Tensor:
    """uint8 (N, H, W, 3) on the device -> uint8 (N, H, W, 3): each image's own L joined with the
    predicted ab, converted to sRGB and rounded (what gets scored)."""
    out = []
    for i in range(0, len(images), batch):
        lab = _lab(images[i : i + batch])
        out.append(_to_uint8(lab[:, :1], predict(L_to_input(lab[:, :1]), temperature)))
    return torch.cat(out)


def colorize_by_discriminator(trainer: Dict, images: torch.Tensor, batch: int = 32):
    """Per image, the temperature whose output the trained discriminator scores most real.
    -> (uint8 (N, H, W, 3), [chosen T per image])."""
    out, chosen, temps = [], [], trainer["temperatures"]
    for i in range(0, len(images), batch):
        lab = _lab(images[i : i + batch])
        L = L_to_input(lab[:, :1])
        best = torch.full((len(L),), -float("inf"), device=L.device)
        best_ab = torch.zeros_like(lab[:, 1:])
        best_i = torch.zeros(len(L), dtype=torch.long, device=L.device)
        for i_t, T in enumerate(temps):
            ab = trainer["predict"](L, T)  # (B,2,H,W)
            s = trainer["realness"](L, ab)  # (B,)
            better = s > best
            best = torch.where(better, s, best)
            best_ab[better] = ab[better]
            best_i[better] = i_t
        out.append(_to_uint8(lab[:, :1], best_ab))
        chosen += [temps[j] for j in best_i.tolist()]
    return torch.cat(out), chosen


def sweep(
    predict: Callable, images: torch.Tensor, truths: List[np.ndarray], temperatures, ref_prior
) -> Dict[str, Dict]:
    """{str(T): metrics (no SSIM) + the Tune objective} for each temperature."""
    out = {}
    for T in temperatures:
        m = score(as_list(colorize(predict, images, T)), truths, ref_prior, ssim=False)
        m["objective"] = metrics.selection_objective(m["auc_rebalanced"], m["cf_gap"])
        out[str(T)] = {k: round(v, 3) if isinstance(v, float) else v for k, v in m.items() if k != "ssim"}
    return out


def rule_temperature(rule: str, val_sweep: Dict[str, Dict], default: float):
    """The global T a rule picks from the val sweep (None for the per-image rule)."""
    if rule == "val_objective":
        return float(max(val_sweep, key=lambda k: val_sweep[k]["objective"]))
    if rule == "val_cf":
        return float(min(val_sweep, key=lambda k: val_sweep[k]["cf_gap"]))
    if rule == "default":
        return float(default)
    if rule == "discriminator":
        return None
    raise ValueError(f"unknown temperature rule {rule!r}: use {', '.join(TEMPERATURE_RULES)}")


def by_subset(preds: List[np.ndarray], truths: List[np.ndarray], sources: List[str], ref_prior) -> Dict[str, Dict]:
    """The ood scores per source (the folder each image came from: Kodak24, McMaster)."""
    groups: Dict[str, List[int]] = {}
    for i, src in enumerate(sources):
        groups.setdefault(src.split("/")[0], []).append(i)
    return {
        name: score([preds[i] for i in idx], [truths[i] for i in idx], ref_prior, ssim=False)
        for name, idx in groups.items()
    }


def decode_ours(trainer: Dict, tensors: Dict[str, torch.Tensor], data: Dict, ref_prior, primary: str):
    """Score ours under every temperature rule (each picks T from the large-val sweep only); the
    primary rule's figures become the model's. -> (results to merge into the model's entry,
    {split: the primary rule's outputs} for test and ood)."""
    temps = trainer["temperatures"]
    val_sweep = sweep(trainer["predict"], tensors["val"], data["val"], temps, ref_prior)
    test_sweep = sweep(trainer["predict"], tensors["test"], data["test"], temps, ref_prior)  # diagnostic only
    rules, outputs = {}, {}
    for rule in TEMPERATURE_RULES:
        T = rule_temperature(rule, val_sweep, trainer["default_temperature"])
        outs = {}
        if T is None:
            val_out, val_ts = colorize_by_discriminator(trainer, tensors["val"])
            outs["test"], test_ts = colorize_by_discriminator(trainer, tensors["test"])
            outs["ood"], _ = colorize_by_discriminator(trainer, tensors["ood"])
            entry = {
                "temperature": "per image",
                "val_temperatures": {str(t): val_ts.count(t) for t in sorted(set(val_ts))},
                "test_temperatures": test_ts,
                "val": score(as_list(val_out), data["val"], ref_prior, ssim=False),
            }
        else:
            outs = {k: colorize(trainer["predict"], tensors[k], T) for k in ("test", "ood")}
            val = val_sweep.get(str(T)) or score(
                as_list(colorize(trainer["predict"], tensors["val"], T)), data["val"], ref_prior, ssim=False
            )
            entry = {"temperature": T, "val": val}
        outputs[rule] = {k: as_list(v) for k, v in outs.items()}
        for k in ("test", "ood"):
            entry[k] = score(outputs[rule][k], data[k], ref_prior)
        rules[rule] = entry
    best = rules[primary]
    return (
        {
            "temperature": best["temperature"],
            "temperature_rule": primary,
            "val": best["val"],
            "test": best["test"],
            "ood": best["ood"],
            "rules": rules,
            "sweep": {"val": val_sweep, "test_diagnostic": test_sweep},
        },
        outputs[primary],
    )


def as_list(images: torch.Tensor) -> List[np.ndarray]:
    return list(images.cpu().numpy())


def score(preds, truths, ref_prior, ssim=True) -> Dict[str, float]:
    return scoring.score_images(preds, truths, ref_prior, ssim=ssim, threads=os.cpu_count() or 2)


def train_for(trainer: Dict, crops: quality_data.Crops, batch: int, budget: float, device) -> Dict:
    """Run steps until ``budget`` seconds of training wall-clock have passed (device synced)."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    t0, n, last = time.perf_counter(), 0, {}
    while True:
        last = trainer["step"](crops.batch(batch))
        n += 1
        if n % 10 == 0 or device.type != "cuda":
            sync()
            if time.perf_counter() - t0 >= budget:
                break
    wall = time.perf_counter() - t0
    return {
        "steps": n,
        "images_seen": n * batch,
        "train_s": round(wall, 1),
        "images_per_s": round(n * batch / wall, 1),
        "last_losses": {k: round(float(v), 4) for k, v in last.items()},
    }


# ----------------------------------------------------------------------------- report


SPLIT_NAMES = {
    "test": "large-test (in distribution, 128x128)",
    "ood": "splits/test.txt (Kodak24 + McMaster, 256x256)",
}


def table(results: Dict[str, Dict], split: str = "test") -> str:
    cf_true = next((r[split]["cf_true"] for r in results.values() if split in r), float("nan"))
    rows = [
        f"| model | AuC | AuC rebal | CF out (truth {cf_true:.1f}) | ΔCF | PSNR | SSIM | top-1 | top-1 rebal "
        "| T | steps | images seen |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        if split not in r:
            continue
        t = r[split]
        rows.append(
            f"| {LABELS.get(name, name)} | {t['auc']:.1f} | {t['auc_rebalanced']:.1f} | {t['cf_pred']:.1f} | "
            f"{t['cf_gap']:.1f} | {t['psnr']:.1f} | {t['ssim']:.3f} | {t['top1']:.1f} | {t['top1_rebalanced']:.1f} | "
            f"{r.get('temperature') or '-'} | {r.get('steps', 0)} | {r.get('images_seen', 0)} |"
        )
    return "\n".join(rows) + "\n"


def rules_table(results: Dict[str, Dict]) -> str:
    rows = [
        "| model | rule | T | val ΔCF | test AuC | AuC rebal | CF out | ΔCF | PSNR | SSIM | ood AuC | ood AuC rebal "
        "| ood ΔCF | ood PSNR |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in results.items():
        for rule, e in r.get("rules", {}).items():
            t, o = e["test"], e["ood"]
            rows.append(
                f"| {LABELS.get(name, name)} | {rule} | {e['temperature']} | {e['val']['cf_gap']:.1f} | "
                f"{t['auc']:.1f} | {t['auc_rebalanced']:.1f} | {t['cf_pred']:.1f} | {t['cf_gap']:.1f} | "
                f"{t['psnr']:.1f} | {t['ssim']:.3f} | {o['auc']:.1f} | {o['auc_rebalanced']:.1f} | "
                f"{o['cf_gap']:.1f} | {o['psnr']:.1f} |"
            )
    return "\n".join(rows) + "\n"


def sweep_table(r: Dict) -> str:
    rows = [
        "| T | val CF | val ΔCF | val AuC rebal | val objective | test CF | test ΔCF | test AuC | test AuC rebal "
        "| test PSNR |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for T, v in r["sweep"]["val"].items():
        t = r["sweep"]["test_diagnostic"][T]
        rows.append(
            f"| {T} | {v['cf_pred']:.1f} | {v['cf_gap']:.1f} | {v['auc_rebalanced']:.1f} | {v['objective']:.1f} | "
            f"{t['cf_pred']:.1f} | {t['cf_gap']:.1f} | {t['auc']:.1f} | {t['auc_rebalanced']:.1f} | {t['psnr']:.1f} |"
        )
    return "\n".join(rows) + "\n"


def source_table(results: Dict[str, Dict]) -> str:
    names = sorted({src for r in results.values() for src in r.get("ood_by_source", {})})
    head = " | ".join(f"{n} AuC / rebal / PSNR / CF out (truth)" for n in names)
    rows = [f"| model | {head} |", "|---|" + "---|" * len(names)]
    for name, r in results.items():
        by = r.get("ood_by_source", {})
        cells = [
            f"{by[n]['auc']:.1f} / {by[n]['auc_rebalanced']:.1f} / {by[n]['psnr']:.1f} / "
            f"{by[n]['cf_pred']:.1f} ({by[n]['cf_true']:.1f})"
            if n in by
            else "-"
            for n in names
        ]
        rows.append(f"| {LABELS.get(name, name)} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def targets(results: Dict[str, Dict]) -> List[Dict]:
    """The protocol's targets for ours, each {"target", "value", "met"} (met: None when a model it is
    measured against was not in the run)."""
    out: List[Dict] = []

    def add(target: str, value, met) -> None:
        out.append({"target": target, "value": value, "met": met})

    ours = results.get("ours")
    if not ours or "test" not in ours:
        return out
    t, o = ours["test"], ours["ood"]
    add("large-test ΔCF ≤ 3", round(t["cf_gap"], 2), t["cf_gap"] <= 3)
    for other in ("pix2pix", "ours_unit"):
        if other in results:
            d = t["auc_rebalanced"] - results[other]["test"]["auc_rebalanced"]
            add(f"large-test AuC rebal ≥ {LABELS[other]} + 5", round(d, 2), d >= 5)
        else:
            add(f"large-test AuC rebal ≥ {LABELS[other]} + 5", None, None)
    grey = results.get("grey", {}).get("test")
    for k, label in (("auc", "AuC"), ("psnr", "PSNR")):
        d = None if grey is None else t[k] - grey[k]
        add(f"large-test {label} ≥ grey's", None if d is None else round(d, 2), None if d is None else d >= 0)
    p2p = results.get("pix2pix", {}).get("test")
    d = None if p2p is None else t["ssim"] - p2p["ssim"]
    add("large-test SSIM > pix2pix's", None if d is None else round(d, 4), None if d is None else d > 0)
    add("test.txt AuC rebal ≥ 58", round(o["auc_rebalanced"], 2), o["auc_rebalanced"] >= 58)
    add("test.txt AuC ≥ 84", round(o["auc"], 2), o["auc"] >= 84)
    add("test.txt PSNR ≥ 20", round(o["psnr"], 2), o["psnr"] >= 20)
    return out


def targets_table(rows: List[Dict]) -> str:
    lines = ["| target (ours) | value (differences: ours minus the other) | |", "|---|---|---|"]
    for r in rows:
        mark = "n/a" if r["met"] is None else "met" if r["met"] else "not met"
        lines.append(f"| {r['target']} | {'-' if r['value'] is None else r['value']} | {mark} |")
    return "\n".join(lines) + "\n"


def report(meta: Dict, results: Dict) -> str:
    rule = next(iter(meta["temperature_rule"]))
    parts = [
        f"# Quality (protocol v2), {meta['date']}, {meta['device']}\n\n",
        f"## {SPLIT_NAMES['test']}\n\n",
        table(results, "test"),
        f"\n## {SPLIT_NAMES['ood']}\n\n",
        table(results, "ood"),
        f"\nbudget {meta['budget_s']} s per model, batch {meta['batch']}, crop {meta['crop']}, train "
        f"{meta['images'].get('train')} photos; ours: {meta['config']} {json.dumps(meta['overrides'])}; "
        f"T rule: {rule} ({meta['temperature_rule'][rule]})\n",
        "\n## Targets\n\n",
        targets_table(targets(results)),
        "\n## splits/test.txt by source\n\n",
        source_table(results),
    ]
    if any("rules" in r for r in results.values()):
        parts += [
            "\n## Ours under each temperature rule (large-val steers every rule; test and ood only report)\n\n",
            rules_table(results),
        ]
    for name, r in results.items():
        if "sweep" in r:
            parts += [
                f"\n## {LABELS.get(name, name)}: temperature sweep (the large-test columns are a diagnostic)\n\n",
                sweep_table(r),
            ]
    return "".join(parts)


def write(out: Path, meta: Dict, results: Dict) -> None:
    doc = {"meta": meta, "results": results, "targets": targets(results)}
    (out / "metrics.json").write_text(json.dumps(doc, indent=1))
    (out / "quality.md").write_text(report(meta, results))


def grid(out: Path, examples: Dict[str, List[np.ndarray]], n: int) -> None:
    from PIL import Image

    cols = [k for k in ("grey", "pix2pix", "l1", "ours_unit", "ours", "truth") if k in examples]
    rows = [np.concatenate([examples[k][i] for k in cols], 1) for i in range(min(n, len(examples["truth"])))]
    Image.fromarray(np.concatenate(rows, 0)).save(out / "grid.png")
    (out / "grid.txt").write_text("columns: " + " | ".join(cols) + "\n")


# ----------------------------------------------------------------------------- main


def main(argv=None) -> Dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="", help="portable copy (bench/quality_data.py); default: the shared data")
    ap.add_argument(
        "--reference",
        default=str(ROOT.parent / "shared" / "reference"),
        help="Zhang's prior_probs.npy + pts_in_hull.npy",
    )
    ap.add_argument("--prior", default=str(ROOT / "prior_probs.npy"), help="training prior (class weights)")
    ap.add_argument(
        "--config", default=str(quality_data.DEFAULT_CONFIG), help="ours' config (the model the product ships)"
    )
    ap.add_argument("--out", default="out/quality")
    ap.add_argument("--budget", type=float, default=120.0, help="training seconds per model (stated in the report)")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--limit", type=int, default=0, help="first N images of each split (smoke runs)")
    ap.add_argument("--preset", default=None, help="override model.preset (tiny for CPU smoke runs)")
    ap.add_argument("--ngf", type=int, default=64, help="pix2pix width (64 as published)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="more overrides for ours")
    ap.add_argument("--ship", default="", help="also write ours' EMA generator (fp16) and a model card here")
    ap.add_argument("--examples", type=int, default=6)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--rule",
        default=PRIMARY_RULE,
        choices=sorted(TEMPERATURE_RULES),
        help=f"how ours picks T for the main table (default {PRIMARY_RULE}); every rule is reported",
    )
    a = ap.parse_args(argv)

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    overrides = [f"model.preset={a.preset}"] if a.preset else []
    overrides += list(a.set) + [f"data.seed={a.seed}"]
    cfg = config_mod.load(a.config, overrides)
    t = time.perf_counter()
    data = quality_data.load(a.data, a.limit)
    sources = quality_data.sources(a.data, "ood", a.limit)
    train_prior = np.load(a.prior, allow_pickle=False)
    ref_prior = scoring.zhang_prior(a.reference)
    color.rgb_to_bin(np.zeros((1, 3), np.uint8))  # build the colour table before any clock runs
    meta = {
        "protocol": 2,
        "date": time.strftime("%Y-%m-%d"),
        "device": torch.cuda.get_device_name() if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "budget_s": a.budget,
        "batch": a.batch,
        "crop": a.crop,
        "seed": a.seed,
        "splits": dict(quality_data.SPLITS),
        "images": {k: len(v) for k, v in data.items()},
        "config": os.path.relpath(a.config, ROOT) if Path(a.config).is_absolute() else a.config,
        "overrides": overrides,
        "ours_config": cfg.to_dict(),
        "ema_decay": cfg.train.ema_decay,
        "temperature_rule": {a.rule: TEMPERATURE_RULES[a.rule]},
        "load_s": round(time.perf_counter() - t, 1),
    }
    print(json.dumps({k: v for k, v in meta.items() if k != "ours_config"}), flush=True)
    results: Dict[str, Dict] = {}
    examples = {"truth": data["test"][: a.examples]}
    tensors = {k: torch.from_numpy(np.stack(data[k])).to(device) for k in ("val", "test", "ood")}  # uint8 NHWC
    for name in a.models.split(","):
        t = time.perf_counter()
        if name == "grey":
            preds = {k: [scoring.grey_output(im) for im in data[k]] for k in ("test", "ood")}
            results[name] = {
                "val": score([scoring.grey_output(im) for im in data["val"]], data["val"], ref_prior, ssim=False),
                **{k: score(preds[k], data[k], ref_prior) for k in ("test", "ood")},
            }
        else:
            if name in ("ours", "ours_unit"):
                c = cfg if name == "ours" else cfg.replace({"loss.rebalance": False})
                trainer = ours_trainer(c, train_prior, device)
            elif name in ("pix2pix", "l1"):
                trainer = pix2pix_trainer(a.ngf, a.crop, name == "pix2pix", device, a.seed)
            else:
                raise SystemExit(f"unknown model {name!r}: use {', '.join(MODELS)} or l1")
            crops = quality_data.Crops(data["train"], a.crop, device, a.seed)
            r = train_for(trainer, crops, a.batch, a.budget, device)
            r["params"] = trainer["params"]
            r["epochs"] = round(crops.seen / len(data["train"]), 2)
            del crops
            if "realness" in trainer:  # ours: a temperature to choose, on large-val only
                decoded, preds = decode_ours(trainer, tensors, data, ref_prior, a.rule)
                r.update(decoded)
            else:
                r["temperature"] = None
                r["val"] = score(
                    as_list(colorize(trainer["predict"], tensors["val"], None)), data["val"], ref_prior, ssim=False
                )
                preds = {k: as_list(colorize(trainer["predict"], tensors[k], None)) for k in ("test", "ood")}
                r.update({k: score(preds[k], data[k], ref_prior) for k in ("test", "ood")})
            results[name] = r
            if name == "ours" and a.ship:
                r["shipped"] = ship_model.save(
                    Path(a.ship),
                    trainer["gan"].generator(),
                    trainer["cfg"],
                    steps=r["steps"],
                    train={"budget_s": a.budget, "batch": a.batch, "images_seen": r["images_seen"], **meta["splits"]},
                    figures={"temperature": r["temperature"], "large-test": r["test"], "test.txt": r["ood"]},
                    device=meta["device"],
                )
            del trainer
            if device.type == "cuda":
                torch.cuda.empty_cache()
        results[name]["ood_by_source"] = by_subset(preds["ood"], data["ood"], sources, ref_prior)
        examples[name] = preds["test"][: a.examples]
        results[name]["wall_s"] = round(time.perf_counter() - t, 1)
        print(f"{name}: {json.dumps({k: v for k, v in results[name].items() if k != 'sweep'})}", flush=True)
        write(out, meta, results)
        grid(out, examples, a.examples)
    print(report(meta, results), flush=True)
    return results


if __name__ == "__main__":
    main()
