"""Prepared shards: their format and how to read them (``colorize prepare`` writes them).

A prepared dataset is a folder (local or ``s3://``) holding ``manifest.json`` and, under one
sub-folder per prepare run, Parquet shards with one row per photo: ``id`` (its path relative to
the dataset root, ``pipeline.core.split``; the manifest's ``id_root`` names that root), ``height``,
``width``, and the ``L`` (uint8, L*255/100), ``ab`` (int8) and ``bin`` (uint16 little-endian)
planes as raw bytes. Readers read only the shards the manifest names. Callers start Ray
(``pipeline.data.sources.ensure_ray``) before reading.
"""

from __future__ import annotations

import json
import posixpath
from typing import Dict, List, Optional, Tuple

import numpy as np
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import ray
from ray.data import FileShuffleConfig

from pipeline.core import color, transforms
from pipeline.core.split import WHOLE, Part
from pipeline.data import storage

MANIFEST = "manifest.json"
FORMAT = "colorize-prepared/1"
BYTES_PER_PIXEL = 5  # L 1 + ab 2 + bin 2
TRAINING_COLUMNS = ["id", "height", "width", "L", "ab"]  # training never reads the bin plane


def manifest_uri(uri: str) -> str:
    return posixpath.join(uri.rstrip("/"), MANIFEST)


def is_prepared(uri: str, s3: Optional[storage.S3Settings]) -> bool:
    """True when ``uri`` is a folder holding a prepared-shards manifest."""
    if uri.startswith("skimage") or uri.endswith(storage.LIST_SUFFIXES):
        return False
    fs, path = storage.resolve(manifest_uri(uri), s3)
    try:
        return fs.get_file_info(path).type == pafs.FileType.File
    except OSError:
        return False


def read_manifest(uri: str, s3: Optional[storage.S3Settings]) -> dict:
    """The manifest of a prepared folder, checked against this code's format and bin grid."""
    doc = json.loads(storage.read_bytes(manifest_uri(uri), s3))
    if doc.get("format") != FORMAT:
        raise storage.StorageError(f"{manifest_uri(uri)} is not a {FORMAT} manifest")
    if doc.get("Q") != color.num_bins():
        raise storage.StorageError(
            f"{uri} was prepared for a grid of Q={doc.get('Q')} bins, this code has {color.num_bins()}"
        )
    return doc


def shard_files(uri: str, manifest: dict, s3: Optional[storage.S3Settings]) -> Tuple[pafs.FileSystem, List[str]]:
    fs, root = storage.resolve(uri, s3)
    return fs, [posixpath.join(root, s["path"]) for s in manifest["shards"]]


def shards_dataset(
    uri: str,
    s3: Optional[storage.S3Settings],
    columns: Optional[List[str]] = None,
    shuffle_seed: Optional[int] = None,
    manifest: Optional[dict] = None,
    num_cpus: float = 1.0,
) -> ray.data.Dataset:
    """A Ray Dataset over the manifest's shards, one block per shard file (file order shuffled per
    epoch when a seed is given), each read task reserving ``num_cpus`` (fractional beside training
    workers on CPUs: a read that needs a whole CPU the workers hold never starts)."""
    manifest = manifest or read_manifest(uri, s3)
    fs, files = shard_files(uri, manifest, s3)
    # FileShuffleConfig is reseeded after each execution: a new file order every epoch.
    shuffle = FileShuffleConfig(seed=shuffle_seed) if shuffle_seed is not None else None
    ds = ray.data.read_parquet(
        files,
        filesystem=fs,
        shuffle=shuffle,
        override_num_blocks=max(1, len(files)),
        num_cpus=num_cpus,
    )
    return ds.select_columns(columns) if columns else ds


def read_ids(uri: str, manifest: dict, s3: Optional[storage.S3Settings]) -> List[str]:
    """Every row's id, in shard order: only the small ``id`` column is read (on the driver)."""
    fs, files = shard_files(uri, manifest, s3)
    if not files:
        return []
    table = pads.dataset(files, filesystem=fs, format="parquet").to_table(columns=["id"])
    return [str(i) for i in table.column("id").to_pylist()]


class ShardCrops:
    """map_batches callable over prepared rows: keep one part of the split (by id), then crop."""

    def __init__(self, crop: int, train: bool, flip: bool, part: Part = WHOLE):
        self.crop, self.train, self.flip, self.part = crop, train, flip, part

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        if len(batch["id"]):
            keep = self.part.keep(batch["id"])
            batch = {k: v[keep] for k, v in batch.items()}
        return transforms.shard_crops(batch, self.crop, self.train, self.flip)
