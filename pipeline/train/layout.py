"""How many training workers, with how many CPUs each, on the cluster at hand.

Training workers that hold every CPU leave Ray Data none: its read tasks wait forever and the job
hangs without a word. So an unset layout (``train.num_workers`` / ``train.cpus_per_worker`` null)
is fitted to the cluster, leaving the data pipeline its share of each node, and a layout that the
cluster cannot run is refused before Ray Train starts, in one line that names the setting to change.

The arithmetic is plain Python over the nodes' resources (``sources.cluster_nodes`` reads them from Ray).
"""

from __future__ import annotations

import logging
import math
from typing import Dict, List, Optional

from pipeline.config import ExperimentConfig

# Of each node's CPUs, Ray Data's reads keep this share (at least DATA_MIN_CPUS) when training runs
# on CPUs. Ray Data's streaming executor schedules nothing on less than about one CPU of budget
# beside the workers (measured with Ray 2.60 on 2 CPUs: a 1.5-CPU worker starved the reads, two
# 0.5-CPU workers did not), so a layout must leave a whole CPU to the data.
DATA_CPU_SHARE = 0.25
DATA_MIN_CPUS = 1.0


class LayoutError(ValueError):
    """A worker layout the cluster cannot run: one line naming the setting to change."""


def cpus_per_data_task(cfg: ExperimentConfig) -> float:
    """CPUs per Ray Data task: fractional when training runs on CPUs, sharing the machine with
    the data pipeline (workers holding every CPU would starve the reads and hang the job). Half a
    CPU, not less: each concurrent task is a worker process of its own that imports the pipeline
    (with torch), and on a small machine a dozen of them cost more than the reads they do."""
    return 1.0 if cfg.train.use_gpu else 0.5


def _data_reserve(node_cpus: float) -> float:
    return max(DATA_MIN_CPUS, DATA_CPU_SHARE * node_cpus)


def fitted(cfg: ExperimentConfig, nodes: List[Dict[str, float]]) -> ExperimentConfig:
    """``cfg`` with an unset ``num_workers`` / ``cpus_per_worker`` filled for ``nodes``: with
    ``use_gpu`` one worker per GPU and 1 CPU each; on CPUs one worker per node with at least one
    CPU, each reserving its node's CPUs less the data pipeline's share, and (``train.threads``
    unset) running as many torch threads as its node has CPUs per worker: Ray Data's tasks on
    prepared shards are light, and a reservation is not a thread count (a 2-CPU laptop: 1
    worker reserving 1 CPU, 2 torch threads)."""
    t = cfg.train
    if t.num_workers is not None and t.cpus_per_worker is not None:
        return cfg
    cpu_nodes = [n.get("CPU", 0.0) for n in nodes if n.get("CPU", 0.0) >= 1]
    if t.use_gpu:
        workers = t.num_workers or max(1, int(sum(n.get("GPU", 0.0) for n in nodes)))
        cpus = t.cpus_per_worker or 1.0
    else:
        workers = t.num_workers or max(1, len(cpu_nodes))
        smallest = min(cpu_nodes) if cpu_nodes else 1.0
        per_node = max(1, math.ceil(workers / max(1, len(cpu_nodes))))
        cpus = t.cpus_per_worker or max(0.25, math.floor((smallest - _data_reserve(smallest)) / per_node * 4) / 4)
        if t.threads is None:
            threads = max(1, int(smallest // per_node))
            return cfg.replace({"train.num_workers": workers, "train.cpus_per_worker": cpus, "train.threads": threads})
    return cfg.replace({"train.num_workers": workers, "train.cpus_per_worker": cpus})


def problem(cfg: ExperimentConfig, nodes: List[Dict[str, float]]) -> Optional[str]:
    """Why ``cfg``'s layout cannot run on ``nodes`` (None: it can). Workers are placed greedily,
    each wholly on one node; what CPU is left must hold at least one Ray Data task."""
    t = cfg.train
    need = {"CPU": t.cpus_per_worker, **({"GPU": 1.0} if t.use_gpu else {})}
    free = [dict(n) for n in nodes]
    placed = 0
    for node in free:
        while placed < t.num_workers and all(node.get(k, 0.0) >= v - 1e-9 for k, v in need.items()):
            for k, v in need.items():
                node[k] = node.get(k, 0.0) - v
            placed += 1
    total_cpus = sum(n.get("CPU", 0.0) for n in nodes)
    layout = f"train.num_workers={t.num_workers} x train.cpus_per_worker={t.cpus_per_worker:g}"
    unset = "(or leave both unset: they fit the cluster)"
    if placed < t.num_workers:
        what = f"{t.cpus_per_worker:g} CPU" + (" and 1 GPU" if t.use_gpu else "")
        return (
            f"{layout}: only {placed} worker(s) of {what} fit on this Ray cluster "
            f"({total_cpus:g} CPUs, {sum(n.get('GPU', 0.0) for n in nodes):g} GPUs): "
            f"lower train.cpus_per_worker or train.num_workers {unset}"
        )
    left = total_cpus - placed * t.cpus_per_worker
    need = min(DATA_MIN_CPUS, total_cpus / 2)  # a 1-CPU machine still trains, on halves
    if not t.use_gpu and left < need - 1e-9:
        return (
            f"{layout} leave {left:g} of this Ray cluster's {total_cpus:g} CPUs for reading the data, and "
            f"Ray Data needs about {need:g}: set train.cpus_per_worker lower, e.g. "
            f"{max(0.25, (total_cpus - need) / t.num_workers):g} {unset}"
        )
    if max((n.get("CPU", 0.0) for n in free), default=0.0) < cpus_per_data_task(cfg) - 1e-9:
        return (
            f"{layout} take all {total_cpus:g} CPUs of this Ray cluster and leave none for reading the data: "
            f"set train.cpus_per_worker lower {unset}"
        )
    return None


def fit(cfg: ExperimentConfig, nodes: List[Dict[str, float]], strict: bool = True) -> ExperimentConfig:
    """``fitted`` then ``problem``: LayoutError when the layout cannot run and ``strict`` (a local
    Ray: what it has is all there is); on a cluster that may grow (autoscaling) only a warning."""
    cfg = fitted(cfg, nodes)
    why = problem(cfg, nodes)
    if why and strict:
        raise LayoutError(why)
    if why:
        logging.getLogger(__name__).warning("%s; waiting for the cluster to grow", why)
    return cfg


def steps_per_epoch(cfg: ExperimentConfig, train_files: Optional[int]) -> Optional[int]:
    """Steps of one epoch for the progress lines: the training photos over all workers' batches,
    capped by ``train.max_steps_per_epoch`` (None when the count is unknown)."""
    if not train_files:
        return cfg.train.max_steps_per_epoch
    n = math.ceil(train_files / (cfg.train.batch_size * cfg.train.num_workers))
    return min(n, cfg.train.max_steps_per_epoch) if cfg.train.max_steps_per_epoch else n
