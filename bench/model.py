"""Model cost: parameters and FLOPs per 256x256 image for G, D and one full training step (D step +
G step, forward and backward, EMA update), CPU step time, and, on a GPU, img/s and MFU of the
training step in fp32 and bf16, eager and compiled (``train.compile=on``). Models, optimisers and step are the product's
(``pipeline.gan.cgan``): channels_last on CUDA, as in training.

    python bench/model.py [--preset full] [--sizes 128,256] [--batch 32] [--compile both] [--json F]
    python bench/model.py --config pipeline/configs/shipped-model.yaml --sizes 64,128 --cpu-batch 32 --compile off

On CPU it times, side by side in one run, fp32 (``train.amp=off``), bf16 autocast, and with
``--config`` that config's model and ``train.amp`` (e.g. the shipped model's recipe).

MFU = achieved FLOP/s / peak (792 TFLOP/s: H200 dense bf16, as measured on one).
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from models import unwrap  # noqa: E402
from pipeline import config as config_mod  # noqa: E402
from pipeline.config import ExperimentConfig  # noqa: E402
from pipeline.gan import batches, cgan  # noqa: E402


def flops(fn) -> int:
    with FlopCounterMode(display=False) as fc:
        fn()
    return fc.get_total_flops()


def build(cfg, device) -> cgan.GAN:
    """The product's G, D, optimisers and EMA (channels_last on CUDA), seeded."""
    torch.manual_seed(0)
    return cgan.build(cfg, device)


def step_fn(gan: cgan.GAN, batch):
    """The product's training step (D step, G step, EMA update) on one fixed batch; compiled when
    the config's ``train.compile`` made the builder compile G and D."""
    w = torch.ones(unwrap(gan.G).num_bins, device=batch["L"].device)
    return lambda: gan.train_step(batch, 0, w)


def time_it(fn, device, iters):
    for _ in range(3):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t) / iters


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="full")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--sizes", default="256", help="comma-separated crop sizes, e.g. 128,256")
    ap.add_argument("--compile", choices=("off", "on", "both"), default="both", help="GPU variants (train.compile)")
    ap.add_argument("--peak-tflops", type=float, default=792.0)
    ap.add_argument("--cpu-batch", type=int, default=2, help="0: skip the CPU step time")
    ap.add_argument("--iters", type=int, default=10, help="timed GPU steps per variant")
    ap.add_argument("--json", default=None, help="also write the numbers to this JSON file")
    ap.add_argument("--config", default=None, help="YAML config: its model and train.amp as a third CPU variant")
    args = ap.parse_args()
    model = {"preset": args.preset}
    if args.config:
        model = {"preset": config_mod.load(args.config, []).model.preset}
    cfg = ExperimentConfig.from_dict(
        {
            "model": model,
            "loss": {"lambda_adv": 0.01, "lambda_l1": 0.0},
            "train": {"amp": "off", "compile": "off"},
        }
    )
    cpu = torch.device("cpu")
    rows = []
    for size in (int(x) for x in args.sizes.split(",")):
        gan = build(cfg, cpu)
        G, D = gan.G, gan.D
        rgb = torch.randint(0, 256, (1, size, size, 3), dtype=torch.uint8)
        b1 = batches.batch_from_rgb(rgb, G.logits_stride)
        fg = flops(lambda G=G, b1=b1: G(b1["L"]))
        fd = flops(lambda D=D, b1=b1: D(b1["L"], b1["ab"]))
        fstep = flops(step_fn(gan, b1))
        print(f"preset {cfg.model.preset}, {size}x{size}")
        print(f"  G: {sum(p.numel() for p in G.parameters()) / 1e6:.2f} M params, {fg / 1e9:.1f} GFLOP/img forward")
        print(f"  D: {sum(p.numel() for p in D.parameters()) / 1e6:.2f} M params, {fd / 1e9:.1f} GFLOP/img forward")
        print(f"  training step (D + G, fwd + bwd, EMA update): {fstep / 1e9:.1f} GFLOP/img")
        base = {"preset": cfg.model.preset, "size": size, "gflop_per_img_step": fstep / 1e9}
        if args.cpu_batch > 0:
            rows += cpu_variants(cfg, size, args, base)
        if not torch.cuda.is_available():
            print("  no GPU: skipping GPU throughput and MFU")
            continue
        rows += gpu_variants(cfg, size, fstep, args)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rows, indent=1))


