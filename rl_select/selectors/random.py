"""Selectors that need no model: zero-shot, random, class-balanced random."""

from __future__ import annotations

import numpy as np

from rl_select.selectors.base import Selector, check_k
from rl_select.tasks.task import Example, Task
from rl_select.types import Selection


class ZeroShotSelector(Selector):
    """No demonstrations at all (the prompt is the query alone); ``k`` is ignored."""

    name = "zero-shot"

    def select(self, task: Task, query: Example | None, k: int, rng: np.random.Generator) -> Selection:
        """An empty selection."""
        return []


class RandomSelector(Selector):
    """``k`` distinct pool examples uniformly at random, in drawn order."""

    name = "random"

    def select(self, task: Task, query: Example | None, k: int, rng: np.random.Generator) -> Selection:
        """Draw ``k`` ids without replacement."""
        check_k(k, len(task.train))
        return [int(i) for i in rng.choice(len(task.train), size=k, replace=False)]


class BalancedRandomSelector(Selector):
    """Random demonstrations with labels as even as ``k`` allows, in shuffled order."""

    name = "balanced"

    def select(self, task: Task, query: Example | None, k: int, rng: np.random.Generator) -> Selection:
        """Cycle through the labels in random order, drawing one unused example of each."""
        check_k(k, len(task.train))
        by_label: dict[str, list[int]] = {label: [] for label in task.labels}
        for example in task.train:
            by_label[example.label].append(example.id)
        pools = {label: list(rng.permutation(ids)) for label, ids in by_label.items() if ids}
        order = list(rng.permutation(sorted(pools)))
        chosen: list[int] = []
        while len(chosen) < k:
            progressed = False
            for label in order:
                if pools[label] and len(chosen) < k:
                    chosen.append(int(pools[label].pop()))
                    progressed = True
            if not progressed:  # pragma: no cover - check_k guarantees enough examples
                break
        return [chosen[i] for i in rng.permutation(len(chosen))]
