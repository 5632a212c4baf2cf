"""Ray Train glue: the per-worker loop, the trainer, and ``launch``: one tracked training run.

The maths lives elsewhere (``pipeline.gan.batches``, ``pipeline.gan.cgan``, ``pipeline.core.metrics``,
``models``); this module wires it to Ray: dataset shards in, DDP around G and D,
``ray.train.report`` with a checkpoint each epoch, resume from the latest checkpoint (Train V2
restores it when a run name is reused), MLflow on rank 0. ``pipeline/run.py`` and Tune's trials
both start their training through ``launch``.
"""

from __future__ import annotations

import dataclasses
import io
import logging
import math
import os
import tempfile
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np
import ray
import ray.train
import ray.train.torch as rtt
import torch
from PIL import Image
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from models import Generator, losses, scaling, unwrap
from pipeline.config import ExperimentConfig
from pipeline.core import color, metrics
from pipeline.data import sources, storage
from pipeline.gan import batches, cgan, checkpoint, model_ref
from pipeline.train import tracking
from pipeline.train.tracking import Tracker

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- batches


def to_tensors(raw: Dict[str, np.ndarray]) -> Dict[str, Any]:
    """A numpy batch from Ray Data -> tensors for the image planes, ids kept as a list of str."""
    planes = ("rgb", "L", "ab")
    out: Dict[str, Any] = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in raw.items() if k in planes}
    out["id"] = [str(i) for i in raw.get("id", [])]
    return out


def batch_rgb(batch: Dict[str, Any]) -> torch.Tensor:
    """uint8 (B,H,W,3) sRGB of a raw-image or prepared-shard batch (shards: from the stored L, ab)."""
    if "rgb" in batch:
        return batch["rgb"]
    lab = torch.cat([color.u8_to_L(batch["L"])[..., None], color.i8_to_ab(batch["ab"])], -1)  # (B,H,W,3)
    return color.lab_to_rgb_u8(lab)


