"""Ray Train glue: the per-worker loop, the trainer, checkpoints and MLflow on rank 0.

The maths lives elsewhere (``pipeline.steps``, ``pipeline.metrics``, ``models``); this module wires
it to Ray: dataset shards in, DDP around G and D, ``ray.train.report`` with a checkpoint each
epoch, resume from the latest checkpoint (Train V2 restores it when a run name is reused).
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
from typing import Any, Dict, Optional

import numpy as np
import ray
import ray.train
import torch
from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from models import Generator, PatchDiscriminator
from pipeline import checkpoint, color, metrics, steps
from pipeline.config import ExperimentConfig
from pipeline.tracking import Tracker

log = logging.getLogger(__name__)

VAL_METRICS = ("auc", "auc_rebalanced", "cf_pred", "cf_true", "cf_gap", "psnr", "ce", "l1", "objective")


# ----------------------------------------------------------------------------- per-worker loop


def _all_reduce(sums: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        for v in sums.values():
            torch.distributed.all_reduce(v)
    return sums


def _rgb255(L_norm: torch.Tensor, ab: torch.Tensor) -> torch.Tensor:
    """(B,1,H,W) L in [-1,1] + (B,2,H,W) ab -> (B,3,H,W) sRGB on 0..255 (float)."""
    lab = torch.cat([(L_norm.float() + 1.0) * 50.0, ab.float()], 1)
    return color.lab_to_rgb_torch(lab, dim=1) * 255.0


def to_tensors(raw: Dict[str, np.ndarray]) -> Dict[str, Any]:
    """A numpy batch from Ray Data -> tensors for the image planes, ids kept as a list of str."""
    out: Dict[str, Any] = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in raw.items() if k in ("rgb", "L", "ab")}
    out["id"] = [str(i) for i in raw.get("id", [])]
    return out


def batch_rgb(batch: Dict[str, Any]) -> torch.Tensor:
    """uint8 (B,H,W,3) sRGB of a raw-image or prepared-shard batch (shards: from the stored L, ab)."""
    if "rgb" in batch:
        return batch["rgb"]
    lab = torch.cat([batch["L"].float()[..., None] * (100.0 / 255.0), batch["ab"].float()], -1)
    return (color.lab_to_rgb_torch(lab) * 255.0).round().clamp(0, 255).to(torch.uint8)


def _filler(crop: int) -> Dict[str, Any]:
    """A one-image batch for a worker whose shard had no rows at all this epoch."""
    return {"rgb": torch.zeros(1, crop, crop, 3, dtype=torch.uint8), "id": []}


_FLAG_GROUP: Dict[str, Any] = {}


def _live_workers(has_batch: bool) -> int:
    """How many workers still have a batch this step (all-reduced; 1/0 without distributed).

    On a CPU (gloo) group even under NCCL: a GPU tensor here would make ``.item()`` wait for the
    previous step's kernels every step."""
    dist = torch.distributed
    if not (dist.is_available() and dist.is_initialized()):
        return int(has_batch)
    if "group" not in _FLAG_GROUP:  # first step: every rank gets here in the same order
        _FLAG_GROUP["group"] = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else None
    t = torch.tensor([1 if has_batch else 0])
    dist.all_reduce(t, group=_FLAG_GROUP["group"])
    return int(t.item())


