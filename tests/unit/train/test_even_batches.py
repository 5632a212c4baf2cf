"""The even-batches protocol of ``pipeline.train.trainer`` without Ray: workers simulated by threads whose
``live_workers`` is a real all-reduce over a barrier, so every worker's generator runs exactly as
under DDP (same step count on every worker, filler steps with loss scale 0, world/live scales on
the others, ``max_steps_per_epoch`` stops everyone at once). And the gloo flag group follows the
default process group."""

from __future__ import annotations

import threading
from typing import Dict, List, Optional, Sequence, Tuple

import pytest
import torch
import torch.distributed as dist

from pipeline.train import trainer


class BarrierAllReduce:
    """``live_workers`` for ``world`` threads: each step every rank posts its flag, all wait, all
    read the sum (what ``_live_workers`` gets from ``dist.all_reduce``)."""

    def __init__(self, world: int):
        self.flags = [0] * world
        self.barrier = threading.Barrier(world)
        self.calls = [0] * world

    def for_rank(self, rank: int):
        def live(has_batch: bool) -> int:
            self.calls[rank] += 1
            self.flags[rank] = int(has_batch)
            self.barrier.wait(timeout=10)
            total = sum(self.flags)
            self.barrier.wait(timeout=10)  # nobody posts the next step's flag before all have read
            return total

        return live


def batches(rank: int, n: int):
    return iter([{"id": [f"w{rank}b{k}"]} for k in range(n)])


def run_workers(
    counts: Sequence[int], max_steps: Optional[int] = None, filler=lambda: {"id": ["filler"]}
) -> Tuple[List[List[Tuple[Dict, float]]], BarrierAllReduce, list]:
    """Every worker's (batch, loss_scale) list, the all-reduce (its call counts) and the sources."""
    world = len(counts)
    reduce = BarrierAllReduce(world)
    sources = [batches(r, n) for r, n in enumerate(counts)]
    out: List[List[Tuple[Dict, float]]] = [[] for _ in counts]
    errors = []

    def worker(rank: int) -> None:
        try:
            gen = trainer.even_batches(sources[rank], world, max_steps, filler, live_workers=reduce.for_rank(rank))
            out[rank] = list(gen)
        except BaseException as e:  # surfaced below: a thread's exception is otherwise lost
            errors.append(e)
            reduce.barrier.abort()

    threads = [threading.Thread(target=worker, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    return out, reduce, sources


def ids(steps):
    return [(b["id"][0] if b["id"] else None, s) for b, s in steps]


def test_a_worker_with_more_batches_keeps_the_others_in_step():
    out, reduce, _ = run_workers([3, 1, 2])
    # step 0: all 3 live (scale 3/3); step 1: workers 0 and 2 (3/2); step 2: worker 0 alone (3/1)
    assert ids(out[0]) == [("w0b0", 1.0), ("w0b1", 1.5), ("w0b2", 3.0)]
    assert ids(out[1]) == [("w1b0", 1.0), ("w1b0", 0.0), ("w1b0", 0.0)], "ran out: its last batch again, weight 0"
    assert ids(out[2]) == [("w2b0", 1.0), ("w2b1", 1.5), ("w2b1", 0.0)]
    assert reduce.calls == [4, 4, 4], "every worker asks once a step, plus the step where nobody has a batch"
    for step in range(3):  # DDP averages world gradients: the scales make it the mean over the live ones
        assert sum(out[r][step][1] for r in range(3)) == pytest.approx(3.0)


def test_a_worker_without_any_batch_steps_on_filler():
    crop = 16
    out, _, _ = run_workers([2, 0], filler=lambda: trainer._filler(crop))
    assert ids(out[0]) == [("w0b0", 2.0), ("w0b1", 2.0)]
    assert [s for _, s in out[1]] == [0.0, 0.0]
    for b, _ in out[1]:  # train._filler: one black image of the crop size, no ids (nothing to audit)
        assert b["rgb"].shape == (1, crop, crop, 3) and b["rgb"].dtype == torch.uint8 and b["id"] == []


def test_max_steps_per_epoch_stops_every_worker_at_once():
    out, reduce, sources = run_workers([5, 1], max_steps=3)
    assert ids(out[0]) == [("w0b0", 1.0), ("w0b1", 2.0), ("w0b2", 2.0)]
    assert ids(out[1]) == [("w1b0", 1.0), ("w1b0", 0.0), ("w1b0", 0.0)]
    assert reduce.calls == [4, 4]
    assert next(sources[0])["id"] == ["w0b3"], "no batch is drawn past max_steps"


def test_no_batches_anywhere_yields_nothing():
    out, reduce, _ = run_workers([0, 0])
    assert out == [[], []] and reduce.calls == [1, 1]


def test_without_distributed_one_worker_counts_itself():
    assert not (dist.is_available() and dist.is_initialized())
    got = list(trainer.even_batches(batches(0, 2), 1, None, lambda: {"id": []}))
    assert ids(got) == [("w0b0", 1.0), ("w0b1", 1.0)]


@pytest.fixture
def process_group(tmp_path, monkeypatch):
    """Start (and re-start) a one-process gloo default group; always destroyed at the end."""
    monkeypatch.setattr(trainer, "_FLAG_GROUP", {})
    monkeypatch.setenv("GLOO_SOCKET_IFNAME", "lo")
    n = [0]

    def start():
        if dist.is_initialized():
            dist.destroy_process_group()
        n[0] += 1
        dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store{n[0]}", rank=0, world_size=1)

    yield start
    if dist.is_initialized():
        dist.destroy_process_group()


def test_live_workers_all_reduces_on_a_gloo_group(process_group):
    process_group()
    assert trainer._live_workers(True) == 1 and trainer._live_workers(False) == 0


def test_the_flag_group_follows_the_default_process_group(process_group, monkeypatch):
    made = []
    monkeypatch.setattr(dist, "get_backend", lambda *a, **k: "nccl")  # as on GPUs: flags need their own gloo group
    monkeypatch.setattr(dist, "new_group", lambda backend: made.append(backend) or object())
    process_group()
    first = trainer._flag_group()
    assert trainer._flag_group() is first and made == ["gloo"], "one flag group per process group"
    process_group()  # a new default group in the same process (a restarted worker group, a second run)
    second = trainer._flag_group()
    assert second is not first and made == ["gloo", "gloo"], "a stale flag group was reused"
