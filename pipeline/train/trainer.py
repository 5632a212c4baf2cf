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
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, FrozenSet, Iterator, List, Optional, Sequence, Tuple

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
from pipeline.data import priors, sources, storage
from pipeline.gan import batches, cgan, checkpoint, model_ref
from pipeline.train import layout, progress, tracking
from pipeline.train.tracking import Tracker

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------- batches


def to_tensors(raw: Dict[str, np.ndarray]) -> Dict[str, Any]:
    """A numpy batch from Ray Data -> tensors for the image planes, ids kept as a list of str."""
    planes = ("rgb", "L", "ab")
    # Ray hands read-only arrays: copied (a batch is small) rather than given to torch as writable
    out: Dict[str, Any] = {
        k: torch.from_numpy(np.require(v, requirements=("C", "W"))) for k, v in raw.items() if k in planes
    }
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
    """Ray Train entry: config = {"cfg": ExperimentConfig dict, "prior": list, "val_prior": list or
    None, "tracking_uri", "run_id", "s3": S3Settings dict, "init": train.init_from's weights or None,
    "steps_per_epoch"}."""
    cfg = ExperimentConfig.from_dict(config["cfg"])
    if not config.get("verbose"):
        sources.quiet_worker()
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
            say(f"started from {config['init_from']} (discriminator {'too' if d_loaded else 'fresh'})")
    prior_np = np.asarray(config["prior"])  # (Q,)
    prior = torch.tensor(prior_np, dtype=torch.float64, device=device)
    weights = batches.class_weights_tensor(prior_np, cfg.loss, device)
    cgan.record_rebalancing(gan, weights)  # before DDP, which broadcasts buffers from rank 0
    gan.G, gan.D = rtt.prepare_model(gan.G), rtt.prepare_model(gan.D)  # DDP when world > 1
    start_epoch, step, start_val = _resume(gan, device, rank, tracker)
    given = config.get("val_prior")  # train.val_prior; None: validation weighs by the training prior
    val_prior = prior if given is None else torch.tensor(given, dtype=torch.float64, device=device)
    _tag_worker_nodes(rank, tracker)
    run = _Run(cfg, config, rank, device, val_prior, tracker)
    if rank == 0:
        warn_if_scored_otherwise(start_val, validation_scoring(gan.generator(), cfg), cfg.loss.prior)
    # candidate zero, once (a run resumed after a failure has it in its checkpoint); not in Tune,
    # where every report counts as an iteration of ASHA's schedule (max_t is the epochs)
    if (
        config.get("init") is not None
        and start_epoch == 0
        and step == 0
        and start_val is None
        and config.get("score_start", True)
    ):
        start_val = run.score_the_start(gan)  # candidate zero: a run that only gets worse returns its start
    for epoch in range(start_epoch, cfg.train.epochs):
        step, epoch_steps, ids, clock = train_epoch(gan, cfg, epoch, step, weights, device, rank, world, tracker, run)
        if cfg.train.audit_ids_dir:
            _write_ids(cfg.train.audit_ids_dir, epoch, rank, ids, s3)
        run.end_epoch(gan, epoch, step, epoch_steps, clock, start_val)
    if rank == 0 and tracker.active:
        tracking.log_generator(tracker, gan.generator(), cfg, step, cfg.train.epochs - 1)