def validate(G, shard, cfg: ExperimentConfig, prior: torch.Tensor, device, amp: str, keep: int = 0):
    """Val metrics over this worker's shard, all-reduced over workers; plus up to ``keep`` rgb rows."""
    G.eval()
    stride = steps.unwrap(G).logits_stride
    # Every key exists on every rank, in the same order: the all-reduce below must match up even
    # when a rank's shard holds no validation rows.
    sums = {k: torch.zeros((), dtype=torch.float64, device=device)
            for k in ("ce", "l1", "batches", "cf_pred", "cf_true", "psnr", "images")}
    sums["err_hist"] = torch.zeros(metrics.AUC_MAX + 2, dtype=torch.float64, device=device)
    sums["err_hist_rebal"] = torch.zeros_like(sums["err_hist"])
    kept = []
    g = steps.unwrap(G)  # plain module: a DDP forward would sync buffers, and ranks may hold unequal val rows
    with torch.no_grad():
        for raw in shard.iter_batches(batch_size=cfg.train.batch_size, batch_format="numpy"):
            batch = to_tensors(raw)
            rgb = batch_rgb(batch)  # (B,H,W,3) uint8 truth
            if keep and sum(len(k) for k in kept) < keep:
                kept.append(rgb[: keep - sum(len(k) for k in kept)].cpu())
            b = steps.prepare_any(batch, stride, cfg.loss.soft_k, cfg.loss.soft_sigma, device=device)
            with steps.autocast(device, amp):
                logits, ab = g(b["L"])
            from models import losses

            sums["ce"] += losses.rebalanced_ce(logits, b["target"]).double()
            sums["l1"] += losses.l1(ab, b["ab"]).double()
            sums["batches"] += 1
            true_bins = color.ab_to_bin(b["ab"].permute(0, 2, 3, 1))  # (B,H,W)
            sums["err_hist"] += metrics.error_histogram(ab, b["ab"])
            sums["err_hist_rebal"] += metrics.error_histogram(ab, b["ab"], metrics.rebalance_pixel_weights(true_bins, prior))
            pred_rgb = _rgb255(b["L"], ab).round()
            true_rgb = rgb.to(device).permute(0, 3, 1, 2).double()
            sums["cf_pred"] += metrics.colourfulness(pred_rgb).sum()
            sums["cf_true"] += metrics.colourfulness(true_rgb).sum()
            sums["psnr"] += metrics.psnr(pred_rgb, true_rgb).sum()
            sums["images"] += len(rgb)
    G.train()
    sums = _all_reduce(sums)
    return metrics.summarise(sums), (torch.cat(kept) if kept else None)


def sample_grid(G, rgb: torch.Tensor, device, temperature: Optional[float] = None) -> bytes:
    """PNG: one row per image, grey input | prediction | truth."""
    from PIL import Image

    g = steps.unwrap(G)
    was = g.training
    g.eval()
    with torch.no_grad():
        b = steps.prepare_batch(rgb, g.logits_stride, device=device)
        _, ab = g(b["L"], temperature)
        pred = _rgb255(b["L"], ab).round().clamp(0, 255).byte().permute(0, 2, 3, 1).cpu().numpy()
    g.train(was)
    grey = np.repeat(((b["L"][:, 0].cpu().numpy() + 1) * 50 / 100 * 255).clip(0, 255).astype(np.uint8)[..., None], 3, -1)
    # grey shown as L (what the model sees), lightness mapped to 0..255
    truth = rgb.cpu().numpy()
    rows = [np.concatenate([gr, p, t], 1) for gr, p, t in zip(grey, pred, truth)]
    buf = io.BytesIO()
    Image.fromarray(np.concatenate(rows, 0)).save(buf, "PNG")
    return buf.getvalue()


def _write_ids(folder: str, epoch: int, rank: int, ids, s3_endpoint=None) -> None:
    """The ids this worker trained on this epoch, one per line: an audit of exactly-once coverage."""
    from pipeline import storage

    uri = f"{folder.rstrip('/')}/epoch{epoch:04d}-rank{rank:03d}.txt"
    storage.write_bytes_atomic(uri, ("\n".join(ids) + "\n").encode(), storage.S3Settings.from_env(endpoint=s3_endpoint))


def _worker_nodes():
    """Ray node id of every rank (all-gathered), to record where the run actually ran."""
    node = ray.get_runtime_context().get_node_id()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        out = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(out, node)
        return out
    return [node]


