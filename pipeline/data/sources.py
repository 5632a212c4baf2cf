"""The data layer on Ray Data: photos at a URI, raw or as prepared shards, behind one interface.

``Source.open(uri, s3)`` says what is there (``kind``: raw images or prepared shards), names its
photos (``ids``: paths relative to the dataset root, the folder the URI names,
``storage.dataset_root``) and streams them: raw files as {"path", "bytes"} rows, shards as Parquet
rows, and for training either one as crops of one part of the one train/val split.
``training_datasets`` is what a training run reads.

Skips are counted one way (``pipeline.core.skips``): per-file steps return (path, reason) pairs,
``ReportSkips`` hands them to the run's ``SkipCollector`` actor, the driver reads the record.
Raw files are read as bytes and decoded per file in ``pipeline.core.transforms``: one bad file never
fails its block (``ray.data.read_images`` would), it is skipped and counted.
"""

from __future__ import annotations

import logging
import os
import re
from typing import Callable, List, Optional, Sequence, Tuple

import pyarrow.fs as pafs
import ray
from ray.data import DataContext, FileShuffleConfig

from pipeline.core import split, transforms
from pipeline.core.skips import SKIP_MISSING, Skips
from pipeline.core.split import ALL, WHOLE, Part
from pipeline.data import shards, storage
from pipeline.runtime import stops
from pipeline.runtime.progress import VERBOSE_ENV  # "1": Ray's own logs, bars and worker prefixes too

log = logging.getLogger(__name__)

RAW, SHARDS = "raw images", "prepared shards"


# Loggers whose INFO/WARNING lines are the libraries talking to themselves: kept back unless verbose
# (errors still show).
_CHATTER = {
    "mlflow": logging.WARNING,  # "Creating initial MLflow database tables...", artifact downloads
    "ray": logging.WARNING,
    "ray.data": logging.WARNING,
    "ray.train": logging.WARNING,
    "ray._private.authentication.authentication_token_setup": logging.ERROR,  # says token auth is on, every start
}

# Whether this process started the Ray it uses (a local Ray), as against attaching to a cluster,
# and the address it then gave RAY_ADDRESS.
_STARTED_LOCAL = {"value": False, "address": None, "previous": None}


def verbose() -> bool:
    """Whether the user asked for Ray's own logs (``--verbose`` sets ``COLORIZE_VERBOSE=1``)."""
    return os.environ.get(VERBOSE_ENV, "") == "1"


def quiet_ray() -> None:
    """Ray prints what the user needs, not its own chatter: its loggers and MLflow's at WARNING
    (the token-auth notice at ERROR), Ray Data's in the workers of a local Ray too, worker lines
    without Ray's "(pid=...)" prefix, Ray Data's per-operator bars off. Nothing changes when verbose."""
    if verbose():
        return
    _quiet_loggers()
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # MLflow sets its loggers' level at import
    os.environ.setdefault("RAY_DATA_LOG_LEVEL", "WARNING")  # read by the workers a local Ray starts (inherited)
    os.environ["RAY_DISABLE_WORKER_LOG_PREFIX"] = "1"
    from ray._private import ray_constants  # read at import; the worker-log printer looks it up per batch

    ray_constants.RAY_DISABLE_WORKER_LOG_PREFIX = True
    ctx = DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.enable_operator_progress_bars = False


def _quiet_loggers() -> None:
    for name, level in _CHATTER.items():
        logging.getLogger(name).setLevel(level)


def quiet_worker() -> None:
    """In a Ray worker (Ray Train configures its loggers there): INFO lines kept back (Ray Train
    logs raw reports through the root logger, Ray Data and MLflow through theirs), and MLflow's
    download bars, unless verbose."""
    for name in ("", "ray.train", "ray.data", "mlflow"):
        logging.getLogger(name).setLevel(logging.WARNING)
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"