def say(line: str) -> None:
    """A line for the person watching the run: rank 0's stdout, which Ray forwards to the driver
    (written, not printed: Ray Train routes a worker's print through its loggers as well)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class _Run:
    """One worker's run-wide state between epochs: validation, reports with checkpoints, the
    sample grids and the best score so far (rank 0 prints and logs; every rank validates and reports)."""

    def __init__(self, cfg: ExperimentConfig, config: Dict[str, Any], rank: int, device, prior, tracker):
        self.cfg, self.config, self.rank = cfg, config, rank
        self.device, self.prior, self.tracker = device, prior, tracker
        self.samples: Optional[torch.Tensor] = None  # rank 0's first validation images, drawn again every epoch
        self.best: Optional[Tuple[float, str]] = None  # (score, what) of the best checkpoint so far

    def validate(self, gan: cgan.GAN, start=None):
        """(val metrics of the generator the product uses, at the temperature it scores best at against
        ``start``; every temperature's {T: val}; seconds); keeps the first sample images."""
        t = time.perf_counter()
        keep = self.cfg.tracking.sample_images if (self.rank == 0 and self.samples is None) else 0
        shard = ray.train.get_dataset_shard("val")
        guard = ray.train.get_dataset_shard("guard") if self.config.get("guard") else None
        val, per_t, kept = validate(gan.generator(), shard, self.cfg, self.prior, self.device, keep, start, guard)
        self.samples = kept if self.samples is None else self.samples
        return val, per_t, time.perf_counter() - t

    def score_the_start(self, gan: cgan.GAN) -> Dict[str, Any]:
        """Validate the weights the run starts from and report them as the first checkpoint (epoch -1);
        -> what the run holds its checkpoints to (``start_figures``)."""
        val, per_t, seconds = self.validate(gan)
        start = start_figures(val, per_t, validation_scoring(gan.generator(), self.cfg))
        self._report(gan, val, -1, 0, 0, None, start, "the start", seconds)
        return start

    def end_epoch(self, gan, epoch: int, step: int, epoch_steps: int, clock, start_val) -> None:
        val, _, seconds = self.validate(gan, start_val)
        t = time.perf_counter()
        self._report(gan, val, epoch, step, epoch_steps, clock, start_val, f"epoch {epoch + 1}", seconds)
        if self.rank == 0:
            # where an epoch's wall time goes: its steps, validation, the checkpoint and report
            times = {"train/steps_s": clock.seconds, "train/val_s": seconds}
            times["train/checkpoint_s"] = time.perf_counter() - t
            self.tracker.metrics(times | ({"train/img_per_s": clock.img_per_s()} if clock.steps else {}), step)
            if self.samples is not None:
                grid = sample_grid(gan.generator(), self.samples, self.device)
                self.tracker.image(grid, f"samples/epoch_{epoch:03d}.png")

    def _report(self, gan, val, epoch, step, epoch_steps, clock, start_val, what: str, seconds: float) -> None:
        score, worse = metrics.judged(val, start_val if epoch >= 0 else None)
        if self.best is None or score > self.best[0]:
            self.best = (score, what)
            note = "best so far"
        else:
            note = f"best: {self.best[1]}"
        if worse:
            note += "; worse than the start (" + "; ".join(worse) + ")"
        if self.rank == 0:
            if val["images"] == 0:
                log.warning("the validation set yielded no usable image: val metrics are NaN (check data.val)")
            if val.get("guard_images") == 0:
                log.warning("the guard set yielded no usable image: its figures are NaN (check data.val_guard)")
            say(progress.val_line(what, val, seconds, note))
            self.tracker.metrics({f"val/{k}": v for k, v in val.items()} | {"epoch": epoch, "val/score": score}, step)
        extra = {"score": score, "start": start_val}
        if clock is not None and clock.steps:
            extra["train_img_per_s"] = clock.img_per_s()
        _report_epoch(gan, val, epoch, step, epoch_steps, self.config, self.rank, extra)


def cpu_threads(cfg: ExperimentConfig) -> int:
    """torch threads of a CPU worker: ``train.threads``, else the CPUs Ray gave it (at least 1).
    Ray sets OMP_NUM_THREADS from the worker's CPUs; a worker whose Ray Data reads are light
    (prepared shards) can use more threads than its CPU reservation: set ``train.threads``."""
    return cfg.train.threads or max(1, math.ceil(cfg.train.cpus_per_worker or 1))


def _resume(gan: cgan.GAN, device, rank: int, tracker: Tracker) -> Tuple[int, int, Optional[Dict[str, float]]]:
    """(first epoch, step, the start's val figures) to train from: after the checkpoint Ray Train
    hands this run (a rerun of the same run name, or a restart after a failure), else (0, 0, None)."""
    ckpt = ray.train.get_checkpoint()
    if ckpt is None:
        return 0, 0, None
    with ckpt.as_directory() as d:
        state = checkpoint.restore(d, gan, map_location=device)
        start_val = checkpoint.load_meta(d).get("start")
    if rank == 0:
        say(f"resumed from checkpoint: epoch {state['epoch'] + 1}, step {state['step']}")
        tracker.metrics({"train/resumed_from_epoch": state["epoch"]}, state["step"])
    return state["epoch"] + 1, state["step"], start_val


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
    run: Optional[_Run] = None,
) -> Tuple[int, int, List[str], progress.EpochClock]:
    """One pass over this worker's train shard -> (step after it, steps this epoch, ids trained on,
    the epoch's clock: training crops per second from the first batch on, validation excluded)."""
    shard = ray.train.get_dataset_shard("train")
    rows = shard.iter_batches(
        batch_size=cfg.train.batch_size,
        batch_format="numpy",
        prefetch_batches=2,  # the next batches are read while the step runs
        local_shuffle_buffer_size=cfg.data.shuffle_buffer or None,
        local_shuffle_seed=(cfg.data.seed * 1000 + epoch) * 1000 + rank,
    )
    stride = unwrap(gan.G).logits_stride
    per_epoch = (run.config.get("steps_per_epoch") if run else None) or None
    clock = progress.EpochClock(cfg.train.batch_size * world)
    n, ids = 0, []
    for batch, loss_scale in even_batches(
        map(to_tensors, rows), world, cfg.train.max_steps_per_epoch, lambda: _filler(cfg.data.crop)
    ):
        if n == 0:  # the clock starts at the first batch: the data pipeline's start-up is not a step's time
            clock = progress.EpochClock(cfg.train.batch_size * world)
        if loss_scale:
            ids += batch["id"]
        b = batches.step_batch(batch, stride, cfg.loss.soft_k, cfg.loss.soft_sigma, device=device)
        stats = gan.train_step(b, step, weights, loss_scale=loss_scale)
        step, n = step + 1, n + 1
        clock.step_done()
        if rank == 0 and step % cfg.train.log_every == 0:
            losses = {k: float(v) for k, v in stats.items()}
            tracker.metrics({f"train/{k}": v for k, v in losses.items()}, step)
            say(progress.step_line(epoch, cfg.train.epochs, n, per_epoch, losses, clock))
    return step, n, ids, clock