def train_loop_per_worker(config: Dict[str, Any]) -> None:
    """Ray Train entry: config = {"cfg": ExperimentConfig dict, "prior": list, "tracking_uri", "run_id"}."""
    import ray.train.torch as rtt

    cfg = ExperimentConfig.from_dict(config["cfg"])
    ctx = ray.train.get_context()
    rank = ctx.get_world_rank()
    device = rtt.get_device()
    amp = cfg.train.amp
    torch.manual_seed(cfg.data.seed)
    G = Generator.from_config(cfg.model)
    D = PatchDiscriminator.from_config(cfg.model)
    if device.type == "cuda":
        G, D = G.to(memory_format=torch.channels_last), D.to(memory_format=torch.channels_last)
    opt_g = torch.optim.Adam(G.parameters(), cfg.optim.lr_g, betas=(cfg.optim.beta1, cfg.optim.beta2), weight_decay=cfg.optim.weight_decay)
    opt_d = torch.optim.Adam(D.parameters(), cfg.optim.lr_d, betas=(cfg.optim.beta1, cfg.optim.beta2), weight_decay=cfg.optim.weight_decay)
    G = rtt.prepare_model(G)
    D = rtt.prepare_model(D)
    tracker = Tracker(config.get("tracking_uri"), config.get("run_id")) if rank == 0 else Tracker(None, None)
    start_epoch, step = 0, 0
    ckpt = ray.train.get_checkpoint()
    if ckpt is not None:  # a rerun of the same run name, or a restart after a failure
        with ckpt.as_directory() as d:
            state = checkpoint.restore(d, G, D, opt_g, opt_d, map_location=device)
        start_epoch, step = state["epoch"] + 1, state["step"]
        if rank == 0:
            log.warning("resumed from checkpoint: epoch %d, step %d", state["epoch"], step)
            tracker.metrics({"train/resumed_from_epoch": state["epoch"]}, step)
    prior = torch.tensor(np.asarray(config["prior"]), dtype=torch.float64, device=device)
    weights = steps.class_weights_tensor(np.asarray(config["prior"]), cfg.loss, device)
    nodes = _worker_nodes()
    if rank == 0:
        tracker.tags({"ray.worker_nodes": len(set(nodes)), "ray.world_size": len(nodes)})
    stride = steps.unwrap(G).logits_stride
    world = ctx.get_world_size()
    samples = None
    for epoch in range(start_epoch, cfg.train.epochs):
        shard = ray.train.get_dataset_shard("train")
        # Ray Data splits rows without dropping any (pipeline.data.exact_split_data_config), so
        # workers may run out at different steps: every step all workers agree how many still have
        # a batch; one that ran out repeats its last batch with zero weight (its filler step only
        # keeps DDP's collectives in step) and the others' losses are scaled by world/live.
        it = iter(shard.iter_batches(batch_size=cfg.train.batch_size, batch_format="numpy",
                                     local_shuffle_buffer_size=cfg.data.shuffle_buffer or None,
                                     local_shuffle_seed=(cfg.data.seed * 1000 + epoch) * 1000 + rank))
        n, last, seen_ids = 0, None, []
        while True:
            raw = None
            if not (cfg.train.max_steps_per_epoch and n >= cfg.train.max_steps_per_epoch):
                raw = next(it, None)
            live = _live_workers(raw is not None)
            if live == 0:
                break
            if raw is not None:
                batch, scale = to_tensors(raw), world / live
                seen_ids += batch["id"]
                last = batch
            else:
                batch, scale = (last or _filler(cfg.data.crop)), 0.0
            b = steps.prepare_any(batch, stride, cfg.loss.soft_k, cfg.loss.soft_sigma, device=device)
            warm = cfg.loss.adv_warmup_steps
            adv_scale = min(1.0, step / warm) if warm else 1.0
            stats = steps.train_step(G, D, opt_g, opt_d, b, cfg.loss, weights, adv_scale, amp, cfg.optim.grad_clip,
                                     sync=False, loss_scale=scale)
            step += 1
            n += 1
            if rank == 0 and step % cfg.train.log_every == 0:
                tracker.metrics({f"train/{k}": float(v) for k, v in stats.items()}, step)
        if cfg.train.audit_ids_dir:
            _write_ids(cfg.train.audit_ids_dir, epoch, rank, seen_ids, cfg.data.s3_endpoint)
        val, kept = validate(G, ray.train.get_dataset_shard("val"), cfg, prior, device, amp,
                             keep=cfg.tracking.sample_images if (rank == 0 and samples is None) else 0)
        if samples is None and kept is not None:
            samples = kept
        if rank == 0 and val["images"] == 0:
            log.warning("the validation set yielded no usable image: val metrics are NaN (check data.val / skipped counts)")
        val["objective"] = metrics.selection_objective(val["auc_rebalanced"], val["cf_gap"])
        report = {f"val_{k}": v for k, v in val.items()}
        report.update({"epoch": epoch, "step": step, "train_steps_epoch": n})
        with tempfile.TemporaryDirectory() as tmp:
            ck = None
            if rank == 0:
                checkpoint.save(tmp, G, D, opt_g, opt_d, step, epoch, config["cfg"], {"mlflow_run_id": config.get("run_id")})
                ck = ray.train.Checkpoint.from_directory(tmp)
            ray.train.report(report, checkpoint=ck)
        if rank == 0:
            tracker.metrics({f"val/{k}": v for k, v in val.items()} | {"epoch": epoch}, step)
            if samples is not None:
                tracker.image(sample_grid(G, samples, device), f"samples/epoch_{epoch:03d}.png")
    if rank == 0 and tracker.active:
        log_generator(tracker, steps.unwrap(G), cfg, step, cfg.train.epochs - 1)


