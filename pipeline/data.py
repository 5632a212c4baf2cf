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
    if address:
        ray.init(address=address, log_to_driver=True)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=True)


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
    try:
        ds = ray.data.read_binary_files(
            paths,
            include_paths=True,
            filesystem=fs,
            ignore_missing_paths=True,
            num_cpus=num_cpus,
            override_num_blocks=max(1, -(-len(paths) // files_per_block)),
        )
    except (ValueError, FileNotFoundError) as e:
        if "No files found" in str(e):
            raise storage.StorageError(f"none of the {len(paths)} files listed by {uri} exist (first: {paths[0]})") from None
        raise
    return ds, paths, fs