def _all_reduce(sums: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        for v in sums.values():
            torch.distributed.all_reduce(v)
    return sums


def validate(
    G: Generator,
    shard,
    cfg: ExperimentConfig,
    prior: torch.Tensor,
    device,
    keep: int = 0,
    start=None,
    guard_shard=None,
) -> Tuple[Dict[str, float], Dict[float, Dict[str, float]], Optional[torch.Tensor]]:
    """(val metrics of generator ``G`` over every worker's val shard, all-reduced, with the selection
    objective, at the temperature ``at_best_temperature`` picks of ``G``'s own and
    ``train.val_temperatures`` against ``start``; every temperature's metrics {T: val}; up to
    ``keep`` of this worker's truth images as uint8 (N,H,W,3) or None). With ``guard_shard``
    (``data.val_guard``) each temperature's figures carry the guard set's too (``with_guard``)."""
    temperatures = validation_temperatures(G, cfg)
    rows = shard.iter_batches(batch_size=cfg.train.batch_size, batch_format="numpy")
    per_t, kept = score_validation(G, rows, cfg, prior, device, temperatures, keep)
    if guard_shard is not None:
        guard_rows = guard_shard.iter_batches(batch_size=cfg.train.batch_size, batch_format="numpy")
        per_t = with_guard(per_t, score_validation(G, guard_rows, cfg, prior, device, temperatures)[0])
    return at_best_temperature(per_t, start), per_t, kept


# What validation keeps of the guard set at each temperature, "guard_"-prefixed beside the val figures.
GUARD_FIGURES = ("objective", "auc", "auc_rebalanced", "psnr", "cf_gap", "purple_pct", "purple_true_pct", "images")


def with_guard(
    per_t: Dict[float, Dict[str, float]], guard_per_t: Dict[float, Dict[str, float]]
) -> Dict[float, Dict[str, float]]:
    """``per_t`` with each temperature's guard-set figures added as ``guard_<figure>``: what
    ``metrics.worse_than`` holds a checkpoint to and ``metrics.best_temperature`` checks the purple
    share of. Both are scored at the same temperatures."""
    return {T: {**v, **{f"guard_{k}": guard_per_t[T][k] for k in GUARD_FIGURES}} for T, v in per_t.items()}


def at_best_temperature(per_t: Dict[float, Dict[str, float]], start=None) -> Dict[str, float]:
    """The val metrics of ``per_t``'s ``metrics.best_temperature`` (against ``start``); when there are
    several, with that ``temperature`` and each one's objective as ``objective_t<T>`` (and the guard
    set's as ``guard_objective_t<T>``: what a model shipped at another T scores there)."""
    best = metrics.best_temperature(per_t, start)
    if len(per_t) == 1:
        return dict(per_t[best])
    val = {**per_t[best], "temperature": best}
    for T, v in per_t.items():
        for name in ("objective", "guard_objective"):
            if name in v:
                val[f"{name}_t{metrics.temperature_key(T)}"] = v[name]
    return val


def start_figures(
    val: Dict[str, float], per_t: Dict[float, Dict[str, float]], scoring: Dict[str, Any]
) -> Dict[str, Any]:
    """What a run keeps of its start (candidate zero) to hold its checkpoints to: ``val``, each
    temperature's figures (``by_t``) when validation scored several (``metrics.start_at``), and how
    it was scored (``validation_scoring``)."""
    start = {**val, "scoring": scoring}
    if len(per_t) > 1:
        start["by_t"] = {metrics.temperature_key(T): {**v, "temperature": T} for T, v in per_t.items()}
    return start


def validation_scoring(G: Generator, cfg: ExperimentConfig) -> Dict[str, Any]:
    """How validation scores a checkpoint: its temperatures and the prior of rebalanced AuC. A run
    resumed with other settings compares its checkpoints with a start scored another way."""
    prior = storage.redact(cfg.train.val_prior or cfg.loss.prior)
    scoring = {"temperatures": validation_temperatures(G, cfg), "prior": prior}
    if cfg.data.val_guard:  # only when set: a start recorded without one compares equal without one
        scoring["guard"] = storage.redact(cfg.data.val_guard)
    return scoring


def warn_if_scored_otherwise(start: Optional[Dict[str, Any]], scoring: Dict[str, Any], loss_prior: str) -> None:
    """A line when the start a resumed run holds its checkpoints to was validated otherwise. A start
    that does not say (recorded before validation did) was scored at the model's own T with
    ``loss.prior``."""
    if start is None:
        return
    was = start.get("scoring")
    assumed = was or {"temperatures": scoring["temperatures"][:1], "prior": storage.redact(loss_prior)}
    if assumed == scoring:
        return

    def how(s: Dict[str, Any]) -> str:
        return f"at T {s['temperatures']} with the prior {s['prior']}" + (
            f" and the guard set {s['guard']}" if s.get("guard") else ""
        )

    say(
        f"the start of this run was validated {how(was) if was else 'another way'}; this run validates "
        f"{how(scoring)}: its checkpoints are held to figures scored another way"
    )


def validation_temperatures(G: Generator, cfg: ExperimentConfig) -> List[float]:
    """The decoding temperatures validation scores: ``G``'s own first, then ``train.val_temperatures``,
    each once as its figures are named (``metrics.temperature_key``)."""
    by_key: Dict[str, float] = {}
    for T in (G.temperature, *cfg.train.val_temperatures):
        by_key.setdefault(metrics.temperature_key(T), float(T))
    return list(by_key.values())


def score_validation(
    G: Generator, rows, cfg: ExperimentConfig, prior: torch.Tensor, device, temperatures, keep: int = 0
) -> Tuple[Dict[float, Dict[str, float]], Optional[torch.Tensor]]:
    """({T: val metrics with the selection objective} of generator ``G`` on numpy batches ``rows``
    (raw images or prepared shards), all-reduced across workers, every T decoded from one forward
    pass (``G``'s own T as ``forward`` decodes it: what inference gives); up to ``keep`` truth images
    as uint8 (N,H,W,3) or None).

    ``G`` is a plain module (``GAN.generator()``): a DDP forward would sync buffers, and ranks may
    hold unequal val rows. Every rank scores the same temperatures in the same order."""
    was = G.training
    G.eval()
    sums = {float(T): empty_sums(device) for T in temperatures}
    kept: List[torch.Tensor] = []
    with torch.no_grad():
        for raw in rows:
            batch = to_tensors(raw)
            rgb = batch_rgb(batch)  # (B,H,W,3) uint8 truth
            room = keep - sum(len(k) for k in kept)
            if room > 0:
                kept.append(rgb[:room].cpu())
            b = batches.step_batch(batch, G.logits_stride, cfg.loss.soft_k, cfg.loss.soft_sigma, device=device)
            with batches.autocast(device, cfg.train.amp):
                logits, ab = G(b["L"])  # ab at G's own temperature
            truth = truth_side(logits, b, rgb.to(device), prior)
            for T, t_sums in sums.items():
                ab_t = ab if T == G.temperature else G.ab_from_logits(logits, b["ab"].shape[-2:], T)
                accumulate(t_sums, ab_t, b, truth)
    G.train(was)
    per_t = {}
    for T, t_sums in sums.items():
        v = metrics.summarise(_all_reduce(t_sums))
        v["objective"] = metrics.selection_objective(v["auc_rebalanced"], v["cf_gap"])
        per_t[T] = v
    return per_t, (torch.cat(kept) if kept else None)


def empty_sums(device) -> Dict[str, torch.Tensor]:
    """The sums validation accumulates (``accumulate``), zero. Every key exists on every rank, in
    the same order: the all-reduce must match up even when a rank's shard holds no validation rows."""
    sums = {
        k: torch.zeros((), dtype=torch.float64, device=device)
        for k in ("ce", "l1", "batches", "cf_pred", "cf_true", "psnr", "images", "purple_pred", "purple_true")
    }
    sums["err_hist"] = torch.zeros(metrics.AUC_MAX + 2, dtype=torch.float64, device=device)
    sums["err_hist_rebal"] = torch.zeros_like(sums["err_hist"])
    return sums


def truth_side(logits, b: Dict[str, Any], truth_u8: torch.Tensor, prior) -> Dict[str, torch.Tensor]:
    """One val batch's figures that no decoding temperature changes: the rebalanced CE of its logits,
    each pixel's rebalancing weight (B,H,W), the truth's RGB (B,3,H,W) 0..255, colourfulness and
    purple share, and the image count."""
    true_bins = color.ab_to_bin(b["ab"].permute(0, 2, 3, 1))  # (B,H,W)
    true_rgb = truth_u8.permute(0, 3, 1, 2).double()
    return {
        "ce": losses.rebalanced_ce(logits, b["target"]).double(),
        "weights": metrics.rebalance_pixel_weights(true_bins, prior),
        "rgb": true_rgb,
        "cf_true": metrics.colourfulness(true_rgb).sum(),
        "purple_true": metrics.purple_share(b["ab"].float()).sum(),
        "images": torch.tensor(float(len(truth_u8)), dtype=torch.float64, device=logits.device),
    }


def accumulate(sums: Dict[str, torch.Tensor], ab, b: Dict[str, Any], truth: Dict[str, torch.Tensor]) -> None:
    """Add one val batch's figures at one decoding (``ab`` (B,2,H,W)) to ``sums``: its ab L1, AuC
    histograms, colourfulness, PSNR and purple share, with ``truth_side``'s."""
    for k in ("ce", "cf_true", "purple_true", "images"):
        sums[k] += truth[k]
    sums["l1"] += losses.l1(ab, b["ab"]).double()
    sums["batches"] += 1
    sums["err_hist"] += metrics.error_histogram(ab, b["ab"])
    sums["err_hist_rebal"] += metrics.error_histogram(ab, b["ab"], truth["weights"])
    pred_rgb = _rgb_u8(b["L"], ab).double()  # (B,3,H,W) 0..255
    sums["cf_pred"] += metrics.colourfulness(pred_rgb).sum()
    sums["psnr"] += metrics.psnr(pred_rgb, truth["rgb"]).sum()
    sums["purple_pred"] += metrics.purple_share(ab.float()).sum()


def _report_epoch(
    gan: cgan.GAN,
    val: Dict[str, float],
    epoch: int,
    step: int,
    epoch_steps: int,
    config: Dict[str, Any],
    rank: int,
    extra: Optional[Dict[str, Any]] = None,
) -> None:
    """``ray.train.report`` of the epoch's metrics with rank 0's checkpoint (every rank calls it).
    ``extra``: "score" (what the best checkpoint is kept by), "start" (the start's val figures,
    kept in the checkpoint so a resumed run still compares with them), "train_img_per_s"."""
    extra = extra or {}
    report = {f"val_{k}": v for k, v in val.items()}
    report.update({"epoch": epoch, "step": step, "train_steps_epoch": epoch_steps})
    report["val_score"] = extra.get("score", val["objective"])
    if "train_img_per_s" in extra:
        report["train_img_per_s"] = extra["train_img_per_s"]
    if extra.get("start"):  # the start's figures beside every epoch's (at the epoch's T), for the run's summary
        start = metrics.start_at(extra["start"], val.get("temperature"))
        shown = ("auc", "auc_rebalanced", "psnr", "cf_gap", "objective", "guard_psnr", "guard_objective", "temperature")
        report.update({f"start_{k}": start[k] for k in shown if k in start})
    with tempfile.TemporaryDirectory() as tmp:
        ck = None
        if rank == 0:
            meta = {
                "mlflow_run_id": config.get("run_id"),
                "objective": val["objective"],
                "score": report["val_score"],
                "val": {k: v for k, v in val.items() if isinstance(v, float)},
                "start": extra.get("start"),
            }
            checkpoint.save(tmp, gan, step, epoch, config["cfg"], meta)
            ck = ray.train.Checkpoint.from_directory(tmp)
        ray.train.report(report, checkpoint=ck)


SAMPLE_TILE = 256  # the sample grid's tiles are shown at least this many pixels high


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
    grid = Image.fromarray(np.concatenate(rows, 0))
    scale = max(1, math.ceil(SAMPLE_TILE / max(1, truth.shape[1])))  # tiles large enough to judge colour
    if scale > 1:
        grid = grid.resize((grid.width * scale, grid.height * scale), Image.Resampling.BICUBIC)
    buf = io.BytesIO()
    grid.save(buf, "PNG")
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
    steps_per_epoch: Optional[int] = None,
    val_prior: Optional[List[float]] = None,
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
        # the best checkpoints by val_score (the selection objective, guarded against the start of a
        # fine-tune), besides the latest one, which Ray Train always keeps for resuming
        checkpoint_config=CheckpointConfig(
            num_to_keep=cfg.train.num_to_keep, checkpoint_score_attribute="val_score", checkpoint_score_order="max"
        ),
        failure_config=FailureConfig(max_failures=cfg.train.max_failures),
        callbacks=callbacks,
        # Ray Train's controller and workers print their errors only, unless verbose (its INFO lines
        # are raw reports and checkpoint paths; the run prints its own progress)
        logging_config=ray.train.LoggingConfig(log_level="INFO" if sources.verbose() else "ERROR"),
    )
    loop_config = {
        "cfg": cfg.to_dict(),
        "prior": [float(x) for x in prior],
        "val_prior": val_prior,
        "tracking_uri": tracking_uri,
        "run_id": run_id,
        "s3": s3.to_dict(),
        "init": init,  # weights of train.init_from (checkpoint.init_weights), shipped to the workers
        "init_from": storage.redact(cfg.train.init_from or ""),
        "steps_per_epoch": steps_per_epoch,  # for the progress lines (an estimate: files, not decoded photos)
        "verbose": sources.verbose(),
        "score_start": not callbacks,  # Tune's trials pass their report callback
        "guard": "guard" in datasets,  # data.val_guard's set, read on the driver: every rank scores it
    }
    return TorchTrainer(
        train_loop_per_worker,
        dataset_config=sources.exact_split_data_config(),
        train_loop_config=loop_config,
        scaling_config=scaling_config,
        run_config=run_config,
        datasets=datasets,
    )


