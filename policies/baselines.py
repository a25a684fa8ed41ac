"""The baseline selectors as policies of the selection env.

Learned and baseline policies are then compared on exactly the same episodes (same candidates, same reward
rows, same scoring). A baseline here is a :class:`~rl_select.selectors.Selector` whose algorithm
(:meth:`~rl_select.selectors.Selector.choose`) runs on the episode's M candidates: similarity is to the
episode's anchor (the query in query mode, the reward rows' centroid in task mode), and a prompt's value is the
episode's value of that prompt on its reward rows. The prompt it decides on is then played in the env's prompt
order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rl_select.envs.demo_selection import DemoSelectionEnv
from rl_select.errors import unknown_name
from rl_select.observation import arrange_prompt
from rl_select.selectors import make_selector
from rl_select.selectors.candidates import Candidates, Prompt

ENV_BASELINES = ("random", "balanced", "knn", "mmr", "dpp", "max-entropy", "best-of-n", "greedy-oracle")


def episode_candidates(env: DemoSelectionEnv) -> Candidates:
    """The current episode's candidates, valued and scored the way the env values its prompts."""
    episode, scorer = env.episode, env.resources.scorer
    examples = [env.task.train[int(i)] for i in episode.candidates]

    def value(prompt: Prompt) -> float:
        return env.value_of(scorer.score([examples[i] for i in prompt], episode.rows))

    return Candidates(
        examples,
        similarity=episode.vectors @ episode.anchor,
        vectors=episode.vectors,
        value=value,
        scorer=scorer,
        labels=tuple(env.task.labels),
        query=episode.query,
    )


class EnvBaseline:
    """A baseline acting in a :class:`DemoSelectionEnv`: it decides its prompt at :meth:`plan`, then plays it.

    Args:
        name: One of :data:`ENV_BASELINES`.
        rng: Randomness of the random draws (random, balanced, best-of-n).
        num_sets: best-of-n: random prompts tried.
    """

    def __init__(self, name: str, rng: np.random.Generator, num_sets: int = 20) -> None:
        if name not in ENV_BASELINES:
            raise unknown_name("env baseline", name, ENV_BASELINES)
        self.name = name
        self.rng = rng
        self.selector = make_selector(name, strict=False, num_sets=num_sets)
        self.picks: list[int] = []

    def plan(self, env: DemoSelectionEnv) -> None:
        """Choose the episode's prompt among its candidates; remember the picks that build it in the env's order."""
        prompt = self.selector.choose(episode_candidates(env), env.config.k, self.rng)
        self.picks = arrange_prompt(prompt, env.config.prompt_order)

    def act(self, env: DemoSelectionEnv, mask: np.ndarray) -> int:
        """The next pick."""
        return int(self.picks[env.steps_taken])


@dataclass(frozen=True)
class BaselineEpisode:
    """One episode an env baseline played: its seed, the prompt's value, the zero-shot value and the selection."""

    seed: int
    value: float
    zero_shot: float
    selection: list[int]


def run_env_baseline(env: DemoSelectionEnv, baseline: EnvBaseline, seeds: Sequence[int]) -> list[BaselineEpisode]:
    """One episode per seed."""
    results = []
    for seed in seeds:
        obs, info = env.reset(seed=int(seed))
        baseline.plan(env)
        terminated = False
        while not terminated:
            obs, _, terminated, _, info = env.step(baseline.act(env, env.action_masks()))
        selection = [int(i) for i in info["selection"]]
        results.append(BaselineEpisode(int(seed), info["episode_value"], info["zero_shot_value"], selection))
    return results
