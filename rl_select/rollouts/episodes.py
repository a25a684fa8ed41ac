"""Episodes of the selection MDP: running them (stored by :mod:`rl_select.runs.episode_store`, re-exported here).

An episode is fully determined by its id: the env is reset with ``seed = base_seed + episode_id`` and the
random behaviour policy draws from ``np.random.default_rng(seed)``. So which process runs an episode, and in
which order, never changes the data set.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from rl_select.observation import OBS_KEYS
from rl_select.runs.episode_store import COST_KEYS, EPISODE_FILE, EpisodeStore, best_scored_prompts, cost_record

EPISODE_SEED_STRIDE = 1_000_003


def episode_base_seed(seed: int) -> int:
    """Episode ``i`` of a run with ``seed`` is reset with ``episode_base_seed(seed) + i``."""
    return seed * EPISODE_SEED_STRIDE


def run_episode(
    env: Any, episode_id: int, base_seed: int, policy: Callable[[dict, np.ndarray], int] | None = None
) -> dict[str, np.ndarray]:
    """Run one episode (random valid actions unless ``policy(obs, mask) -> action``) and record it.

    Returns:
        ``obs_<key>`` ``[k + 1, ...]`` observations, ``actions`` ``[k]``, ``rewards`` ``[k]``, ``values``
        ``[k + 1]`` (value before the first step, then after each), ``candidate_ids`` ``[M]``,
        ``selection`` ``[k]`` (pool ids), ``episode_id``, ``seed``, ``task``, and the LLM cost it took
        (``cost_queries``, ``cost_tokens``).
    """
    seed = base_seed + episode_id
    rng = np.random.default_rng(seed)
    before = env.resources.llm_cost()
    obs, info = env.reset(seed=seed)
    observations = [obs]
    actions, rewards, values = [], [], [info["value"]]
    terminated = False
    while not terminated:
        mask = env.action_masks()
        action = int(rng.choice(np.flatnonzero(mask))) if policy is None else int(policy(obs, mask))
        obs, reward, terminated, truncated, info = env.step(action)
        observations.append(obs)
        actions.append(action)
        rewards.append(reward)
        values.append(info["value"])
        terminated = terminated or truncated
    record = {f"obs_{key}": np.stack([o[key] for o in observations]) for key in OBS_KEYS if key in obs}
    record.update(
        actions=np.asarray(actions, dtype=np.int64),
        rewards=np.asarray(rewards, dtype=np.float32),
        values=np.asarray(values, dtype=np.float32),
        candidate_ids=np.asarray(info["candidate_ids"], dtype=np.int64),
        selection=np.asarray(info["selection"], dtype=np.int64),
        episode_id=np.asarray(episode_id, dtype=np.int64),
        seed=np.asarray(seed, dtype=np.int64),
        task=np.asarray(info["task"]),
    )
    record.update(cost_record(env.resources.llm_cost() - before))
    return record


__all__ = [
    "COST_KEYS",
    "EPISODE_FILE",
    "EPISODE_SEED_STRIDE",
    "EpisodeStore",
    "best_scored_prompts",
    "cost_record",
    "episode_base_seed",
    "run_episode",
]
