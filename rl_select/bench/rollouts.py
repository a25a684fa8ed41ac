"""Rollout throughput with Ray: episodes/s for several worker counts and both scorer placements, one run.

Every configuration gets fresh workers (fresh prefix and reward caches), a warm-up episode per worker outside
the timing (model load, kernel selection), and the same timed episode ids. Per-candidate features are computed
before any timing, so no configuration benefits from another's disk caches.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from rl_select.bench.records import RolloutBench, RolloutRow
from rl_select.rollouts.ray_collect import run_on_workers, stop_workers
from rl_select.rollouts.ray_runtime import ensure_ray
from rl_select.rollouts.workers import start_workers
from rl_select.runs.config import TrainConfig
from rl_select.runs.setup import build_setup, load_tasks, training_candidates

ProgressFactory = Callable[[str, int], Callable[[int], None]]
WARMUP_EPISODE = 1_000_000


def precompute_features(config: Any) -> None:
    """Embeddings and zero-shot features of every training candidate, cached on disk for all workers."""
    with tempfile.TemporaryDirectory() as tmp:
        setup = build_setup(config, Path(tmp), load_tasks(config))
        for task in setup.tasks:
            setup.banks[task.name].static(training_candidates(task, config)[0])


def rollout_config(
    task: str,
    data_dir: str | None,
    model: str | None,
    device: str,
    dtype: str,
    pool_size: int | None,
    address: str | None,
    placements: Sequence[str],
    env: dict[str, Any],
) -> Any:
    """The run configuration the benchmark's episodes use; every placement name checked before Ray starts."""
    base = {"tasks": [task], "algo": "cql", "data_dir": data_dir, "model": model, "device": device, "dtype": dtype}
    config = TrainConfig.from_dict(
        {**base, "pool_size": pool_size, "address": address, "scorer_placement": placements[0], "env": env}
    )
    for name in placements:
        config.with_overrides({"scorer_placement": name})
    load_tasks(config)
    return config


def run_rollout_benchmark(
    config: Any,
    *,
    worker_counts: Sequence[int],
    placements: Sequence[str] = ("worker", "central"),
    episodes: int = 16,
    progress: ProgressFactory | None = None,
) -> RolloutBench:
    """Time ``episodes`` random-policy episodes for each (placement, worker count)."""
    ray = ensure_ray(config.parallel.address)
    precompute_features(config)
    timed: list[RolloutRow] = []
    for placement in placements:
        for count in worker_counts:
            trial = config.with_overrides({"workers": count, "scorer_placement": placement})
            with tempfile.TemporaryDirectory() as tmp:
                workers, central = start_workers(trial, Path(tmp), count)
                try:
                    ray.get([w.run_episode.remote(WARMUP_EPISODE + i) for i, w in enumerate(workers)])
                    advance = progress(f"{placement} scorer · {count} worker(s)", episodes) if progress else None
                    started = time.perf_counter()
                    run_on_workers(workers, list(range(episodes)), lambda record: None, advance)
                    seconds = time.perf_counter() - started
                finally:
                    stop_workers(workers, central)
            timed.append(RolloutRow(placement, count, episodes, seconds, episodes / seconds))
    rows = [_against_fewest(row, timed, min(worker_counts)) for row in timed]
    resources = ray.cluster_resources()
    fastest = max(rows, key=lambda r: r.episodes_per_s)
    return RolloutBench(rows, fastest, resources.get("CPU", 0.0), resources.get("GPU", 0.0))


def _against_fewest(row: RolloutRow, rows: list[RolloutRow], fewest: int) -> RolloutRow:
    """``row`` with its speed-up and parallel efficiency against its placement's fewest-worker row."""
    base = next((r for r in rows if r.placement == row.placement and r.workers == fewest), row)
    speedup = row.episodes_per_s / base.episodes_per_s
    return replace(row, speedup=speedup, parallel_efficiency=speedup / (row.workers / base.workers))
