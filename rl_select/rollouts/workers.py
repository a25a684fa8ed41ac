"""Ray actors for rollouts: env workers, and an optional central scorer.

Two placements of the LLM scorer (``TrainConfig.scorer_placement``):

* ``worker``: every rollout worker loads its own copy of the model and scores its envs' rewards itself (on a
  GPU each worker gets ``1/N`` of it). No cross-process traffic; N copies of the weights.
* ``central``: one scorer actor holds the model, the prefix KV cache and the reward cache; workers only run
  env logic and send it scoring requests. One copy of the weights; every request crosses processes and the
  single scorer serialises the LLM work.

``rl-select bench rollouts`` measures both; the faster on the machine at hand is the default (see
``experiments/results/bench_rollouts_*.md`` for the measurements behind the current default).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rl_select.rollouts.episodes import episode_base_seed, run_episode
from rl_select.rollouts.ray_runtime import require_ray
from rl_select.runs.config import TrainConfig
from rl_select.runs.setup import build_setup, load_tasks, make_env, make_vec_env
from rl_select.scoring import CacheStats, LLMCost

logger = logging.getLogger(__name__)
PLACEMENTS = ("worker", "central")


def _quiet_worker(threads: int) -> None:

    torch.set_num_threads(max(1, threads))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.getLogger("transformers").setLevel(logging.ERROR)
    try:
        import transformers  # deferred: loads transformers and httpx

        transformers.logging.set_verbosity_error()
        transformers.logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers is a core dependency
        pass


class CentralScorer:
    """Holds the model and one scorer per task; serves scoring and embedding requests (a Ray actor)."""

    def __init__(self, config: TrainConfig, run_dir: str, threads: int) -> None:
        _quiet_worker(threads)
        self.config = config
        self.setup = build_setup(self.config, Path(run_dir), load_tasks(self.config))

    def score_many(self, task: str, requests: list[tuple[tuple, tuple]], use_cache: bool = True) -> list:
        """Score (demos, rows) requests of one task."""
        return self.setup.resources[task].scorer.score_many(requests, use_cache=use_cache)

    def namespace(self, task: str) -> str:
        """The task scorer's cache namespace."""
        return self.setup.resources[task].scorer.namespace

    def prefix_log_perplexity(self, task: str, demos: tuple) -> float:
        """Prompt log-perplexity (step features)."""
        return self.setup.resources[task].scorer.prefix_log_perplexity(demos)

    def cache_stats(self, task: str) -> CacheStats:
        """The task scorer's cache statistics."""
        return self.setup.resources[task].scorer.cache_stats()

    def embed(self, task: str, texts: list[str]) -> np.ndarray:
        """Embed texts with the task's embedder."""
        return self.setup.resources[task].embedder.embed(texts)

    def embedder_id(self, task: str) -> str:
        """The task's embedder id."""
        return self.setup.resources[task].embedder.id

    def llm_cost(self) -> LLMCost:
        """The LLM work this scorer has done for every worker since it started."""
        return sum((r.llm_cost() for r in self.setup.resources.values()), LLMCost())


class RemoteScorer:
    """A :class:`~rl_select.scoring.Scorer` stand-in that forwards to a :class:`CentralScorer` actor."""

    def __init__(self, actor: Any, task: str) -> None:
        self.actor, self.task = actor, task
        self._ray = require_ray()
        self.namespace = self._ray.get(actor.namespace.remote(task))
        self.requested = 0

    def score_many(self, requests: Sequence[tuple[Sequence, Sequence]], *, use_cache: bool = True) -> list:
        """Forward a batch of requests."""
        payload = [(tuple(d), tuple(q)) for d, q in requests]
        self.requested += sum(len(q) for _, q in payload)
        return self._ray.get(self.actor.score_many.remote(self.task, payload, use_cache))

    def score(self, demos: Sequence, queries: Sequence, *, use_cache: bool = True, progress: Any = None) -> Any:
        """Forward one request."""
        result = self.score_many([(demos, queries)], use_cache=use_cache)[0]
        if progress is not None:
            progress(len(queries))
        return result

    def prefix_log_perplexity(self, demos: Sequence) -> float:
        """Forward a perplexity request."""
        return self._ray.get(self.actor.prefix_log_perplexity.remote(self.task, tuple(demos)))

    def cache_stats(self) -> dict:
        """The central scorer's statistics for this task."""
        return self._ray.get(self.actor.cache_stats.remote(self.task))

    def cost(self) -> LLMCost:
        """Queries this proxy asked the central scorer for (its tokens are counted there, for every worker)."""
        return LLMCost(queries=self.requested)


