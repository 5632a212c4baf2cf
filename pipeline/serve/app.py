"""The Ray Serve application behind ``colorize serve`` (and ``serve run``/``serve deploy cluster/serve.yaml``).

Two deployments:

- ``Colorizer`` holds the generator (``model_ref.resolve_generator``; one GPU per replica when the
  cluster has GPUs) and runs the model half only: network inputs (and colour hint maps) at the
  working size -> ab. ``@serve.batch`` gathers concurrent requests into one call;
  ``handling.colorize_batch`` runs one forward per working shape (temperature, prior correction) in it, requests
  with and without hints alike. ``suggest`` is the palette of one point (``predict.suggest_colours``).
  Its ``max_ongoing_requests`` and ``max_queued_requests`` bound the work in flight: past them a
  call fails with BackPressureError. Its memory is bounded by the working pixels it holds at once
  (``pixels_in_flight``, batches and ``suggest`` together): a call that does not fit beside them
  gets ``handling.Busy`` back at once.
- ``Ingress`` is the HTTP side (FastAPI): it reads and checks the body and the hints, decodes and
  makes the network input (CPU, in threads), calls the Colorizer, puts the hints' colours on the
  ab and spreads them (``hint_spread``), joins it with the photo's own L and encodes (CPU);
  ``/suggest`` answers the model's likeliest colours at a point of the photo.
  Refusals are JSON ``{"error": ...}`` with 400/404/405/413/415, 408 when a body takes longer than
  ``body_timeout_s``, and 503 (+ Retry-After) when the Colorizer's queue, its pixel budget or the
  ingress's upload slots are full.

``app_builder(args)`` is the import path for Serve config files; ``colorize serve`` calls it too.
"""

import asyncio
import collections
import os
from importlib import resources
from typing import Any, AsyncIterator, Dict, List, Optional, Tuple

import numpy as np
import ray
import torch
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from ray import serve
from ray.serve.exceptions import BackPressureError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException, MultiPartParser

from pipeline.core import hint_spread
from pipeline.gan import predict
from pipeline.serve import handling

APP_NAME = "colorize"
# The grey example photos the page offers (pipeline/assets/examples/, package data).
EXAMPLES = frozenset(
    p.name for p in (resources.files("pipeline.assets") / "examples").iterdir() if p.name.endswith(".jpg")
)
DEFAULTS: Dict[str, Any] = {
    "model": "shipped",  # the model that ships with colorize; or a checkpoint/run folder, runs:/..., models:/...
    "tracking_uri": None,
    "replicas": 1,
    "max_replicas": None,  # > replicas: Serve autoscales the model between the two on its queue length
    "max_ongoing_requests": 16,  # per Colorizer replica; >= max_batch_size, or batches never fill
    "max_queued_requests": 32,  # waiting for a Colorizer replica; beyond: 503
    "max_batch_size": 8,  # 1 = no batching
    "batch_wait_timeout_s": 0.01,
    "max_bytes": handling.DEFAULT_MAX_BYTES,
    "max_pixels": handling.DEFAULT_MAX_PIXELS,
    "max_working_pixels": handling.DEFAULT_MAX_WORKING_PIXELS,  # per request at its working size; more: 413
    "pixels_in_flight": handling.DEFAULT_PIXELS_IN_FLIGHT,  # per model replica, all requests together; more: 503
    "body_timeout_s": handling.DEFAULT_BODY_TIMEOUT_S,  # a body slower than this: 408 (slow clients hold no slot)
    "num_gpus": None,  # per Colorizer replica; None: 1 when the cluster has GPUs, else 0
}


# Photos the ingress decodes or encodes at once (threads): the rest wait their turn, in memory only
# as the bytes they came as.
CPU_WORK_SLOTS = 4


def _error(status: int, message: str, headers: Optional[dict] = None) -> JSONResponse:
    return JSONResponse({"error": message, "status": status}, status_code=status, headers=headers)


# Above the ingress: @serve.ingress copies the FastAPI routes (pickled by value) as it runs, and a
# global the routes use that is defined further down is missing in the replica (NameError -> 500).
def _refusal(e: handling.RequestError) -> JSONResponse:
    return _error(e.status, e.message, {"Retry-After": "1"} if e.status == 503 else None)


def _applied_correction(asked: float, model: dict) -> float:
    """The prior correction that shaped an answer: none for a model without class weights, whatever was asked."""
    return float(asked) if model["rebalanced"] else 0.0


