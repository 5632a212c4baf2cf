"""Ray Data glue: start/attach Ray, read raw files as bytes so each one decodes (or is skipped) alone.

``ray.data.read_images`` fails a whole block on one bad file; reading bytes and decoding per file in
``pipeline.transforms`` keeps every good neighbour and counts the bad ones by reason.
"""

from __future__ import annotations

import logging
import os
from typing import List, Optional, Tuple

import pyarrow.fs as pafs
import ray

from pipeline import storage

log = logging.getLogger(__name__)


def ensure_ray(address: Optional[str] = None, num_cpus: Optional[int] = None) -> None:
    """Attach to a running cluster (``address``/``RAY_ADDRESS``, as under ``ray job submit``) or
    start a local Ray with ``num_cpus`` logical CPUs."""
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS")
    if address and address != "local":
        ray.init(address=address, log_to_driver=True)
    elif address == "local":  # always a fresh local instance, never a cluster left on this host
        ray.init(address="local", num_cpus=num_cpus, log_to_driver=True)
    else:
        # The dashboard stays on: it serves the State API that Train V2 needs (without it,
        # endless PlacementGroupCleaner errors) and `ray job submit`.
        ray.init(num_cpus=num_cpus, log_to_driver=True)


def read_files(
    uri: str,
    s3: Optional[storage.S3Settings] = None,
    limit: Optional[int] = None,
    num_cpus: float = 1.0,
    files_per_block: int = 32,
) -> Tuple["ray.data.Dataset", List[str], pafs.FileSystem]:
    """A Dataset of rows {"path": str, "bytes": bytes} for every input file under ``uri``.

    Returns (dataset, listed paths, filesystem). Files listed but gone by read time are dropped
    (ignore_missing_paths); callers count them as listed minus seen.

    One read block holds ``files_per_block`` files: setting the block count explicitly stops Ray
    from splitting read output, which would prevent fusing the read with the decode step (and
    ship every raw file through the object store once more).
    """
    fs, paths = storage.list_inputs(uri, s3)
    if limit is not None:
        paths = paths[: max(0, int(limit))]
    if not paths:
        raise storage.StorageError(f"no input files at {uri}")
    ensure_ray()  # only now: a bad URI fails in a second, without starting Ray
    return read_paths(fs, paths, uri, num_cpus, files_per_block), paths, fs


