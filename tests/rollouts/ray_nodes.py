"""Ray nodes started as a user starts them (``ray start`` on loopback), for the cluster tests.

Each node is ``ray start --block`` in its own session, so killing its process group kills that node alone (its
raylet, agents and the workers it spawned) — what a machine that dies looks like to the rest of the cluster.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

RAY = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray") or "ray"
# The head declares a node dead after ~2 s of missed health checks (Ray's default is ~30 s), so tests stay short.
FAST_FAILURE_DETECTION = {
    "RAY_health_check_initial_delay_ms": "0",
    "RAY_health_check_period_ms": "500",
    "RAY_health_check_timeout_ms": "500",
    "RAY_health_check_failure_threshold": "4",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_node(args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
    """``ray start ARGS --block`` in a session of its own."""
    command = [RAY, "start", "--node-ip-address", "127.0.0.1", *args, "--block"]
    return subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )


def processes() -> dict[int, tuple[int, int, bytes]]:
    """Every process: pid -> (parent pid, process group, command line)."""
    table = {}
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
                table[int(proc.name)] = (int(fields[1]), int(fields[2]), (proc / "cmdline").read_bytes())
            except (OSError, ValueError, IndexError):
                continue
    return table


def node_processes(node: subprocess.Popen) -> dict[int, bytes]:
    """The node's processes: its process group and everything they started (Ray workers get groups of their own)."""
    table = processes()
    mine = {pid for pid, (_, group, _) in table.items() if group == node.pid}
    grown = True
    while grown:
        children = {pid for pid, (parent, _, _) in table.items() if parent in mine} - mine
        mine |= children
        grown = bool(children)
    return {pid: table[pid][2] for pid in mine}


def kill_node(node: subprocess.Popen) -> None:
    """SIGKILL every process of the node at once, its workers included: no draining, no goodbye to the head."""
    for pid in node_processes(node):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    node.wait(timeout=30)


def stop_node(node: subprocess.Popen) -> None:
    """Stop a node as ``ray start --block`` expects (SIGTERM), killing what is left after a minute."""
    if node.poll() is None:
        node.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            node.wait(timeout=60)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(node.pid, signal.SIGKILL)


def alive_nodes(address: str) -> int:
    """How many nodes ``ray status`` lists as active (0 when the cluster cannot be reached)."""
    status = subprocess.run([RAY, "status", "--address", address], capture_output=True, text=True)
    if status.returncode != 0 or "Active:" not in status.stdout:
        return 0
    active = status.stdout.split("Active:", 1)[1].split("Pending:", 1)[0]
    return sum(1 for line in active.splitlines() if line.strip().split(" ", 1)[0].isdigit())


def wait_for(condition, what: str, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.5)


def start_head(cpus: int, temp_dir: str) -> tuple[subprocess.Popen, str]:
    """A head node with ``cpus`` CPUs; returns it and its address once it answers."""
    port = free_port()
    args = ["--head", "--port", str(port), "--num-cpus", str(cpus), "--include-dashboard", "false"]
    head = start_node([*args, "--temp-dir", temp_dir], env=FAST_FAILURE_DETECTION)
    address = f"127.0.0.1:{port}"

    def answers() -> bool:
        if head.poll() is not None:
            pytest.fail("the Ray head exited while starting")
        return subprocess.run([RAY, "status", "--address", address], capture_output=True).returncode == 0

    wait_for(answers, "the Ray head to start")
    return head, address
