"""Progress bars wherever a person waits (eval's photos, a big photo's steps, a video's frames):
tqdm on stderr when it is a terminal, silent otherwise (logs, pipes, CI), like Ray Data's own bars."""

from __future__ import annotations

import sys
from typing import Callable, Optional

from tqdm import tqdm

BIG_PHOTO_PIXELS = 4_000_000  # a photo above this takes seconds on a CPU: worth showing its steps


def bar(total: Optional[int], desc: str, unit: str, enabled: bool = True) -> tqdm:
    """A bar of ``total`` ``unit``s (None: count without an end); shows rate and time left."""
    return tqdm(
        total=total or None,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        disable=None if enabled else True,  # None: only on a terminal
        dynamic_ncols=True,
        mininterval=0.5,
    )


def frames_callback(b: tqdm) -> Callable[[int, int], None]:
    """``video_io.transcode``'s progress(frames done, frames declared) drawn on ``b``."""

    def update(done: int, declared: int) -> None:
        if declared and b.total != declared:
            b.total = declared
        b.update(done - b.n)

    return update


VERBOSE_ENV = "COLORIZE_VERBOSE"  # "1": what the libraries underneath say too (Ray, PyTorch, ONNX): --verbose