def read_paths(fs: pafs.FileSystem, paths: List[str], uri: str, num_cpus: float, files_per_block: int,
               shuffle_files: bool = False) -> "ray.data.Dataset":
    """Rows {"path", "bytes"} of the given files, ``files_per_block`` to a read task."""
    try:
        return ray.data.read_binary_files(
            paths,
            include_paths=True,
            filesystem=fs,
            ignore_missing_paths=True,
            num_cpus=num_cpus,
            override_num_blocks=max(1, -(-len(paths) // files_per_block)),
            shuffle="files" if shuffle_files else None,
        )
    except (ValueError, FileNotFoundError) as e:
        if "No files found" in str(e):
            raise storage.StorageError(f"none of the {len(paths)} files listed by {uri} exist (first: {paths[0]})") from None
        raise


@ray.remote(num_cpus=0)
class SkipCounter:
    """Collects (path, reason) of inputs skipped by map tasks; a path counts once however many
    epochs re-read it."""

    def __init__(self):
        self.skipped = {}

    def add(self, items):
        for path, reason in items:
            self.skipped[path] = reason

    def counts(self):
        out = {}
        for reason in self.skipped.values():
            out[reason] = out.get(reason, 0) + 1
        return out


def split_train_val(paths: List[str], val_fraction: float, seed: int = 0, min_val: int = 1) -> Tuple[List[str], List[str]]:
    """Deterministic split: the round(val_fraction * n) paths (at least ``min_val``, e.g. one per
    worker, and never all) with the smallest hash of the path relative to the dataset's root go to
    validation. Stable when files are reordered, and when the dataset is moved or mounted elsewhere."""
    import hashlib
    import posixpath

    if val_fraction <= 0 or len(paths) < 2:
        return list(paths), []
    root = posixpath.commonpath(paths)
    n_val = min(len(paths) - 1, max(min_val, round(val_fraction * len(paths))))

    def key(p: str) -> bytes:
        return hashlib.blake2b(f"{seed}:{posixpath.relpath(p, root)}".encode(), digest_size=8).digest()

    val_set = set(sorted(paths, key=key)[:n_val])
    return [p for p in paths if p not in val_set], [p for p in paths if p in val_set]


class _TrainingMap:
    """map_batches callable: decode + crop; skipped files go to the SkipCounter, not into rows."""

    def __init__(self, counter, **kwargs):
        self.counter = counter
        self.kwargs = kwargs

    def __call__(self, batch):
        from pipeline import transforms

        out, skipped = transforms.training_batch(batch, **self.kwargs)
        if skipped and self.counter is not None:
            self.counter.add.remote(skipped)
        return out


def image_dataset(
    fs: pafs.FileSystem,
    paths: List[str],
    data_cfg,
    train: bool,
    counter=None,
    cpus_per_task: float = 1.0,
    files_per_block: int = 16,
) -> "ray.data.Dataset":
    """Rows {"rgb": (crop, crop, 3) uint8} of the good images among ``paths`` (streamed, never
    materialised): random crops + flips for training, centre crops for validation."""
    ensure_ray()
    ds = read_paths(fs, paths, paths[0] if paths else "", cpus_per_task, files_per_block, shuffle_files=train)
    fn = _TrainingMap(
        counter,
        resize=data_cfg.resize,
        crop=data_cfg.crop,
        train=train,
        flip=data_cfg.flip,
        skip_grey=data_cfg.skip_grey,
    )
    return ds.map_batches(fn, batch_size=None, num_cpus=cpus_per_task, batch_format="numpy")


def training_datasets(data_cfg, cpus_per_task: float = 1.0, num_workers: int = 1):
    """(train_ds, val_ds, counter, info) for an ExperimentConfig's data section.

    ``data.train`` may be raw photos (folder, list file, ``s3://`` prefix, ``skimage:``) or a
    prepared-shards folder (``colorize prepare``); ``info["source"]`` says which was read. Without
    ``data.val`` a stable hash of each file's (or row's) id holds out ``val_fraction``.
    """
    from pipeline import prepared

    s3 = storage.S3Settings.from_env(endpoint=data_cfg.s3_endpoint, region=data_cfg.s3_region)
    configure_io_retries()
    if prepared.is_prepared(data_cfg.train, s3):
        return _prepared_datasets(data_cfg, s3, cpus_per_task)
    fs, paths = storage.list_inputs(data_cfg.train, s3)
    if data_cfg.limit:
        paths = paths[: data_cfg.limit]
    if data_cfg.val:
        train_paths = paths
        vfs, val_paths = storage.list_inputs(data_cfg.val, s3)
    else:
        train_paths, val_paths = split_train_val(paths, data_cfg.val_fraction, data_cfg.seed, min_val=1)
        vfs = fs
    if not train_paths:
        raise storage.StorageError(f"no training files at {data_cfg.train}")
    if not val_paths:
        raise storage.StorageError(f"no validation files (data.val={data_cfg.val!r}, val_fraction={data_cfg.val_fraction})")
    ensure_ray()
    counter = SkipCounter.remote()
    train_ds = image_dataset(fs, train_paths, data_cfg, True, counter, cpus_per_task)
    val_ds = image_dataset(vfs, val_paths, data_cfg, False, counter, cpus_per_task)
    info = {"source": "raw images", "train_files": len(train_paths), "val_files": len(val_paths)}
    log.warning("training reads raw images: %d train / %d val files from %s", len(train_paths), len(val_paths), data_cfg.train)
    return train_ds, val_ds, counter, info


def _prepared_datasets(data_cfg, s3, cpus_per_task: float):
    from pipeline import prepared

    manifest = prepared.read_manifest(data_cfg.train, s3)
    if data_cfg.crop > manifest["size"]:
        raise storage.StorageError(f"data.crop={data_cfg.crop} exceeds the prepared size {manifest['size']} of {data_cfg.train}")
    if data_cfg.resize != manifest["size"]:
        log.warning("data.resize=%d ignored: %s was prepared at short side %d", data_cfg.resize, data_cfg.train, manifest["size"])
    if data_cfg.limit:
        log.warning("data.limit is ignored for prepared shards")

    def crops(uri, part, train, seed, m):
        ds = prepared.shards_dataset(uri, s3, shuffle_seed=seed, manifest=m, columns=prepared.TRAINING_COLUMNS)
        fn = prepared.ShardCrops(data_cfg.crop, train, data_cfg.flip, part, data_cfg.val_fraction, data_cfg.seed)
        # whole blocks (one shard file each): read and crop fuse into one task, only crops are shipped
        return ds.map_batches(fn, batch_size=None, num_cpus=cpus_per_task, batch_format="numpy")

    if data_cfg.val:
        vman = prepared.read_manifest(data_cfg.val, s3) if prepared.is_prepared(data_cfg.val, s3) else None
        if vman is None:
            raise storage.StorageError(f"data.val={data_cfg.val} must be prepared shards too when data.train is")
        train_ds = crops(data_cfg.train, "all", True, data_cfg.seed, manifest)
        val_ds = crops(data_cfg.val, "all", False, None, vman)
    else:
        train_ds = crops(data_cfg.train, "train", True, data_cfg.seed, manifest)
        val_ds = crops(data_cfg.train, "val", False, None, manifest)
    counter = SkipCounter.remote()  # nothing is skipped at training time: prepare counted it
    info = {"source": "prepared shards", "images": manifest["images"], "shards": len(manifest["shards"]),
            "prepared_run": manifest["run"], "prepared_skipped": manifest["skipped"]}
    log.warning("training reads prepared shards: %d images in %d shards from %s (run %s)",
                manifest["images"], len(manifest["shards"]), data_cfg.train, manifest["run"])
    return train_ds, val_ds, counter, info


# Transient object-store errors Ray Data retries on read and write, beyond its defaults (which cover
# AWS INTERNAL_FAILURE / NETWORK_CONNECTION / SLOW_DOWN / 503 / SERVICE_UNAVAILABLE).
EXTRA_RETRIED_IO_ERRORS = ("AWS Error REQUEST_TIMEOUT", "Connection reset by peer", "curlCode: 28", "AWS Error THROTTLING")


def configure_io_retries() -> None:
    """Add transient S3 errors to ``DataContext.retried_io_errors`` (pyarrow's own retry strategy,
    ``S3Settings.retries`` attempts, handles the rest per request)."""
    from ray.data import DataContext

    ctx = DataContext.get_current()
    ctx.retried_io_errors = list(dict.fromkeys([*ctx.retried_io_errors, *EXTRA_RETRIED_IO_ERRORS]))


def exact_split_data_config():
    """A Ray Train DataConfig that splits every dataset among workers *without* dropping rows:
    ``streaming_split(equal=False)``. Workers then may get different numbers of batches; the
    training loop (``pipeline.train``) keeps DDP in step with zero-weight filler steps."""
    from ray.train import DataConfig

    class ExactSplit(DataConfig):
        def configure(self, datasets, world_size, worker_handles, worker_node_ids, **kwargs):
            output = [{} for _ in range(world_size)]
            hints = worker_node_ids if self._enable_shard_locality else None
            for name, ds in datasets.items():
                ds = ds.copy(ds)
                if ds.name is None:
                    ds.set_name(name)
                ds.context.execution_options = self._resolve_execution_options(name)
                for i, split in enumerate(ds.streaming_split(world_size, equal=False, locality_hints=hints)):
                    output[i][name] = split
            return output

    return ExactSplit()
