"""Local processes for the tests: free ports, waiting for a listener, stopping a process group,
serving moto S3 or MLflow on 127.0.0.1, and uploading a folder to a bucket."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator, List


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0, proc=None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


def stop_group(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """Stop a process started with start_new_session=True, and everything it started."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=timeout)


@contextlib.contextmanager
def serve(argv: List[str], log_path: Path, port: int, timeout: float) -> Iterator[str]:
    """Run a server in its own process group, wait for its port, stop the whole group after."""
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_for_port(port, timeout, proc)
            yield f"http://127.0.0.1:{port}"
        finally:
            stop_group(proc)


def upload_dir(client, bucket: str, prefix: str, root: Path) -> None:
    for p in sorted(root.rglob("*")):
        if p.is_file():
            client.put_object(Bucket=bucket, Key=f"{prefix}/{p.relative_to(root).as_posix()}", Body=p.read_bytes())


def live_in_group(pgid: int) -> List[str]:
    """'pid name' of the processes in process group ``pgid`` that still run (zombies excluded)."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # gone meanwhile
            continue
        name, rest = text[text.index("(") + 1 : text.rindex(")")], text[text.rindex(")") + 2 :].split()
        state, group = rest[0], int(rest[2])
        if group == pgid and state != "Z":
            out.append(f"{stat.parent.name} {name}")
    return out


def stop_gracefully(proc: subprocess.Popen, timeout: float = 60.0) -> List[str]:
    """SIGTERM to the server process alone (it shuts down what it started), wait for it, then list
    what is left of its process group; the leftovers are killed. Returns them ('pid name')."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    deadline = time.monotonic() + 10
    left = live_in_group(proc.pid)
    while left and time.monotonic() < deadline:  # children exit a moment after their parent
        time.sleep(0.5)
        left = live_in_group(proc.pid)
    stop_group(proc, timeout=10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    return left
