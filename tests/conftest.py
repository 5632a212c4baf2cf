"""The one conftest: the test environment, the groups by folder, and the shared fixtures (a local
Ray runtime, real S3 and MLflow servers on 127.0.0.1, a tiny checkpoint, data paths).

Groups: tests/unit (no Ray, no servers, fast), tests/ray (a local Ray runtime), tests/services (real
moto S3 / MLflow servers), tests/e2e (clusters, sweeps, slow learning checks). A test's folder is its
marker: ``-m ray`` selects tests/ray, ``-m "not e2e"`` all but the slow group. Helpers: tests/support.

The environment is fixed here, at import, before anything imports pipeline and before any Ray
worker or server starts, so every child inherits it.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

# Token auth would make a second client fail against a head started with it.
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
# The colour lookup table cache (pipeline.core.color) in a folder of this run's own: no state carried
# between runs or shared with a user's ~/.cache. Ray workers and servers inherit it.
CACHE = tempfile.mkdtemp(prefix="colorize-test-cache-")
os.environ["COLORIZE_CACHE"] = CACHE

# Helpers (support.*) are imported inside the fixtures below, after the environment above is set.
TESTS = Path(__file__).resolve().parent
GROUPS = ("unit", "ray", "services", "e2e")
# Fixtures that start Ray or a server: a unit test asking for one is in the wrong folder.
NOT_UNIT = {"ray_local", "s3_server", "s3_client", "mlflow_server"}


def pytest_unconfigure(config):
    shutil.rmtree(CACHE, ignore_errors=True)


def pytest_collection_modifyitems(config, items):
    """Mark each test with its folder's group; refuse Ray or server fixtures in tests/unit."""
    for item in items:
        group = item.path.resolve().relative_to(TESTS).parts[0]
        if group not in GROUPS:
            raise pytest.UsageError(f"{item.nodeid}: tests live in tests/{{{','.join(GROUPS)}}}/")
        if group == "unit":
            heavy = NOT_UNIT & set(getattr(item, "fixturenames", ()))
            if heavy:
                raise pytest.UsageError(f"{item.nodeid} uses {sorted(heavy)}: move it out of tests/unit")
        item.add_marker(getattr(pytest.mark, group))


@pytest.fixture(scope="session")
def reference():
    from support import REFERENCE

    if not (REFERENCE / "pts_in_hull.npy").exists():
        pytest.skip("../shared/reference is not present")
    return REFERENCE


@pytest.fixture(scope="session")
def ckpt(tmp_path_factory):
    """A tiny generator checkpoint folder (see support.training.tiny_generator_checkpoint)."""
    from support.training import tiny_generator_checkpoint

    return tiny_generator_checkpoint(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture
def one_torch_thread():
    """One intra-op thread for the test: on a busy 2-core CI machine torch's spinning threads make a
    tiny model ~20x slower (measured); restored after it."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def corpus_dir(tmp_path_factory):
    """A folder of good, odd-but-valid and bad photos; (root, {"good": [...], "skip": {name: reason}})."""
    from support import corpus

    root = tmp_path_factory.mktemp("corpus")
    return root, corpus.write_corpus(root)


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray runtime for the session; 4 logical CPUs so Data tasks never starve on 2 cores."""
    import ray

    if not ray.is_initialized():
        ray.init(address="local", num_cpus=4, log_to_driver=False)  # dashboard on: Train V2 needs the State API
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3 HTTP endpoint: moto's standalone server on 127.0.0.1, stopped at the end."""
    from support.servers import free_port, serve

    port = free_port()
    exe = Path(sys.executable).with_name("moto_server")
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with serve([str(exe), "-H", "127.0.0.1", "-p", str(port)], log, port, 30) as url:
        yield url


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real MLflow tracking server (sqlite backend, local artifact store it serves) on 127.0.0.1."""
    from support.servers import free_port, serve

    root = tmp_path_factory.mktemp("mlflow")
    port = free_port()
    exe = Path(sys.executable).with_name("mlflow")
    argv = [
        str(exe),
        "server",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
    ]
    with serve(argv, root / "server.log", port, 120) as url:
        yield url


@pytest.fixture
def s3_client(s3_server):
    import boto3

    return boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