class RemoteEmbedder:
    """An :class:`~rl_select.retrieval.Embedder` stand-in that forwards to a :class:`CentralScorer` actor."""

    def __init__(self, actor: Any, task: str) -> None:
        self.actor, self.task = actor, task
        self._ray = require_ray()
        self.id = self._ray.get(actor.embedder_id.remote(task))

    def embed(self, texts: Sequence[str], progress: Any = None) -> np.ndarray:
        """Forward an embedding request."""
        vectors = self._ray.get(self.actor.embed.remote(self.task, list(texts)))
        if progress is not None:
            progress(len(texts))
        return vectors


class RolloutWorker:
    """A Ray actor hosting sub-envs: runs whole episodes (collection) or steps envs in lock-step (training).

    Args:
        config: The run's TrainConfig as a dict.
        run_dir: The run (or data set) directory (shared reward cache file).
        threads: torch threads (1 per worker keeps workers from competing for cores).
        central: A :class:`CentralScorer` handle (``central`` placement) or None (the worker loads the model).
    """

    def __init__(self, config: TrainConfig, run_dir: str, threads: int = 1, central: Any = None) -> None:
        _quiet_worker(threads)
        self.config = config
        remote = (
            None if central is None else (lambda name: (RemoteScorer(central, name), RemoteEmbedder(central, name)))
        )
        self.setup = build_setup(self.config, Path(run_dir), load_tasks(self.config), remote=remote)
        self.envs = {task.name: make_env(self.setup, task) for task in self.setup.tasks}
        self.names = [task.name for task in self.setup.tasks]
        self.vec: Any = None

    def pid(self) -> int:
        """The worker's process id (tests kill it)."""
        return os.getpid()

    def run_episode(self, episode_id: int) -> dict[str, np.ndarray]:
        """One random-policy episode, determined by its id (see :mod:`rl_select.rollouts.episodes`)."""
        env = self.envs[self.names[episode_id % len(self.names)]]
        return run_episode(env, episode_id, episode_base_seed(self.config.seed))

    # lock-step training: sub-envs with global indices, each seeded ``seed + index``
    def start(self, indices: list[int]) -> None:
        """Create this worker's sub-envs (global ``indices``, each seeded ``seed + index``)."""
        self.vec = make_vec_env(self.setup, seeds=[self.config.seed + i for i in indices])

    def reset(self) -> dict[str, np.ndarray]:
        """Reset the sub-envs."""
        return self.vec.reset()

    def step(self, actions: np.ndarray) -> tuple:
        """Step the sub-envs (rewards scored in one batch); the step's results and this worker's LLM cost so far."""
        self.vec.step_async(actions)
        return (*self.vec.step_wait(), self.llm_cost())

    def llm_cost(self) -> LLMCost:
        """The LLM work this worker has done since it started (its own model, or none with a central scorer)."""
        return sum((r.llm_cost() for r in self.setup.resources.values()), LLMCost())

    def action_masks(self) -> np.ndarray:
        """Masks of the sub-envs."""
        return self.vec.action_masks()

    def reset_infos(self) -> list[dict]:
        """Infos of the latest resets."""
        return self.vec.reset_infos


def start_workers(config: Any, run_dir: Path, count: int) -> tuple[list[Any], Any]:
    """Start ``count`` rollout workers (and the central scorer for ``central`` placement)."""
    ray = require_ray()
    total_cpus = max(int(ray.cluster_resources().get("CPU", 1)), 1)
    gpus = float(ray.cluster_resources().get("GPU", 0))
    central = None
    worker_cpus = min(1.0, total_cpus / count)
    if config.parallel.scorer_placement == "central":
        options: dict[str, float] = {"num_cpus": min(1.0, total_cpus / 2), "max_restarts": -1}
        if gpus and config.device != "cpu":
            options["num_gpus"] = 1
        central = ray.remote(CentralScorer).options(**options).remote(config, str(run_dir), total_cpus)
        worker_cpus = min(worker_cpus, max(total_cpus - 1, 1) / count)
    # SPREAD: on a cluster the workers go to different nodes where they can, so one node's death costs few of them
    worker_options: dict[str, Any] = {
        "num_cpus": worker_cpus,
        "max_restarts": -1,
        "max_task_retries": 0,
        "scheduling_strategy": "SPREAD",
    }
    if central is None and gpus and config.device != "cpu":
        worker_options["num_gpus"] = config.parallel.worker_gpus or 1.0 / count
    actor_class = ray.remote(RolloutWorker).options(**worker_options)
    workers = [actor_class.remote(config, str(run_dir), 1, central) for _ in range(count)]
    return workers, central
