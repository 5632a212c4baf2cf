"""Tune's saved state is code: ``Tuner.restore`` unpickles ``tuner.pkl`` (and the experiment state's
cloudpickle fallbacks, the searcher and callback states) from the sweep folder under
``train.storage_path``, which may be a shared bucket. Whoever can write there would run code on the
driver. This module is the defence.

Trust boundary: the driver's machine and the sweep's local ``--out`` folder are trusted; the storage
path is not. While a sweep runs, :class:`StateRecorder` (a Tune callback, in the driver) records the
SHA-256 of every version of the files Tune restores from, right after Tune writes them to its local
staging folder and launches their upload: Tune uploads nothing it has not first written there, and the
record is updated in the same driver step (``on_step_end`` follows Tune's ``checkpoint()``), so a driver
killed mid-sweep leaves a record that covers what it uploaded. ``tuner.pkl``, written straight to
storage when the Tuner is built, is recorded by the sweep just after. Before a restore,
:func:`check` reads the storage folder's files (exactly the set Ray 2.60 downloads on restore: the
folder's top-level ``*.json`` and ``*.pkl``) and refuses any file whose digest is not in the record,
any file the record does not name, and a missing record; ``--trust-storage`` skips the check.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import posixpath
import tempfile
from typing import Dict, Iterator, List, Optional, Set

import pyarrow.fs as pafs
from ray.tune import Callback

RECORD_NAME = "state_digests.json"


class UntrustedState(ValueError):
    """The sweep's saved Tune state does not match the local record (one line, exit 2)."""


def record_path(out_dir: str, name: str) -> str:
    """Where the digests of sweep ``name`` are kept: the local ``--out`` folder (trusted)."""
    return os.path.join(out_dir, name, RECORD_NAME)


def restored_files(fs: pafs.FileSystem, folder: str) -> List[str]:
    """Names of the files ``Tuner.restore`` reads in the experiment ``folder``: Ray 2.60 downloads
    every top-level ``*.json`` and ``*.pkl`` (``tuner.pkl``, ``experiment_state-*.json``, searcher and
    callback states), the newest experiment state among them."""
    infos = fs.get_file_info(pafs.FileSelector(folder, recursive=False, allow_not_found=True))
    return sorted(
        posixpath.basename(i.path) for i in infos if i.type == pafs.FileType.File and i.path.endswith((".json", ".pkl"))
    )


def _digest(fs: pafs.FileSystem, path: str) -> str:
    h = hashlib.sha256()
    with fs.open_input_stream(path) as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def load_record(path: str) -> Dict[str, Set[str]]:
    """{file name: accepted SHA-256 digests}; empty when there is no record."""
    try:
        with open(path) as f:
            raw = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise UntrustedState(f"the sweep's state record {path} is unreadable ({e})") from None
    return {str(k): set(v) for k, v in raw.get("files", {}).items()}


def _save_record(path: str, record: Dict[str, Set[str]]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".state_digests-")
    with os.fdopen(fd, "w") as f:
        json.dump({"algorithm": "sha256", "files": {k: sorted(v) for k, v in sorted(record.items())}}, f, indent=1)
    os.replace(tmp, path)  # a reader (a restore after a crash) sees the old or the new record, never half


def add_to_record(path: str, fs: pafs.FileSystem, folder: str, names: Optional[List[str]] = None) -> bool:
    """Add the digests of ``names`` (default: every restored file) in ``folder`` to the record at
    ``path``; True if anything was new."""
    record = load_record(path)
    changed = False
    for name in restored_files(fs, folder) if names is None else names:
        try:
            d = _digest(fs, posixpath.join(folder, name))
        except (FileNotFoundError, OSError):
            continue  # being replaced right now: the next step records it
        if d not in record.setdefault(name, set()):
            record[name].add(d)
            changed = True
    if changed:
        _save_record(path, record)
    return changed


def check(fs: pafs.FileSystem, folder: str, path: str, shown: str) -> None:
    """Raise :class:`UntrustedState` unless every file a restore of ``folder`` would read has a
    digest the local record at ``path`` holds. ``shown`` names the folder in the message."""
    record = load_record(path)
    if not record:
        raise UntrustedState(
            f"no local record of sweep state at {path}: refusing to restore (unpickle) {shown}; "
            "pass --trust-storage if you trust whoever can write there"
        )
    for name in restored_files(fs, folder):
        if _digest(fs, posixpath.join(folder, name)) not in record.get(name, ()):
            raise UntrustedState(
                f"{shown}/{name} is not a state this sweep's driver wrote (digest not in {path}): "
                "refusing to restore (unpickle) it; pass --trust-storage if you trust whoever can write there"
            )


class StateRecorder(Callback):
    """Records the digests of Tune's state files each time Tune saves them (see the module doc)."""

    # Where a recorder unpickled from a sweep's tuner.pkl writes (``restoring_into``): the resuming
    # driver's --out, not the first run's.
    _restored_path: Optional[str] = None

    def __init__(self, path: str):
        self.path = path
        self.staging: Optional[str] = None
        self._seen: Dict[str, tuple] = {}

    def __setstate__(self, state: Dict) -> None:
        self.__dict__.update(state)
        if StateRecorder._restored_path is not None:
            self.path = StateRecorder._restored_path

    def _note_staging(self, trials) -> None:
        if self.staging is None:
            for t in trials or ():
                storage = getattr(t, "storage", None)
                if storage is not None:
                    self.staging = storage.experiment_driver_staging_path
                    break

    def _record(self) -> None:
        if self.staging is None or not os.path.isdir(self.staging):
            return
        names = restored_files(pafs.LocalFileSystem(), self.staging)
        stamps = {}
        for n in names:
            try:
                st = os.stat(os.path.join(self.staging, n))
            except OSError:
                continue
            stamps[n] = (st.st_mtime_ns, st.st_size, st.st_ino)
        fresh = [n for n in stamps if self._seen.get(n) != stamps[n]]
        if fresh:
            add_to_record(self.path, pafs.LocalFileSystem(), self.staging, fresh)
            self._seen.update({n: stamps[n] for n in fresh})

    def on_step_end(self, iteration, trials, **info):
        self._note_staging(trials)
        self._record()  # runs right after Tune's checkpoint() in the same controller step

    def on_trial_start(self, iteration, trials, trial, **info):
        self._note_staging([trial])

    def on_experiment_end(self, trials, **info):
        self._note_staging(trials)
        self._record()


@contextlib.contextmanager
def restoring_into(record: str) -> Iterator[None]:
    """Inside, a ``StateRecorder`` that ``Tuner.restore`` unpickles from the sweep's state records
    into ``record`` (this run's --out, wherever the first run kept its record)."""
    StateRecorder._restored_path = record
    try:
        yield
    finally:
        StateRecorder._restored_path = None