def read_val_prior(cfg: ExperimentConfig, s3: storage.S3Settings) -> Optional[List[float]]:
    """``train.val_prior`` read once on the driver for the workers (None: validation weighs by the
    training prior)."""
    if not cfg.train.val_prior:
        return None
    return [float(x) for x in priors.load_prior(priors.resolve_prior_path(cfg.train.val_prior), s3)]


@dataclass
class Launched:
    """What ``launch`` hands back: Ray Train's result, the MLflow run id (None when tracking is
    unreachable), what the data layer read (``info``) and the files skipped while training."""

    result: Any  # ray.train.Result
    run_id: Optional[str]
    info: Dict[str, Any]
    skipped: Dict[str, int]
    cfg: Optional[ExperimentConfig] = None  # the config the run trained with (model of init_from, layout fitted)

    def best(self) -> Optional[Tuple[Any, Dict[str, Any]]]:
        """(checkpoint, its reported metrics) with the highest val_score among those kept, the
        start of a fine-tune included (None when nothing was reported)."""
        kept = [(c, m) for c, m in (self.result.best_checkpoints or []) if "val_score" in m]
        return max(kept, key=lambda cm: cm[1]["val_score"]) if kept else None


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
    given: Optional[FrozenSet[str]] = None,
    val_prior: Optional[Sequence[float]] = None,
) -> Launched:
    """One tracked Ray Train run: start (or resume, by name) its MLflow run with the flat config as
    params, add ``tags`` and ``artifacts`` ((local path, artifact folder) pairs), read the
    datasets, fit, record the skipped files, close the run as FINISHED or FAILED.

    Raises what reading the data or training raised (Train V2's ``fit`` raises
    ``ray.train.TrainingFailedError`` once its retries are spent), Ctrl-C included, after closing
    the MLflow run as FAILED: a run never stays RUNNING because its driver gave up.

    With ``train.init_from`` the weights are read here, once, and the model section comes from
    that checkpoint (its weights fix the architecture). ``given``: the dotted keys the user set
    (``config.given_keys``); the starting model's temperature and working scale are kept unless
    given, and an unset worker layout fits the cluster (None: every key counts as given).
    ``val_prior``: ``train.val_prior`` already read (``read_val_prior``), else it is read here.
    A layout the cluster cannot run (``layout.LayoutError``) stops here, before any Ray Train work."""
    # a bad train.val_prior stops here, before any run starts (a sweep reads it once and passes it)
    read_here = val_prior is None
    val_prior = list(val_prior) if val_prior is not None else read_val_prior(cfg, s3)
    init = None
    if cfg.train.init_from:
        init, init_config, _ = model_ref.load_init(cfg.train.init_from, tracking_uri)
        cfg = with_model_of(cfg, init_config, given)
    cfg = layout.fit(cfg, sources.cluster_nodes(), strict=sources.started_local_ray())
    run_id = tracking.start_or_resume_run(
        tracking_uri, cfg.tracking.experiment, run_name, cfg.flat(), artifact_dir=artifact_dir
    )
    tracker = Tracker(tracking_uri, run_id)
    try:
        if tags:
            tracker.tags(tags)
        for path, folder in artifacts:
            tracker.artifact(path, folder)
        if read_here and cfg.train.val_prior:  # the file validation weighs by, as read on this machine
            val_prior_path = priors.resolve_prior_path(cfg.train.val_prior)
            if not storage.is_s3(val_prior_path):
                tracker.artifact(val_prior_path, "val_prior")
        train_ds, val_ds, collector, info = sources.training_datasets(
            cfg.data, s3, cpus_per_task=layout.cpus_per_data_task(cfg)
        )
        datasets = {"train": train_ds, "val": val_ds}
        guard_ds, guard_files = sources.guard_dataset(cfg.data, s3, collector, layout.cpus_per_data_task(cfg))
        if guard_ds is not None:
            datasets["guard"], info["guard_files"] = guard_ds, guard_files
        tracker.tags({k: str(v) for k, v in info.items()})
        trainer = build_trainer(
            cfg,
            prior,
            datasets,
            run_name,
            tracking_uri,
            run_id,
            s3,
            callbacks=callbacks,
            init=init,
            steps_per_epoch=layout.steps_per_epoch(cfg, info.get("train_files")),
            val_prior=val_prior,
        )
        result = fit_interruptibly(trainer)
        skipped = _skip_counts(collector)
        tracker.metrics({f"data/skipped_{k}": v for k, v in skipped.items()}, 0)
    except BaseException:
        tracker.finish("FAILED")
        raise
    # Train V1 (RAY_TRAIN_V2_ENABLED=0) hands a failure back as result.error instead of raising.
    tracker.finish("FINISHED" if result.error is None else "FAILED")
    return Launched(result, run_id, info, skipped, cfg)


