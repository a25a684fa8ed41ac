"""Collecting random-policy episodes into an episode data set (``rl-select collect``), in-process or with Ray."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from rl_select.provenance import provenance
from rl_select.rollouts.episodes import EpisodeStore, episode_base_seed, run_episode
from rl_select.rollouts.ray_collect import collect_with_ray
from rl_select.runs.setup import build_setup, load_tasks, make_env
from rl_select.types import JsonObject

ProgressFactory = Callable[[str, int], Callable[[int], None]]


def dataset_settings(config: Any) -> JsonObject:
    """What makes two collections interchangeable (stored in ``meta.json`` and checked on reuse)."""
    return {
        "tasks": list(config.tasks),
        "env": config.env.to_dict(),
        "pool_size": config.pool_size,
        "holdout_fraction": config.holdout_fraction,
        "seed": config.seed,
        "model": config.model,
        "data_dir": config.data_dir,
    }


def task_of_episode(config: Any, episode_id: int) -> str:
    """Episodes cycle through the run's tasks."""
    return config.tasks[episode_id % len(config.tasks)]


def collect_episodes(
    out: str | Path,
    *,
    episodes: int,
    config: Any,
    setup: Any = None,
    progress: ProgressFactory | None = None,
) -> EpisodeStore:
    """Collect episodes ``0 .. episodes-1`` (skipping those already stored) of a random policy.

    Args:
        out: Data set directory.
        episodes: Number of episodes the data set should hold.
        config: A :class:`~rl_select.runs.config.TrainConfig` defining tasks and MDP.
        setup: An already built :class:`~rl_select.runs.setup.RunSetup` (in-process collection).
        progress: Progress factory.
    """
    store = EpisodeStore(out)
    store.create({"settings": dataset_settings(config), "provenance": provenance(seeds=[config.seed]).to_dict()})
    done = set(store.ids())
    todo = [e for e in range(episodes) if e not in done]
    advance = progress("collecting episodes", episodes) if progress else None
    if advance is not None and done:
        advance(len(done & set(range(episodes))))
    if not todo:
        return store
    if config.parallel.workers:
        collect_with_ray(config, store, todo, advance)
        return store
    if setup is None:
        setup = build_setup(config, store.path, load_tasks(config))
    envs = {t.name: make_env(setup, t) for t in setup.tasks}
    names = [t.name for t in setup.tasks]
    base = episode_base_seed(config.seed)
    for episode_id in todo:
        env = envs[names[episode_id % len(names)]]
        store.write(run_episode(env, episode_id, base))
        if advance is not None:
            advance(1)
    return store