def _rgb_u8(L_input: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """(B,1,H,W) L on the generator's input scale + (B,2,H,W) ab -> uint8 (B,3,H,W) sRGB, the
    colours a user gets (``color.lab_to_rgb_u8``: out-of-gamut colours keep their L)."""
    return color.lab_to_rgb_u8(torch.cat([scaling.input_to_L(L_input.float()), ab.float()], 1), dim=1)


def _filler(crop: int) -> Dict[str, Any]:
    """A one-image batch for a worker whose shard had no rows at all this epoch."""
    return {"rgb": torch.zeros(1, crop, crop, 3, dtype=torch.uint8), "id": []}


# The CPU group the step flags travel on, with the default process group it was made for: a
# re-initialised default group (a new one in this process) gets a new flag group, never a stale one.
_FLAG_GROUP: Dict[str, Any] = {}


def _flag_group():
    """A gloo group over the current default process group (None: the default group is gloo)."""
    dist = torch.distributed
    world = dist.group.WORLD
    if _FLAG_GROUP.get("world") is not world:  # first step on this group: every rank gets here in the same order
        group = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else None
        _FLAG_GROUP.clear()
        _FLAG_GROUP.update(world=world, group=group)
    return _FLAG_GROUP["group"]


def _live_workers(has_batch: bool) -> int:
    """How many workers still have a batch this step (all-reduced; 1/0 without distributed).

    On a CPU (gloo) group even under NCCL: a GPU tensor here would make ``.item()`` wait for the
    previous step's kernels every step."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return int(has_batch)
    t = torch.tensor([1 if has_batch else 0])
    dist.all_reduce(t, group=_flag_group())
    return int(t.item())


def even_batches(
    batches: Iterator[Dict[str, Any]],
    world: int,
    max_steps: Optional[int],
    filler: Callable[[], Dict[str, Any]],
    live_workers: Callable[[bool], int] = _live_workers,
) -> Iterator[Tuple[Dict[str, Any], float]]:
    """This worker's batches as (batch, loss_scale), in step with every other worker's.

    Ray Data splits rows without dropping any (``sources.exact_split_data_config``), so workers may
    run out at different steps. Before each step all workers agree how many still have a batch
    (``live_workers``: every worker calls it once a step with whether it has one). While any has
    one, a worker that ran out repeats its last batch (or ``filler()``) with loss scale 0: its step
    only keeps DDP's collectives in step. The others scale their loss by world/live, so DDP's mean
    over ``world`` gradients is the mean over the live ones. Ends when no worker has a batch, or
    after ``max_steps`` steps.
    """
    n, last = 0, None
    while True:
        batch = None if (max_steps and n >= max_steps) else next(batches, None)
        live = live_workers(batch is not None)
        if live == 0:
            return
        if batch is not None:
            last = batch
            yield batch, world / live
        else:
            yield (last if last is not None else filler()), 0.0
        n += 1


# ----------------------------------------------------------------------------- per-worker loop


def train_loop_per_worker(config: Dict[str, Any]) -> None:
    """Ray Train entry: config = {"cfg": ExperimentConfig dict, "prior": list, "tracking_uri",
    "run_id", "s3": S3Settings dict}."""
    cfg = ExperimentConfig.from_dict(config["cfg"])
    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    device = rtt.get_device()
    s3 = storage.S3Settings.from_dict(config["s3"])
    tracker = Tracker(config.get("tracking_uri"), config.get("run_id")) if rank == 0 else Tracker(None, None)
    torch.manual_seed(cfg.data.seed)
    if device.type == "cpu":
        torch.set_num_threads(cpu_threads(cfg))
    gan = cgan.build(cfg, device)
    if config.get("init") is not None:  # train.init_from; a resumed run's checkpoint overrides it below
        d_loaded = checkpoint.apply_init(gan, config["init"])
        if rank == 0:
            log.warning("started from %s (discriminator %s)", config["init_from"], "too" if d_loaded else "fresh")
    gan.G, gan.D = rtt.prepare_model(gan.G), rtt.prepare_model(gan.D)  # DDP when world > 1
    start_epoch, step = _resume(gan, device, rank, tracker)
    prior_np = np.asarray(config["prior"])  # (Q,)
    prior = torch.tensor(prior_np, dtype=torch.float64, device=device)
    weights = batches.class_weights_tensor(prior_np, cfg.loss, device)
    _tag_worker_nodes(rank, tracker)
    samples = None  # rank 0's first validation images, drawn again every epoch
    for epoch in range(start_epoch, cfg.train.epochs):
        step, epoch_steps, ids = train_epoch(gan, cfg, epoch, step, weights, device, rank, world, tracker)
        if cfg.train.audit_ids_dir:
            _write_ids(cfg.train.audit_ids_dir, epoch, rank, ids, s3)
        keep = cfg.tracking.sample_images if (rank == 0 and samples is None) else 0
        val, kept = validate(gan.generator(), ray.train.get_dataset_shard("val"), cfg, prior, device, keep)
        samples = kept if samples is None else samples
        _report_epoch(gan, val, epoch, step, epoch_steps, config, rank)
        if rank == 0:
            _log_epoch(tracker, gan.generator(), val, samples, epoch, step, device)
    if rank == 0 and tracker.active:
        tracking.log_generator(tracker, gan.generator(), cfg, step, cfg.train.epochs - 1)


def cpu_threads(cfg: ExperimentConfig) -> int:
    """torch threads of a CPU worker: ``train.threads``, else the CPUs Ray gave it (at least 1).
    Ray sets OMP_NUM_THREADS from the worker's CPUs; a worker whose Ray Data reads are light
    (prepared shards) can use more threads than its CPU reservation: set ``train.threads``."""
    return cfg.train.threads or max(1, math.ceil(cfg.train.cpus_per_worker))


def _resume(gan: cgan.GAN, device, rank: int, tracker: Tracker) -> Tuple[int, int]:
    """(first epoch, step) to train from: after the checkpoint Ray Train hands this run (a rerun
    of the same run name, or a restart after a failure), else (0, 0)."""
    ckpt = ray.train.get_checkpoint()
    if ckpt is None:
        return 0, 0
    with ckpt.as_directory() as d:
        state = checkpoint.restore(d, gan, map_location=device)
    if rank == 0:
        log.warning("resumed from checkpoint: epoch %d, step %d", state["epoch"], state["step"])
        tracker.metrics({"train/resumed_from_epoch": state["epoch"]}, state["step"])
    return state["epoch"] + 1, state["step"]


def train_epoch(
    gan: cgan.GAN,
    cfg: ExperimentConfig,
    epoch: int,
    step: int,
    weights: torch.Tensor,
    device,
    rank: int,
    world: int,
    tracker: Tracker,
) -> Tuple[int, int, List[str]]:
    """One pass over this worker's train shard -> (step after it, steps this epoch, ids trained on)."""
    shard = ray.train.get_dataset_shard("train")
    rows = shard.iter_batches(
        batch_size=cfg.train.batch_size,
        batch_format="numpy",
        local_shuffle_buffer_size=cfg.data.shuffle_buffer or None,
        local_shuffle_seed=(cfg.data.seed * 1000 + epoch) * 1000 + rank,
    )
    stride = unwrap(gan.G).logits_stride
    n, ids = 0, []
    for batch, loss_scale in even_batches(
        map(to_tensors, rows), world, cfg.train.max_steps_per_epoch, lambda: _filler(cfg.data.crop)
    ):
        if loss_scale:
            ids += batch["id"]
        b = batches.step_batch(batch, stride, cfg.loss.soft_k, cfg.loss.soft_sigma, device=device)
        stats = gan.train_step(b, step, weights, loss_scale=loss_scale)
        step, n = step + 1, n + 1
        if rank == 0 and step % cfg.train.log_every == 0:
            tracker.metrics({f"train/{k}": float(v) for k, v in stats.items()}, step)
    return step, n, ids


def _all_reduce(sums: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        for v in sums.values():
            torch.distributed.all_reduce(v)
    return sums


def validate(G: Generator, shard, cfg: ExperimentConfig, prior: torch.Tensor, device, keep: int = 0):
    """(val metrics of generator ``G`` over every worker's val shard, all-reduced, with the
    selection objective; up to ``keep`` of this worker's truth images as uint8 (N,H,W,3) or None).

    ``G`` is a plain module (``GAN.generator()``): a DDP forward would sync buffers, and ranks may
    hold unequal val rows."""
    was = G.training
    G.eval()
    # Every key exists on every rank, in the same order: the all-reduce below must match up even
    # when a rank's shard holds no validation rows.
    sums = {
        k: torch.zeros((), dtype=torch.float64, device=device)
        for k in ("ce", "l1", "batches", "cf_pred", "cf_true", "psnr", "images")
    }
    sums["err_hist"] = torch.zeros(metrics.AUC_MAX + 2, dtype=torch.float64, device=device)
    sums["err_hist_rebal"] = torch.zeros_like(sums["err_hist"])
    kept: List[torch.Tensor] = []
    with torch.no_grad():
        for raw in shard.iter_batches(batch_size=cfg.train.batch_size, batch_format="numpy"):
            batch = to_tensors(raw)
            rgb = batch_rgb(batch)  # (B,H,W,3) uint8 truth
            room = keep - sum(len(k) for k in kept)
            if room > 0:
                kept.append(rgb[:room].cpu())
            b = batches.step_batch(batch, G.logits_stride, cfg.loss.soft_k, cfg.loss.soft_sigma, device=device)
            with batches.autocast(device, cfg.train.amp):
                logits, ab = G(b["L"])
            _accumulate(sums, logits, ab, b, rgb.to(device), prior)
    G.train(was)
    val = metrics.summarise(_all_reduce(sums))
    val["objective"] = metrics.selection_objective(val["auc_rebalanced"], val["cf_gap"])
    return val, (torch.cat(kept) if kept else None)


def _accumulate(sums: Dict[str, torch.Tensor], logits, ab, b: Dict[str, Any], truth_u8: torch.Tensor, prior) -> None:
    """Add one val batch's losses, AuC histograms, colourfulness and PSNR to ``sums``."""
    sums["ce"] += losses.rebalanced_ce(logits, b["target"]).double()
    sums["l1"] += losses.l1(ab, b["ab"]).double()
    sums["batches"] += 1
    true_bins = color.ab_to_bin(b["ab"].permute(0, 2, 3, 1))  # (B,H,W)
    sums["err_hist"] += metrics.error_histogram(ab, b["ab"])
    sums["err_hist_rebal"] += metrics.error_histogram(ab, b["ab"], metrics.rebalance_pixel_weights(true_bins, prior))
    pred_rgb = _rgb_u8(b["L"], ab).double()  # (B,3,H,W) 0..255
    true_rgb = truth_u8.permute(0, 3, 1, 2).double()
    sums["cf_pred"] += metrics.colourfulness(pred_rgb).sum()
    sums["cf_true"] += metrics.colourfulness(true_rgb).sum()
    sums["psnr"] += metrics.psnr(pred_rgb, true_rgb).sum()
    sums["images"] += len(truth_u8)


def _report_epoch(
    gan: cgan.GAN, val: Dict[str, float], epoch: int, step: int, epoch_steps: int, config: Dict[str, Any], rank: int
) -> None:
    """``ray.train.report`` of the epoch's metrics with rank 0's checkpoint (every rank calls it)."""
    report = {f"val_{k}": v for k, v in val.items()}
    report.update({"epoch": epoch, "step": step, "train_steps_epoch": epoch_steps})
    with tempfile.TemporaryDirectory() as tmp:
        ck = None
        if rank == 0:
            checkpoint.save(tmp, gan, step, epoch, config["cfg"], {"mlflow_run_id": config.get("run_id")})
            ck = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report(report, checkpoint=ck)


def _log_epoch(
    tracker: Tracker,
    G: Generator,
    val: Dict[str, float],
    samples: Optional[torch.Tensor],
    epoch: int,
    step: int,
    device,
) -> None:
    """Rank 0: the val metrics and a sample grid of ``G`` into MLflow."""
    if val["images"] == 0:
        log.warning("the validation set yielded no usable image: val metrics are NaN (check data.val / skipped counts)")
    tracker.metrics({f"val/{k}": v for k, v in val.items()} | {"epoch": epoch}, step)
    if samples is not None:
        tracker.image(sample_grid(G, samples, device), f"samples/epoch_{epoch:03d}.png")


def sample_grid(G: Generator, rgb: torch.Tensor, device, temperature: Optional[float] = None) -> bytes:
    """PNG: one row per image, grey input | prediction | truth."""
    was = G.training
    G.eval()
    with torch.no_grad():
        b = batches.batch_from_rgb(rgb, G.logits_stride, device=device)
        _, ab = G(b["L"], temperature)
        pred = _rgb_u8(b["L"], ab).permute(0, 2, 3, 1).cpu().numpy()
    G.train(was)
    grey_u8 = color.L_to_u8(scaling.input_to_L(b["L"][:, 0])).cpu().numpy()  # L (what G sees) as grey levels
    grey = np.repeat(grey_u8[..., None], 3, -1)
    truth = rgb.cpu().numpy()
    rows = [np.concatenate([gr, p, t], 1) for gr, p, t in zip(grey, pred, truth, strict=True)]
    buf = io.BytesIO()
    Image.fromarray(np.concatenate(rows, 0)).save(buf, "PNG")
    return buf.getvalue()


def _write_ids(folder: str, epoch: int, rank: int, ids, s3: storage.S3Settings) -> None:
    """The ids this worker trained on this epoch, one per line: an audit of exactly-once coverage."""
    uri = f"{folder.rstrip('/')}/epoch{epoch:04d}-rank{rank:03d}.txt"
    storage.write_bytes_atomic(uri, ("\n".join(ids) + "\n").encode(), s3)


def _tag_worker_nodes(rank: int, tracker: Tracker) -> None:
    """Record where the run actually ran: the Ray node of every rank (all-gathered; every rank calls it)."""
    node = ray.get_runtime_context().get_node_id()
    nodes = [node]
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        nodes = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(nodes, node)
    if rank == 0:
        tracker.tags({"ray.worker_nodes": len(set(nodes)), "ray.world_size": len(nodes)})


# ----------------------------------------------------------------------------- driver side


def cpus_per_data_task(cfg: ExperimentConfig) -> float:
    """CPUs per Ray Data task: fractional when training runs on CPUs, sharing the machine with
    the data pipeline (workers holding every CPU would starve the reads and hang the job)."""
    return 1.0 if cfg.train.use_gpu else 0.25


def storage_for(path: str, s3: storage.S3Settings):
    """(storage_path, storage_filesystem) for RunConfig: local paths made absolute, ``s3://`` as it
    is; with an S3 endpoint or region set, a scheme-less path plus an explicit pyarrow
    S3FileSystem built from them (Ray's own resolution would ignore both)."""
    if storage.is_s3(path):
        if s3.endpoint or s3.region:
            return path[len("s3://") :], storage.s3_filesystem(s3)
        return path, None
    return os.path.abspath(path), None


def storage_uri(path: str, storage_path: str) -> str:
    """A path Ray reports inside the storage of ``storage_for(storage_path, s3)`` (a checkpoint,
    a Tune experiment) as the user writes it: ``s3://`` put back when ``storage_path`` is on S3
    (Ray's paths inside a filesystem carry no scheme)."""
    if storage.is_s3(storage_path) and not storage.is_s3(path):
        return "s3://" + path.lstrip("/")
    return path


def build_trainer(
    cfg: ExperimentConfig,
    prior: np.ndarray,
    datasets: Dict[str, Any],
    run_name: str,
    tracking_uri: Optional[str],
    run_id: Optional[str],
    s3: storage.S3Settings,
    callbacks=None,
    init: Optional[Dict[str, Any]] = None,
) -> TorchTrainer:
    storage_path, fs = storage_for(cfg.train.storage_path, s3)
    scaling_config = ScalingConfig(
        num_workers=cfg.train.num_workers,
        use_gpu=cfg.train.use_gpu,
        resources_per_worker={"CPU": cfg.train.cpus_per_worker, **({"GPU": 1} if cfg.train.use_gpu else {})},
        placement_strategy=cfg.train.placement_strategy,
    )
    run_config = RunConfig(
        name=run_name,
        storage_path=storage_path,
        storage_filesystem=fs,
        checkpoint_config=CheckpointConfig(num_to_keep=cfg.train.num_to_keep),
        failure_config=FailureConfig(max_failures=cfg.train.max_failures),
        callbacks=callbacks,
    )
    loop_config = {
        "cfg": cfg.to_dict(),
        "prior": [float(x) for x in prior],
        "tracking_uri": tracking_uri,
        "run_id": run_id,
        "s3": s3.to_dict(),
        "init": init,  # weights of train.init_from (checkpoint.init_weights), shipped to the workers
        "init_from": storage.redact(cfg.train.init_from or ""),
    }
    return TorchTrainer(
        train_loop_per_worker,
        dataset_config=sources.exact_split_data_config(),
        train_loop_config=loop_config,
        scaling_config=scaling_config,
        run_config=run_config,
        datasets=datasets,
    )


@dataclass
class Launched:
    """What ``launch`` hands back: Ray Train's result, the MLflow run id (None when tracking is
    unreachable), what the data layer read (``info``) and the files skipped while training."""

    result: Any  # ray.train.Result
    run_id: Optional[str]
    info: Dict[str, Any]
    skipped: Dict[str, int]


def launch(
    cfg: ExperimentConfig,
    prior: np.ndarray,
    s3: storage.S3Settings,
    tracking_uri: str,
    run_name: str,
    *,
    artifact_dir: Optional[str] = None,
    tags: Optional[Dict[str, Any]] = None,
    artifacts: Sequence[Tuple[str, str]] = (),
    callbacks=None,
) -> Launched:
    """One tracked Ray Train run: start (or resume, by name) its MLflow run with the flat config as
    params, add ``tags`` and ``artifacts`` ((local path, artifact folder) pairs), read the
    datasets, fit, record the skipped files, close the run as FINISHED or FAILED.

    Raises what reading the data or training raised (Train V2's ``fit`` raises
    ``ray.train.TrainingFailedError`` once its retries are spent), Ctrl-C included, after closing
    the MLflow run as FAILED: a run never stays RUNNING because its driver gave up.

    With ``train.init_from`` the weights are read here, once, and the model section comes from
    that checkpoint (its weights fix the architecture)."""
    init = None
    if cfg.train.init_from:
        init, init_config, _ = model_ref.load_init(cfg.train.init_from, tracking_uri)
        cfg = with_model_of(cfg, init_config)
    run_id = tracking.start_or_resume_run(
        tracking_uri, cfg.tracking.experiment, run_name, cfg.flat(), artifact_dir=artifact_dir
    )
    tracker = Tracker(tracking_uri, run_id)
    try:
        if tags:
            tracker.tags(tags)
        for path, folder in artifacts:
            tracker.artifact(path, folder)
        train_ds, val_ds, collector, info = sources.training_datasets(
            cfg.data, s3, cpus_per_task=cpus_per_data_task(cfg)
        )
        tracker.tags({k: str(v) for k, v in info.items()})
        trainer = build_trainer(
            cfg,
            prior,
            {"train": train_ds, "val": val_ds},
            run_name,
            tracking_uri,
            run_id,
            s3,
            callbacks=callbacks,
            init=init,
        )
        result = trainer.fit()
        skipped = _skip_counts(collector)
        tracker.metrics({f"data/skipped_{k}": v for k, v in skipped.items()}, 0)
    except BaseException:
        tracker.finish("FAILED")
        raise
    # Train V1 (RAY_TRAIN_V2_ENABLED=0) hands a failure back as result.error instead of raising.
    tracker.finish("FINISHED" if result.error is None else "FAILED")
    return Launched(result, run_id, info, skipped)


def with_model_of(cfg: ExperimentConfig, checkpoint_config: Dict[str, Any]) -> ExperimentConfig:
    """``cfg`` with the model section of a checkpoint's config (``train.init_from``), said in one
    line when it differs from the one asked for."""
    model = ExperimentConfig.from_dict({"model": checkpoint_config.get("model", {})}).model
    # the shape comes from the weights; how the run decodes and how much noise it trains with stay its own
    model = dataclasses.replace(model, temperature=cfg.model.temperature, dropout=cfg.model.dropout)
    # a run may add hints to an L-only model (its hint channels start at zero); weights with hints keep them
    model = dataclasses.replace(model, hints=model.hints or cfg.model.hints)
    if model != cfg.model:
        log.warning("train.init_from: the model section comes from the checkpoint (preset %s)", model.preset)
    return dataclasses.replace(cfg, model=model)


def _skip_counts(collector) -> Dict[str, int]:
    """{reason: files} the run's SkipCollector counted while training read the data."""
    return ray.get(collector.counts.remote())
