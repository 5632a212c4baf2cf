"""Shared fixtures: a local Ray runtime, a real S3 endpoint (moto's server on 127.0.0.1), data paths.

Environment is fixed at import, before any Ray worker or server starts, so children inherit it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

# Token auth would make a second client fail against a head started with it (see DESIGN.md).
os.environ["RAY_AUTH_MODE"] = "disabled"
# Tests start their own Ray; never attach to a cluster someone left running on this host.
os.environ["RAY_ADDRESS"] = "local"
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"
os.environ.pop("MLFLOW_TRACKING_URI", None)  # tests use their own stores, never a user's server
os.environ["DO_NOT_TRACK"] = "true"
# Fake credentials for moto; never real ones in tests.
os.environ["AWS_ACCESS_KEY_ID"] = "testing"
os.environ["AWS_SECRET_ACCESS_KEY"] = "testing-secret"
os.environ["AWS_REGION"] = "us-east-1"
for var in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
    os.environ.pop(var, None)

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
REFERENCE = SHARED / "reference"
DATA = SHARED / "data"
sys.path.insert(0, str(Path(__file__).parent))  # tests/corpus.py


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
    import signal

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


@pytest.fixture(scope="session")
def reference():
    if not (REFERENCE / "pts_in_hull.npy").exists():
        pytest.skip("../shared/reference is not present")
    return REFERENCE


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray runtime for the session; 4 logical CPUs so Data tasks never starve on 2 cores."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=4, log_to_driver=False)  # dashboard on: Train V2 needs the State API
    yield ray
    ray.shutdown()


@contextlib.contextmanager
def _serve(argv, log_path: Path, port: int, timeout: float):
    """Run a server in its own process group, wait for its port, stop the whole group after."""
    log = open(log_path, "wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for_port(port, timeout, proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_group(proc)
        log.close()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3 HTTP endpoint: moto's standalone server on 127.0.0.1, stopped at the end."""
    port = free_port()
    exe = Path(sys.executable).with_name("moto_server")
    with _serve([str(exe), "-H", "127.0.0.1", "-p", str(port)], tmp_path_factory.mktemp("moto") / "moto.log", port, 30) as url:
        yield url


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real MLflow tracking server (sqlite backend, local artifact store it serves) on 127.0.0.1."""
    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    exe = Path(sys.executable).with_name("mlflow")
    argv = [str(exe), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
            "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}", "--artifacts-destination", str(root / "artifacts")]
    with _serve(argv, root / "server.log", port, 120) as url:
        yield url


@pytest.fixture
def s3_client(s3_server):
    import boto3

    return boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")


def upload_dir(client, bucket: str, prefix: str, root: Path) -> None:
    for p in sorted(root.rglob("*")):
        if p.is_file():
            client.put_object(Bucket=bucket, Key=f"{prefix}/{p.relative_to(root).as_posix()}", Body=p.read_bytes())
