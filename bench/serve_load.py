"""Load on ``colorize serve``: N concurrent clients on 127.0.0.1 for a bounded time, with and without
dynamic batching (``--max-batch-size 8`` vs ``1``), side by side in one run.

Prints requests/s and p50/p95/p99 latency of the answered requests, and every status seen. Nothing
may be lost: each request is answered (200) or refused with a status (503 when the bounded queue
is full); a connection error or timeout counts as lost and fails the run.

    python bench/serve_load.py                       # an untrained `small` generator, 16 clients, 20 s each
    python bench/serve_load.py --model out/runs/my-run --clients 32 --seconds 30

Photos: 256x256 JPEG crops of the shared validation photos (bench/common.py), or synthetic ones
when those are absent. Each configuration runs its own `colorize serve` (own local Ray), stopped after.

Then, against the first configuration's server, hostile input (``--no-hostile`` skips it): thin
strips and a large photo (status and time to answer), and ``--slow-clients`` clients that announce
a 1 MB body and send a byte a second, while /healthz and a normal photo are timed; each slow client
must be answered (408 after ``--body-timeout-s``, or 503 when every upload slot is taken).
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
    from pipeline.gan import cgan, checkpoint

    cfg = ExperimentConfig().replace({"model.preset": preset})
    torch.manual_seed(0)
    G = cgan.build_generator(cfg.model)
    path = os.path.join(folder, "generator")
    checkpoint.save_generator(path, G, step=0, epoch=0, config=cfg.to_dict())
    return path


def post(url: str, data: bytes, timeout: float, content_type: str = "image/jpeg") -> int:
    req = urllib.request.Request(url, data=data, headers={"Content-Type": content_type}, method="POST")
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
    argv += ["--body-timeout-s", str(args.body_timeout_s)]
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


def png(width: int, height: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((height, width), 128, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def timed(fn) -> Tuple[object, float]:
    t = time.perf_counter()
    try:
        out = fn()
    except (OSError, urllib.error.URLError) as e:
        out = f"LOST ({type(e).__name__})"
    return out, time.perf_counter() - t


def hostile(port: int, photo: bytes, args) -> List[str]:
    """Strips, a large photo and slow clients against a running server: one printed line each."""
    base = f"http://127.0.0.1:{port}"
    lines = ["hostile input (status, seconds to answer):"]
    for name, data, size in [
        ("8x10000 PNG strip, size 256", png(10000, 8), 256),
        ("8x100000 PNG strip, size 1024", png(100000, 8), 1024),
        ("5000x4990 PNG, size 256", png(5000, 4990), 256),
    ]:
        status, dt = timed(lambda d=data, sz=size: post(f"{base}/colorize?size={sz}", d, 300, "image/png"))
        lines.append(f"  {name} ({len(data)} bytes): {status} in {dt:.2f} s")
    head = b"POST /colorize HTTP/1.1\r\nHost: x\r\nContent-Type: image/png\r\nContent-Length: 1000000\r\n\r\n"
    slow: List[socket.socket] = []
    stop_trickle = threading.Event()

    def trickle() -> None:  # a byte a second on every slow connection still open
        while not stop_trickle.wait(1.0):
            for sock in list(slow):
                try:
                    sock.sendall(b"\0")
                except OSError:
                    pass

    for _ in range(args.slow_clients):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        sock.sendall(head)
        slow.append(sock)
    feeder = threading.Thread(target=trickle, daemon=True)
    feeder.start()
    time.sleep(1.0)
    status, dt = timed(lambda: urllib.request.urlopen(f"{base}/healthz", timeout=30).status)
    lines.append(f"  /healthz while {args.slow_clients} clients trickle 1 MB bodies: {status} in {dt:.2f} s")
    status, dt = timed(lambda: post(f"{base}/colorize?size={args.size}", photo, 30))
    lines.append(f"  a 256x256 photo meanwhile: {status} in {dt:.2f} s")
    answers: Counter = Counter()
    t0 = time.perf_counter()
    for sock in slow:
        sock.settimeout(args.body_timeout_s + 30)
        try:
            first = sock.recv(64).split(b" ", 2)
            answers[first[1].decode() if len(first) > 1 else "closed"] += 1
        except OSError as e:
            answers[f"LOST ({type(e).__name__})"] += 1
    stop_trickle.set()
    for sock in slow:
        sock.close()
    lines.append(
        f"  the slow clients' answers: {dict(answers)}, the last {time.perf_counter() - t0:.1f} s after the check "
        f"(body deadline {args.body_timeout_s:g} s)"
    )
    return lines


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
    ap.add_argument("--no-hostile", dest="hostile", action="store_false", help="skip the hostile-input cases")
    ap.add_argument("--slow-clients", type=int, default=120, help="clients sending a byte a second (default 120)")
    ap.add_argument("--body-timeout-s", type=float, default=10.0, help="the server's body deadline (default 10)")
    args = ap.parse_args()

    images = photos(32)
    rows, hostile_rows = [], []
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
                if args.hostile and not rows:
                    hostile_rows = hostile(port, images[0], args)
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
    for line in hostile_rows if args.hostile else []:
        print(line)
    lost += sum(1 for line in hostile_rows if "LOST" in line) if args.hostile else 0
    if lost:
        print(f"LOST: {lost} requests got no answer")
        return 1
    print("nothing lost: every request was answered or refused with a status")
    return 0


if __name__ == "__main__":
    sys.exit(main())