def _overloaded() -> JSONResponse:
    return _error(503, "overloaded: too many requests in flight, retry shortly", {"Retry-After": "1"})


@serve.deployment(name="Colorizer")
class Colorizer:
    """The model: network inputs (h, w) at the working size -> ab (2, h, w), batched."""

    def __init__(
        self,
        model: str,
        tracking_uri: Optional[str],
        max_batch_size: int,
        batch_wait_timeout_s: float,
        pixels_in_flight: int = handling.DEFAULT_PIXELS_IN_FLIGHT,
    ):
        from pipeline.gan.model_ref import resolve_generator

        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.G, info = resolve_generator(model, tracking_uri, device=str(self.device))
        self.info = {k: info[k] for k in ("ref", "checkpoint", "step", "temperature")}
        self.info["ref"] = _shown_ref(model)  # /healthz is public: no filesystem layout in it
        self.info["device"] = str(self.device)
        self.info["working_size"] = predict.working_size(self.G)  # the size= a request gets by default
        self.info["hints"] = predict.takes_hints(self.G)
        self.info["prior_correction"] = float(self.G.prior_correction)  # its own A
        # whether it carries the class weights it was trained with: without them A changes nothing
        self.info["rebalanced"] = self.G.corrects
        self.batch_sizes: collections.Counter = collections.Counter()
        self.budget = handling.PixelBudget(pixels_in_flight)  # what bounds this replica's memory
        self.run.set_max_batch_size(max_batch_size)
        self.run.set_batch_wait_timeout_s(batch_wait_timeout_s)

    def describe(self) -> dict:
        return {**self.info, "batches": {str(k): v for k, v in sorted(self.batch_sizes.items())}}

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.01)
    async def run(
        self, items: List[Tuple[np.ndarray, float, Optional[np.ndarray], Optional[float]]]
    ) -> List[np.ndarray]:
        self.batch_sizes[len(items)] += 1
        xs, temps, hints, corrections = zip(*items, strict=True)
        # In a thread: the replica's event loop keeps taking requests (and filling the next batch).
        return await asyncio.to_thread(handling.colorize_batch, self.G, xs, temps, self.device, hints, corrections)

    async def __call__(
        self,
        x: np.ndarray,
        temperature: float,
        hints: Optional[np.ndarray] = None,
        prior_correction: Optional[float] = None,
    ):
        """x (h, w) and a hint map (3, h, w) or None -> ab (2, h, w) at ``temperature`` and
        ``prior_correction`` (None: the model's own); ``handling.Busy`` when the replica's pixel
        budget has no room for x now."""
        if not self.budget.take(x.size):
            return handling.Busy()
        try:
            return await self.run((x, temperature, hints, prior_correction))
        finally:
            self.budget.give(x.size)

    async def suggest(self, s: handling.SuggestInput, k: int, prior_correction: Optional[float] = None):
        """The k likeliest colours at one point (one request, not batched: a click, not a stream)
        as the model decodes at ``prior_correction`` (None: its own); ``handling.Busy`` as ``__call__``."""
        if not self.budget.take(s.L.size):
            return handling.Busy()
        try:
            size = min(s.L.shape)  # s.L is at the working size already: no second resize
            return await asyncio.to_thread(
                predict.suggest_colours, self.G, s.L, s.x, s.y, size, s.hints, k, prior_correction
            )
        finally:
            self.budget.give(s.L.size)


api = FastAPI(title="colorize", docs_url=None, redoc_url=None, openapi_url=None)


@api.exception_handler(StarletteHTTPException)
async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """FastAPI's own refusals (404, 405, a malformed multipart form) in the service's error shape."""
    return _error(exc.status_code, str(exc.detail), getattr(exc, "headers", None))


