"""What a job prints of Ray's worker output without --verbose: the run's own lines, not Ray talking
to itself (C++ log lines, notices about its own actors, Ray Data's stop traceback)."""

from pipeline.data import sources

RAY_TALK = [
    "[2026-12-07 04:07:11,060 E 4443 4672] core_worker.cc:2465: Actor with class name: 'PreemptionWatcher' and ID:"
    " 'c3' has constructor arguments in the object store and max_restarts > 0. If the arguments in the object store",
    "[2026-12-07 04:08:33,642 I 6165 6165] logging.cc:303: Set ray log level from environment variable",
    "WARNING: 8 PYTHON worker processes have been started on node: 2f8c with address: 192.0.2.2, which is 4x",
    "Progress bars disabled. To enable, set `ray.data.DataContext.get_current().enable_progress_bars = True`.",
]
STOP_TRACE = [
    "Exception in thread pool-1/completion-signaler:",
    "Traceback (most recent call last):",
    '  File "/x/ray/data/_internal/util.py", line 1082, in put',
    "    raise InterruptedError()",
    "InterruptedError",
]
OURS = [
    "epoch 1/40  step 10/150  g_ce 4.320  3.2 img/s  8h24m left (training steps)",
    "val the start: AuC 85.3  rebalanced 50.4  PSNR 21.39  colourfulness gap 19.8  objective 40.6 (1m23s)",
    "Traceback (most recent call last):",  # a traceback of the run's own is shown
    "ValueError: data.crop=300 exceeds the prepared size",
]


def test_only_the_runs_own_lines_remain():
    state = {}
    assert sources._without_self_talk(RAY_TALK + OURS[:2] + STOP_TRACE + OURS[2:], state) == OURS


def test_a_traceback_from_the_same_thread_that_ends_otherwise_is_shown_whole():
    other = STOP_TRACE[:-1] + ["OSError: connection reset"]
    state = {}
    assert sources._without_self_talk(other + OURS[:1], state) == other + OURS[:1]
    assert sources._without_self_talk(OURS[1:2], state) == OURS[1:2]  # nothing held back after it


def test_the_stop_traceback_is_dropped_across_batches_of_lines():
    state = {}
    assert sources._without_self_talk(OURS[:1] + STOP_TRACE[:2], state) == OURS[:1]
    assert sources._without_self_talk(STOP_TRACE[2:] + OURS[1:2], state) == OURS[1:2]
