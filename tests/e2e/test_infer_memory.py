"""Single-file ``colorize infer`` memory: the photo's own cost is at most ``BYTES_PER_PIXEL`` bytes per
full-resolution pixel (the README states the bound). Measured, not estimated: the
CLI runs in a child process on a generated 16 MP JPEG, and its peak RSS (``ru_maxrss`` of the
child) minus that of the same command on a 64 x 48 photo (imports, the model, the same code path)
is the photo's cost."""

from __future__ import annotations

import resource
import subprocess
import sys

import numpy as np
from PIL import Image

from support import ROOT

BYTES_PER_PIXEL = 40
W, H = 4896, 3264  # 16.0 MP, a common camera size


def photo(w: int, h: int) -> Image.Image:
    """A photo-like picture (smooth gradients, texture): JPEG compresses it as it would a real one."""
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    base = 128 + 60 * np.sin(x / 97.0) * np.cos(y / 131.0)
    noise = rng.integers(-12, 13, size=(h // 8 + 1, w // 8 + 1)).astype(np.float32)
    tex = np.repeat(np.repeat(noise, 8, 0), 8, 1)[:h, :w]
    rgb = np.stack([base + tex, base * 0.8 + 20, 255 - base], -1)
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


def peak_rss_bytes(args) -> int:
    """Peak RSS of one child running ``colorize infer`` (each measurement in a fresh wrapper process,
    so ``RUSAGE_CHILDREN`` holds that child alone)."""
    code = (
        "import resource, subprocess, sys\n"
        "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "assert r.returncode == 0, r.stdout + r.stderr\n"
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    cmd = [sys.executable, "-m", "pipeline.cli", "infer", *args]
    out = subprocess.run([sys.executable, "-c", code, *cmd], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return int(out.stdout.split()[-1]) * 1024  # Linux: kilobytes


def test_single_photo_memory_is_bounded_per_pixel(ckpt, tmp_path):
    assert resource.RLIMIT_AS is not None
    big, small = tmp_path / "big.jpg", tmp_path / "small.jpg"
    photo(W, H).save(big, quality=90)
    photo(64, 48).save(small, quality=90)
    model = ["--model", str(ckpt)]
    base = peak_rss_bytes([*model, "--input", str(small), "--output", str(tmp_path / "s.png")])
    peak = peak_rss_bytes([*model, "--input", str(big), "--output", str(tmp_path / "b.png")])
    per_pixel = (peak - base) / (W * H)
    print(f"peak RSS {peak / 2**20:.0f} MiB, baseline {base / 2**20:.0f} MiB: {per_pixel:.1f} bytes/pixel")
    assert Image.open(tmp_path / "b.png").size == (W, H)
    assert per_pixel <= BYTES_PER_PIXEL, f"{per_pixel:.1f} bytes per pixel (bound {BYTES_PER_PIXEL})"
