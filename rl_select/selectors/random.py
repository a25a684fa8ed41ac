"""Selectors that need no model: zero-shot, random, class-balanced random."""

from __future__ import annotations

import numpy as np

from rl_select.selectors.base import Selector
from rl_select.selectors.candidates import Candidates, Prompt
from rl_select.tasks.task import Example, Task
from rl_select.types import Selection


class ZeroShotSelector(Selector):
    """No demonstrations at all (the prompt is the query alone); ``k`` is ignored."""

    name = "zero-shot"
    seeded = False

    def select(self, task: Task, query: Example | None, k: int, rng: np.random.Generator) -> Selection:
        """An empty selection."""
        return []

    def choose(self, candidates: Candidates, k: int, rng: np.random.Generator) -> Prompt:
        """No candidate."""
        return []


class RandomSelector(Selector):
    """``k`` distinct candidates uniformly at random, in drawn order."""

    name = "random"

    def choose(self, candidates: Candidates, k: int, rng: np.random.Generator) -> Prompt:
        """Draw ``k`` without replacement."""
        return [int(i) for i in rng.choice(len(candidates), size=k, replace=False)]


class BalancedRandomSelector(Selector):
    """Random demonstrations with labels as even as ``k`` allows, in shuffled order."""

    name = "balanced"

    def choose(self, candidates: Candidates, k: int, rng: np.random.Generator) -> Prompt:
        """Cycle through the labels in random order, drawing one unused candidate of each."""
        by_label: dict[str, list[int]] = {label: [] for label in candidates.labels}
        for index, example in enumerate(candidates.examples):
            by_label.setdefault(example.label, []).append(index)
        pools = {label: list(rng.permutation(ids)) for label, ids in by_label.items() if ids}
        order = list(rng.permutation(sorted(pools)))
        chosen: list[int] = []
        while len(chosen) < k:
            progressed = False
            for label in order:
                if pools[label] and len(chosen) < k:
                    chosen.append(int(pools[label].pop()))
                    progressed = True
            if not progressed:  # pragma: no cover - check_k guarantees enough candidates
                break
        return [chosen[i] for i in rng.permutation(len(chosen))]