def cpu_variants(cfg, size, args, base):
    """img/s of the product's step on this CPU, side by side: fp32, bf16 autocast, and the
    ``--config`` recipe (its model section and ``train.amp``)."""
    cpu = torch.device("cpu")
    variants = [("fp32", cfg), ("bf16", cfg.replace({"train.amp": "bf16"}))]
    if args.config:
        recipe = config_mod.load(args.config, [])
        amp = "bf16" if batches.uses_bf16(cpu, recipe.train.amp) else "fp32"
        variants.append(
            (
                f"{args.config} ({amp}, norm {recipe.model.norm})",
                cfg.replace({"model.norm": recipe.model.norm, "train.amp": recipe.train.amp}),
            )
        )
    rgbc = torch.randint(0, 256, (args.cpu_batch, size, size, 3), dtype=torch.uint8)
    rows, first = [], None
    for name, c in variants:
        gan = build(c, cpu)
        t = time_it(step_fn(gan, batches.batch_from_rgb(rgbc, gan.G.logits_stride)), cpu, 3)
        ips = args.cpu_batch / t
        first = first or ips
        print(
            f"  CPU {name} ({torch.get_num_threads()} threads), batch {args.cpu_batch}: {t:.2f} s/step, "
            f"{ips:.1f} img/s ({ips / first:.2f}x fp32)"
        )
        rows.append({**base, "device": "cpu", "variant": name, "batch": args.cpu_batch, "img_s": ips})
    return rows


def gpu_variants(cfg, size, fstep, args):
    """img/s and MFU of the product's step on the GPU: fp32 and bf16 eager, bf16 compiled
    (``train.compile=on`` through the builder, as ``pipeline/run.py`` trains). channels_last always."""
    dev = torch.device("cuda")
    rgbg = torch.randint(0, 256, (args.batch, size, size, 3), dtype=torch.uint8)
    variants = [("fp32+channels_last", "off", "off"), ("bf16+channels_last", "bf16", "off")]
    if args.compile != "off":
        variants.append(("bf16+channels_last+compile", "bf16", "on"))
    if args.compile == "on":
        variants = variants[2:]
    rows = []
    for name, amp, comp in variants:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch._dynamo.reset()
        gan = build(cfg.replace({"train.amp": amp, "train.compile": comp}), dev)
        b = batches.batch_from_rgb(rgbg, gan.G.logits_stride, device=dev)
        b["L"] = b["L"].contiguous(memory_format=torch.channels_last)
        b["ab"] = b["ab"].contiguous(memory_format=torch.channels_last)
        try:
            t0 = time.perf_counter()
            t = time_it(step_fn(gan, b), dev, args.iters)
            wall = time.perf_counter() - t0
        except Exception as e:  # compile may be unavailable on some stacks
            print(f"  GPU {name}: failed: {type(e).__name__}: {str(e)[:200]}")
            rows.append({"size": size, "device": "cuda", "variant": name, "error": f"{type(e).__name__}: {e}"[:500]})
            continue
        ips = args.batch / t
        mfu = ips * fstep / (args.peak_tflops * 1e12)
        print(
            f"  GPU {name}, batch {args.batch}: {ips:.0f} img/s, MFU {100 * mfu:.1f}% of {args.peak_tflops:.0f} TFLOP/s"
        )
        rows.append(
            {
                "preset": cfg.model.preset,
                "size": size,
                "device": torch.cuda.get_device_name(),
                "variant": name,
                "batch": args.batch,
                "img_s": ips,
                "mfu": mfu,
                "peak_tflops": args.peak_tflops,
                "gflop_per_img_step": fstep / 1e9,
                "wall_s_incl_warmup_compile": wall,
            }
        )
    return rows


if __name__ == "__main__":
    main()
