"""A Ray cluster of two nodes on loopback; the worker node dies mid-run (docs/ray.md states these guarantees).

* ``collect``: the run goes on without the dead node — the episodes its worker had in flight run again on the
  surviving node — and the data set ends with every episode exactly once, equal to an undisturbed collection.
* ``train``: the run stops with one line saying what was kept; ``train --resume`` on the surviving cluster
  continues from the last checkpoint and finishes.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from rl_select.policies.checkpoints import latest_checkpoint
from rl_select.rollouts import EpisodeStore
from tests.rollouts.ray_nodes import (
    alive_nodes,
    kill_node,
    node_processes,
    start_head,
    start_node,
    stop_node,
    wait_for,
)
from tests.rollouts.test_ray_collect import same_episodes

pytestmark = [pytest.mark.ray, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[2]
EPISODES = 500


@pytest.fixture(scope="module")
def head():
    """A head node with 2 CPUs, shared by the tests of this module (each adds a worker node and kills it)."""
    temp_dir = tempfile.mkdtemp(prefix="rlray", dir="/tmp")  # short: Ray's socket paths have a length limit
    node, address = start_head(cpus=2, temp_dir=temp_dir)
    try:
        yield address
    finally:
        stop_node(node)
        shutil.rmtree(temp_dir, ignore_errors=True)


@pytest.fixture
def two_nodes(head):
    """The head and a worker node with 1 CPU: two rollout workers land one on each (SPREAD)."""
    worker_node = start_node(["--address", head, "--num-cpus", "1"])
    try:
        wait_for(lambda: alive_nodes(head) == 2, "the worker node to join")
        yield head, worker_node
    finally:
        stop_node(worker_node)
        wait_for(lambda: alive_nodes(head) == 1, "the head to see the worker node gone")


def rollout_workers_on(node: subprocess.Popen) -> list[int]:
    """Pids of the rollout workers running on the node."""
    return [pid for pid, command in node_processes(node).items() if command.startswith(b"ray::RolloutWorker")]


def checkpoint_steps(checkpoints: Path) -> int:
    latest = latest_checkpoint(checkpoints, "ppo")
    return latest.steps if latest else -1


def running(run: subprocess.Popen) -> bool:
    """True while the command runs; fails the test at once when it has stopped."""
    if run.poll() is not None:
        pytest.fail(f"the command stopped early (exit {run.returncode})")
    return True


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "rl_select.cli", *args]


def common(data_root: Path, model: Path) -> list[str]:
    args = ["--task", "tiny_sst", "--data-dir", str(data_root), "--model", str(model), "--device", "cpu"]
    return [*args, "--dtype", "float32", "--k", "2", "-M", "4", "--reward-rows", "4", "--seed", "3"]


def on_cluster(address: str) -> list[str]:
    return ["--workers", "2", "--address", address]


def test_collect_keeps_every_episode_exactly_once_when_a_worker_node_dies(
    two_nodes, data_root, tiny_model_dir, tmp_path
):
    address, worker_node = two_nodes
    out, log_path = tmp_path / "episodes", tmp_path / "collect.log"
    command = cli("collect", *common(data_root, tiny_model_dir), "--episodes", str(EPISODES), "--out", str(out))
    with log_path.open("w") as log:
        run = subprocess.Popen([*command, *on_cluster(address)], stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        store = EpisodeStore(out)
        wait_for(
            lambda: running(run) and rollout_workers_on(worker_node) and len(store.ids()) >= 5, "both nodes to collect"
        )
        assert run.poll() is None, "the collection finished before the node could be killed"
        kill_node(worker_node)
        returncode = run.wait(timeout=600)
    output = log_path.read_text()
    assert returncode == 0 and "Traceback" not in output, output[-2000:]

    assert store.ids() == list(range(EPISODES))  # every episode, each once: one file per id, no leftovers
    assert sorted(p.name for p in store.episodes.iterdir()) == [f"{i:08d}.npz" for i in range(EPISODES)]
    undisturbed = tmp_path / "undisturbed"
    in_process = cli(
        "collect", *common(data_root, tiny_model_dir), "--episodes", str(EPISODES), "--out", str(undisturbed)
    )
    assert subprocess.run(in_process, capture_output=True, cwd=REPO).returncode == 0
    same_episodes(store, EpisodeStore(undisturbed), float_tolerance=True)  # re-run episodes equal the lost ones


def test_training_resumes_on_the_surviving_node_after_a_worker_node_dies(
    two_nodes, data_root, tiny_model_dir, tmp_path
):
    address, worker_node = two_nodes
    run_dir = tmp_path / "run"
    settings = ["--algo", "ppo", "--steps", "1500", "--n-envs", "2", "--ppo.n-steps", "16", "--checkpoint-every", "32"]
    settings += ["--eval-seeds", "1", "--eval-rows", "8", "--evaluation.baselines", "random"]
    command = cli("train", *common(data_root, tiny_model_dir), *on_cluster(address), *settings, "--out", str(run_dir))
    checkpoints, log_path = run_dir / "checkpoints", tmp_path / "train.log"
    with log_path.open("w") as log:
        run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=log, cwd=REPO)
        wait_for(
            lambda: running(run) and rollout_workers_on(worker_node) and checkpoint_steps(checkpoints) > 0,
            "training on both nodes to write a checkpoint past step 0",
            timeout=300,
        )
        assert run.poll() is None, "training finished before the node could be killed"
        kill_node(worker_node)
        returncode = run.wait(timeout=300)
    stderr = log_path.read_text()
    assert returncode != 0
    last = stderr.strip().splitlines()[-1]
    assert "node" in last and f"continue with rl-select train --resume {run_dir}" in last, stderr[-2000:]
    assert "Traceback" not in stderr
    kept = latest_checkpoint(checkpoints, "ppo")
    assert kept is not None and 0 < kept.steps < 1500

    resumed = subprocess.run(cli("train", "--resume", str(run_dir)), capture_output=True, text=True, cwd=REPO)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert (run_dir / "policy" / "model.zip").is_file() and (run_dir / "results.json").is_file()
