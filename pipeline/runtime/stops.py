"""Ctrl-C (SIGINT) and SIGTERM stop a job the same way: as an exception, so that every ``finally``
runs (a half-written output's temporary file goes, a temporary folder goes), and the command
prints one line instead of a traceback.

Python already turns SIGINT into KeyboardInterrupt; SIGTERM would kill the process on the spot
(leaving both behind), so ``install`` makes it raise ``Stopped``. ``ray.init`` puts its own SIGTERM
handler in place (``sys.exit``): ``ensure_ray`` calls ``reinstall`` after it.
"""

from __future__ import annotations

import glob
import os
import signal
import threading
from typing import Iterable, Optional

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}  # 128 + the signal, as shells report it
_installed = False


class Stopped(BaseException):
    """A stop signal arrived (a BaseException, as KeyboardInterrupt: ``except Exception`` lets it by)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


def _raise_stopped(signum, frame):
    raise Stopped(signum)


def install() -> None:
    """SIGTERM raises ``Stopped`` in the main thread from now on."""
    global _installed
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_stopped)
        _installed = True


def reinstall() -> None:
    """Put the handler back if a library replaced it (``ray.init`` does), when ``install`` ran."""
    if _installed:
        install()


def signal_of(e: BaseException) -> Optional[int]:
    """The signal a stop exception stands for (KeyboardInterrupt: SIGINT), else None."""
    if isinstance(e, KeyboardInterrupt):
        return signal.SIGINT
    if isinstance(e, Stopped):
        return e.signum
    return None


def message(command: str, e: BaseException) -> str:
    """The one line a stopped command prints."""
    name = signal.Signals(signal_of(e)).name
    return f"{command}: stopped by {name}; outputs not finished were removed"


def remove_partials(targets: Iterable[str]) -> None:
    """Remove the half-written files of local ``targets`` that a killed worker left beside them:
    every writer here writes ``.NAME.<random>.tmp`` in the target's folder and renames it at the end."""
    for target in targets:
        if not target or "://" in target:
            continue  # S3: an object appears only when its upload completes
        folder, name = os.path.split(os.path.abspath(target))
        for partial in glob.glob(os.path.join(glob.escape(folder), "." + glob.escape(name) + ".*.tmp")):
            try:
                os.unlink(partial)
            except OSError:  # gone already, or never ours to remove
                pass
