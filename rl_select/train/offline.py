"""Offline learners: CQL on logged random-policy episodes, fitted Q-iteration on dense action rows."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rl_select.errors import ConfigError
from rl_select.policies.cql import CQL, Transitions
from rl_select.policies.fqi import FQI, DenseRows
from rl_select.policies.networks import candidate_input_dim
from rl_select.rollouts.collect import collect_episodes
from rl_select.rollouts.dense import collect_dense
from rl_select.rollouts.episodes import EpisodeStore
from rl_select.runs.dirs import policy_files
from rl_select.runs.setup import RunSetup, make_env
from rl_select.train.curve import run_logger

ProgressFactory = Callable[[str, int], Callable[[int], None]]
EVAL_SEED = 10_000
"""Greedy evaluations reset with this seed, so learning-curve points are comparable."""


def episodes_for(setup: RunSetup, paths: list[Path], limit: int | None = None) -> list[dict[str, np.ndarray]]:
    """The episodes of the data sets (the first ``limit`` by id of each; default all), checked against the MDP."""
    episodes = []
    for path in paths:
        store = EpisodeStore(path)
        if store.meta().get("settings", {}).get("env") != setup.config.env.to_dict():
            raise ConfigError(f"the episodes in {store.path} were collected with other MDP settings than this run's")
        episodes += store.load(store.ids()[:limit])
    return episodes


def greedy_value(agent: Any, env: Any, episodes: int) -> float:
    """Mean final value of ``agent``'s greedy episodes on ``env`` (SB3's ``evaluate_policy``, fixed seeds)."""
    from stable_baselines3.common.evaluation import evaluate_policy  # deferred: loads stable-baselines3 and rich
    from stable_baselines3.common.vec_env import DummyVecEnv  # deferred: loads stable-baselines3 and rich

    vec = DummyVecEnv([lambda: env])
    vec.seed(EVAL_SEED)
    values: list[float] = []

    def collect(local: dict[str, Any], _: dict[str, Any]) -> None:
        if local["done"] and "episode_value" in local["info"]:
            values.append(float(local["info"]["episode_value"]))

    evaluate_policy(agent, vec, n_eval_episodes=episodes, deterministic=True, callback=collect, warn=False)
    return float(np.mean(values))


def train_cql(setup: RunSetup, progress: ProgressFactory | None) -> None:
    """Offline CQL (Zhang et al. 2022) on random-policy episodes, with checkpoints and resume."""
    config, run_dir = setup.config, setup.run_dir
    path = Path(config.data.cql_data) if config.data.cql_data else run_dir / "episodes"
    if not config.data.cql_data:
        collect_episodes(path, episodes=config.data.cql_episodes, config=config, setup=setup, progress=progress)
    data = Transitions(episodes_for(setup, [path]))
    checkpoint = run_dir / "checkpoints" / "cql.pt"
    input_dim = candidate_input_dim(make_env(setup, setup.tasks[0]).observation_space)
    agent = CQL.load(checkpoint) if checkpoint.is_file() else CQL(input_dim, config.cql, seed=config.seed)
    log = run_logger(run_dir)
    eval_env = make_env(setup, setup.tasks[0], held_out=True)
    advance = progress("cql gradient steps", config.total_steps) if progress else None
    if advance is not None and agent.num_steps:
        advance(agent.num_steps)

    def record(step: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            log.record(key, value)
        log.dump(step)

    def on_step(step: int) -> bool:
        if advance is not None:
            advance(1)
        if step % config.checkpoint_every == 0 or step == config.total_steps:
            agent.save(checkpoint)
        if config.evaluation.every and step % config.evaluation.every == 0:
            record(step, {"eval/episode_value": greedy_value(agent, eval_env, config.evaluation.episodes)})
            agent.q.train()
        return True

    agent.learn(data, config.total_steps, log=record, on_step=on_step)
    log.close()
    agent.save(policy_files(run_dir, "cql"))


def train_fqi(setup: RunSetup, progress: ProgressFactory | None) -> None:
    """Fitted Q-iteration (or its conservative variant) on dense action rows, collected here or given."""
    config, run_dir = setup.config, setup.run_dir
    episodes = episodes_for(setup, collect_dense(setup, progress), config.data.dense_limit)
    data = DenseRows.from_episodes(episodes, k=config.env.k, label_vote=config.env.features.label_vote)
    agent = FQI.for_space(make_env(setup, setup.tasks[0]).observation_space, config.fqi, seed=config.seed)
    log = run_logger(run_dir)
    advance = progress("fitted Q rounds", config.fqi.rounds) if progress else None

    def record(round_: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            log.record(key, value)
        log.dump(round_)
        if advance is not None:
            advance(1)

    agent.learn(data, log=record)
    log.close()
    agent.save(policy_files(run_dir, "fqi"))
