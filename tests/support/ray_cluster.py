"""A real two-node Ray cluster on this machine: a head and a worker node with distinct ports,
each started with ``ray start --block`` in its own process group and stopped by killing that group
(never ``ray stop``, which kills every Ray process on the host)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List

from support.servers import free_port, stop_group, wait_for_port

RAY = str(Path(sys.executable).with_name("ray"))


def _ports(n: int) -> List[int]:
    return [free_port() for _ in range(n)]


def node_env() -> dict:
    """The environment for `ray` CLI children: no auth, no inherited RAY_ADDRESS, this venv first on PATH."""
    env = dict(os.environ)
    env["RAY_AUTH_MODE"] = "disabled"
    env.pop("RAY_ADDRESS", None)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"  # jobs run this venv's python
    return env


def _node_args(worker_port_base: int, temp_dir: str) -> List[str]:
    """Ports and a temp dir of the node's own: nodes on one host would otherwise share
    runtime_resources/, and one node's agent re-extracting a job's working_dir there races with
    the other node's processes reading it."""
    nm, om, al, ag, me, re = _ports(6)
    return [
        "--temp-dir",
        temp_dir,
        "--node-ip-address",
        "127.0.0.1",
        "--node-manager-port",
        str(nm),
        "--object-manager-port",
        str(om),
        "--dashboard-agent-listen-port",
        str(al),
        "--dashboard-agent-grpc-port",
        str(ag),
        "--metrics-export-port",
        str(me),
        "--runtime-env-agent-port",
        str(re),
        "--min-worker-port",
        str(worker_port_base),
        "--max-worker-port",
        str(worker_port_base + 999),
        "--disable-usage-stats",
        "--block",
    ]


class TwoNodeCluster:
    def __init__(self, tmp: Path, cpus_per_node: int = 2):
        self.tmp = tmp
        self.cpus = cpus_per_node
        self.procs: List[subprocess.Popen] = []
        self.gcs_port, self.dashboard_port, self.client_port = _ports(3)
        # short paths: Ray's unix sockets live under the temp dir (108-byte path limit)
        self.temp_dirs = [tempfile.mkdtemp(prefix="rayh", dir="/tmp"), tempfile.mkdtemp(prefix="rayw", dir="/tmp")]

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def env(self) -> dict:
        """``node_env`` naming this cluster: Ray processes that look for "the" cluster (Ray Train's
        State API calls in its actors) would otherwise find every Ray on the host and fail with
        "Found multiple active Ray instances" whenever another one runs there."""
        return {**node_env(), "RAY_ADDRESS": self.address, "RAY_API_SERVER_ADDRESS": self.dashboard}

    def _start(self, args: List[str], log: str) -> subprocess.Popen:
        out = open(self.tmp / log, "wb")
        p = subprocess.Popen(
            [RAY, "start", *args], stdout=out, stderr=subprocess.STDOUT, env=self.env(), start_new_session=True
        )
        self.procs.append(p)
        return p

    def start(self) -> TwoNodeCluster:
        head = self._start(
            [
                "--head",
                "--port",
                str(self.gcs_port),
                "--num-cpus",
                str(self.cpus),
                "--include-dashboard",
                "true",
                "--dashboard-host",
                "127.0.0.1",
                "--dashboard-port",
                str(self.dashboard_port),
                "--ray-client-server-port",
                str(self.client_port),
                *_node_args(20000, self.temp_dirs[0]),
            ],
            "head.log",
        )
        wait_for_port(self.dashboard_port, 90, head)
        worker_args = ["--address", self.address, "--num-cpus", str(self.cpus), *_node_args(22000, self.temp_dirs[1])]
        worker = self._start(worker_args, "worker.log")
        self.wait_for_nodes(2, 90, worker)
        return self

    def wait_for_nodes(self, n: int, timeout: float, proc=None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"ray node exited: {(self.tmp / 'worker.log').read_text()[-2000:]}")
            r = subprocess.run(
                [RAY, "status", "--address", self.address], capture_output=True, text=True, env=self.env()
            )
            if r.returncode == 0 and r.stdout.count("node_") >= n:
                return
            time.sleep(1)
        raise TimeoutError(f"cluster did not reach {n} nodes in {timeout}s")

    def stop(self) -> None:
        for p in reversed(self.procs):
            stop_group(p, timeout=30)
        for d in self.temp_dirs:
            shutil.rmtree(d, ignore_errors=True)
