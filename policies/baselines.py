"""The baseline selectors as policies of the selection env.

Learned and baseline policies are then compared on exactly the same episodes (same candidates, same reward
rows, same scoring). Each policy chooses among the episode's M candidates only. Retrieval baselines rank by
similarity to the episode's anchor (the query in query mode, the reward rows' centroid in task mode) and, like
KATE, put the most similar candidate last; LLM baselines (max-entropy, best-of-n, greedy-oracle) query the
env's scorer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rl_select.envs.demo_selection import DemoSelectionEnv
from rl_select.errors import unknown_name
from rl_select.observation import arrange_prompt
from rl_select.selectors.retrieval import DPPSelector, MMRSelector

ENV_BASELINES = ("random", "balanced", "knn", "mmr", "dpp", "max-entropy", "best-of-n", "greedy-oracle")


class EnvBaseline:
    """A baseline acting in a :class:`DemoSelectionEnv`: ``plan`` at reset, then ``act`` each step.

    Args:
        name: One of :data:`ENV_BASELINES`.
        rng: Randomness of random, balanced and best-of-n.
        num_sets: best-of-n: random candidate subsets tried.
    """

    def __init__(self, name: str, rng: np.random.Generator, num_sets: int = 20) -> None:
        if name not in ENV_BASELINES:
            raise unknown_name("env baseline", name, ENV_BASELINES)
        self.name = name
        self.rng = rng
        self.num_sets = num_sets
        self._plan: list[int] = []

    def plan(self, env: DemoSelectionEnv) -> None:
        """Decide the whole episode where the baseline is not step-by-step."""
        episode, k = env.episode, env.config.k
        if self.name in ("knn", "mmr", "dpp"):
            order = [int(i) for i in episode.nearest_first]
            if self.name == "knn":
                picked = order[:k]
            else:
                chooser = MMRSelector() if self.name == "mmr" else DPPSelector()
                anchor_sim = episode.vectors @ episode.anchor
                picked = chooser._pick(anchor_sim, episode.vectors @ episode.vectors.T, k)
            self._plan = sorted(picked, key=order.index, reverse=True)  # prompt order: most similar last
        elif self.name == "best-of-n":
            scorer, rows, m = env.resources.scorer, episode.rows, env.config.num_candidates
            best, best_value = [], -np.inf
            for _ in range(self.num_sets):
                subset = [int(i) for i in self.rng.choice(m, size=k, replace=False)]  # in prompt order
                demos = [env.task.train[int(episode.candidates[i])] for i in subset]
                value = env.value_of(scorer.score(demos, rows))
                if value > best_value:
                    best, best_value = subset, value
            self._plan = best
        else:
            self._plan = []
        self._plan = arrange_prompt(self._plan, env.config.prompt_order)  # the picks that build that prompt

    def act(self, env: DemoSelectionEnv, mask: np.ndarray) -> int:
        """The next candidate."""
        episode = env.episode
        step = len(episode.chosen)
        if self._plan:
            return int(self._plan[step])
        valid = np.flatnonzero(mask)
        if self.name == "random":
            return int(self.rng.choice(valid))
        if self.name == "balanced":
            chosen_labels = episode.labels[episode.chosen]
            counts = np.array([np.sum(chosen_labels == episode.labels[i]) for i in valid])
            return int(self.rng.choice(valid[counts == counts.min()]))
        demos = env.demonstrations()
        candidates = [env.task.train[int(episode.candidates[i])] for i in valid]
        scorer = env.resources.scorer
        if self.name == "max-entropy":
            return int(valid[int(np.argmax(scorer.score(demos, candidates).entropy))])
        # greedy-oracle: the candidate whose addition gives the best value on the reward rows
        values = [env.value_of(scorer.score(env.demonstrations(extra=int(i)), episode.rows)) for i in valid]
        return int(valid[int(np.argmax(values))])


def run_env_baseline(env: DemoSelectionEnv, baseline: EnvBaseline, seeds: Sequence[int]) -> list[dict[str, Any]]:
    """One episode per seed; returns each episode's final value, zero-shot value and selection."""
    results = []
    for seed in seeds:
        obs, info = env.reset(seed=int(seed))
        baseline.plan(env)
        terminated = False
        while not terminated:
            obs, _, terminated, _, info = env.step(baseline.act(env, env.action_masks()))
        results.append(
            {
                "seed": int(seed),
                "value": info["episode_value"],
                "zero_shot": info["zero_shot_value"],
                "selection": info["selection"],
            }
        )
    return results
