"""Score models on a dataset beside the all-grey baseline; write ``metrics.json``
and a self-contained HTML report, and log both to MLflow when a run is given.

Each photo is resized so its short side is ``--size`` and centre-cropped to a square (the
protocol of bench/quality.py); every model colorizes the same crops through the inference path of
``colorize infer`` (``predict.colorize_batch``: crops of one size go through G ``--batch`` at a
time, on the GPU when there is one) and is scored by ``pipeline.core.scoring`` on the 8-bit result.
Progress goes to stderr.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import posixpath
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Tuple

import numpy as np
from PIL import Image

from pipeline.core import color, geometry, metrics, scoring, transforms
from pipeline.core.skips import SKIP_GREY, SKIP_MISSING, SKIP_UNREADABLE, Skips
from pipeline.data import storage
from pipeline.gan import model_ref, predict
from pipeline.runtime import progress

METRICS = "metrics.json"
EXAMPLES_KEPT = 5  # skipped paths per reason in metrics.json
METRIC_NAMES = ("auc", "auc_rebalanced", "cf_pred", "cf_true", "cf_gap", "psnr", "ssim", "top1", "top1_rebalanced")


def load_truth(
    uri: str, size: int, limit: Optional[int], s3: Optional[storage.S3Settings]
) -> Tuple[List[str], List[np.ndarray], Skips]:
    """(paths, uint8 square crops, skips) of the photos under ``uri``: each decoded at short side
    ``size`` (``geometry.resize_short_side``), grey ones skipped (``color.is_grey``), the rest cut
    to their centre square (``geometry.centre_crop``). ``skips`` (``pipeline.core.skips``) holds what
    the listing skipped and each photo skipped here, by reason."""
    skips = Skips()
    fs, paths = storage.list_inputs(uri, s3, skips)
    paths = paths[:limit] if limit else paths
    kept, truths = [], []
    with ThreadPoolExecutor(min(16, os.cpu_count() or 2)) as pool:
        for path, (rgb, reason) in zip(paths, pool.map(lambda p: _truth_crop(fs, p, size), paths), strict=True):
            if rgb is None:
                skips.add(reason, path)
            else:
                kept.append(path)
                truths.append(rgb)
    if not truths:
        raise storage.StorageError(f"no usable colour photos at {storage.redact(uri)} (skipped: {skips.counts})")
    return kept, truths, skips


def _truth_crop(fs, path: str, size: int) -> Tuple[Optional[np.ndarray], Optional[str]]:
    """(the centre square of one photo at short side ``size``, None) or (None, skip reason)."""
    try:
        with fs.open_input_stream(path) as f:
            d = transforms.decode_image(f.read(), size=size)
    except FileNotFoundError:  # listed, gone by read time
        return None, SKIP_MISSING
    except OSError:
        return None, SKIP_UNREADABLE
    if d.rgb is None:
        return None, d.skip
    if color.is_grey(d.rgb):
        return None, SKIP_GREY
    return geometry.centre_crop(d.rgb), None


def _png_b64(rgb: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, "PNG")
    return base64.b64encode(buf.getvalue()).decode()


def report_html(results: Dict[str, Dict[str, float]], examples: Dict[str, List[np.ndarray]], title: str) -> str:
    """One HTML file: the metrics table and a grid of examples (grey | each model | truth), images inline."""
    head = "".join(f"<th>{html.escape(m)}</th>" for m in METRIC_NAMES)
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td>" + "".join(f"<td>{r[m]:.3f}</td>" for m in METRIC_NAMES) + "</tr>"
        for name, r in results.items()
    )
    cols = list(examples)
    grid_head = "".join(f"<th>{html.escape(c)}</th>" for c in cols)
    n = len(next(iter(examples.values()))) if examples else 0
    cell = '<td><img src="data:image/png;base64,{}"></td>'
    grid = "".join("<tr>" + "".join(cell.format(_png_b64(examples[c][i])) for c in cols) + "</tr>" for i in range(n))
    style = "body{font-family:sans-serif}td,th{padding:4px 8px;text-align:right}img{width:192px}"
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{style}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><table><tr><th>model</th>{head}</tr>{rows}</table>"
        f"<h2>Examples</h2><table><tr>{grid_head}</tr>{grid}</table></body></html>"
    )


def log_to_mlflow(run_id: str, tracking_uri: Optional[str], results: Dict, files: List[str]) -> None:
    from mlflow.entities import Metric  # here: mlflow is heavy and only needed with a run
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=tracking_uri)
    ts = int(time.time() * 1000)
    metrics = [
        Metric(f"eval/{name}/{m}", float(v), ts, 0)
        for name, r in results.items()
        for m, v in r.items()
        if isinstance(v, (int, float)) and v == v
    ]
    client.log_batch(run_id, metrics=metrics)
    for f in files:
        client.log_artifact(run_id, f, "eval")


def evaluate(args, settings: dict, s3: storage.S3Settings) -> int:
    """The eval ``args`` (``pipeline.jobs.eval.Options``) ask for, recording ``settings``
    (``settings_of``); its exit code."""
    import torch

    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    refs = [args.model] + list(args.compare or [])
    models = {}
    for i, ref in enumerate(refs):  # every reference resolves before any photo is read
        G, info = model_ref.resolve_generator(ref, args.tracking_uri, device=str(device))
        G, info = model_ref.with_prior_correction(G, info, args.prior_correction)
        models["model" if i == 0 else f"compare{i}"] = (G, info)
    args.size = predict.working_size(models["model"][0], args.size)  # the first model's training scale
    paths, truths, skipped = load_truth(args.data, args.size, args.limit, s3)
    prior = scoring.zhang_prior(args.reference) if args.reference else _project_prior()
    n_ex = min(args.examples, len(truths))
    examples = {"grey": [scoring.grey_output(t) for t in truths[:n_ex]]}
    threads = os.cpu_count() or 2
    results = {"grey": scoring.score_images([scoring.grey_output(t) for t in truths], truths, prior, threads=threads)}
    for name, (G, info) in models.items():
        preds = colorize_all(G, truths, args.temperature, device, args.batch, name)
        results[name] = scoring.score_images(preds, truths, prior, threads=threads)
        results[name]["ref"] = info["ref"]
        examples[name] = preds[:n_ex]
    examples["truth"] = truths[:n_ex]
    doc = {
        "data": storage.redact(args.data),
        "size": args.size,
        "images": len(truths),
        "temperature": args.temperature,
        "prior_correction": args.prior_correction,  # None: each model's own
        "saturation": args.temperature,  # the knob's older name, kept for readers of older files
        "skipped": skipped.counts,  # {reason: n}, the reasons of pipeline.core.skips
        "skipped_examples": {k: v[:EXAMPLES_KEPT] for k, v in skipped.examples.items()},
        "rebalance_prior": args.reference or "prior_probs.npy",
        "ssim_params": metrics.SSIM_PARAMS,
        "results": results,
        "settings": settings,
    }
    mpath, hpath = os.path.join(args.out, METRICS), os.path.join(args.out, "report.html")
    numeric = {k: {m: v for m, v in r.items() if m in METRIC_NAMES} for k, r in results.items()}
    page = report_html(numeric, examples, f"colorize eval: {storage.redact(args.data)} ({len(truths)} photos)")
    # Each file whole or not at all, metrics.json last: it is what a rerun keeps as a finished eval.
    for path, text in ((hpath, page), (mpath, json.dumps(doc, indent=1))):
        try:
            storage.write_bytes_atomic(path, text.encode("utf-8"), None)
        except OSError as e:
            raise storage.StorageError(f"cannot write {path}: {e.strerror or type(e).__name__}") from None
    run_id = args.run_id or os.environ.get("MLFLOW_RUN_ID")
    if run_id:
        log_to_mlflow(run_id, args.tracking_uri, numeric, [mpath, hpath])
    for name, r in numeric.items():
        print(f"{name:10s} " + " ".join(f"{m}={r[m]:.2f}" for m in METRIC_NAMES))
    print(
        f"colorize eval: {len(truths)} photos, skipped {doc['skipped']}; wrote {mpath}, {hpath}"
        + (f"; logged to MLflow run {run_id}" if run_id else "")
    )
    return 0


def settings_of(args, refs: List[str]) -> dict:
    """What decides an eval's figures: recorded in metrics.json, checked on a rerun."""
    return {
        "data": storage.redact(args.data),
        "models": [storage.redact(r) for r in refs],
        "size": args.size,
        "limit": args.limit,
        "temperature": args.temperature,
        "reference": args.reference,
        **({"prior_correction": args.prior_correction} if args.prior_correction is not None else {}),
    }


def settings_at(fs, folder: str) -> Optional[dict]:
    """The settings an eval in ``folder`` recorded in its metrics.json (None when it shows none;
    OSError when it cannot be read)."""
    with fs.open_input_stream(posixpath.join(folder, METRICS)) as f:
        text = f.read()
    try:
        settings = json.loads(text).get("settings")
    except (ValueError, AttributeError):
        return None
    return settings if isinstance(settings, dict) else None


def colorize_all(G, truths: List[np.ndarray], temperature, device, batch: int, name: str) -> List[np.ndarray]:
    """Every crop colorized by ``G`` (``predict.colorize_batch``, ``batch`` at a time on ``device``),
    with a progress bar on stderr."""
    out: List[np.ndarray] = []
    with progress.bar(len(truths), f"{name} ({device.type})", "photo") as b:
        for i in range(0, len(truths), batch):
            done = predict.colorize_batch(G, truths[i : i + batch], temperature, device, batch)
            out += done
            b.update(len(done))
    return out


def _project_prior() -> np.ndarray:
    from pipeline import assets  # the top-level prior_probs.npy as shipped, checkout or installed

    return assets.default_prior()
