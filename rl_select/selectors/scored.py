"""Task-level selectors that query the LLM: max-entropy, best-of-N on dev, greedy oracle on dev.

All three are the baselines of Zhang, Feng & Tan (2022), "Active Example Selection for In-Context Learning".
They value prompts with their candidates' ``value`` (pool-level: accuracy of the scorer's primary, calibrated by
default, distribution on a seeded dev subsample, like the evaluation itself; inside the MDP: the episode's value).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rl_select.selectors.base import PromptWork, Selector, dev_value
from rl_select.selectors.candidates import Candidates, Prompt
from rl_select.settings import check_fields, setting
from rl_select.tasks.task import Example, Task


@dataclass(frozen=True)
class MaxEntropyOptions:
    """max-entropy's settings."""

    num_candidates: int = setting(100, help="Pool examples sampled (per seed) to choose from.", minimum=1, cpu=32)

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class BestOfNOptions:
    """best-of-n's settings."""

    num_sets: int = setting(20, help="Random prompts tried (N).", minimum=1)
    dev_size: int = setting(200, help="Dev rows each prompt is scored on.", minimum=1, cpu=16)

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class GreedyOracleOptions:
    """greedy-oracle's settings."""

    num_candidates: int = setting(32, help="Pool examples sampled to choose from.", minimum=1, cpu=8)
    dev_size: int = setting(100, help="Dev rows each candidate prompt is scored on.", minimum=1, cpu=12)

    def __post_init__(self) -> None:
        check_fields(self)


class MaxEntropySelector(Selector):
    """Active-learning baseline: repeatedly add the candidate the LLM is least sure about.

    At each step the candidates are scored as queries under the demonstrations chosen so far; the one with the
    highest label-distribution entropy joins the prompt.

    Args:
        num_candidates: Pool examples sampled (per seed) to choose from.
    """

    name = "max-entropy"
    uses_resources = True
    uses_llm = True

    schema = MaxEntropyOptions

    def __init__(self, num_candidates: int = MaxEntropyOptions.num_candidates) -> None:
        super().__init__()
        self.num_candidates = MaxEntropyOptions(num_candidates).num_candidates

    def options(self) -> dict:
        """The selector's settings."""
        return {"num_candidates": self.num_candidates}

    def choice_work(self, task: Task, k: int, rows: int) -> list[PromptWork]:
        """Per step, the remaining candidates scored as queries after the prompt so far."""
        m = min(max(self.num_candidates, k), len(task.train))
        return [PromptWork(1, t, m - t) for t in range(k)]

    def pool_candidates(
        self, task: Task, query: Example | None, k: int, rng: np.random.Generator
    ) -> tuple[Candidates, Sequence[int]]:
        """``num_candidates`` pool examples, sampled with ``rng``."""
        resources = self.resources_for(task)
        size = min(max(self.num_candidates, k), len(task.train))
        ids = [int(i) for i in rng.choice(len(task.train), size=size, replace=False)]
        return Candidates([task.train[i] for i in ids], scorer=resources.scorer, labels=tuple(task.labels)), ids

    def choose(self, candidates: Candidates, k: int, rng: np.random.Generator) -> Prompt:
        """Greedy by entropy (appending)."""
        scorer = candidates.needs("scorer")
        chosen: Prompt = []
        for _ in range(k):
            remaining = [i for i in range(len(candidates)) if i not in chosen]
            entropy = scorer.score(candidates.prompt(chosen), candidates.prompt(remaining)).entropy
            chosen.append(remaining[int(np.argmax(entropy))])
        return chosen