def fit_interruptibly(trainer: TorchTrainer):
    """``trainer.fit()``, from a helper thread when called on the main thread: Ctrl-C (and SIGTERM,
    ``pipeline.runtime.stops``) then reaches the caller as KeyboardInterrupt / Stopped, so the job
    says it stopped and exits 130 / 143 with its checkpoints kept. On the main thread Ray Train
    installs its own SIGINT handler, which ends the process with status 1 and no word. Stopping
    this process ends the run's workers with it (a local Ray goes down with its driver; on a
    cluster, the job's actors end with their driver)."""
    if threading.current_thread() is not threading.main_thread():
        return trainer.fit()  # Tune's trials: Ray Train adds no handler off the main thread either
    box: Dict[str, Any] = {}

    def fit():
        try:
            box["result"] = trainer.fit()
        except BaseException as e:  # handed to the main thread as it is
            box["error"] = e

    thread = threading.Thread(target=fit, name="colorize-fit", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(0.5)
    if "error" in box:
        raise box["error"]
    return box["result"]


def with_model_of(
    cfg: ExperimentConfig, checkpoint_config: Dict[str, Any], given: Optional[FrozenSet[str]] = None
) -> ExperimentConfig:
    """``cfg`` with the model section of a checkpoint's config (``train.init_from``), said in one
    line when it differs from the one asked for. The checkpoint's temperature, hint gain and working
    scale (``data.resize``) are kept unless the run sets them (``given``; None: the run's own are kept);
    its dropout and prior correction are always the run's."""
    start = ExperimentConfig.from_dict({k: checkpoint_config[k] for k in ("model", "data") if k in checkpoint_config})
    model = start.model
    # the shape comes from the weights; how much noise the run trains with stays its own, and so
    # does its prior correction (0 unless set): a shipped model's decoding choice must not reach
    # the adversarial and L1 losses, which see the decoded ab
    model = dataclasses.replace(model, dropout=cfg.model.dropout, prior_correction=cfg.model.prior_correction)
    if given is None or "model.temperature" in given:
        model = dataclasses.replace(model, temperature=cfg.model.temperature)
    if given is None or "model.hint_gain" in given:  # its weights are rescaled to it (checkpoint.apply_init)
        model = dataclasses.replace(model, hint_gain=cfg.model.hint_gain)
    # a run may add hints to an L-only model (its hint channels start at zero); weights with hints keep them
    model = dataclasses.replace(model, hints=model.hints or cfg.model.hints)
    if model != cfg.model:
        log.warning("train.init_from: the model section comes from the checkpoint (preset %s)", model.preset)
    data = cfg.data
    if given is not None and "data.resize" not in given and "data" in checkpoint_config:
        data = dataclasses.replace(data, resize=start.data.resize, crop=min(data.crop, start.data.resize))
        if data.resize != cfg.data.resize:
            log.warning("train.init_from: photos read at the model's own scale, short side %d", data.resize)
    return dataclasses.replace(cfg, model=model, data=data)


def _skip_counts(collector) -> Dict[str, int]:
    """{reason: files} the run's SkipCollector counted while training read the data."""
    return ray.get(collector.counts.remote())