# Lines Ray's processes write about themselves, dropped from what a job prints unless verbose: C++
# info and warning lines ("[2026-12-07 04:07:11,060 W 4443 4672] file.cc:123: ..."), two error
# lines that come with every run (the "max_restarts > 0" notice of Ray Train's own actors, the GCS
# failing to kill an actor that already ended), the raylet's note that it started more workers than it expected (Ray
# Data's fractional tasks), Ray Data's note that its bars are off (we turned them off) and a
# deprecation inside Ray Train.
_RAY_SELF_TALK = re.compile(
    r"^\[\d{4}-\d\d-\d\d [\d:,]+ [IW] \d+ \d+\] "
    r"|max_restarts > 0\. If the arguments|gcs_actor_scheduler\.cc:\d+: Failed to kill actor"
    r"|PYTHON worker processes have been started on node"
    r"|^Progress bars (for operators )?disabled\. To enable"
    r"|ExecutionOptions\.exclude_resources` is deprecated|^\s+self\.exclude_resources = exclude_resources$"
)
# A traceback Ray Data's prefetch threads print when an epoch stops reading before the end of its
# data (train.max_steps_per_epoch): held from its first line and dropped if it ends in
# InterruptedError; a traceback that ends in anything else is printed whole.
_RAY_DATA_STOP_TRACE = re.compile(r"^Exception in thread pool-\d+/completion-signaler")


def _without_self_talk(lines: List[str], state: dict) -> List[str]:
    """``lines`` of one process's output less ``_RAY_SELF_TALK`` and Ray Data's stop traceback
    (``state`` holds a traceback in progress from one batch of lines to the next)."""
    kept = []
    for line in lines:
        held = state.get("held")
        if held is not None:
            held.append(line)
            if line[:1].strip() and not line.startswith("Traceback"):  # the exception line ends it
                if not line.startswith("InterruptedError"):
                    kept.extend(held)
                state["held"] = None
        elif _RAY_DATA_STOP_TRACE.search(line):
            state["held"] = [line]
        elif not _RAY_SELF_TALK.search(line):
            kept.append(line)
    return kept


def _filter_worker_lines() -> None:
    """Put ``_without_self_talk`` before Ray's printer of worker output and of the raylet's notices
    on the driver (after ``ray.init``). Best effort: if Ray's printer moved, its output stays as it is."""
    try:
        from ray._private import worker as ray_worker

        original = ray_worker.print_to_stdstream
        if getattr(original, "colorize_filtered", False):
            return
        states: dict = {}

        def printer(data, ignore_prefix=False):
            lines = _without_self_talk(data.get("lines", []), states.setdefault(data.get("pid"), {}))
            if lines:
                original({**data, "lines": lines}, ignore_prefix=ignore_prefix)

        printer.colorize_filtered = True
        ray_worker.print_to_stdstream = printer  # the raylet's notices (listen_error_messages) call it by name
        dispatcher = ray_worker.global_worker_stdstream_dispatcher
        dispatcher.remove_handler("ray_print_logs")
        dispatcher.add_handler("ray_print_logs", lambda data: printer(data, ignore_prefix=True))
    except (AttributeError, ImportError, KeyError) as e:
        log.debug("worker output unfiltered: %s", e)


def cluster_nodes() -> List[dict]:
    """The alive Ray nodes' total resources ({"CPU": ..., "GPU": ...}), one dict per node; before
    Ray starts, this machine's CPUs (what ``ensure_ray`` starts locally)."""
    if not ray.is_initialized():
        return [{"CPU": float(os.cpu_count() or 1)}]
    return [dict(n.get("Resources", {})) for n in ray.nodes() if n.get("Alive")]


def started_local_ray() -> bool:
    """Whether ``ensure_ray`` started a local Ray in this process (its resources are all there is)."""
    return _STARTED_LOCAL["value"]


def name_this_ray() -> None:
    """Set up every worker process of a local Ray: RAY_ADDRESS names the instance it belongs to."""
    try:
        os.environ.setdefault("RAY_ADDRESS", ray.get_runtime_context().gcs_address)
    except Exception as e:  # never fail a worker's start over it
        log.debug("RAY_ADDRESS not set in this worker: %s", e)