@serve.deployment(name="Ingress")
@serve.ingress(api)
class Ingress:
    def __init__(
        self,
        colorizer,
        max_bytes: int,
        max_pixels: int,
        body_timeout_s: float = handling.DEFAULT_BODY_TIMEOUT_S,
        max_uploads: int = 64,
        max_working_pixels: int = handling.DEFAULT_MAX_WORKING_PIXELS,
    ):
        self.colorizer = colorizer
        self.max_bytes, self.max_pixels, self.body_timeout_s = max_bytes, max_pixels, body_timeout_s
        self.max_working_pixels = max_working_pixels
        # Photos decoded (or encoded) at once: a 25 MP photo costs ~0.5 GB while it is.
        self.cpu_work = asyncio.Semaphore(CPU_WORK_SLOTS)
        # Bodies being received at once: fewer than the requests this replica takes, so that clients
        # that send slowly (or never finish) cannot take every slot from /healthz and the rest.
        self.uploads = asyncio.Semaphore(max_uploads)
        self.page = (resources.files("pipeline.assets") / "index.html").read_text(encoding="utf-8")
        self.model: Optional[dict] = None

    async def _model(self) -> dict:
        if self.model is None:
            self.model = await self.colorizer.describe.remote()
        return self.model

    @api.get("/", response_class=HTMLResponse)
    async def page(self):
        return HTMLResponse(self.page, headers={"Cache-Control": "no-cache"})

    @api.get("/healthz")
    async def healthz(self):
        try:
            info = await self.colorizer.describe.remote()
        except BackPressureError:  # the model's queue is full: say so in our JSON, as /colorize does
            return _error(503, "overloaded: the model's queue is full, retry shortly", {"Retry-After": "1"})
        return {
            "status": "ok",
            "model": {
                k: info[k] for k in ("ref", "step", "temperature", "prior_correction", "rebalanced", "device", "hints")
            },
            "hint_spread": {"default": hint_spread.REACH, "max": hint_spread.MAX_REACH},  # short sides
            "batches": info["batches"],
            "limits": {
                "max_bytes": self.max_bytes,
                "max_pixels": self.max_pixels,
                "max_working_pixels": self.max_working_pixels,
                "body_timeout_s": self.body_timeout_s,
            },
        }

    async def _body(self, request: Request) -> Tuple[bytes, Optional[str]]:
        """The image bytes: the raw body (image/*) or the first file of a multipart form; and the
        form's ``hints`` field (JSON text), None when there is none. Reading stops at ``max_bytes``
        whatever the framing (a length, chunks, a form's file part): 413."""
        length = request.headers.get("content-length")
        handling.check_length(int(length) if length and length.isdigit() else None, self.max_bytes)
        ctype = request.headers.get("content-type")
        if handling.media_type(ctype) == "multipart/form-data":
            parser = MultiPartParser(
                request.headers, self._capped(request), max_files=1, max_fields=8, max_part_size=self.max_bytes
            )
            try:
                form = await parser.parse()
            except MultiPartException as e:
                raise handling.RequestError(400, e.message) from None
            try:
                hints = form.get("hints")
                if hints is not None and not isinstance(hints, str):
                    raise handling.RequestError(400, "the form's 'hints' field must be text (JSON), not a file")
                for value in form.values():
                    if hasattr(value, "read"):
                        return await value.read(), hints
                raise handling.RequestError(400, "multipart form without a file field (send the photo as 'image')")
            finally:
                await form.close()  # its spooled file goes now, not when the request object is collected
        handling.check_content_type(ctype)
        return b"".join([chunk async for chunk in self._capped(request)]), None

    async def _capped(self, request: Request) -> AsyncIterator[bytes]:
        """The request body's chunks, RequestError 413 as soon as more than ``max_bytes`` came."""
        n = 0
        async for chunk in request.stream():
            n += len(chunk)
            handling.check_length(n, self.max_bytes)
            yield chunk

    async def _bounded_body(self, request: Request) -> Tuple[bytes, Optional[str]]:
        """``_body`` within the upload slots and the body deadline: 503 when every slot is taken,
        408 when the body takes longer than ``body_timeout_s`` to arrive."""
        if self.uploads.locked():
            raise handling.RequestError(503, "overloaded: too many uploads in progress, retry shortly")
        async with self.uploads:
            try:
                return await asyncio.wait_for(self._body(request), self.body_timeout_s)
            except asyncio.TimeoutError:
                raise handling.RequestError(
                    408, f"the request body took longer than {self.body_timeout_s:g} s to arrive"
                ) from None

    @api.post("/grey")
    async def grey(self, request: Request):
        """The photo's lightness as a grey PNG (no model): the page's preview of any accepted format."""
        try:
            data, _ = await self._bounded_body(request)  # the same slots and deadline as /colorize
            out = await asyncio.to_thread(handling.grey_png, data, self.max_pixels)
        except handling.RequestError as e:
            return _refusal(e)
        return Response(out, media_type="image/png")

    @api.get("/favicon.ico")
    async def favicon(self):
        data = (resources.files("pipeline.assets") / "favicon.ico").read_bytes()
        return Response(data, media_type="image/x-icon", headers={"Cache-Control": "max-age=86400"})

    @api.get("/examples")
    async def examples(self):
        return {"examples": sorted(EXAMPLES)}

    @api.get("/examples/{name}")
    async def example(self, name: str):
        if name not in EXAMPLES:  # only the bundled files, by exact name: nothing else is reachable
            return _error(404, f"no example named {name!r}")
        data = (resources.files("pipeline.assets") / "examples" / name).read_bytes()
        return Response(data, media_type="image/jpeg", headers={"Cache-Control": "max-age=3600"})

    async def _photo_and_hints(self, request: Request, model: dict, size: int):
        """The request's photo, prepared at the working ``size``, and its hints (the query's
        ``hints``, or the form's: one or the other); RequestError as ``handling`` says. Hints in
        the query are refused before the body is read."""
        query_hints = request.query_params.get("hints")
        hints = handling.parse_hints(query_hints, model["hints"])
        data, form_hints = await self._bounded_body(request)
        if form_hints is not None:
            if query_hints is not None:
                raise handling.RequestError(400, "hints given twice: send them in the query or in the form, not both")
            hints = handling.parse_hints(form_hints, model["hints"])
        async with self.cpu_work:
            prepared = await asyncio.to_thread(
                handling.prepare, data, size, self.max_pixels, hints, self.max_working_pixels
            )
        return prepared, hints

    @api.post("/colorize")
    async def colorize(self, request: Request):
        try:
            model = await self._model()
            q = request.query_params
            temperature, size, fmt = handling.parse_params(
                q.get("temperature"), q.get("size"), q.get("format"), model["temperature"], model["working_size"]
            )
            correction = handling.parse_prior_correction(q.get("prior_correction"), model["prior_correction"])
            reach = handling.parse_hint_spread(q.get("hint_spread"))
            prepared, hints = await self._photo_and_hints(request, model, size)
            ab = await self.colorizer.remote(prepared.x, temperature, prepared.hints, correction)
            if isinstance(ab, handling.Busy):
                raise handling.RequestError(503, ab.message)
            async with self.cpu_work:
                out, far = await asyncio.to_thread(handling.finish, prepared, ab, fmt, hints, reach)
        except handling.RequestError as e:
            return _refusal(e)
        except BackPressureError:  # any call to the model's bounded queue, the first describe() included
            return _overloaded()
        H, W = prepared.L.shape
        headers = {"X-Image-Size": f"{W}x{H}", "X-Temperature": f"{temperature:g}", "X-Working-Size": str(size)}
        headers["X-Prior-Correction"] = f"{_applied_correction(correction, model):g}"
        headers["X-Hints"] = str(len(hints))
        if hints:  # the reach used; per hint, in order: how far the shown colour is from it (ab; a few = followed)
            headers["X-Hint-Spread"] = f"{reach:g}"
            headers["X-Hint-Distances"] = ",".join(f"{d:.1f}" for d in far)
        return Response(out, media_type=handling.FORMATS[fmt][1], headers=headers)

    @api.post("/suggest")
    async def suggest(self, request: Request):
        """The model's likeliest colours at the point (x, y) of the photo in the body, given the
        hints placed so far: {"x", "y", "prior_correction": the A that shaped them (0 for a model without
        class weights, as /colorize's header), "colors": [{"color": "#rrggbb", "p": probability}, ...]},
        likeliest first."""
        try:
            model = await self._model()
            q = request.query_params
            x, y, k = handling.parse_point(q.get("x"), q.get("y"), q.get("k"))
            _, size, _ = handling.parse_params(None, q.get("size"), None, model["temperature"], model["working_size"])
            correction = handling.parse_prior_correction(q.get("prior_correction"), model["prior_correction"])
            if not model["hints"]:  # the palette is what a hint model offers to follow
                raise handling.RequestError(400, "this model takes no colour hints, so it suggests none")
            prepared, hints = await self._photo_and_hints(request, model, size)
            s = handling.suggest_input(prepared, x, y, hints)
            colors = await self.colorizer.suggest.remote(s, k, correction)
            if isinstance(colors, handling.Busy):
                raise handling.RequestError(503, colors.message)
        except handling.RequestError as e:
            return _refusal(e)
        except BackPressureError:
            return _overloaded()
        return {"x": x, "y": y, "prior_correction": _applied_correction(correction, model), "colors": colors}