def log_generator(tracker: Tracker, G: Generator, cfg: ExperimentConfig, step: int = 0, epoch: int = 0) -> None:
    """The trained generator as an MLflow model, registered (and aliased) when configured.

    Saved as a pyfunc "model from code" (``pipeline/serving.py``) with the generator's weights as a
    plain checkpoint artifact: loading runs no pickle (``colorize infer``/``eval`` read the
    checkpoint with weights_only=True), and the registry entry works with ``mlflow.pyfunc`` too.
    """

    def go(client):
        # Client calls only: the fluent API (mlflow.set_tracking_uri, start_run) would leave this
        # process's global tracking URI, and MLFLOW_TRACKING_URI, pointing at this run's server.
        import mlflow.pyfunc
        from mlflow.exceptions import MlflowException

        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        with tempfile.TemporaryDirectory() as tmp:
            ckpt, model_dir = os.path.join(tmp, "checkpoint"), os.path.join(tmp, "generator")
            checkpoint.save_generator(ckpt, G, step, epoch, cfg.to_dict())
            mlflow.pyfunc.save_model(
                model_dir,
                python_model=os.path.join(root, "pipeline", "serving.py"),
                artifacts={"checkpoint": ckpt},
                code_paths=[os.path.join(root, "pipeline"), os.path.join(root, "models")],
            )
            client.log_artifacts(tracker.run_id, model_dir, "generator")
        name = cfg.tracking.register_as
        if name:
            try:
                client.create_registered_model(name)
            except MlflowException as e:
                if e.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
            source = f"{client.get_run(tracker.run_id).info.artifact_uri}/generator"
            version = client.create_model_version(name, source, run_id=tracker.run_id)
            if cfg.tracking.register_alias:
                client.set_registered_model_alias(name, cfg.tracking.register_alias, version.version)

    tracker._call("log model", go)


# ----------------------------------------------------------------------------- driver side


def storage_for(path: str, s3_endpoint: Optional[str] = None):
    """(storage_path, storage_filesystem) for RunConfig: plain paths and AWS ``s3://`` as they are;
    with a custom S3 endpoint, a scheme-less path plus an explicit pyarrow S3FileSystem."""
    from pipeline import storage

    if storage.is_s3(path):
        s3 = storage.S3Settings.from_env(endpoint=s3_endpoint)
        if s3.endpoint:
            return path[len("s3://") :], storage.s3_filesystem(s3)
        return path, None
    return os.path.abspath(path), None


def build_trainer(cfg: ExperimentConfig, prior: np.ndarray, datasets: Dict[str, Any], run_name: str,
                  tracking_uri: Optional[str], run_id: Optional[str], callbacks=None) -> TorchTrainer:
    storage_path, fs = storage_for(cfg.train.storage_path, cfg.data.s3_endpoint)
    scaling = ScalingConfig(
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
    from pipeline import data as rdata

    return TorchTrainer(
        train_loop_per_worker,
        dataset_config=rdata.exact_split_data_config(),
        train_loop_config={"cfg": cfg.to_dict(), "prior": [float(x) for x in prior], "tracking_uri": tracking_uri, "run_id": run_id},
        scaling_config=scaling,
        run_config=run_config,
        datasets=datasets,
    )