def ensure_ray(address: Optional[str] = None, num_cpus: Optional[int] = None) -> None:
    """Attach to a running cluster (``address``/``RAY_ADDRESS``, as under ``ray job submit``) or
    start a local Ray with ``num_cpus`` logical CPUs; quiet unless ``COLORIZE_VERBOSE=1``."""
    if ray.is_initialized():
        return
    quiet_ray()
    if _STARTED_LOCAL["address"] and os.environ.get("RAY_ADDRESS") == _STARTED_LOCAL["address"]:
        # ours, for a local Ray since shut down: not a cluster to attach to; what was there before returns
        os.environ.pop("RAY_ADDRESS")
        if _STARTED_LOCAL["previous"] is not None:
            os.environ["RAY_ADDRESS"] = _STARTED_LOCAL["previous"]
    kw = {"log_to_driver": True, "logging_level": logging.INFO if verbose() else logging.WARNING}
    address = address or os.environ.get("RAY_ADDRESS")
    if address and address != "local":
        ray.init(address=address, **kw)
        _STARTED_LOCAL["value"] = False
    else:
        # "local": always a fresh local instance, never a cluster left on this host. Otherwise the
        # dashboard stays on: it serves the State API that Train V2 needs (without it, endless
        # PlacementGroupCleaner errors) and `ray job submit`. Ray Train's own threads (driver and
        # workers) look Ray up by address: every process names this instance, never another Ray
        # running on the same host ("Found multiple active Ray instances").
        hook = {"worker_process_setup_hook": f"{__name__}.name_this_ray"}
        ray.init(**({"address": "local"} if address == "local" else {}), num_cpus=num_cpus, runtime_env=hook, **kw)
        previous = os.environ.get("RAY_ADDRESS")
        os.environ["RAY_ADDRESS"] = ray.get_runtime_context().gcs_address
        _STARTED_LOCAL.update(value=True, address=os.environ["RAY_ADDRESS"], previous=previous)
    if not verbose():
        _quiet_loggers()  # ray.init set its own logger's level ("Started a local Ray instance ...")
        _filter_worker_lines()
    stops.reinstall()  # ray.init replaced the SIGTERM handler: a stop still unwinds through every cleanup


# ----------------------------------------------------------------------------- skips


@ray.remote(num_cpus=0)
class SkipCollector:
    """The one Ray-side gatherer of skipped inputs for a job (priors, prepare, a training run).

    ``add([(path, reason), ...])`` from map tasks: a path counts once however many epochs re-read
    it. ``add_record(Skips.to_dict())`` merges counts found elsewhere (listing, missing files).
    ``record()`` -> ``Skips.to_dict()``; ``counts()`` -> {reason: n}.
    """

    def __init__(self):
        self.skips = Skips()
        self.seen = set()

    def add(self, items: Sequence[Tuple[str, str]]) -> None:
        for path, reason in items:
            if path not in self.seen:
                self.seen.add(path)
                self.skips.add(reason, path)

    def add_record(self, record: dict) -> None:
        self.skips.merge(Skips.from_dict(record))

    def record(self) -> dict:
        return self.skips.to_dict()

    def counts(self) -> dict:
        return dict(self.skips.counts)


def collected(collector) -> Skips:
    """The record a SkipCollector holds now (blocking)."""
    return Skips.from_dict(ray.get(collector.record.remote()))


class ReportSkips:
    """map_batches callable around a per-file step ``step(batch, **kwargs) -> (rows, skipped)``:
    rows go on, the (path, reason) pairs to the collector. It waits for the collector, so once the
    driver has consumed every row, the record is complete. An instance, not a class: Ray Data runs
    it in tasks, not actors."""

    def __init__(self, step: Callable, collector, **kwargs):
        self.step, self.collector, self.kwargs = step, collector, kwargs

    def __call__(self, batch):
        rows, skipped = self.step(batch, **self.kwargs)
        if skipped and self.collector is not None:
            ray.get(self.collector.add.remote(skipped))
        return rows


def single_pass_skips(listed: int, used: int, decoded: Skips, listing: Skips) -> Skips:
    """The whole record of a single pass: the decode skips, the files listed but never read
    (``missing``: listed minus used minus skipped) and what the listing skipped."""
    out = Skips().merge(decoded)
    out.add(SKIP_MISSING, None, listed - used - decoded.total)
    return out.merge(listing)


# ----------------------------------------------------------------------------- sources


def crop_size(data_cfg, train: bool, working_size: int) -> int:
    """The square a row is cut to: ``data.crop`` for training, ``data.val_crop`` (None: the working
    size) for validation."""
    return data_cfg.crop if train else (data_cfg.val_crop or working_size)


