"""Peak memory of ``colorize serve`` under a burst of the worst requests its limits allow.

Starts ``colorize serve`` (own local Ray, default limits, the shipped model unless ``--model``),
then sends ``--burst`` requests at once, half ``POST /colorize`` and half ``POST /suggest``, each a
photo at the largest allowed size (``--max-pixels``, 25 MP by default, 2:1) asking for the largest
working size whose working pixels fit ``--max-working-pixels``. It samples the resident memory
(VmRSS) of every process of the server's session every 0.1 s and prints the peak of the model
replica, of the HTTP ingress, and of all of them together, with every status answered.

    python bench/serve_memory.py                 # 16 requests, shipped model
    python bench/serve_memory.py --burst 32 --model out/runs/my-run

The figure in docs/serving-in-production.md comes from this script.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Dict

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
from PIL import Image
from serve_load import free_port, start, stop

from pipeline.runtime import work_limits
from pipeline.serve import handling

ROLES = (("model replica", "Colorizer"), ("ingress", "Ingress"), ("HTTP proxy", "ProxyActor"))


def worst_photo(max_pixels: int) -> bytes:
    """A 2:1 grey JPEG of about ``max_pixels`` pixels with texture (so that it is a few MB, not KB)."""
    h = int((max_pixels / 2) ** 0.5)
    w = 2 * h
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    g = 128 + 60 * np.sin(x / 37.0) * np.cos(y / 23.0) + np.random.default_rng(0).normal(0, 8, (h, w))
    buf = io.BytesIO()
    Image.fromarray(np.clip(g, 0, 255).astype(np.uint8), "L").save(buf, "JPEG", quality=85)
    return buf.getvalue()


def largest_size(width: int, height: int, max_pixels: int, max_working: int) -> int:
    """The largest working size (short side) the service allows for this photo."""
    for size in range(handling.SIZE_RANGE[1], handling.SIZE_RANGE[0] - 1, -1):
        try:
            work_limits.check_shape(height, width, size, max_pixels, max_working)
            return size
        except work_limits.TooMuchWork:
            continue
    raise SystemExit(f"a {width}x{height} photo is refused at every working size")


def session_rss(sid: int) -> Dict[str, int]:
    """{pid: (command line, VmRSS bytes)} of every process in session ``sid``."""
    out = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[3]) != sid:  # the session id: the 6th field of stat, 4th after the name
                continue
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{pid}/status") as f:
                rss = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
        except (OSError, StopIteration, IndexError, ValueError):
            continue
        out[pid] = (cmd, rss)
    return out


def post(url: str, data: bytes) -> object:
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "image/jpeg"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=900) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as e:
        e.read()
        return e.code
    except OSError as e:
        return f"lost ({type(e).__name__})"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="shipped")
    ap.add_argument("--burst", type=int, default=16, help="requests sent at once (default 16)")
    ap.add_argument("--max-pixels", type=int, default=handling.DEFAULT_MAX_PIXELS)
    ap.add_argument("--max-working-pixels", type=int, default=handling.DEFAULT_MAX_WORKING_PIXELS)
    args = ap.parse_args()

    photo = worst_photo(args.max_pixels)
    w, h = Image.open(io.BytesIO(photo)).size
    size = largest_size(w, h, args.max_pixels, args.max_working_pixels)
    with tempfile.TemporaryDirectory(prefix="serve-memory-") as tmp:
        port = free_port()
        limits = argparse.Namespace(max_ongoing=16, max_queued=32, body_timeout_s=60.0)  # the service's defaults
        proc = start(args.model, port, 8, limits, os.path.join(tmp, "serve.log"))
        peaks: Dict[str, int] = Counter()
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.1):
                procs = session_rss(proc.pid).values()
                peaks["all"] = max(peaks["all"], sum(rss for _, rss in procs))
                for role, mark in ROLES:
                    peaks[role] = max([peaks[role]] + [rss for cmd, rss in procs if mark in cmd])

        base = sum(rss for _, rss in session_rss(proc.pid).values())
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        try:
            urls = [
                f"http://127.0.0.1:{port}/colorize?size={size}"
                if i % 2 == 0
                else f"http://127.0.0.1:{port}/suggest?size={size}&x=10&y=10"
                for i in range(args.burst)
            ]
            t0 = time.perf_counter()
            with ThreadPoolExecutor(args.burst) as pool:
                statuses = Counter(pool.map(lambda u: post(u, photo), urls))
            wall = time.perf_counter() - t0
            time.sleep(1.0)
        finally:
            done.set()
            sampler.join()
            stop(proc)
    gib = 1 << 30
    print(
        f"colorize serve, {args.burst} requests at once (half /colorize, half /suggest): a {w}x{h} JPEG "
        f"({len(photo) / 1e6:.1f} MB) at working size {size}, model {args.model}, {os.cpu_count()} CPUs"
    )
    print(f"statuses {dict(statuses)} in {wall:.1f} s")
    print(f"resident memory of the server's processes before the burst: {base / gib:.2f} GiB")
    for role, _ in ROLES:
        print(f"peak resident memory, {role}: {peaks[role] / gib:.2f} GiB")
    print(f"peak resident memory, all processes together: {peaks['all'] / gib:.2f} GiB")
    return 1 if any(not isinstance(s, int) for s in statuses) else 0


if __name__ == "__main__":
    sys.exit(main())
