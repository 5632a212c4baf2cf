"""A real two-node Ray cluster on this machine: a head and a worker node with distinct ports,
each started with ``ray start --block`` in its own process group and stopped by killing that group
(never ``ray stop``, which kills every Ray process on the host).

Start-up is made to survive a cold, loaded machine (a fresh 2-core CI runner), where Ray 2.60's
fixed start-up waits can run out: ``ray start`` gives up with "The current node timed out during
startup" when its node has not registered with the GCS in time (``ray/_private/node.py``), and a
raylet aborts when its node's dashboard agent has not written its port file within about 15 s
("Timed out waiting for file .../dashboard_agent_listen_port_<node id>", not configurable). So:
the nodes get a longer registration wait (``RAY_raylet_start_wait_time_s``) and dashboard start-up
wait (``RAY_DASHBOARD_STARTUP_TIMEOUT_S``) through ``node_env``; the worker node starts only once
the head is fully up (its dashboard listening and ``ray status`` listing it); and a node whose
``ray start`` or raylet exits, or that does not join in time, is stopped and started again with
fresh ports and a fresh temp dir, up to ``ATTEMPTS`` times. Every attempt's ``ray start`` output is
kept (``head-1.log``, ``worker-2.log``, ... in the test's folder) and a final failure shows them
all, with the raylet's fatal lines."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, List, Optional

from support.servers import free_port, live_in_group, stop_group

RAY = str(Path(sys.executable).with_name("ray"))
ATTEMPTS = 3  # `ray start` tries per node
NODE_UP_S = 240.0  # per attempt: longer than RAYLET_START_WAIT_S, so a hung start ends in `ray start` exiting
# How long a node's GCS registration may take. Ray 2.60 reads it (RayConfig raylet_start_wait_time_s,
# env RAY_raylet_start_wait_time_s) in GlobalStateAccessor::GetNode, which ``ray start`` calls through
# ``services.get_node`` until its node is registered: one call waits up to this long (the "RPC error:
# Deadline Exceeded" of a timed-out start is that call's deadline), while node.py's own loop around it
# stops retrying after a fixed 30 s. Raising it lengthens the wait a cold machine needs.
RAYLET_START_WAIT_S = 120
# How long the head's ``ray start`` waits for its dashboard to come up before giving up ("Failed to
# start the dashboard"): ray_constants.RAY_DASHBOARD_STARTUP_TIMEOUT_S, 60 s by default.
DASHBOARD_START_WAIT_S = 120


_HANDED_OUT: set = set()


def _ports(n: int) -> List[int]:
    """``n`` free ports, none handed out before in this process: ``free_port`` closes its socket,
    so two calls can get the same port, and ``ray start`` refuses one port for two components."""
    out: List[int] = []
    while len(out) < n:
        port = free_port()
        if port not in _HANDED_OUT:
            _HANDED_OUT.add(port)
            out.append(port)
    return out


def node_env() -> dict:
    """The environment for `ray` CLI children: no auth, no inherited RAY_ADDRESS, this venv first on
    PATH, and start-up waits (node registration, dashboard) long enough for a loaded machine."""
    env = dict(os.environ)
    env["RAY_AUTH_MODE"] = "disabled"
    env.pop("RAY_ADDRESS", None)
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"  # jobs run this venv's python
    env.setdefault("RAY_raylet_start_wait_time_s", str(RAYLET_START_WAIT_S))
    env.setdefault("RAY_DASHBOARD_STARTUP_TIMEOUT_S", str(DASHBOARD_START_WAIT_S))
    return env


def _node_args(worker_port_base: int, temp_dir: str) -> List[str]:
    """Ports and a temp dir of the node's own: nodes on one host would otherwise share
    runtime_resources/, and one node's agent re-extracting a job's working_dir there races with
    the other node's processes reading it."""
    nm, om, al, ag, me, rt = _ports(6)
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
        str(rt),
        "--min-worker-port",
        str(worker_port_base),
        "--max-worker-port",
        str(worker_port_base + 999),
        "--disable-usage-stats",
        "--block",
    ]


_NODE_LINE = re.compile(r"^\s*(\d+)\s+node_\S+\s*$")


def live_node_count(status: str) -> int:
    """Nodes that ``ray status`` lists as Active or Idle (a node that failed shows under "Recent
    failures" with its node_ id too, and must not count)."""
    n, section = 0, None
    for line in status.splitlines():
        head = line.strip()
        if head in ("Active:", "Idle:", "Pending:") or head.startswith("Recent failures"):
            section = head
            continue
        m = _NODE_LINE.match(line)
        if m and section in ("Active:", "Idle:"):
            n += int(m.group(1))
    return n


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _raylet_fatal(temp_dir: str) -> str:
    """The fatal lines (level C) of the node's raylet.out, if any: why a raylet died, e.g. Ray
    2.60's "Timed out waiting for file .../dashboard_agent_listen_port_<node id>" when the node's
    dashboard agent is slower to start than the raylet waits for it."""
    lines = []
    for out in Path(temp_dir).glob("session_2*/logs/raylet.out"):
        for line in out.read_text(errors="replace").splitlines():
            if re.match(r"\[[^]]* C ", line):  # "[time C pid tid] (raylet) file:line: <boilerplate> Check failed: ..."
                head, _, failed = line.partition("Check failed:")
                lines.append(f"{head[: head.find(']') + 1]} {failed.strip() or head}"[:600])
    return "".join(f"\nraylet: {line}" for line in lines)


