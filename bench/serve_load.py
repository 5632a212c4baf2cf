"""Load on ``colorize serve``: N concurrent clients on 127.0.0.1 for a bounded time, with and without
dynamic batching (``--max-batch-size 8`` vs ``1``), side by side in one run.

Prints requests/s and p50/p95/p99 latency of the answered requests, and every status seen. Nothing
may be lost: each request is answered (200) or refused with a status (503 when the bounded queue
is full); a connection error or timeout counts as lost and fails the run.

    python bench/serve_load.py                       # an untrained `small` generator, 16 clients, 20 s each
    python bench/serve_load.py --model out/runs/my-run --clients 32 --seconds 30

Photos: 256x256 JPEG crops of the shared validation photos (bench/common.py), or synthetic ones
when those are absent. Each configuration runs its own `colorize serve` (own local Ray), stopped after.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import List, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
import numpy as np
from common import ROOT, jpeg_256, split_paths
from PIL import Image


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def photos(n: int) -> List[bytes]:
    try:
        return jpeg_256(split_paths("val", n))
    except SystemExit:
        rng = np.random.default_rng(0)
        out = []
        for _ in range(n):
            buf = io.BytesIO()
            Image.fromarray((rng.random((256, 256)) * 255).astype(np.uint8)).save(buf, "JPEG")
            out.append(buf.getvalue())
        return out


def make_model(preset: str, folder: str) -> str:
    import torch

    from pipeline.config import ExperimentConfig
    from pipeline.gan import builder, checkpoint

    cfg = ExperimentConfig().replace({"model.preset": preset})
    torch.manual_seed(0)
    G = builder.build_generator(cfg.model)
    path = os.path.join(folder, "generator")
    checkpoint.save_generator(path, G, step=0, epoch=0, config=cfg.to_dict())
    return path


def post(url: str, data: bytes, timeout: float) -> int:
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "image/jpeg"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            r.read()
            return r.status
    except urllib.error.HTTPError as e:
        e.read()
        return e.code


def start(model: str, port: int, batch: int, args, log_path: str) -> subprocess.Popen:
    env = dict(os.environ, RAY_ADDRESS="local", RAY_USAGE_STATS_ENABLED="0")
    argv = [sys.executable, "-m", "pipeline.cli", "serve", "--model", model, "--port", str(port)]
    argv += ["--max-batch-size", str(batch), "--max-ongoing-requests", str(args.max_ongoing)]
    argv += ["--max-queued-requests", str(args.max_queued), "--replicas", "1"]
    log = open(log_path, "wb")
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + 300
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"colorize serve exited ({proc.returncode}); see {log_path}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as r:
                if r.status == 200:
                    return proc
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit(f"colorize serve not ready after 300 s; see {log_path}")
        time.sleep(0.5)


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGTERM)  # it stops Serve and its Ray
    try:
        proc.wait(timeout=90)
    except subprocess.TimeoutExpired:
        pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # whatever is left of the group
    except ProcessLookupError:
        pass
    proc.wait()


def drive(url: str, images: List[bytes], clients: int, seconds: float, timeout: float) -> Tuple[list, Counter, float]:
    """Each client posts photos back to back until the time is up; (latencies of 200s, statuses, wall)."""
    lat: List[float] = []
    statuses: Counter = Counter()
    lock = threading.Lock()
    end = time.monotonic() + seconds

    def client(k: int) -> None:
        i = k
        while time.monotonic() < end:
            t = time.perf_counter()
            try:
                status = post(url, images[i % len(images)], timeout)
            except (OSError, urllib.error.URLError) as e:  # no answer at all: lost
                status = f"lost ({type(e).__name__})"
            dt = time.perf_counter() - t
            with lock:
                statuses[status] += 1
                if status == 200:
                    lat.append(dt)
            i += clients

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return lat, statuses, time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=None, help="model reference (default: an untrained generator of --preset)")
    ap.add_argument("--preset", default="small", help="generator preset when no --model (default small)")
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=20.0, help="driving time per configuration")
    ap.add_argument("--size", type=int, default=256, help="working size the requests ask for")
    ap.add_argument("--max-ongoing", type=int, default=16)
    ap.add_argument("--max-queued", type=int, default=32)
    ap.add_argument("--batches", default="8,1", help="max batch sizes to compare (1 = no batching)")
    ap.add_argument("--timeout", type=float, default=120.0, help="client timeout per request")
    args = ap.parse_args()

    images = photos(32)
    rows = []
    with tempfile.TemporaryDirectory(prefix="serve-load-") as tmp:
        model = args.model or make_model(args.preset, tmp)
        for batch in [int(b) for b in args.batches.split(",")]:
            port = free_port()
            log = os.path.join(tmp, f"serve-{batch}.log")
            proc = start(model, port, batch, args, log)
            try:
                url = f"http://127.0.0.1:{port}/colorize?size={args.size}"
                drive(url, images, 2, 3.0, args.timeout)  # warm up: first calls, thread pools
                lat, statuses, wall = drive(url, images, args.clients, args.seconds, args.timeout)
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=10) as r:
                    health = json.loads(r.read())
            finally:
                stop(proc)
            rows.append((batch, lat, statuses, wall, health))

    device = rows[0][4]["model"]["device"] if rows else "?"
    print(
        f"colorize serve under load: {args.clients} clients, {args.seconds:g} s each, working size {args.size}, "
        f"model {args.model or 'untrained ' + args.preset}, device {device}, {os.cpu_count()} CPUs"
    )
    print(f"{'max batch':>9} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}  statuses; model batch sizes seen")
    lost = 0
    for batch, lat, statuses, wall, health in rows:
        ok = statuses.get(200, 0)
        rps = ok / wall
        p = np.percentile(np.array(lat) * 1000, [50, 95, 99]) if lat else [float("nan")] * 3
        lost += sum(n for s, n in statuses.items() if not isinstance(s, int))
        print(
            f"{batch:>9} {rps:>7.1f} {p[0]:>8.0f} {p[1]:>8.0f} {p[2]:>8.0f}  {dict(statuses)}; {health.get('batches')}"
        )
    if len(rows) > 1 and rows[-1][1]:
        ratio = (len(rows[0][1]) / rows[0][3]) / (len(rows[-1][1]) / rows[-1][3])
        print(f"throughput, max batch {rows[0][0]} / max batch {rows[-1][0]}: {ratio:.2f}x")
    if lost:
        print(f"LOST: {lost} requests got no answer")
        return 1
    print("nothing lost: every request was answered or refused with a status")
    return 0


if __name__ == "__main__":
    sys.exit(main())
