"""Prepared shards: raw photos decoded once into compact Parquet that training and the priors job
stream for many epochs without decoding a JPEG again.

``colorize prepare --data URI --out URI [--size N]`` runs on Ray Data: read (folder, list file,
``s3://`` prefix), decode, resize the short side to N, convert to Lab and bins, write Parquet
shards (one row per photo: id, height, width, L uint8 (L*255/100), ab int8, bin uint16, each as
raw bytes) of a few hundred MB, and finally ``manifest.json`` (counts, skipped by reason, size,
grid Q, source).

Consistency: each run writes its shards into a fresh folder ``<out>/<run>/`` and the manifest last,
in one atomic write; readers read only the shards the manifest names. An interrupted run leaves
files no manifest points to (the old manifest and its shards stay valid); a completed rerun
switches the manifest and then deletes the previous run's folder.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import posixpath
import time
import uuid
from typing import Dict, List, Optional, Tuple

import numpy as np
import pyarrow.fs as pafs

from pipeline import color, storage, transforms

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = "colorize-prepared/1"
BYTES_PER_PIXEL = 5  # L 1 + ab 2 + bin 2
TRAINING_COLUMNS = ["id", "height", "width", "L", "ab"]  # training never reads the bin plane


def manifest_uri(uri: str) -> str:
    return posixpath.join(uri.rstrip("/"), MANIFEST)


def is_prepared(uri: str, s3: Optional[storage.S3Settings] = None) -> bool:
    """True when ``uri`` is a folder holding a prepared-shards manifest."""
    if uri.startswith("skimage") or uri.endswith(storage.LIST_SUFFIXES):
        return False
    fs, path = storage.resolve(manifest_uri(uri), s3)
    try:
        return fs.get_file_info(path).type == pafs.FileType.File
    except OSError:
        return False


def read_manifest(uri: str, s3: Optional[storage.S3Settings] = None) -> dict:
    doc = json.loads(storage.read_bytes(manifest_uri(uri), s3))
    if doc.get("format") != FORMAT:
        raise storage.StorageError(f"{manifest_uri(uri)} is not a {FORMAT} manifest")
    if doc.get("Q") != color.num_bins():
        raise storage.StorageError(f"{uri} was prepared for a grid of Q={doc.get('Q')} bins, this code has {color.num_bins()}")
    return doc


def shard_files(uri: str, manifest: dict, s3: Optional[storage.S3Settings] = None) -> Tuple[pafs.FileSystem, List[str]]:
    fs, root = storage.resolve(uri, s3)
    return fs, [posixpath.join(root, s["path"]) for s in manifest["shards"]]


def shards_dataset(uri: str, s3: Optional[storage.S3Settings] = None, columns: Optional[List[str]] = None,
                   shuffle_seed: Optional[int] = None, manifest: Optional[dict] = None):
    """A Ray Dataset over the manifest's shards (file order shuffled per epoch when a seed is given)."""
    import ray

    from pipeline import data as rdata

    manifest = manifest or read_manifest(uri, s3)
    fs, files = shard_files(uri, manifest, s3)
    rdata.ensure_ray()
    shuffle = None
    if shuffle_seed is not None:
        from ray.data import FileShuffleConfig

        shuffle = FileShuffleConfig(seed=shuffle_seed)  # reseeded after each execution: a new order per epoch
    ds = ray.data.read_parquet(files, filesystem=fs, shuffle=shuffle, override_num_blocks=max(1, len(files)))
    return ds.select_columns(columns) if columns else ds


class _PrepareMap:
    def __init__(self, counter, **kwargs):
        self.counter, self.kwargs = counter, kwargs

    def __call__(self, batch):
        rows, skipped = transforms.prepared_rows(batch, **self.kwargs)
        if skipped:
            self.counter.add.remote(skipped)
        return rows


