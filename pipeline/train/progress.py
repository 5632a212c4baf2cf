"""What a training run tells the person watching it: one line every few steps (epoch and step of
total, the loss terms, images per second, time left), one line per validation, a closing summary.

Pure Python (no Ray, no torch): rank 0 of the training loop prints these lines, the driver prints
the summary. Images per second count training crops over the steps' own time: validation,
checkpoints and start-up are outside it, so it compares with the bare step (``bench/model.py``).
"""

from __future__ import annotations

import math
import time
from typing import Dict, Optional

# The loss terms a step line shows, in this order, when the step reports them.
SHOWN_LOSSES = ("g_ce", "g_adv", "g_l1", "d_loss")


def duration(seconds: float) -> str:
    """``75`` -> "1m15s"; ``4000`` -> "1h06m"; under a minute "42s"."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{(s % 3600) // 60:02d}m"


class EpochClock:
    """Training time and crops of one epoch, validation excluded: ``step_done`` after every step."""

    def __init__(self, crops_per_step: int):
        self.crops_per_step = crops_per_step
        self.start = self.last = time.perf_counter()
        self.steps = 0

    def step_done(self) -> None:
        self.steps += 1
        self.last = time.perf_counter()

    @property
    def seconds(self) -> float:
        """From the clock's start to the end of the last step (what comes after is not a step's time)."""
        return self.last - self.start

    def img_per_s(self) -> float:
        """Crops per second over this epoch's steps so far (all workers)."""
        return self.steps * self.crops_per_step / max(self.seconds, 1e-9)


def step_line(
    epoch: int,
    epochs: int,
    step_in_epoch: int,
    steps_per_epoch: Optional[int],
    losses: Dict[str, float],
    clock: EpochClock,
) -> str:
    """``epoch 2/10  step 40/300  g_ce 2.314  d_loss 0.912  23.1 img/s  4m10s left``."""
    if steps_per_epoch and step_in_epoch > steps_per_epoch:
        steps_per_epoch = None  # the estimate (photo files over batches) was short: no total rather than a wrong one
    of = f"/{steps_per_epoch}" if steps_per_epoch else ""
    parts = [f"epoch {epoch + 1}/{epochs}", f"step {step_in_epoch}{of}"]
    parts += [f"{k} {losses[k]:.3f}" for k in SHOWN_LOSSES if k in losses]
    parts.append(f"{clock.img_per_s():.1f} img/s")
    if steps_per_epoch and clock.steps:
        per_step = clock.seconds / clock.steps
        left = max(steps_per_epoch - step_in_epoch, 0) + (epochs - epoch - 1) * steps_per_epoch
        parts.append(f"{duration(left * per_step)} left (training steps)")
    return "  ".join(parts)


def figures(val: Dict[str, float]) -> str:
    """``AuC 86.1  rebalanced 45.2  PSNR 21.03  colourfulness gap 3.1  objective 43.7``, then
    the guard set's PSNR and objective (``data.val_guard``), then ``at T 0.5`` when validation
    scored several temperatures (``train.val_temperatures``)."""
    line = (
        f"AuC {val['auc']:.1f}  rebalanced {val['auc_rebalanced']:.1f}  PSNR {val['psnr']:.2f}  "
        f"colourfulness gap {val['cf_gap']:.1f}  objective {val['objective']:.1f}"
    )
    if "guard_objective" in val:
        line += f"  guard set: PSNR {val['guard_psnr']:.2f}  objective {val['guard_objective']:.1f}"
    return line + (f"  at T {val['temperature']:g}" if "temperature" in val else "")


def val_line(what: str, val: Dict[str, float], seconds: float, note: str = "") -> str:
    """``val epoch 2: AuC ... objective 43.7 (12s)`` plus a note (best so far, worse than the start)."""
    return f"val {what}: {figures(val)} ({duration(seconds)}){'  ' + note if note else ''}"
