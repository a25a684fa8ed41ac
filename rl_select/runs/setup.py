"""What a run builds from its configuration before it trains: tasks, shared resources, feature banks, envs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rl_select.envs import DemoSelectionEnv, FeatureBank
from rl_select.errors import ConfigError
from rl_select.resources import Resources
from rl_select.runs.config import TrainConfig
from rl_select.scoring import RewardCache, ScoringConfig
from rl_select.scoring.model import shared_language_model
from rl_select.tasks import Task, load_task
from rl_select.types import JsonObject

RemoteServices = Callable[[str], tuple[Any, Any]]
"""``services(task name) -> (scorer, embedder)``: stand-ins for the local model (a central scorer's proxies)."""


@dataclass
class RunSetup:
    """Everything built from a config before training starts.

    Attributes:
        config: The run's configuration.
        run_dir: Its directory (the reward cache lives there).
        tasks: Its tasks (pool subsets where ``pool_size`` is set).
        resources: Per task: scorer, embedder and indexes, one LLM for all.
        banks: Per task: the feature bank of the MDP's observations.
    """

    config: TrainConfig
    run_dir: Path
    tasks: list[Task]
    resources: dict[str, Resources]
    banks: dict[str, FeatureBank]

    def fingerprints(self) -> JsonObject:
        """What scored data of this setup depend on: the tasks' splits, the LLM, the scoring settings."""
        first = next(iter(self.resources.values()))
        return {
            "tasks": {t.name: {s: t.fingerprint(s) for s in ("train", "dev", "test")} for t in self.tasks},
            "model": first.lm_fingerprint,
            "scoring": first.scoring.score_key(),
            "calibrate": first.scoring.calibrate,
        }


def training_candidates(task: Task, config: TrainConfig) -> tuple[np.ndarray, np.ndarray]:
    """Task mode's split of the pool: ``(train ids, held-out ids)``, seeded by ``config.seed``."""
    order = np.random.default_rng(config.seed + 7919).permutation(len(task.train))
    held = round(len(order) * config.holdout_fraction)
    if config.env.mode == "query" or held == 0:
        return np.sort(order), np.sort(order)
    return np.sort(order[held:]), np.sort(order[:held])


def load_tasks(config: TrainConfig) -> list[Task]:
    """The run's tasks (pool subsets when ``pool_size`` is set), each checked against the MDP settings."""
    tasks = [load_task(name, config.data_dir).subset_pool(config.pool_size, seed=config.seed) for name in config.tasks]
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise ConfigError(f"tasks must be distinct, got {names}")
    for task in tasks:
        train_ids, _ = training_candidates(task, config)
        try:
            config.env.check_pool(len(train_ids))
        except ConfigError as exc:
            raise ConfigError(f"{task.name}: {exc} after holding out {config.holdout_fraction:.0%}") from None
        if config.env.features.label_onehot and task.num_labels > config.env.features.max_labels:
            raise ConfigError(
                f"task '{task.name}' has {task.num_labels} labels > max_labels {config.env.features.max_labels}"
            )
    return tasks


def build_setup(
    config: TrainConfig, run_dir: Path, tasks: list[Task], *, remote: RemoteServices | None = None
) -> RunSetup:
    """Resources (one shared LM, a persistent reward cache) and feature banks for every task.

    Args:
        config: The run's configuration.
        run_dir: Where the reward cache is kept.
        tasks: The run's tasks (:func:`load_tasks`).
        remote: Scorer and embedder stand-ins per task (a central scorer's proxies) instead of a local model.
    """
    scoring = ScoringConfig(calibrate=config.env.calibrate, prefix_perplexity=config.env.features.step_features)
    cache = RewardCache(path=run_dir / "rewards.sqlite")
    resources, banks = {}, {}
    for task in tasks:
        scorer, embedder = remote(task.name) if remote is not None else (None, None)
        resources[task.name] = Resources(
            task,
            lm=lambda: shared_language_model(config.model, config.device, config.dtype),
            scoring=scoring,
            embedder=config.env.features.embedder,
            reward_cache=cache,
            data_seed=config.env.data_seed,
            scorer=scorer,
            embedder_impl=embedder,
        )
        banks[task.name] = FeatureBank(resources[task.name], config.env.features)
    return RunSetup(config, run_dir, tasks, resources, banks)


def make_env(setup: RunSetup, task: Task, *, held_out: bool = False) -> DemoSelectionEnv:
    """A sub-env on ``task``'s training candidates (or its held-out ones)."""
    train_ids, held_ids = training_candidates(task, setup.config)
    return DemoSelectionEnv(
        task,
        config=setup.config.env,
        resources=setup.resources[task.name],
        features=setup.banks[task.name],
        candidate_ids=held_ids if held_out else train_ids,
    )


def make_vec_env(setup: RunSetup, seeds: list[int] | None = None) -> Any:
    """``n_envs`` in-process sub-envs, tasks assigned round-robin, sub-env i seeded ``seed + i``.

    With ``seeds`` (a Ray worker's share of the global sub-envs), one sub-env per seed, sub-env of global index
    ``seed - config.seed`` on task ``index % tasks``.
    """
    from rl_select.envs.vector import DemoSelectionVecEnv  # deferred: loads stable-baselines3 and rich

    config = setup.config
    seeds = seeds if seeds is not None else [config.seed + i for i in range(config.parallel.n_envs)]
    envs = [make_env(setup, setup.tasks[(s - config.seed) % len(setup.tasks)]) for s in seeds]
    return DemoSelectionVecEnv(envs, seeds=seeds)