def read_paths(
    fs: pafs.FileSystem,
    paths: List[str],
    uri: str,
    num_cpus: float,
    files_per_block: int,
    shuffle_files: bool = False,
    shuffle_seed: Optional[int] = None,
) -> ray.data.Dataset:
    """Rows {"path", "bytes"} of the given files, ``files_per_block`` to a read task; in a random
    file order with ``shuffle_files``, a seeded one with ``shuffle_seed``.

    Setting the block count explicitly stops Ray from splitting read output, which would prevent
    fusing the read with the decode step (and ship every raw file through the object store once
    more). Files gone by read time are dropped (callers count them as ``missing``).
    """
    try:
        return ray.data.read_binary_files(
            paths,
            include_paths=True,
            filesystem=fs,
            ignore_missing_paths=True,
            num_cpus=num_cpus,
            override_num_blocks=max(1, -(-len(paths) // files_per_block)),
            shuffle=FileShuffleConfig(seed=shuffle_seed)
            if shuffle_seed is not None
            else ("files" if shuffle_files else None),
        )
    except (ValueError, FileNotFoundError) as e:
        if "No files found" in str(e):
            raise storage.StorageError(
                f"none of the {len(paths)} files listed by {storage.redact(uri)} exist (first: {paths[0]})"
            ) from None
        raise


class Source:
    """Photos at one URI: raw (folder, list file, ``s3://`` prefix, ``skimage:``) or prepared
    shards (a ``colorize prepare`` folder). Open with ``Source.open``."""

    def __init__(
        self,
        uri: str,
        s3: Optional[storage.S3Settings],
        kind: str,
        fs: Optional[pafs.FileSystem] = None,
        paths: Sequence[str] = (),
        manifest: Optional[dict] = None,
        listing: Optional[Skips] = None,
        root: Optional[str] = None,
    ):
        self.uri, self.s3, self.kind = uri, s3, kind
        self.fs, self.paths, self.manifest = fs, list(paths), manifest
        self.listing = listing or Skips()  # what the listing skipped (raw sources)
        # raw sources: the folder ids are relative to (default: the files' common folder, for an explicit list)
        self.root = split.common_folder(self.paths) if root is None else root
        self._ids: Optional[List[str]] = None

    @staticmethod
    def open(uri: str, s3: storage.S3Settings, limit: Optional[int] = None) -> Source:
        """List (raw) or read the manifest (shards); no Ray yet, so a bad URI fails in a second.
        ``limit``: the first N files of a raw listing (shards ignore it). Raises StorageError."""
        if shards.is_prepared(uri, s3):
            return Source(uri, s3, SHARDS, manifest=shards.read_manifest(uri, s3))
        listing = Skips()
        fs, paths = storage.list_inputs(uri, s3, listing)
        root = storage.dataset_root(uri, paths)  # before --limit: the first N files keep the ids of all
        if limit is not None:
            paths = paths[: max(0, int(limit))]
        if not paths:
            raise storage.StorageError(f"no input files at {storage.redact(uri)}")
        return Source(uri, s3, RAW, fs=fs, paths=paths, listing=listing, root=root)

    @property
    def prepared(self) -> bool:
        return self.kind == SHARDS

    def __len__(self) -> int:
        """Photos known up front: listed files (raw) or the manifest's images (shards)."""
        return self.manifest["images"] if self.prepared else len(self.paths)

    def ids(self) -> List[str]:
        """Every photo's id (``pipeline.core.split``), in listing / shard order."""
        if self._ids is None:
            self._ids = (
                shards.read_ids(self.uri, self.manifest, self.s3)
                if self.prepared
                else split.photo_ids(self.paths, self.root)
            )
        return self._ids

    def count(self, part: Part) -> int:
        return len(self) if part.side == ALL else int(part.keep(self.ids()).sum())

    def files(
        self,
        part: Part = WHOLE,
        files_per_block: int = 32,
        num_cpus: float = 1.0,
        shuffle: bool = False,
        shuffle_seed: Optional[int] = None,
    ) -> ray.data.Dataset:
        """Raw sources: rows {"path", "bytes"} of the files of ``part`` (in a random file order
        with ``shuffle``, a seeded one with ``shuffle_seed``)."""
        if self.prepared:
            raise ValueError(f"{storage.redact(self.uri)} holds prepared shards, not raw files")
        paths = (
            self.paths if part.side == ALL else [p for p, k in zip(self.paths, part.keep(self.ids()), strict=True) if k]
        )
        if not paths:
            raise storage.StorageError(f"no {part.side} files at {storage.redact(self.uri)}")
        ensure_ray()
        return read_paths(
            self.fs, paths, self.uri, num_cpus, files_per_block, shuffle_files=shuffle, shuffle_seed=shuffle_seed
        )

    def rows(
        self, columns: Optional[List[str]] = None, shuffle_seed: Optional[int] = None, num_cpus: float = 1.0
    ) -> ray.data.Dataset:
        """Prepared sources: the shards' rows (file order shuffled per epoch with a seed), each
        read task reserving ``num_cpus``."""
        if not self.prepared:
            raise ValueError(f"{storage.redact(self.uri)} holds raw files, not prepared shards")
        ensure_ray()
        return shards.shards_dataset(
            self.uri, self.s3, columns=columns, shuffle_seed=shuffle_seed, manifest=self.manifest, num_cpus=num_cpus
        )

    def crops(self, data_cfg, part: Part, train: bool, collector=None, cpus_per_task: float = 1.0) -> ray.data.Dataset:
        """Rows of ``part`` as training crops (random ``data.crop`` squares + flip, fresh every epoch)
        or validation crops (the centre ``data.val_crop`` square, by default the working size),
        streamed, never materialised: {"rgb", "id"} from raw files (decoded at ``data.resize``, bad
        ones skipped and reported to ``collector``), {"L", "ab", "id"} from shards (decoded and
        counted once, at prepare time)."""
        if not self.prepared:
            ds = self.files(part, files_per_block=16, num_cpus=cpus_per_task, shuffle=train)
            step = ReportSkips(
                transforms.training_batch,
                collector,
                resize=data_cfg.resize,
                crop=crop_size(data_cfg, train, data_cfg.resize),
                train=train,
                flip=data_cfg.flip,
                skip_grey=data_cfg.skip_grey,
                root=self.root,
            )
            return ds.map_batches(step, batch_size=None, num_cpus=cpus_per_task, batch_format="numpy")
        size = self.manifest["size"]
        for key in ("crop", "val_crop"):
            asked = getattr(data_cfg, key)
            if (asked or 0) > size:
                raise storage.StorageError(
                    f"data.{key}={asked} exceeds the prepared size {size} of {storage.redact(self.uri)}"
                )
        if data_cfg.resize != size:
            log.warning(
                "data.resize=%d ignored: %s was prepared at short side %d",
                data_cfg.resize,
                storage.redact(self.uri),
                size,
            )
        ds = self.rows(shards.TRAINING_COLUMNS, shuffle_seed=data_cfg.seed if train else None, num_cpus=cpus_per_task)
        # whole blocks (one shard file each): read and crop fuse into one task, only crops are shipped
        return ds.map_batches(
            shards.ShardCrops(crop_size(data_cfg, train, size), train, data_cfg.flip, part),
            batch_size=None,
            num_cpus=cpus_per_task,
            batch_format="numpy",
        )

    def describe(self) -> dict:
        """What was read, for the run's tags and log."""
        if not self.prepared:
            return {"source": RAW}
        m = self.manifest
        return {
            "source": SHARDS,
            "images": m["images"],
            "shards": len(m["shards"]),
            "prepared_run": m["run"],
            "prepared_skipped": m["skipped"],
        }


def image_dataset(
    fs: pafs.FileSystem,
    paths: List[str],
    data_cfg,
    train: bool,
    s3: Optional[storage.S3Settings],
    collector=None,
    cpus_per_task: float = 1.0,
) -> ray.data.Dataset:
    """Training (or validation) crops of the given raw files: ``Source.crops`` of an explicit list
    (ids relative to the files' common folder). ``s3``: the entry point's settings (None: local files)."""
    src = Source(paths[0] if paths else "", s3, RAW, fs=fs, paths=paths)
    return src.crops(data_cfg, WHOLE, train, collector, cpus_per_task)


def training_datasets(data_cfg, s3: storage.S3Settings, cpus_per_task: float = 1.0):
    """(train_ds, val_ds, collector, info) for an ExperimentConfig's data section.

    ``data.train`` and ``data.val`` may each be raw photos or prepared shards; ``info["source"]``
    says which ``data.train`` is. Without ``data.val`` the split of ``pipeline.core.split`` holds out
    about ``val_fraction`` of ``data.train`` (at least one photo), the same photos whichever form
    it is read in (except for tiny datasets: see ``pipeline.core.split``). ``collector`` is the run's
    SkipCollector (``collector.counts.remote()``).
    """
    configure_io_retries()
    train_src = Source.open(data_cfg.train, s3, data_cfg.limit)
    if train_src.prepared and data_cfg.limit:
        log.warning("data.limit is ignored for prepared shards")
    if data_cfg.val:
        val_src = Source.open(data_cfg.val, s3)
        train_part = val_part = WHOLE
    else:
        val_src = train_src
        train_part, val_part = split.split_parts(train_src.ids(), data_cfg.val_fraction, data_cfg.seed, min_val=1)
    n_train, n_val = train_src.count(train_part), val_src.count(val_part)
    if not n_train:
        raise storage.StorageError(f"no training files at {storage.redact(data_cfg.train)}")
    if not n_val:
        raise storage.StorageError(
            f"no validation files (data.val={data_cfg.val!r}, val_fraction={data_cfg.val_fraction})"
        )
    ensure_ray()
    collector = SkipCollector.remote()
    for src in [train_src] if val_src is train_src else [train_src, val_src]:
        if src.listing:
            collector.add_record.remote(src.listing.to_dict())
    train_ds = train_src.crops(data_cfg, train_part, True, collector, cpus_per_task)
    val_ds = val_src.crops(data_cfg, val_part, False, collector, cpus_per_task)
    info = train_src.describe() | {"train_files": n_train, "val_files": n_val}
    log.warning(
        "training reads %s from %s: %d train / %d val photos",
        train_src.kind,
        storage.redact(data_cfg.train),
        n_train,
        n_val,
    )
    return train_ds, val_ds, collector, info


def guard_dataset(data_cfg, s3: storage.S3Settings, collector, cpus_per_task: float = 1.0):
    """(guard_ds, photos) of ``data.val_guard`` (raw photos or prepared shards, read as validation
    reads: centre squares, no flips), or (None, 0) without one; its skips count in ``collector``."""
    if not data_cfg.val_guard:
        return None, 0
    src = Source.open(data_cfg.val_guard, s3)
    n = src.count(WHOLE)
    if not n:
        raise storage.StorageError(f"no validation files in data.val_guard={storage.redact(data_cfg.val_guard)}")
    if src.listing:
        collector.add_record.remote(src.listing.to_dict())
    log.warning("validation also scores %d guard photos from %s", n, storage.redact(data_cfg.val_guard))
    return src.crops(data_cfg, WHOLE, False, collector, cpus_per_task), n


# ----------------------------------------------------------------------------- Ray Data / Train settings

# Transient object-store errors Ray Data retries on read and write, beyond its defaults (which cover
# AWS INTERNAL_FAILURE / NETWORK_CONNECTION / SLOW_DOWN / 503 / SERVICE_UNAVAILABLE).
EXTRA_RETRIED_IO_ERRORS = (
    "AWS Error REQUEST_TIMEOUT",
    "Connection reset by peer",
    "curlCode: 28",
    "AWS Error THROTTLING",
)


def configure_io_retries() -> None:
    """Add transient S3 errors to ``DataContext.retried_io_errors`` (pyarrow's own retry strategy,
    ``S3Settings.retries`` attempts, handles the rest per request)."""
    ctx = DataContext.get_current()
    ctx.retried_io_errors = list(dict.fromkeys([*ctx.retried_io_errors, *EXTRA_RETRIED_IO_ERRORS]))


def exact_split_data_config():
    """A Ray Train DataConfig that splits every dataset among workers *without* dropping rows:
    ``streaming_split(equal=False)``. Workers then may get different numbers of batches; the
    training loop (``pipeline.train.trainer``) keeps DDP in step with zero-weight filler steps."""
    from ray.train import DataConfig  # Ray Train loads torch: only the training run pays for it

    class ExactSplit(DataConfig):
        def configure(self, datasets, world_size, worker_handles, worker_node_ids, **kwargs):
            output = [{} for _ in range(world_size)]
            hints = worker_node_ids if self._enable_shard_locality else None
            for name, ds in datasets.items():
                ds = ds.copy(ds)
                if ds.name is None:
                    ds.set_name(name)
                ds.context.execution_options = self._resolve_execution_options(name)
                for i, split_ds in enumerate(ds.streaming_split(world_size, equal=False, locality_hints=hints)):
                    output[i][name] = split_ds
            return output

    return ExactSplit()
