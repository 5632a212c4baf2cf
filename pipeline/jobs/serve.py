"""``colorize serve``: the Ray Serve application (pipeline/serve/app.py) on HOST:PORT until Ctrl-C or
SIGTERM. Ray: the cluster at RAY_ADDRESS, else a local one started here (and stopped on exit)."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import threading
from dataclasses import dataclass
from typing import Optional

from pipeline.jobs.common import flags
from pipeline.serve import handling

log = logging.getLogger(__name__)


@dataclass(kw_only=True)
class Options:
    model: str = flags.SHIPPED
    tracking_uri: Optional[str] = None
    host: str = "127.0.0.1"
    port: int = 8000
    replicas: int = 1
    max_replicas: Optional[int] = None
    max_bytes: int = handling.DEFAULT_MAX_BYTES
    max_pixels: int = handling.DEFAULT_MAX_PIXELS
    max_working_pixels: int = handling.DEFAULT_MAX_WORKING_PIXELS
    pixels_in_flight: int = handling.DEFAULT_PIXELS_IN_FLIGHT
    body_timeout_s: float = handling.DEFAULT_BODY_TIMEOUT_S
    max_ongoing_requests: int = 16
    max_queued_requests: int = 32
    max_batch_size: int = 8
    batch_wait_ms: float = 10.0


def add_args(p: argparse.ArgumentParser) -> None:
    flags.add_model_ref_args(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="HTTP port (default 8000)")
    p.add_argument(
        "--replicas", type=int, default=1, help="model replicas (default 1; one GPU each when there are GPUs)"
    )
    p.add_argument(
        "--max-replicas",
        type=int,
        default=None,
        help="autoscale the model between --replicas and this many replicas on queue length (default: fixed)",
    )
    p.add_argument(
        "--max-bytes",
        type=int,
        default=handling.DEFAULT_MAX_BYTES,
        help=f"largest request body in bytes; larger: 413 (default {handling.DEFAULT_MAX_BYTES}, 32 MiB)",
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=handling.DEFAULT_MAX_PIXELS,
        help=f"largest photo, width x height; larger: 413 (default {handling.DEFAULT_MAX_PIXELS})",
    )
    p.add_argument(
        "--max-working-pixels",
        type=int,
        default=handling.DEFAULT_MAX_WORKING_PIXELS,
        help="most pixels one request may give the model at its working size; more: 413 "
        f"(default {handling.DEFAULT_MAX_WORKING_PIXELS}, a 2:1 photo at size 1024)",
    )
    p.add_argument(
        "--pixels-in-flight",
        type=int,
        default=handling.DEFAULT_PIXELS_IN_FLIGHT,
        help="most working pixels a model replica holds at once, all requests together: what bounds its "
        f"memory; more: 503 (default {handling.DEFAULT_PIXELS_IN_FLIGHT})",
    )
    p.add_argument(
        "--body-timeout-s",
        type=float,
        default=handling.DEFAULT_BODY_TIMEOUT_S,
        help=f"seconds a request body may take to arrive; slower: 408 (default {handling.DEFAULT_BODY_TIMEOUT_S:g})",
    )
    p.add_argument(
        "--max-ongoing-requests",
        type=int,
        default=16,
        help="requests a model replica works on at once (default 16; a batch is at most this many)",
    )
    p.add_argument(
        "--max-queued-requests",
        type=int,
        default=32,
        help="requests waiting for a model replica; beyond them the answer is 503 (default 32)",
    )
    p.add_argument("--max-batch-size", type=int, default=8, help="requests per model call (default 8; 1 = no batching)")
    p.add_argument(
        "--batch-wait-ms", type=float, default=10.0, help="how long a batch waits to fill, in ms (default 10)"
    )


def run(args: argparse.Namespace) -> int:
    args = flags.options(Options, args)
    import ray
    from ray import serve

    from pipeline.data.sources import ensure_ray
    from pipeline.gan import model_ref
    from pipeline.serve import app, proxy

    if not 0 < args.port < 65536:
        raise ValueError(f"--port must be 1..65535, got {args.port}")
    app_args = {
        "model": args.model,
        "tracking_uri": args.tracking_uri,
        "replicas": args.replicas,
        "max_replicas": args.max_replicas,
        "max_ongoing_requests": args.max_ongoing_requests,
        "max_queued_requests": args.max_queued_requests,
        "max_batch_size": args.max_batch_size,
        "batch_wait_timeout_s": args.batch_wait_ms / 1000.0,
        "max_bytes": args.max_bytes,
        "max_pixels": args.max_pixels,
        "max_working_pixels": args.max_working_pixels,
        "pixels_in_flight": args.pixels_in_flight,
        "body_timeout_s": args.body_timeout_s,
    }
    app.settings(app_args)  # bad values fail here, before Ray starts
    # A missing or broken model is one line now, not Serve's retries and tracebacks after Ray starts;
    # the replicas load their own copy.
    model_ref.resolve_generator(args.model, args.tracking_uri)
    os.environ.setdefault(proxy.ENV, proxy.CALLBACK)  # read by Serve's HTTP proxy, started below with Ray
    ensure_ray()
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):  # after ray.init, which installs its own SIGTERM handler
        signal.signal(sig, lambda *_: stop.set())
    started_here = _is_local()
    try:
        serve.start(http_options={"host": args.host, "port": args.port}, proxy_location="HeadOnly")
        serve.run(app.app_builder(app_args), name=app.APP_NAME, route_prefix="/")
        print(f"colorize serve: http://{args.host}:{args.port}/ (model {args.model}); Ctrl-C stops", flush=True)
        while not stop.wait(1.0):
            pass
        print("colorize serve: stopping", flush=True)
    finally:
        if started_here:
            serve.shutdown()
        else:  # a shared cluster: take our application away, leave Serve to its owner
            try:
                serve.delete(app.APP_NAME)
            except Exception as e:  # best effort on the way out
                log.warning("could not delete the Serve application: %s", e)
        ray.shutdown()
    return 0


def _is_local() -> bool:
    """Ray runs for this command alone (RAY_ADDRESS unset or ``local``): Serve goes with it on exit."""
    return os.environ.get("RAY_ADDRESS") in (None, "", "local")
