"""``--address`` reaches a real Ray head started with ``ray start --head`` on loopback."""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from rl_select.rollouts import EpisodeStore

pytestmark = [pytest.mark.ray, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ray_head():
    """A one-CPU Ray head on loopback, started like a user would, stopped (with its processes) afterwards."""
    ray_bin = shutil.which("ray", path=str(Path(sys.executable).parent)) or shutil.which("ray")
    port = free_port()
    temp_dir = tempfile.mkdtemp(prefix="rlray", dir="/tmp")  # short: Ray's socket paths have a length limit
    command = [ray_bin, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port)]
    command += ["--num-cpus", "1", "--include-dashboard", "false", "--temp-dir", temp_dir, "--block"]
    head = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=os.environ.copy()
    )
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        probe = subprocess.run([ray_bin, "status", "--address", address], capture_output=True, text=True)
        if probe.returncode == 0:
            break
        if head.poll() is not None or time.monotonic() > deadline:
            head.kill()
            pytest.fail(f"the Ray head did not start: {probe.stderr.strip()[-300:]}")
        time.sleep(1)
    yield address
    head.send_signal(signal.SIGTERM)  # `ray start --block` drains and stops what it started
    try:
        head.wait(timeout=60)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(head.pid, signal.SIGKILL)
        shutil.rmtree(temp_dir, ignore_errors=True)


def test_collect_runs_on_a_ray_head_given_by_address(ray_head, data_root, tiny_model_dir, tmp_path):
    out = tmp_path / "episodes"
    command = [sys.executable, "-m", "rl_select.cli", "collect", "--task", "tiny_sst", "--data-dir", str(data_root)]
    command += ["--model", str(tiny_model_dir), "--device", "cpu", "--dtype", "float32", "--k", "2", "-M", "4"]
    command += ["--reward-rows", "4", "--episodes", "3", "--workers", "1", "--address", ray_head, "--out", str(out)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert EpisodeStore(out).ids() == [0, 1, 2]