class BestOfNSelector(Selector):
    """Draw ``num_sets`` random prompts, keep the one whose value is best (pool-level: dev accuracy).

    Args:
        num_sets: Random prompts tried (N).
        dev_size: Dev rows each prompt is scored on (seeded subsample; all rows if larger).
    """

    name = "best-of-n"
    uses_resources = True
    uses_llm = True

    schema = BestOfNOptions

    def __init__(self, num_sets: int = BestOfNOptions.num_sets, dev_size: int = BestOfNOptions.dev_size) -> None:
        super().__init__()
        BestOfNOptions(num_sets, dev_size)  # checks the bounds
        self.num_sets, self.dev_size = num_sets, dev_size

    def options(self) -> dict:
        """The selector's settings."""
        return {"num_sets": self.num_sets, "dev_size": self.dev_size}

    def choice_work(self, task: Task, k: int, rows: int) -> list[PromptWork]:
        """N random prompts, each on the dev subsample."""
        return [PromptWork(self.num_sets, k, min(self.dev_size, len(task.dev)))]

    def pool_candidates(
        self, task: Task, query: Example | None, k: int, rng: np.random.Generator
    ) -> tuple[Candidates, Sequence[int]]:
        """The whole pool, valued by accuracy on the dev subsample."""
        examples = list(task.train)
        value = dev_value(self.resources_for(task), examples, self.dev_size)
        return Candidates(examples, value=value, labels=tuple(task.labels)), range(len(examples))

    def choose(self, candidates: Candidates, k: int, rng: np.random.Generator) -> Prompt:
        """Best of N random prompts (first best on ties), each valued in the order drawn."""
        value = candidates.needs("value")
        best: tuple[float, Prompt] = (-np.inf, [])
        for _ in range(self.num_sets):
            prompt = [int(i) for i in rng.choice(len(candidates), size=k, replace=False)]
            score = value(prompt)
            if score > best[0]:
                best = (score, prompt)
        return best[1]


class GreedyOracleSelector(Selector):
    """Zhang et al.'s oracle: grow the prompt one demonstration at a time, each the best by value.

    Pool-level, ``num_candidates`` pool examples are sampled once per seed and the value is dev accuracy; each
    step appends the candidate that gives the highest value. Costs ``k × num_candidates`` dev evaluations.

    Args:
        num_candidates: Pool examples sampled to choose from.
        dev_size: Dev rows each candidate prompt is scored on.
    """

    name = "greedy-oracle"
    uses_resources = True
    uses_llm = True

    schema = GreedyOracleOptions

    def __init__(
        self, num_candidates: int = GreedyOracleOptions.num_candidates, dev_size: int = GreedyOracleOptions.dev_size
    ) -> None:
        super().__init__()
        GreedyOracleOptions(num_candidates, dev_size)  # checks the bounds
        self.num_candidates, self.dev_size = num_candidates, dev_size

    def options(self) -> dict:
        """The selector's settings."""
        return {"num_candidates": self.num_candidates, "dev_size": self.dev_size}

    def choice_work(self, task: Task, k: int, rows: int) -> list[PromptWork]:
        """Per step, every remaining candidate's extension on the dev subsample."""
        m, dev = min(max(self.num_candidates, k), len(task.train)), min(self.dev_size, len(task.dev))
        return [PromptWork(m - t, t + 1, dev) for t in range(k)]

    def pool_candidates(
        self, task: Task, query: Example | None, k: int, rng: np.random.Generator
    ) -> tuple[Candidates, Sequence[int]]:
        """``num_candidates`` pool examples, sampled with ``rng``, valued by dev accuracy."""
        size = min(max(self.num_candidates, k), len(task.train))
        ids = [int(i) for i in rng.choice(len(task.train), size=size, replace=False)]
        examples = [task.train[i] for i in ids]
        value = dev_value(self.resources_for(task), examples, self.dev_size)
        return Candidates(examples, value=value, labels=tuple(task.labels)), ids

    def choose(self, candidates: Candidates, k: int, rng: np.random.Generator) -> Prompt:
        """Greedy by value (appending; first best on ties)."""
        value = candidates.needs("value")
        chosen: Prompt = []
        for _ in range(k):
            remaining = [i for i in range(len(candidates)) if i not in chosen]
            chosen.append(remaining[int(np.argmax([value([*chosen, i]) for i in remaining]))])
        return chosen