def prepare(data: str, out: str, size: int = 256, limit: Optional[int] = None, skip_grey: bool = True,
            s3: Optional[storage.S3Settings] = None, shard_mb: int = 256) -> dict:
    """Run the prepare job; returns the manifest it wrote."""
    import ray
    import pyarrow.parquet as pq

    from pipeline import data as rdata

    if size < 8:
        raise ValueError(f"--size must be >= 8, got {size}")
    t0 = time.perf_counter()
    storage.check_writable_parent(manifest_uri(out), s3)
    fs_in, paths = storage.list_inputs(data, s3)
    paths = paths[:limit] if limit else paths
    if not paths:
        raise storage.StorageError(f"no input files at {data}")
    previous = read_manifest(out, s3) if is_prepared(out, s3) else None
    run = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]
    fs_out, out_root = storage.resolve(out, s3)
    run_dir = posixpath.join(out_root, run)
    rdata.ensure_ray()
    counter = rdata.SkipCounter.remote()
    root = posixpath.commonpath([posixpath.dirname(p) for p in paths])
    ds = rdata.read_paths(fs_in, paths, data, num_cpus=1, files_per_block=16)
    ds = ds.map_batches(_PrepareMap(counter, size=size, skip_grey=skip_grey, root=root),  # an instance: tasks, not actors
                        batch_size=None, batch_format="numpy")
    # Rows per shard from the pixels a row carries at this size (4:3 photos): ~shard_mb per file.
    rows_per_shard = max(1, int(shard_mb * 2**20 // (size * size * 4 / 3 * BYTES_PER_PIXEL)))
    ds.write_parquet(run_dir, filesystem=fs_out, min_rows_per_file=rows_per_shard)
    infos = [i for i in fs_out.get_file_info(pafs.FileSelector(run_dir, recursive=True, allow_not_found=True))
             if i.type == pafs.FileType.File and i.path.endswith(".parquet")]
    shards = []
    for info in sorted(infos, key=lambda i: i.path):
        with fs_out.open_input_file(info.path) as f:
            rows = pq.ParquetFile(f).metadata.num_rows
        if rows:
            shards.append({"path": posixpath.relpath(info.path, out_root), "rows": rows, "bytes": info.size})
    skipped = ray.get(counter.counts.remote())
    images = sum(s["rows"] for s in shards)
    missing = len(paths) - images - sum(skipped.values())
    if missing > 0:
        skipped["missing"] = missing
    if images == 0:
        raise ValueError(f"no usable image in {data}: {len(paths)} files listed, skipped {skipped}")
    from pipeline import __version__

    manifest = {
        "format": FORMAT, "run": run, "source": storage.redact(data), "size": size, "Q": color.num_bins(),
        "grid_rule": color.GRID_RULE, "skip_grey": skip_grey, "files_listed": len(paths), "images": images,
        "skipped": skipped, "pixels_per_row_bytes": BYTES_PER_PIXEL, "L_scale": transforms.L_SCALE,
        "shards": shards, "bytes": sum(s["bytes"] for s in shards),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "code_version": __version__,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    storage.write_bytes_atomic(manifest_uri(out), json.dumps(manifest, indent=1).encode(), s3)
    if previous and previous.get("run") and previous["run"] != run:  # the old shards are unreferenced now
        try:
            fs_out.delete_dir(posixpath.join(out_root, previous["run"]))
        except OSError as e:
            log.warning("could not delete the previous run's shards %s: %s", previous["run"], e)
    return manifest


def split_fraction(ids: np.ndarray, seed: int) -> np.ndarray:
    """A stable number in [0, 1) per id: rows with a value below val_fraction are validation."""
    import hashlib

    return np.array([int.from_bytes(hashlib.blake2b(f"{seed}:{i}".encode(), digest_size=8).digest(), "big") / 2**64
                     for i in ids], np.float64)


class ShardCrops:
    """map_batches callable over prepared rows: keep the train or val part (by id hash), then crop."""

    def __init__(self, crop: int, train: bool, flip: bool, part: str, val_fraction: float, seed: int):
        self.crop, self.train, self.flip = crop, train, flip
        self.part, self.val_fraction, self.seed = part, val_fraction, seed

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        if self.part != "all" and len(batch["id"]):
            is_val = split_fraction(batch["id"], self.seed) < self.val_fraction
            keep = is_val if self.part == "val" else ~is_val
            batch = {k: v[keep] for k, v in batch.items()}
        return transforms.shard_crops(batch, self.crop, self.train, self.flip)


def summary(manifest: dict, out: str) -> str:
    mb = manifest["bytes"] / 2**20
    return (f"prepared {manifest['images']} images from {manifest['source']} at short side {manifest['size']} into "
            f"{len(manifest['shards'])} shard(s), {mb:.1f} MiB, under {out} (run {manifest['run']}); "
            f"skipped {manifest['skipped'] or 'none'}; {manifest['seconds']} s")


def run(args) -> int:
    s3 = storage.S3Settings.from_env(endpoint=args.s3_endpoint, region=args.s3_region)
    manifest = prepare(args.data, args.out, size=args.size, limit=args.limit, skip_grey=not args.keep_grey, s3=s3,
                       shard_mb=args.shard_mb)
    print(summary(manifest, args.out))
    return 0
