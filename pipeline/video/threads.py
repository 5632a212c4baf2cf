"""The thread pools of a video job, sized once for the machine. Decoding (FFmpeg), the model
(torch), optical flow (OpenCV) and encoding (x264) each size their own pool to every core by
default; run side by side on a small or busy machine they take turns on the cores, and torch's
spinning threads wait on whichever is preempted (measured: 118 s of CPU for 72 frames on 2 busy
cores). Here the model gets all the cores but one, the codecs and the flow one thread each, which
keeps a video's speed when another process holds a core (``bench/video.py --busy-core``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Pools:
    model: int  # torch intra-op threads
    flow: int  # OpenCV's (DIS optical flow, remap)
    decode: int  # FFmpeg's decoder threads
    encode: int  # the encoder's (x264) threads


def machine_cores() -> int:
    """The cores this process may use: its CPU affinity, or fewer when the environment says so
    (a Ray task's ``OMP_NUM_THREADS``: its share of the machine)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    given = os.environ.get("OMP_NUM_THREADS", "")
    return max(1, min(cores, int(given))) if given.isdigit() and int(given) > 0 else cores


def pools_for(cores: int) -> Pools:
    """The pools for ``cores``: the model all but one (one on one or two cores), the rest one each."""
    return Pools(model=max(1, cores - 1), flow=1, decode=1, encode=1 if cores <= 2 else 2)


def share(cores: Optional[int] = None) -> Pools:
    """Size torch's and OpenCV's pools for this process (``cores``: default ``machine_cores()``);
    returns the pools, whose ``decode`` and ``encode`` ``codec.transcode`` takes."""
    import cv2
    import torch

    pools = pools_for(cores or machine_cores())
    torch.set_num_threads(pools.model)
    cv2.setNumThreads(pools.flow)
    return pools
