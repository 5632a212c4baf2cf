"""The colour-prior job: empirical distribution of ab bins over a dataset, on Ray Data.

Each Ray task decodes its files one by one, turns every pixel into a bin index (one table lookup)
and returns a per-batch histogram; the driver only ever sums (Q,) count vectors as they stream in.
Output: ``prior_probs.npy`` (float64 (Q,), sums to 1, grid order), a ``.json`` provenance sidecar,
and a ``.png`` of the prior and its rebalancing weights on the ab plane.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import io
import json
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

import numpy as np
import ray

from pipeline import assets
from pipeline.core import color, pictures, transforms
from pipeline.data import storage
from pipeline.data.sources import ReportSkips, SkipCollector, Source, collected, ensure_ray, single_pass_skips

log = logging.getLogger(__name__)


@dataclass
class PriorResult:
    counts: np.ndarray  # (Q,) int64 pixel counts per bin
    images: int
    pixels: int
    listed: int
    skipped: Dict[str, int]
    skipped_examples: Dict[str, List[str]] = field(default_factory=dict)
    seconds: float = 0.0
    source: str = "raw images"  # or "prepared shards"
    size: Optional[int] = None  # the short side the pixels were counted at, when fixed by the source

    @property
    def prior(self) -> np.ndarray:
        return self.counts / self.counts.sum()


def compute_prior(
    data: str,
    size: int = 256,
    limit: Optional[int] = None,
    skip_grey: bool = True,
    *,
    s3: Optional[storage.S3Settings],
    workers: Optional[int] = None,
    files_per_task: int = 32,
    max_pixels: int = transforms.DEFAULT_MAX_PIXELS,
) -> PriorResult:
    """Run the histogram over every file of ``data`` on the current Ray cluster (started if needed);
    prepared shards are histogrammed from their stored bins (``prior_from_shards``). ``s3``: the
    entry point's settings (None only for local data).

    ``workers`` caps concurrent decode tasks (default: as many as the cluster's CPUs allow).
    Raises StorageError when the data cannot be listed, and ValueError when no image is usable.
    """
    if size < 8:
        raise ValueError(f"--resize must be >= 8, got {size}")
    t0 = time.perf_counter()
    src = Source.open(data, s3, limit)
    if src.prepared:
        return prior_from_shards(src, workers)
    ensure_ray()
    collector = SkipCollector.remote()
    step = ReportSkips(transforms.histogram_batch, collector, size=size, skip_grey=skip_grey, max_pixels=max_pixels)
    ds = src.files(files_per_block=files_per_task).map_batches(
        step,
        batch_size=None,  # whole read blocks: lets Ray fuse read + decode into one task
        batch_format="numpy",
        compute=ray.data.TaskPoolStrategy(size=workers) if workers else None,
    )
    counts, images, pixels = _sum_histograms(ds)
    skipped = single_pass_skips(len(src), images, collected(collector), src.listing)
    result = PriorResult(
        counts=counts,
        images=images,
        pixels=pixels,
        listed=len(src),
        skipped=skipped.counts,
        skipped_examples=skipped.examples,
        seconds=time.perf_counter() - t0,
    )
    if images == 0 or pixels == 0:
        raise ValueError(
            f"no usable image in {storage.redact(data)}: {len(src)} files listed, skipped {result.skipped}"
        )
    return result


def _sum_histograms(ds) -> Tuple[np.ndarray, int, int]:
    """(counts (Q,), images, pixels) summed over a dataset of per-batch histogram rows, as they stream in."""
    # A single CPU-bound stage whose output is a few KB: Ray Data's per-operator resource
    # reservation only leaves CPUs idle between tasks here (measured: 1.1x -> 1.4-1.65x from 1 to
    # 2 workers on 2 cores). Scoped to this dataset's own context copy.
    ds.context.op_resource_reservation_enabled = False
    counts = np.zeros(color.num_bins(), np.int64)
    images = pixels = 0
    for batch in ds.iter_batches(batch_size=None, batch_format="numpy", prefetch_batches=2):
        counts += batch["hist"].sum(0)
        images += int(batch["images"].sum())
        pixels += int(batch["pixels"].sum())
    return counts, images, pixels


def _bins_histogram(batch: dict) -> dict:
    """Prepared rows' ``bin`` planes (uint16 bytes) -> one row: (1, Q) counts, images, pixels."""
    hist = np.zeros(color.num_bins(), np.int64)
    pixels = 0
    for raw in batch["bin"]:
        bins = np.frombuffer(raw, "<u2")
        hist += np.bincount(bins, minlength=color.num_bins())
        pixels += bins.size
    return {
        "hist": hist[None],
        "images": np.array([len(batch["bin"])], np.int64),
        "pixels": np.array([pixels], np.int64),
    }


def prior_from_shards(src: Source, workers: Optional[int] = None) -> PriorResult:
    """The prior of prepared shards: a histogram of their stored bins (no decoding). Equal to the
    prior of the raw photos at the size and grey rule they were prepared with; the skip counts
    are the manifest's (prepare counted them)."""
    t0 = time.perf_counter()
    manifest = src.manifest
    log.warning(
        "priors from prepared shards: %d images at short side %d (run %s); --size/--limit/--keep-grey "
        "were fixed at prepare time",
        manifest["images"],
        manifest["size"],
        manifest["run"],
    )
    ds = src.rows(columns=["bin"]).map_batches(
        _bins_histogram,
        batch_size=None,
        batch_format="numpy",
        compute=ray.data.TaskPoolStrategy(size=workers) if workers else None,
    )
    counts, images, pixels = _sum_histograms(ds)
    if images != manifest["images"]:
        raise ValueError(
            f"{storage.redact(src.uri)}: the manifest lists {manifest['images']} images but the shards hold {images}"
        )
    return PriorResult(
        counts=counts,
        images=images,
        pixels=pixels,
        listed=manifest["files_listed"],
        skipped=dict(manifest["skipped"]),
        skipped_examples=dict(manifest.get("skipped_examples", {})),
        seconds=time.perf_counter() - t0,
        source=f"prepared shards (run {manifest['run']}, from {manifest['source']})",
        size=manifest["size"],
    )


def provenance(result: PriorResult, data: str, size: int, skip_grey: bool, limit: Optional[int]) -> dict:
    from pipeline import __version__

    return {
        "grid_rule": color.GRID_RULE,
        "grid_step": color.GRID_STEP,
        "Q": color.num_bins(),
        "data_uri": storage.redact(data),
        "files_listed": result.listed,
        "images_used": result.images,
        "images_skipped": result.skipped,
        "skipped_examples": result.skipped_examples,
        "pixels": result.pixels,
        "size": result.size or size,
        "source": result.source,
        "resize": "whole image, short side = size, bicubic; no crop",
        "skip_grey": skip_grey,
        "limit": limit,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "code_version": __version__,
        "seconds": round(result.seconds, 2),
    }


def write_prior(result: PriorResult, out: str, meta: dict, s3: Optional[storage.S3Settings]) -> List[str]:
    """Write ``out`` (.npy), its ``.json`` sidecar and a ``.png`` picture; each file atomically.

    The sidecar carries the SHA-256 of the .npy bytes and is written first, the .npy last: a run
    killed in between leaves a sidecar whose digest matches no .npy, which ``read_provenance``
    refuses, so a reader never takes one run's provenance for another run's prior.
    """
    prior = result.prior
    buf = io.BytesIO()
    np.save(buf, prior.astype(np.float64), allow_pickle=False)
    npy = buf.getvalue()
    weights = color.prior_weights(prior)
    png = pictures.side_by_side(
        [pictures.ab_plane(prior, "prior p (log)"), pictures.ab_plane(weights, "rebalancing weight w (log)")]
    )
    written = [storage.sidecar(out, ".json"), storage.sidecar(out, ".png"), out]
    meta = {**meta, "npy_sha256": hashlib.sha256(npy).hexdigest()}
    storage.write_bytes_atomic(written[0], json.dumps(meta, indent=2).encode(), s3)
    storage.write_bytes_atomic(written[1], pictures.png_bytes(png), s3)
    storage.write_bytes_atomic(out, npy, s3)
    return written


def read_provenance(uri: str, s3: Optional[storage.S3Settings]) -> Optional[dict]:
    """The ``.json`` sidecar of the prior at ``uri`` when it describes exactly these .npy bytes;
    None (with a warning) when it is missing, unreadable or belongs to other bytes."""
    try:
        meta = json.loads(storage.read_bytes(storage.sidecar(uri, ".json"), s3))
        npy = storage.read_bytes(uri, s3)
    except (storage.StorageError, ValueError) as e:
        log.warning("no usable provenance beside %s: %s", storage.redact(uri), e)
        return None
    if not isinstance(meta, dict) or meta.get("npy_sha256") != hashlib.sha256(npy).hexdigest():
        log.warning("provenance beside %s does not describe this prior (digest mismatch): ignored", storage.redact(uri))
        return None
    return meta


def load_prior(uri: str, s3: Optional[storage.S3Settings]) -> np.ndarray:
    """Read a prior .npy (local or S3) and check it belongs to this grid; ValueError for a file that
    is not one (empty, truncated, an .npz, pickled objects)."""
    try:
        p = np.load(io.BytesIO(storage.read_bytes(uri, s3)), allow_pickle=False)
    except (EOFError, ValueError, OSError) as e:  # OSError: not a NumPy file at all
        raise ValueError(f"{storage.redact(uri)} is not a .npy prior ({type(e).__name__})") from None
    if getattr(p, "shape", None) != (color.num_bins(),):  # an .npz loads as an archive, without a shape
        raise ValueError(
            f"{storage.redact(uri)} has shape {getattr(p, 'shape', None)}, but this project's grid has "
            f"Q={color.num_bins()} bins "
            "(a Zhang 313-bin prior must be imported with color.import_zhang_prior)"
        )
    if not np.isfinite(p).all() or (p < 0).any() or abs(p.sum() - 1) > 1e-6:
        raise ValueError(f"{storage.redact(uri)} is not a probability vector (sum {p.sum():.6g})")
    return p.astype(np.float64)


# The project root: a checkout's top (pipeline/data/priors.py is three levels down), or the
# site-packages folder of an installed copy. Relative ``loss.prior`` paths mean this root.
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def resolve_prior_path(path: str) -> str:
    """Where ``loss.prior`` points: s3:// and absolute paths as given, a file in the working dir,
    else the project root; the project's default name, installed rather than checked out, is the
    packaged copy."""
    if storage.is_s3(path) or os.path.isabs(path) or os.path.exists(path):
        return path
    rooted = os.path.join(PROJECT_ROOT, path)
    if path == assets.PRIOR_NAME and not os.path.exists(rooted):  # installed, not a checkout: the packaged copy
        return assets.default_prior_path()
    return rooted


def training_prior(cfg, s3: Optional[storage.S3Settings], out_dir: str, recompute: bool):
    """The prior a training run uses -> (prior, its path, the files to log beside it as
    [(path, "prior")]): ``loss.prior`` resolved, or with ``recompute`` computed on ``data.train``
    and written to ``out_dir``. The sidecar is logged only when its digest says it describes this
    prior (a local one: an s3:// sidecar stays where it is)."""
    prior_path = resolve_prior_path(cfg.loss.prior)
    if recompute:
        result = compute_prior(cfg.data.train, size=cfg.data.resize, limit=cfg.data.limit, s3=s3)
        prior_path = os.path.join(out_dir, "prior_probs.npy")
        meta = provenance(result, cfg.data.train, cfg.data.resize, True, cfg.data.limit)
        write_prior(result, prior_path, meta, s3)
        print(summary(result, [prior_path]))
    prior = load_prior(prior_path, s3)
    artifacts = [(prior_path, "prior")]
    sidecar = storage.sidecar(prior_path, ".json")
    if not storage.is_s3(sidecar) and read_provenance(prior_path, s3) is not None:
        artifacts.append((sidecar, "prior"))
    return prior, prior_path, artifacts


def summary(result: PriorResult, written: List[str], top: int = 5) -> str:
    bins = color.ab_bins()
    prior = result.prior
    order = np.argsort(prior)[::-1][:top]
    tops = ", ".join(f"({bins[i, 0]:.0f},{bins[i, 1]:.0f}) {prior[i]:.3f}" for i in order)
    lines = [
        f"prior over {result.images} images ({result.pixels:,} pixels) of {result.listed} files "
        f"in {result.seconds:.1f} s",
        f"skipped: {result.skipped or 'none'}",
        f"top bins (a,b) p: {tops}",
        f"bins never seen: {int((result.counts == 0).sum())} of {len(prior)}",
        "wrote: " + ", ".join(storage.redact(w) for w in written),
    ]
    return "\n".join(lines)
