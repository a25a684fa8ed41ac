"""Ray rollouts: parallel collection, a worker killed mid-collection, training with workers."""

import logging
import os
import signal
from pathlib import Path

import numpy as np
import pytest

from rl_select.rollouts import EpisodeStore, collect_episodes
from rl_select.runs.config import TrainConfig
from rl_select.settings import with_values
from rl_select.train.cost import read_learning_cost

pytestmark = pytest.mark.ray


def config_for(data_root, tiny_model_dir, workers, **extra):
    return TrainConfig.from_dict(
        {
            "tasks": ["tiny_sst"],
            "algo": "cql",
            "data_dir": str(data_root),
            "model": str(tiny_model_dir),
            "device": "cpu",
            "dtype": "float32",
            "workers": workers,
            "seed": 3,
            "env": {"k": 2, "num_candidates": 4, "reward_rows": 4},
            **extra,
        }
    )


def worker_pids() -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if (proc / "cmdline").read_bytes().startswith(b"ray::RolloutWorker"):
                    pids.append(int(proc.name))
            except OSError:
                continue
    return pids


# Float tolerance between processes that run matrix products on different thread counts (a central scorer uses
# every core, a rollout worker one): the same sums in another order differ in the last bits of float32 (3e-8 seen).
CROSS_THREAD_RTOL = 1e-5
CROSS_THREAD_ATOL = 1e-6


def same_episodes(a: EpisodeStore, b: EpisodeStore, *, float_tolerance: bool = False) -> None:
    """Identical episode ids, actions, selections and tasks; floats identical, or equal within the tolerance."""
    assert a.ids() == b.ids()
    for episode_id in a.ids():
        x, y = a.read(episode_id), b.read(episode_id)
        assert set(x) == set(y)
        for key in x:
            message = f"episode {episode_id} {key}"
            if float_tolerance and np.issubdtype(x[key].dtype, np.floating):
                np.testing.assert_allclose(
                    x[key], y[key], rtol=CROSS_THREAD_RTOL, atol=CROSS_THREAD_ATOL, err_msg=message
                )
            else:
                np.testing.assert_array_equal(x[key], y[key], err_msg=message)


def test_two_worker_collect_matches_one_worker(ray_cluster, data_root, tiny_model_dir, tmp_path):
    one = collect_episodes(tmp_path / "one", episodes=8, config=config_for(data_root, tiny_model_dir, 1))
    two = collect_episodes(tmp_path / "two", episodes=8, config=config_for(data_root, tiny_model_dir, 2))
    assert two.ids() == list(range(8))
    same_episodes(one, two)
    assert two.meta()["settings"]["env"]["k"] == 2


@pytest.mark.slow  # tens of seconds on two cores: run once, in CI's in-order pass
def test_killed_worker_is_restarted_and_no_episode_is_lost_or_duplicated(
    ray_cluster, data_root, tiny_model_dir, tmp_path, caplog
):
    killed: list[int] = []
    done = [0]

    def progress(description, total):
        def advance(n):
            done[0] += n
            if done[0] >= 3 and not killed:
                pids = worker_pids()
                assert pids, "no rollout worker process found"
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])

        return advance

    caplog.set_level(logging.WARNING, logger="rl_select.rollouts.ray_collect")
    store = collect_episodes(
        tmp_path / "chaos", episodes=16, config=config_for(data_root, tiny_model_dir, 2), progress=progress
    )
    assert killed and killed[0] not in worker_pids()
    assert store.ids() == list(range(16))
    assert sorted(p.name for p in store.episodes.iterdir()) == [f"{i:08d}.npz" for i in range(16)]
    assert "re-runs" in caplog.text  # the killed worker had episodes in flight; they ran again
    reference = collect_episodes(tmp_path / "ref", episodes=16, config=config_for(data_root, tiny_model_dir, 1))
    same_episodes(store, reference)


def test_train_with_ray_workers(ray_cluster, data_root, tiny_model_dir, tmp_path):
    from rl_select.train import train

    config = config_for(
        data_root,
        tiny_model_dir,
        2,
        algo="ppo",
        steps=32,
        n_envs=2,
        ppo_n_steps=16,
        eval_seeds=1,
        best_of_n_sets=2,
        best_of_n_dev_rows=4,
        baselines=["random"],
    )
    result = train(config, tmp_path / "run", progress_bar=False)
    assert [r.name for r in result.reports] == ["ppo (task mode)", "random"]
    assert (tmp_path / "run" / "policy" / "model.zip").is_file()
    # the workers' LLM work is counted (it was lost once: only the driver's own scorer was asked)
    in_process = with_values(config, {"parallel.workers": 0})
    train(in_process, tmp_path / "in-process", progress_bar=False, evaluate=False)
    spent, alone = read_learning_cost(tmp_path / "run"), read_learning_cost(tmp_path / "in-process")
    assert alone.queries > 0
    assert alone.queries <= spent.queries <= 1.2 * alone.queries  # per-worker memory caches: shared work runs twice


@pytest.mark.slow  # tens of seconds on two cores: run once, in CI's in-order pass
def test_central_scorer_placement_collects_the_same_episodes(ray_cluster, data_root, tiny_model_dir, tmp_path):
    per_worker = collect_episodes(tmp_path / "w", episodes=6, config=config_for(data_root, tiny_model_dir, 2))
    central = collect_episodes(
        tmp_path / "c", episodes=6, config=config_for(data_root, tiny_model_dir, 2, scorer_placement="central")
    )
    same_episodes(per_worker, central, float_tolerance=True)


@pytest.mark.slow  # tens of seconds on two cores: run once, in CI's in-order pass
def test_rollout_benchmark_rows_are_typed_and_relative_to_the_fewest_workers(ray_cluster, data_root, tiny_model_dir):
    from rl_select.bench.reports import rollouts_report
    from rl_select.bench.rollouts import rollout_config, run_rollout_benchmark

    env = {"k": 2, "num_candidates": 4, "reward_rows": 4}
    config = rollout_config(
        "tiny_sst", str(data_root), str(tiny_model_dir), "cpu", "float32", None, None, ["worker"], env
    )
    result = run_rollout_benchmark(config, worker_counts=[1, 2], placements=["worker"], episodes=4)
    assert [(r.placement, r.workers, r.episodes) for r in result.rows] == [("worker", 1, 4), ("worker", 2, 4)]
    assert result.rows[0].speedup == 1.0 and result.rows[0].parallel_efficiency == 1.0
    assert result.rows[1].speedup == pytest.approx(result.rows[1].episodes_per_s / result.rows[0].episodes_per_s)
    assert result.fastest in result.rows and result.cluster_cpus == 2
    stored = result.to_dict()
    assert stored["fastest"] == {"placement": result.fastest.placement, "workers": result.fastest.workers}
    assert set(stored["rows"][0]) == {
        "placement",
        "workers",
        "episodes",
        "seconds",
        "episodes_per_s",
        "speedup",
        "parallel_efficiency",
    }
    report = rollouts_report(result, "tiny_sst", 2, 4, 4, 4)
    assert len(report.rows) == 2 and "fastest" in report.markdown
