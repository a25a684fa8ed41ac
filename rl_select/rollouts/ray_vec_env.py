"""An SB3 VecEnv whose sub-envs live in Ray rollout workers (``rl-select train --workers N``).

Sub-env ``i`` lives in worker ``i mod N`` and is seeded ``seed + i``, as in the in-process vector env, so the
placement of sub-envs does not change what they do. Each worker steps its sub-envs together and scores their
rewards in one batch; the workers run in parallel.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn

from rl_select.errors import WorkerLost
from rl_select.rollouts.ray_collect import stop_workers, worker_failure_types
from rl_select.rollouts.ray_runtime import ensure_ray
from rl_select.rollouts.workers import start_workers
from rl_select.runs.setup import build_setup, load_tasks, make_env
from rl_select.scoring import LLMCost


class RayVecEnv(VecEnv):
    """``config.parallel.n_envs`` sub-envs spread over ``config.parallel.workers`` Ray workers.

    Args:
        config: The TrainConfig.
        run_dir: The run directory (workers share its reward cache).
    """

    def __init__(self, config: Any, run_dir: Path) -> None:
        parallel = config.parallel
        self._ray = ensure_ray(parallel.address)
        count = max(1, min(parallel.workers, parallel.n_envs))
        self.workers, self.central = start_workers(config, run_dir, count)
        self.assignment = [[i for i in range(parallel.n_envs) if i % count == w] for w in range(count)]
        self._get([w.start.remote(ids) for w, ids in zip(self.workers, self.assignment, strict=True)])
        probe_setup = build_setup(config, Path(run_dir), load_tasks(config)[:1])
        probe = make_env(probe_setup, probe_setup.tasks[0])
        super().__init__(parallel.n_envs, probe.observation_space, probe.action_space)
        self._actions: np.ndarray | None = None
        self._worker_costs = [LLMCost() for _ in self.workers]  # as of each worker's latest step

    def _get(self, refs: list) -> list:
        try:
            return self._ray.get(refs)
        except worker_failure_types(self._ray) as exc:
            raise WorkerLost(f"a rollout worker died, or its node did ({type(exc).__name__})") from None

    def _merge(self, parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        out = {key: np.zeros((self.num_envs, *value.shape[1:]), value.dtype) for key, value in parts[0].items()}
        for ids, part in zip(self.assignment, parts, strict=True):
            for key, value in part.items():
                out[key][ids] = value
        return out

    def reset(self) -> VecEnvObs:
        """Reset all sub-envs."""
        observations = self._merge(self._get([w.reset.remote() for w in self.workers]))
        infos = self._get([w.reset_infos.remote() for w in self.workers])
        self.reset_infos = [{} for _ in range(self.num_envs)]
        for ids, part in zip(self.assignment, infos, strict=True):
            for i, info in zip(ids, part, strict=True):
                self.reset_infos[i] = info
        return observations

    def step_async(self, actions: np.ndarray) -> None:
        """Send each worker its sub-envs' actions."""
        self._actions = np.asarray(actions)

    def step_wait(self) -> VecEnvStepReturn:
        """Collect the workers' steps, in sub-env order."""
        assert self._actions is not None, "step_async must come first"
        refs = [w.step.remote(self._actions[ids]) for w, ids in zip(self.workers, self.assignment, strict=True)]
        results = self._get(refs)
        observations = self._merge([r[0] for r in results])
        rewards = np.zeros(self.num_envs, np.float32)
        dones = np.zeros(self.num_envs, bool)
        infos: list[dict] = [{} for _ in range(self.num_envs)]
        for worker, (ids, (_, r, d, info, cost)) in enumerate(zip(self.assignment, results, strict=True)):
            rewards[ids], dones[ids] = r, d
            self._worker_costs[worker] = cost
            for i, item in zip(ids, info, strict=True):
                infos[i] = item
        self._actions = None
        return observations, rewards, dones, infos

    def action_masks(self) -> np.ndarray:
        """``[n_envs, M]`` masks."""
        parts = self._get([w.action_masks.remote() for w in self.workers])
        return self._merge([{"mask": p} for p in parts])["mask"]

    def env_method(self, method_name: str, *args: Any, indices: VecEnvIndices = None, **kwargs: Any) -> list:
        """Only ``action_masks`` is forwarded (what MaskablePPO needs)."""
        if method_name != "action_masks":
            raise NotImplementedError(f"RayVecEnv forwards only action_masks, not {method_name}")
        masks = self.action_masks()
        selected = range(self.num_envs) if indices is None else ([indices] if isinstance(indices, int) else indices)
        return [masks[i] for i in selected]

    def has_attr(self, attr_name: str) -> bool:
        """Only ``action_masks`` (forwarded) and ``render_mode`` exist here."""
        return attr_name in ("action_masks", "render_mode")

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """Sub-env attributes are not forwarded; ``render_mode`` is None."""
        if attr_name == "render_mode":
            return [None] * self.num_envs
        raise AttributeError(f"RayVecEnv does not forward attribute {attr_name}")

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Not supported across processes."""
        raise NotImplementedError("RayVecEnv does not set sub-env attributes")

    def env_is_wrapped(self, wrapper_class: type, indices: VecEnvIndices = None) -> list[bool]:
        """Sub-envs are never wrapped."""
        return [False] * self.num_envs

    def llm_cost(self) -> LLMCost:
        """The LLM work done for these sub-envs: the central scorer's, or the workers' as of their latest step.

        A worker's count comes back with every step, so a worker (or node) that dies takes at most its last step's
        count with it.
        """
        if self.central is not None:
            try:
                return self._ray.get(self.central.llm_cost.remote())
            except worker_failure_types(self._ray):
                return LLMCost()
        return sum(self._worker_costs, LLMCost())

    def close(self) -> None:
        """Stop the workers."""
        stop_workers(self.workers, self.central)
