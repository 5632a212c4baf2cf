"""Raw photos decoded once into compact Parquet shards that training and the
priors job stream for many epochs without decoding a JPEG again (format: ``pipeline.data.shards``).

``colorize prepare --data URI --out URI [--size N]`` runs on Ray Data: read (folder, list file,
``s3://`` prefix), decode, resize the short side to N, convert to Lab and bins, write Parquet
shards (one row per photo: id, height, width, L uint8 (L*255/100), ab int8, bin uint16, each as
raw bytes) of a few hundred MB, and finally ``manifest.json`` (counts, skipped by reason with
examples, size, grid Q, source, and ``id_root``: the folder each row's id is relative to,
``pipeline.core.split``).

Consistency: each run writes its shards into a fresh folder ``<out>/<run>/`` and the manifest last,
in one atomic write; readers read only the shards the manifest names. An interrupted run leaves
files no manifest points to (the old manifest and its shards stay valid); a completed rerun
switches the manifest and then deletes the previous run's folder and the folders of runs killed
before it (``remove_orphan_runs``: only folders named as runs are, started before this one).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import posixpath
import re
import time
import uuid
from typing import List, Optional

import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pipeline import __version__
from pipeline.core import color, transforms
from pipeline.data import shards, sources, storage

log = logging.getLogger(__name__)

SHARD_ORDER_SEED = 0  # the photos' order across shards: random, and the same for every run
RUN_DIR = re.compile(r"^(\d{8}T\d{6}Z)-[0-9a-f]{8}$")  # what prepare names a run's folder: start time, random


def prepare(
    uri: str,
    out: str,
    size: int = 256,
    limit: Optional[int] = None,
    skip_grey: bool = True,
    *,
    s3: Optional[storage.S3Settings],
    shard_mb: float = 256,
) -> dict:
    """Run the prepare job over the raw photos at ``uri``; returns the manifest it wrote. ``s3``:
    the entry point's settings (None only for local URIs)."""
    if size < 8:
        raise ValueError(f"--resize must be >= 8, got {size}")
    t0 = time.perf_counter()
    storage.check_writable_parent(shards.manifest_uri(out), s3)
    src = sources.Source.open(uri, s3, limit)
    if src.prepared:
        raise ValueError(f"{storage.redact(uri)} holds prepared shards already: prepare its raw photos")
    previous = shards.read_manifest(out, s3) if shards.is_prepared(out, s3) else None
    run = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:8]
    fs_out, out_root = storage.resolve(out, s3)
    run_dir = posixpath.join(out_root, run)
    sources.ensure_ray()
    collector = sources.SkipCollector.remote()
    step = sources.ReportSkips(transforms.prepared_rows, collector, size=size, skip_grey=skip_grey, root=src.root)
    # Photos in a seeded random order: each shard a sample of the whole list. In listing order a
    # list of sources one after another gave shards of a few folders each, and training, which
    # reads a shard or two at a time, saw one kind of photo for hundreds of steps.
    ds = src.files(files_per_block=16, shuffle_seed=SHARD_ORDER_SEED).map_batches(
        step, batch_size=None, batch_format="numpy"
    )
    # Rows per shard from the pixels a row carries at this size (4:3 photos): ~shard_mb per file.
    rows_per_shard = max(1, int(shard_mb * 2**20 // (size * size * 4 / 3 * shards.BYTES_PER_PIXEL)))
    ds.write_parquet(run_dir, filesystem=fs_out, min_rows_per_file=rows_per_shard)
    written = _written_shards(fs_out, run_dir, out_root)
    images = sum(s["rows"] for s in written)
    skipped = sources.single_pass_skips(len(src), images, sources.collected(collector), src.listing)
    if images == 0:
        raise ValueError(f"no usable image in {storage.redact(uri)}: {len(src)} files listed, skipped {skipped.counts}")
    manifest = {
        "format": shards.FORMAT,
        "run": run,
        "source": storage.redact(uri),
        "id_root": _root_uri(uri, src.root),  # each row's id is its path relative to this
        "size": size,
        "Q": color.num_bins(),
        "grid_rule": color.GRID_RULE,
        "skip_grey": skip_grey,
        "limit": limit,
        "files_listed": len(src),
        "images": images,
        "skipped": skipped.counts,
        "skipped_examples": skipped.examples,
        "pixels_per_row_bytes": shards.BYTES_PER_PIXEL,
        "L_scale": color.L_U8_SCALE,
        "shards": written,
        "bytes": sum(s["bytes"] for s in written),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "code_version": __version__,
        "seconds": round(time.perf_counter() - t0, 2),
    }
    storage.write_bytes_atomic(shards.manifest_uri(out), json.dumps(manifest, indent=1).encode(), s3)
    if previous and previous.get("run") and previous["run"] != run:  # the old shards are unreferenced now
        try:
            fs_out.delete_dir(posixpath.join(out_root, previous["run"]))
        except OSError as e:
            log.warning("could not delete the previous run's shards %s: %s", previous["run"], e)
    remove_orphan_runs(fs_out, out_root, run)
    return manifest


def remove_orphan_runs(fs: pafs.FileSystem, out_root: str, current: str) -> List[str]:
    """Delete the run folders under ``out_root`` that killed runs left: folders named as prepare names
    a run (``RUN_DIR``) that started before ``current`` (the run whose manifest was just written;
    never deleted), so nothing a manifest references and nothing a later, still running job writes.
    Anything else under the output is left alone. Returns the names deleted."""
    started = RUN_DIR.match(current)
    if not started:
        return []
    gone = []
    for info in fs.get_file_info(pafs.FileSelector(out_root, recursive=False, allow_not_found=True)):
        name = posixpath.basename(info.path.rstrip("/"))
        m = RUN_DIR.match(name)
        if info.type != pafs.FileType.Directory or not m or name == current or m.group(1) >= started.group(1):
            continue
        try:
            fs.delete_dir(info.path)
            gone.append(name)
        except OSError as e:
            log.warning("could not delete the shards of an interrupted run %s: %s", name, e)
    if gone:
        log.info("deleted %d folder(s) of interrupted prepare runs: %s", len(gone), ", ".join(sorted(gone)))
    return sorted(gone)


def _root_uri(uri: str, root: str) -> str:
    """The dataset root as a URI a reader can show: ``s3://bucket/prefix`` or a local folder."""
    return storage.redact(("s3://" + root) if storage.is_s3(uri) else root)


def _written_shards(fs: pafs.FileSystem, run_dir: str, out_root: str) -> List[dict]:
    """{"path" (relative to the output root), "rows", "bytes"} of each non-empty shard of a run."""
    infos = [
        i
        for i in fs.get_file_info(pafs.FileSelector(run_dir, recursive=True, allow_not_found=True))
        if i.type == pafs.FileType.File and i.path.endswith(".parquet")
    ]
    out = []
    for info in sorted(infos, key=lambda i: i.path):
        with fs.open_input_file(info.path) as f:
            rows = pq.ParquetFile(f).metadata.num_rows
        if rows:
            out.append({"path": posixpath.relpath(info.path, out_root), "rows": rows, "bytes": info.size})
    return out


def summary(manifest: dict, out: str) -> str:
    mb = manifest["bytes"] / 2**20
    return (
        f"prepared {manifest['images']} images from {manifest['source']} at short side {manifest['size']} into "
        f"{len(manifest['shards'])} shard(s), {mb:.1f} MiB, under {storage.redact(out)} (run {manifest['run']}); "
        f"skipped {manifest['skipped'] or 'none'}; {manifest['seconds']} s"
    )
