"""Behaviour policies that collect dense action rows, and the episodes they run.

An *action row* is the value of the prompt after adding each candidate to the current state,
``r(s, a) + V(s)`` for every ``a`` at once (:meth:`DemoSelectionEnv.action_row`: one batched scorer call). An
episode that records the row of every state it visits labels ``k × M`` actions instead of ``k``, so offline
Q-learning learns from every labelled action, and the rows serve every algorithm trained on them.

Which states get visited is the behaviour policy's job:

* ``knn``: KATE's prompt (the k candidates nearest the anchor, most similar last), so learned policies see the
  states around the retrieval baseline they must beat;
* ``random``: uniformly random candidates;
* ``greedy``: the candidate whose row value is best (the greedy oracle: it sees the labels of the episode's
  rows, which is fine for choosing where to look, not for choosing at test time);
* ``policy``: a trained policy's choice (round 2 of collection: the states the learner itself visits).

Every behaviour takes a random candidate with probability ``epsilon`` instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from rl_select.errors import ConfigError
from rl_select.observation import arrange_prompt, span_coordinates
from rl_select.rollouts.episodes import cost_record

BEHAVIOURS = ("knn", "random", "greedy", "policy")

Chooser = Callable[[dict[str, np.ndarray], np.ndarray], int]


@dataclass(frozen=True)
class BehaviourMix:
    """Which behaviour each episode follows: episode ``i`` draws from ``weights`` with its own seed.

    Attributes:
        weights: Behaviour name → share of episodes.
        epsilon: Probability of a random candidate at each step, whatever the behaviour.
    """

    weights: dict[str, float]
    epsilon: float = 0.1

    def __post_init__(self) -> None:
        unknown = sorted(set(self.weights) - set(BEHAVIOURS))
        if unknown:
            raise ConfigError(f"unknown behaviour(s) {unknown} (choose from: {', '.join(BEHAVIOURS)})")
        if not self.weights or any(w < 0 for w in self.weights.values()) or sum(self.weights.values()) <= 0:
            raise ConfigError("behaviour weights must be non-negative and not all zero")
        if not 0.0 <= self.epsilon <= 1.0:
            raise ConfigError(f"epsilon must be in [0, 1], got {self.epsilon}")

    def pick(self, rng: np.random.Generator) -> str:
        """The behaviour of one episode."""
        names = sorted(self.weights)
        shares = np.array([self.weights[n] for n in names], dtype=np.float64)
        return names[int(rng.choice(len(names), p=shares / shares.sum()))]


def knn_picks(env: Any) -> list[int]:
    """The candidate indices that build KATE's prompt (most similar last) in the env's prompt order."""
    nearest = [int(i) for i in env.episode.nearest_first[: env.config.k]]
    return arrange_prompt(nearest[::-1], env.config.prompt_order)


def choose(
    behaviour: str,
    env: Any,
    obs: dict[str, np.ndarray],
    row: np.ndarray,
    rng: np.random.Generator,
    epsilon: float,
    policy: Chooser | None = None,
) -> int:
    """The behaviour's next candidate (a random valid one with probability ``epsilon``)."""
    mask = env.action_masks()
    valid = np.flatnonzero(mask)
    if rng.random() < epsilon or behaviour == "random":
        return int(rng.choice(valid))
    if behaviour == "knn":
        planned = knn_picks(env)
        step = len(env.episode.chosen)
        wanted = planned[step] if step < len(planned) else None
        return int(wanted) if wanted is not None and mask[wanted] else int(valid[0])
    if behaviour == "greedy":
        return int(valid[int(np.nanargmax(row[valid]))])
    if policy is None:
        raise ConfigError("the 'policy' behaviour needs a trained policy")
    return int(policy(obs, mask))


def run_dense_episode(
    env: Any,
    episode_id: int,
    base_seed: int,
    mix: BehaviourMix,
    *,
    options: dict[str, Any] | None = None,
    policy: Chooser | None = None,
) -> dict[str, np.ndarray]:
    """One episode that records the action row of every state it visits.

    Returns the fields of :func:`~rl_select.rollouts.episodes.run_episode` plus ``action_values`` ``[T, A]``
    (NaN where a candidate was already chosen; with the stop action, A = M + 1 and its entry is the current
    value), ``behaviour``, and what rebuilding any state's observation needs: ``static``, ``vectors`` and
    ``anchor`` (in the candidates' span: :func:`~rl_select.observation.span_coordinates`), ``labels`` and, in
    query mode, ``query_features`` and ``query_key``, ``proposer_features`` with
    proposers, ``stop`` with the stop action, and the LLM cost it took. Rewards and values come from the rows
    (the chosen candidate's entry), so an episode costs at most k action rows and one zero-shot score.
    """
    seed = base_seed + episode_id
    rng = np.random.default_rng(seed)
    behaviour = mix.pick(rng)
    before = env.resources.llm_cost()
    obs, info = env.reset(seed=seed, options=options)
    observations, actions, rewards, values, rows = [obs], [], [], [info["value"]], []
    terminated = False
    while not terminated:
        row = env.action_row()
        action = choose(behaviour, env, obs, row, rng, mix.epsilon, policy)
        obs, reward, terminated, truncated, info = env.step_to_known_value(action, row[action])
        terminated = terminated or truncated
        observations.append(obs)
        actions.append(action)
        rewards.append(reward)
        values.append(info["value"])
        rows.append(row)
    episode = env.episode
    vectors, anchor = span_coordinates(episode.vectors, episode.anchor)  # M columns instead of the embedding's D
    record = {f"obs_{key}": np.stack([o[key] for o in observations]) for key in observations[0]}
    record.update(
        actions=np.asarray(actions, dtype=np.int64),
        rewards=np.asarray(rewards, dtype=np.float32),
        values=np.asarray(values, dtype=np.float32),
        action_values=np.asarray(rows, dtype=np.float32),
        candidate_ids=np.asarray(info["candidate_ids"], dtype=np.int64),
        selection=np.asarray(info["selection"], dtype=np.int64),
        episode_id=np.asarray(episode_id, dtype=np.int64),
        seed=np.asarray(seed, dtype=np.int64),
        task=np.asarray(info["task"]),
        behaviour=np.asarray(behaviour),
        static=episode.static.astype(np.float32),
        vectors=vectors,
        labels=episode.labels.astype(np.int64),
        num_labels=np.asarray(env.task.num_labels, dtype=np.int64),
        anchor=anchor,
    )
    if episode.query is not None:
        record["query_features"] = np.asarray(episode.query_features, dtype=np.float32)
        record["query_key"] = np.asarray([episode.query.split, str(episode.query.id)])
    if episode.proposer_features is not None:
        record["proposer_features"] = episode.proposer_features.astype(np.float32)
    if env.stop_action is not None:
        record["stop"] = np.asarray(True)
    record.update(cost_record(env.resources.llm_cost() - before))
    return record
