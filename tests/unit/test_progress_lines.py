"""What a training run prints for a person: epoch and step of total, the losses, img/s, time left."""

import time

from pipeline.train import progress


def test_a_step_line_says_where_the_run_is_how_fast_and_how_long_is_left():
    clock = progress.EpochClock(crops_per_step=16)
    for _ in range(20):
        clock.step_done()
    clock.start = clock.last - 10.0  # ten seconds of steps
    line = progress.step_line(1, 3, 20, 100, {"g_ce": 2.31456, "d_loss": 0.9, "other": 1.0}, clock)
    assert line.startswith("epoch 2/3  step 20/100")
    assert "g_ce 2.315" in line and "d_loss 0.900" in line and "other" not in line
    assert "32.0 img/s" in line  # 20 steps x 16 crops over 10 s
    # 80 steps left in this epoch and 100 in the next, at 0.5 s a step
    assert "1m30s left" in line


def test_an_estimate_too_short_shows_no_total_rather_than_a_wrong_one():
    clock = progress.EpochClock(4)
    clock.step_done()
    assert "step 5  " in progress.step_line(0, 1, 5, 3, {}, clock)


def test_durations_read_naturally():
    assert [progress.duration(s) for s in (5, 75, 4000, float("nan"))] == ["5s", "1m15s", "1h06m", "?"]


def test_validation_line_has_the_four_figures():
    val = {"auc": 86.12, "auc_rebalanced": 45.2, "psnr": 21.034, "cf_gap": 3.1, "objective": 43.65}
    line = progress.val_line("epoch 2", val, 12.0, "best so far")
    assert line == (
        "val epoch 2: AuC 86.1  rebalanced 45.2  PSNR 21.03  colourfulness gap 3.1  objective 43.6 (12s)  best so far"
    )


def test_the_clock_counts_only_the_steps_time():
    clock = progress.EpochClock(2)
    time.sleep(0.05)
    clock.step_done()
    seconds = clock.seconds
    assert 0.05 <= seconds < 1 and clock.img_per_s() == 2 / seconds
    time.sleep(0.05)  # validation after the last step: not in the epoch's training time
    assert clock.seconds == seconds