def _shown_ref(ref: str) -> str:
    """The model as /healthz names it: an MLflow ref as given, a local folder by its own name only."""
    from pipeline.gan.model_ref import is_mlflow_ref

    return ref if is_mlflow_ref(ref) else os.path.basename(os.path.normpath(ref))


# A replica being stopped finishes what it has (requests are short) and goes: seconds, not Serve's 20 s.
STOPPING = {"graceful_shutdown_wait_loop_s": 0.5, "graceful_shutdown_timeout_s": 10.0}


def _cluster_gpus() -> float:
    try:
        return float(ray.cluster_resources().get("GPU", 0)) if ray.is_initialized() else 0.0
    except Exception:  # no cluster to ask: count none
        return 0.0


def settings(args: Optional[dict]) -> dict:
    """``args`` (a Serve config file's ``args``, or the CLI's) over DEFAULTS, values typed."""
    s = dict(DEFAULTS)
    unknown = set(args or {}) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown colorize serve args {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    s.update({k: v for k, v in (args or {}).items() if v is not None})
    if not s["model"]:
        raise ValueError("colorize serve: args.model is required (checkpoint folder, runs:/..., models:/...)")
    for k in (
        "replicas",
        "max_ongoing_requests",
        "max_queued_requests",
        "max_batch_size",
        "max_bytes",
        "max_pixels",
        "max_working_pixels",
        "pixels_in_flight",
    ):
        s[k] = int(s[k])
        if s[k] < 1:
            raise ValueError(f"{k} must be >= 1, got {s[k]}")
    if s["pixels_in_flight"] < s["max_working_pixels"]:  # else the largest request could never run
        raise ValueError(f"pixels_in_flight must be >= max_working_pixels ({s['max_working_pixels']})")
    if s["max_replicas"] is not None:
        s["max_replicas"] = int(s["max_replicas"])
        if s["max_replicas"] < s["replicas"]:
            raise ValueError(f"max_replicas must be >= replicas ({s['replicas']}), got {s['max_replicas']}")
    s["batch_wait_timeout_s"] = float(s["batch_wait_timeout_s"])
    s["body_timeout_s"] = float(s["body_timeout_s"])
    if not s["body_timeout_s"] > 0:
        raise ValueError(f"body_timeout_s must be > 0, got {s['body_timeout_s']}")
    if s["num_gpus"] is not None:  # `serve run ... num_gpus=1` passes strings
        s["num_gpus"] = float(s["num_gpus"])
    return s


def replica_options(s: dict) -> dict:
    """Fixed ``replicas``, or Serve autoscaling between ``replicas`` and ``max_replicas`` aiming at
    one full batch in flight per replica (more waiting requests add replicas, idle ones go)."""
    if not s["max_replicas"] or s["max_replicas"] == s["replicas"]:
        return {"num_replicas": s["replicas"]}
    return {
        "autoscaling_config": {
            "min_replicas": s["replicas"],
            "max_replicas": s["max_replicas"],
            "target_ongoing_requests": s["max_batch_size"],
        }
    }


def app_builder(args: Optional[dict] = None):
    """The application for ``serve run pipeline.serve.app:app_builder model=...`` and cluster/serve.yaml."""
    s = settings(args)
    gpus = s["num_gpus"] if s["num_gpus"] is not None else (1 if _cluster_gpus() >= 1 else 0)
    cpus = 1 if gpus else 0.5
    colorizer = Colorizer.options(
        **replica_options(s),
        max_ongoing_requests=s["max_ongoing_requests"],
        max_queued_requests=s["max_queued_requests"],
        ray_actor_options={"num_cpus": cpus, "num_gpus": gpus},
        **STOPPING,
    ).bind(s["model"], s["tracking_uri"], s["max_batch_size"], s["batch_wait_timeout_s"], s["pixels_in_flight"])
    # The HTTP side takes more at once than the model (it decodes and encodes meanwhile), so the
    # model's bounded queue is what overflows first and the client gets its JSON 503; the ingress's
    # own bound (beyond which Serve's proxy answers a plain-text 503) keeps a wide margin over it,
    # so a burst that fills the model's queue exactly never spills into the proxy's refusal.
    inflight = s["max_ongoing_requests"] + s["max_queued_requests"]
    # Uploads take at most 2 * inflight of the ingress's slots: the last 8 stay free for /healthz, the
    # page and requests past their upload, however many clients trickle their bodies in.
    return Ingress.options(
        num_replicas=s["replicas"],
        max_ongoing_requests=2 * inflight + 8,
        max_queued_requests=4 * inflight + 16,
        ray_actor_options={"num_cpus": 0.25},
        **STOPPING,
    ).bind(colorizer, s["max_bytes"], s["max_pixels"], s["body_timeout_s"], 2 * inflight, s["max_working_pixels"])