def _stop_node(proc: subprocess.Popen) -> None:
    """Stop a node's process group. ``stop_group`` does nothing once ``ray start`` itself has exited
    (a failed start), yet its raylet and agents may live on in the group: those get SIGTERM, then
    SIGKILL if they are still there after 10 s."""
    stop_group(proc, timeout=30)
    if not live_in_group(proc.pid):
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while live_in_group(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    if live_in_group(proc.pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


class TwoNodeCluster:
    def __init__(self, tmp: Path, cpus_per_node: int = 2):
        self.tmp = tmp
        self.cpus = cpus_per_node
        self.procs: List[subprocess.Popen] = []
        self.gcs_port, self.dashboard_port, self.client_port = _ports(3)
        self.temp_dirs: List[str] = []  # one per node start attempt, all removed by stop()

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
        with open(self.tmp / log, "wb") as out:  # the child keeps its own copy of the descriptor
            p = subprocess.Popen(
                [RAY, "start", *args], stdout=out, stderr=subprocess.STDOUT, env=self.env(), start_new_session=True
            )
        self.procs.append(p)
        return p

    def _temp_dir(self, prefix: str) -> str:
        # short paths: Ray's unix sockets live under the temp dir (108-byte path limit)
        d = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
        self.temp_dirs.append(d)
        return d

    def _head_args(self, attempt: int) -> List[str]:
        self.gcs_port, self.dashboard_port, self.client_port = _ports(3)  # fresh ones each attempt
        return [
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
            *_node_args(20000 + 1000 * attempt, self._temp_dir("rayh")),
        ]

    def _worker_args(self, attempt: int) -> List[str]:
        return [
            "--address",
            self.address,
            "--num-cpus",
            str(self.cpus),
            *_node_args(24000 + 1000 * attempt, self._temp_dir("rayw")),
        ]

    def _start_node(
        self, role: str, args_for: Callable[[int], List[str]], nodes: int, port: Optional[Callable[[], int]] = None
    ) -> None:
        """Start a node until the cluster lists ``nodes`` nodes (and ``port()`` listens), at most
        ATTEMPTS times; an attempt whose ``ray start`` or raylet exits, or that is not up in
        NODE_UP_S, is stopped, and the next one gets fresh ports and a fresh temp dir."""
        failures = []
        for attempt in range(ATTEMPTS):
            log = f"{role}-{attempt + 1}.log"
            proc = self._start(args_for(attempt), log)
            why = self._wait_up(proc, nodes, NODE_UP_S, port)
            if why is None:
                return
            fatal = _raylet_fatal(self.temp_dirs[-1])  # read before stop() removes the temp dir
            _stop_node(proc)
            self.procs.remove(proc)
            text = (self.tmp / log).read_text(errors="replace")
            failures.append(f"--- {role} attempt {attempt + 1}: {why}; {log} ends:\n{text[-3000:]}{fatal}")
        raise RuntimeError(f"the {role} node did not come up in {ATTEMPTS} attempts\n" + "\n".join(failures))

    def _wait_up(
        self, proc: subprocess.Popen, nodes: int, timeout: float, port: Optional[Callable[[], int]] = None
    ) -> Optional[str]:
        """None once the cluster lists ``nodes`` live nodes on two polls in a row with ``proc``
        (``ray start --block``) still running, and ``port()`` (if given) listens; else why not.
        A raylet that died gives up at once: ``ray start`` would only notice when its wait for the
        node's registration runs out (RAYLET_START_WAIT_S)."""
        deadline = time.monotonic() + timeout
        seen, raylet = 0, False
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return f"`ray start` exited with {proc.returncode}"
            running = {entry.split(" ", 1)[1] for entry in live_in_group(proc.pid)}
            if "raylet" in running:
                raylet = True
            elif raylet or _raylet_fatal(self.temp_dirs[-1]):  # seen and gone, or gone before a poll saw it
                return "its raylet exited"
            if (port is None or _listening(port())) and self.node_count() >= nodes:
                seen += 1
                if seen == 2:
                    return None
            else:
                seen = 0
            time.sleep(1)
        return f"not up after {timeout:.0f}s"

    def node_count(self) -> int:
        """Live nodes per ``ray status`` (0 while the GCS does not answer)."""
        if not _listening(self.gcs_port):  # `ray status` would wait on an absent GCS for a minute
            return 0
        try:
            r = subprocess.run(
                [RAY, "status", "--address", self.address], capture_output=True, text=True, env=self.env(), timeout=30
            )
        except subprocess.TimeoutExpired:
            return 0
        return live_node_count(r.stdout) if r.returncode == 0 else 0

    def start(self) -> TwoNodeCluster:
        try:
            # the head fully up (its raylet registered, the dashboard serving) before a worker joins
            self._start_node("head", self._head_args, 1, port=lambda: self.dashboard_port)
            self._start_node("worker", self._worker_args, 2)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for p in reversed(self.procs):
            _stop_node(p)
        self.procs.clear()
        for d in self.temp_dirs:
            shutil.rmtree(d, ignore_errors=True)
