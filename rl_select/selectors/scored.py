"""Task-level selectors that query the LLM: max-entropy, best-of-N on dev, greedy oracle on dev.

All three are the baselines of Zhang, Feng & Tan (2022), "Active Example Selection for In-Context Learning".
They choose with the scorer's primary distribution (calibrated by default), like the evaluation itself.
"""

from __future__ import annotations

import numpy as np

from rl_select.errors import ConfigError
from rl_select.selectors.base import Selector, check_k
from rl_select.tasks.task import Example, Task
from rl_select.types import Selection


def _positive(name: str, value: int) -> int:
    if value < 1:
        raise ConfigError(f"{name} must be positive, got {value}")
    return value


class MaxEntropySelector(Selector):
    """Active-learning baseline: repeatedly add the candidate the LLM is least sure about.

    At each step the ``num_candidates`` sampled pool examples are scored as queries under the demonstrations
    chosen so far; the one with the highest label-distribution entropy joins the prompt.

    Args:
        num_candidates: Pool examples sampled (per seed) to choose from.
    """

    name = "max-entropy"
    uses_resources = True

    def __init__(self, num_candidates: int = 100) -> None:
        super().__init__()
        self.num_candidates = _positive("num_candidates", num_candidates)

    def options(self) -> dict:
        """The selector's settings."""
        return {"num_candidates": self.num_candidates}

    def select(self, task: Task, query: Example | None, k: int, rng: np.random.Generator) -> Selection:
        """Greedy by entropy."""
        check_k(k, len(task.train))
        scorer = self._resources(task).scorer
        size = min(max(self.num_candidates, k), len(task.train))
        candidates = [task.train[int(i)] for i in rng.choice(len(task.train), size=size, replace=False)]
        chosen: list[Example] = []
        for _ in range(k):
            remaining = [c for c in candidates if c not in chosen]
            entropy = scorer.score(chosen, remaining).entropy
            chosen.append(remaining[int(np.argmax(entropy))])
        return [c.id for c in chosen]


class BestOfNSelector(Selector):
    """Draw ``num_sets`` random prompts, keep the one with the best accuracy on a dev subsample.

    Args:
        num_sets: Random prompts tried (N).
        dev_size: Dev rows each prompt is scored on (seeded subsample; all rows if larger).
    """

    name = "best-of-n"
    uses_resources = True

    def __init__(self, num_sets: int = 20, dev_size: int = 200) -> None:
        super().__init__()
        self.num_sets = _positive("num_sets", num_sets)
        self.dev_size = _positive("dev_size", dev_size)

    def options(self) -> dict:
        """The selector's settings."""
        return {"num_sets": self.num_sets, "dev_size": self.dev_size}

    def select(self, task: Task, query: Example | None, k: int, rng: np.random.Generator) -> Selection:
        """Best of N by dev accuracy (first best on ties)."""
        check_k(k, len(task.train))
        resources = self._resources(task)
        dev = resources.dev_sample(self.dev_size)
        best: tuple[float, list[int]] = (-1.0, [])
        for _ in range(self.num_sets):
            ids = [int(i) for i in rng.choice(len(task.train), size=k, replace=False)]
            accuracy = resources.scorer.score([task.train[i] for i in ids], dev).accuracy
            if accuracy > best[0]:
                best = (accuracy, ids)
        return best[1]


class GreedyOracleSelector(Selector):
    """Zhang et al.'s oracle: grow the prompt one demonstration at a time, each the best on dev.

    ``num_candidates`` pool examples are sampled once per seed; each step appends the candidate that gives the
    highest dev accuracy. Costs ``k × num_candidates`` dev evaluations (each extends a cached prefix by one
    demonstration).

    Args:
        num_candidates: Pool examples sampled to choose from.
        dev_size: Dev rows each candidate prompt is scored on.
    """

    name = "greedy-oracle"
    uses_resources = True

    def __init__(self, num_candidates: int = 32, dev_size: int = 100) -> None:
        super().__init__()
        self.num_candidates = _positive("num_candidates", num_candidates)
        self.dev_size = _positive("dev_size", dev_size)

    def options(self) -> dict:
        """The selector's settings."""
        return {"num_candidates": self.num_candidates, "dev_size": self.dev_size}

    def select(self, task: Task, query: Example | None, k: int, rng: np.random.Generator) -> Selection:
        """Greedy by dev accuracy (first best on ties)."""
        check_k(k, len(task.train))
        resources = self._resources(task)
        dev = resources.dev_sample(self.dev_size)
        size = min(max(self.num_candidates, k), len(task.train))
        candidates = [task.train[int(i)] for i in rng.choice(len(task.train), size=size, replace=False)]
        chosen: list[Example] = []
        for _ in range(k):
            remaining = [c for c in candidates if c not in chosen]
            accuracies = [resources.scorer.score([*chosen, c], dev).accuracy for c in remaining]
            chosen.append(remaining[int(np.argmax(accuracies))])
        return [c.id for c in chosen]
