"""A vectorised demonstration-selection env whose sub-envs' rewards are scored in one scorer call per step.

Reward computation is the hot path: every step of every sub-env scores its prompt on the reward rows. This
SB3 ``VecEnv`` steps its :class:`DemoSelectionEnv` instances in lock-step, collects their scoring requests and
hands them to :func:`run_requests` together (one ``Scorer.score_many`` call per task), then auto-resets finished
episodes the way SB3 expects (``terminal_observation`` in the info).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecEnv
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn

from rl_select.envs.demo_selection import DemoSelectionEnv
from rl_select.envs.episode import EnvState, run_requests
from rl_select.types import JsonObject


@dataclass(frozen=True)
class VecEnvState:
    """Every sub-env's :class:`~rl_select.envs.episode.EnvState` and the seeds of their next resets."""

    envs: list[EnvState]
    seeds: list[int | None]

    def to_dict(self) -> JsonObject:
        """JSON form (a checkpoint's)."""
        return {"envs": [env.to_dict() for env in self.envs], "seeds": list(self.seeds)}

    @classmethod
    def from_dict(cls, data: JsonObject) -> VecEnvState:
        """Inverse of :meth:`to_dict`."""
        return cls([EnvState.from_dict(env) for env in data["envs"]], list(data["seeds"]))


class DemoSelectionVecEnv(VecEnv):
    """Lock-step vector of :class:`DemoSelectionEnv` with batched reward scoring.

    Args:
        envs: Sub-environments with identical observation and action spaces (they may hold different tasks).
        seed: Seed of the first sub-env (sub-env i gets ``seed + i``) at the first reset.
        seeds: Seeds of each sub-env at the first reset (instead of ``seed``; Ray workers pass their sub-envs'
            global seeds).
    """

    def __init__(
        self, envs: Sequence[DemoSelectionEnv], seed: int | None = None, seeds: Sequence[int] | None = None
    ) -> None:
        if not envs:
            raise ValueError("a vector env needs at least one sub-env")
        self.envs = list(envs)
        first = self.envs[0]
        for env in self.envs[1:]:
            if env.observation_space != first.observation_space or env.action_space != first.action_space:
                raise ValueError("all sub-envs must share observation and action spaces (same k, M and features)")
        super().__init__(len(self.envs), first.observation_space, first.action_space)
        if seeds is not None and len(seeds) != len(self.envs):
            raise ValueError("give one seed per sub-env")
        self._seeds = (
            list(seeds) if seeds is not None else [None if seed is None else seed + i for i in range(len(envs))]
        )
        self._actions: np.ndarray | None = None

    # ------------------------------------------------------------------ VecEnv API

    def reset(self) -> VecEnvObs:
        """Reset every sub-env (scoring their empty prompts together)."""
        requests = []
        for i, env in enumerate(self.envs):
            if self._seeds[i] is not None:
                gym.Env.reset(env, seed=self._seeds[i])
            requests.append(env.begin_episode(self._options[i]))
        results = run_requests(requests)
        observations = []
        for env, result in zip(self.envs, results, strict=True):
            obs, info = env.finish_reset(result)
            observations.append(obs)
        self._reset_seeds()
        self._reset_options()
        return self._stack(observations)

    def step_async(self, actions: np.ndarray) -> None:
        """Remember the actions; the work happens in :meth:`step_wait`."""
        self._actions = np.asarray(actions)

    def step_wait(self) -> VecEnvStepReturn:
        """Apply all actions, score all new prompts in one batch, auto-reset finished episodes."""
        assert self._actions is not None, "step_async must come first"
        per_env = [env.apply_action(a) for env, a in zip(self.envs, self._actions, strict=True)]
        flat = [request for requests in per_env for request in requests]
        results = run_requests(flat)
        observations, rewards, dones, infos = [], np.zeros(self.num_envs, np.float32), np.zeros(self.num_envs, bool), []
        cursor = 0
        finished = []
        for i, (env, requests) in enumerate(zip(self.envs, per_env, strict=True)):
            obs, reward, terminated, truncated, info = env.finish_step(results[cursor : cursor + len(requests)])
            cursor += len(requests)
            rewards[i], dones[i] = reward, terminated or truncated
            info["TimeLimit.truncated"] = truncated and not terminated
            if dones[i]:  # episode statistics ("episode" in the info) are VecMonitor's job
                info["terminal_observation"] = obs
                finished.append(i)
            observations.append(obs)
            infos.append(info)
        if finished:
            resets = run_requests([self.envs[i].begin_episode({}) for i in finished])
            for i, result in zip(finished, resets, strict=True):
                observations[i], reset_info = self.envs[i].finish_reset(result)
                self.reset_infos[i] = reset_info
        self._actions = None
        return self._stack(observations), rewards, dones, infos

    def close(self) -> None:
        """Close the sub-envs."""
        for env in self.envs:
            env.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        """Attribute of each selected sub-env."""
        return [getattr(self.envs[i], attr_name) for i in self._indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        """Set an attribute on each selected sub-env."""
        for i in self._indices(indices):
            setattr(self.envs[i], attr_name, value)

    def env_method(self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **kwargs: Any) -> list:
        """Call a method of each selected sub-env (MaskablePPO calls ``action_masks`` this way)."""
        return [getattr(self.envs[i], method_name)(*method_args, **kwargs) for i in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        """Sub-envs are never wrapped."""
        return [False for _ in self._indices(indices)]

    def action_masks(self) -> np.ndarray:
        """``[n_envs, M]`` masks of all sub-envs."""
        return np.stack([env.action_masks() for env in self.envs])

    # ------------------------------------------------------------------ exact resume

    def at_episode_start(self) -> bool:
        """Whether every sub-env is between episodes (nothing chosen yet): where checkpoints are exact."""
        return all(env.steps_taken == 0 for env in self.envs)

    def state(self) -> VecEnvState:
        """The sub-envs' RNGs and episodes, for an exact resume."""
        return VecEnvState([env.state() for env in self.envs], list(self._seeds))

    def restore(self, state: VecEnvState) -> VecEnvObs:
        """Continue from :meth:`state`; returns the current observations (what the learner saw last)."""
        if len(state.envs) != self.num_envs:
            raise ValueError(f"the saved state has {len(state.envs)} sub-envs, this vector has {self.num_envs}")
        observations = [env.restore(sub) for env, sub in zip(self.envs, state.envs, strict=True)]
        self._seeds = list(state.seeds)
        if any(obs is None for obs in observations):
            raise ValueError("the saved state is from before the first reset")
        return self._stack(observations)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ helpers

    def _indices(self, indices: VecEnvIndices) -> Iterable[int]:
        if indices is None:
            return range(self.num_envs)
        if isinstance(indices, int):
            return [indices]
        return indices

    def _stack(self, observations: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
        return {key: np.stack([obs[key] for obs in observations]) for key in observations[0]}
