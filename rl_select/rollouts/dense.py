"""Collecting dense action-row episodes (the data set fitted Q-iteration learns from), resumable."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rl_select.rollouts.behaviour import BehaviourMix, run_dense_episode
from rl_select.rollouts.collect import dataset_settings, episode_base_seed
from rl_select.rollouts.episodes import EpisodeStore
from rl_select.runs.setup import RunSetup, make_env

ProgressFactory = Callable[[str, int], Callable[[int], None]]


def collect_dense(setup: RunSetup, progress: ProgressFactory | None = None) -> list[Path]:
    """The action-row data sets of a run: its ``dense_data``, else ``episodes/`` collected here.

    Episode ``i`` runs on task ``i mod tasks`` with seed ``episode_base_seed(seed) + i`` and its behaviour drawn
    from the run's mix; each stores the LLM cost it took, so a data set's cost adds up however often its
    collection was interrupted. Episodes already stored are kept.
    """
    config = setup.config
    if config.data.dense_data:
        return [Path(path) for path in config.data.dense_data]
    store = EpisodeStore(setup.run_dir / "episodes")
    settings = {**dataset_settings(config), "dense": True, "behaviour": dict(config.data.behaviour)}
    settings["behaviour_epsilon"] = config.data.behaviour_epsilon
    store.create({"settings": settings, "fingerprints": setup.fingerprints()})
    total = config.data.dense_episodes
    todo = [e for e in range(total) if e not in set(store.ids())]
    advance = progress("dense action rows (episodes)", total) if progress else None
    if advance is not None:
        advance(total - len(todo))
    mix = BehaviourMix(dict(config.data.behaviour), config.data.behaviour_epsilon)
    envs = {t.name: make_env(setup, t) for t in setup.tasks}
    names = [t.name for t in setup.tasks]
    for episode_id in todo:
        env = envs[names[episode_id % len(names)]]
        store.write(run_dense_episode(env, episode_id, episode_base_seed(config.seed), mix))
        if advance is not None:
            advance(1)
    return [store.path]
