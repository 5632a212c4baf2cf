"""A video job sizes the thread pools of the model, the flow and the codecs once, together, for
the cores it has: each library sizing its own to every core made them fight on a busy machine
(the speed with a core busy is measured by bench/video.py --busy-core)."""

from __future__ import annotations

import cv2
import torch

from pipeline.gan import model_ref
from pipeline.video import colorize as job
from pipeline.video import threads
from support.video import pan_frames, write_video


def test_pools_leave_a_core_to_the_codecs_and_others():
    assert threads.pools_for(1) == threads.Pools(model=1, flow=1, decode=1, encode=1)
    assert threads.pools_for(2) == threads.Pools(model=1, flow=1, decode=1, encode=1)
    assert threads.pools_for(16).model == 15


def test_a_ray_tasks_share_of_the_machine_is_what_it_sizes_for(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert threads.machine_cores() == 1


def test_colorize_video_sizes_the_pools_for_the_machine(ckpt, tmp_path):
    src = write_video(tmp_path / "pan.mp4", pan_frames(6, 64, 48))
    G, _ = model_ref.resolve_generator(str(ckpt))
    expected = threads.pools_for(threads.machine_cores())
    before = torch.get_num_threads(), cv2.getNumThreads()
    torch.set_num_threads(expected.model + 1)
    cv2.setNumThreads(expected.flow + 1)
    try:
        job.colorize_video(G, str(src), str(tmp_path / "out.mp4"), 32, None, "flow")
        assert (torch.get_num_threads(), cv2.getNumThreads()) == (expected.model, expected.flow)
    finally:
        torch.set_num_threads(before[0])
        cv2.setNumThreads(before[1])
