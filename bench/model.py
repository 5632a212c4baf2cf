"""Model cost: parameters and FLOPs per 256x256 image for G, D and one full training step (D step +
G step, forward and backward, EMA update), CPU step time, and, on a GPU, img/s and MFU of the
training step in fp32 and bf16 (+ torch.compile). Models, optimisers and step are the product's
(``pipeline.builder``): channels_last on CUDA, as in training.

    python bench/model.py [--preset full] [--batch 32] [--peak-tflops 792]

MFU = achieved FLOP/s / peak (792 TFLOP/s: H200 dense bf16, as measured for DESIGN.md).
"""

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from models import unwrap  # noqa: E402
from pipeline import builder, steps  # noqa: E402
from pipeline.config import ExperimentConfig  # noqa: E402


def flops(fn) -> int:
    with FlopCounterMode(display=False) as fc:
        fn()
    return fc.get_total_flops()


def build(cfg, device) -> builder.GAN:
    """The product's G, D, optimisers and EMA (channels_last on CUDA), seeded."""
    torch.manual_seed(0)
    return builder.build(cfg, device)


def step_fn(gan: builder.GAN, batch, compile_=False):
    """The product's training step (D step, G step, EMA update) on one fixed batch."""
    w = torch.ones(unwrap(gan.G).num_bins, device=batch["L"].device)
    if compile_:
        gan.G.compile()
        gan.D.compile()
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
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--peak-tflops", type=float, default=792.0)
    ap.add_argument("--cpu-batch", type=int, default=2)
    args = ap.parse_args()
    cfg = ExperimentConfig.from_dict(
        {"model": {"preset": args.preset}, "loss": {"lambda_adv": 0.01, "lambda_l1": 0.0}, "train": {"amp": "off"}}
    )
    cpu = torch.device("cpu")
    gan = build(cfg, cpu)
    G, D = gan.G, gan.D
    rgb = torch.randint(0, 256, (1, args.size, args.size, 3), dtype=torch.uint8)
    b1 = steps.batch_from_rgb(rgb, G.logits_stride)
    fg = flops(lambda: G(b1["L"]))
    fd = flops(lambda: D(b1["L"], b1["ab"]))
    fstep = flops(step_fn(gan, b1))
    print(f"preset {args.preset}, {args.size}x{args.size}")
    print(f"  G: {sum(p.numel() for p in G.parameters()) / 1e6:.2f} M params, {fg / 1e9:.1f} GFLOP/img forward")
    print(f"  D: {sum(p.numel() for p in D.parameters()) / 1e6:.2f} M params, {fd / 1e9:.1f} GFLOP/img forward")
    print(f"  training step (D + G, fwd + bwd, EMA update): {fstep / 1e9:.1f} GFLOP/img")
    torch.set_num_threads(max(1, torch.get_num_threads()))
    rgbc = torch.randint(0, 256, (args.cpu_batch, args.size, args.size, 3), dtype=torch.uint8)
    bc = steps.batch_from_rgb(rgbc, G.logits_stride)
    t = time_it(step_fn(build(cfg, cpu), bc), cpu, 2)
    print(
        f"  CPU ({torch.get_num_threads()} threads) step, batch {args.cpu_batch}: {t:.2f} s "
        f"({args.cpu_batch / t:.2f} img/s)"
    )
    if not torch.cuda.is_available():
        print("  no GPU: skipping GPU throughput and MFU")
        return
    dev = torch.device("cuda")
    rgbg = torch.randint(0, 256, (args.batch, args.size, args.size, 3), dtype=torch.uint8)
    # on CUDA the builder always uses channels_last, as training does
    for name, amp, comp in (
        ("fp32+channels_last", "off", False),
        ("bf16+channels_last", "bf16", False),
        ("bf16+channels_last+compile", "bf16", True),
    ):
        torch.backends.cuda.matmul.allow_tf32 = False
        gan = build(cfg.replace({"train.amp": amp}), dev)
        b = steps.batch_from_rgb(rgbg, gan.G.logits_stride, device=dev)
        b["L"] = b["L"].contiguous(memory_format=torch.channels_last)
        b["ab"] = b["ab"].contiguous(memory_format=torch.channels_last)
        try:
            t = time_it(step_fn(gan, b, comp), dev, 10)
        except Exception as e:  # compile may be unavailable on some stacks
            print(f"  GPU {name}: failed: {type(e).__name__}: {str(e)[:200]}")
            continue
        ips = args.batch / t
        mfu = ips * fstep / (args.peak_tflops * 1e12)
        print(f"  GPU {name}: {ips:.0f} img/s, MFU {100 * mfu:.1f}% of {args.peak_tflops:.0f} TFLOP/s")


if __name__ == "__main__":
    main()
