"""The candidates a selector chooses among, in the terms every selector algorithm needs.

A selector's algorithm (:meth:`Selector.choose`) works on :class:`Candidates`, whoever offers them: the task's
pool (a selector's own :meth:`Selector.select`) or an MDP episode's M candidates (the env baselines of
:mod:`rl_select.policies.baselines`). So each algorithm is written once, and what "a prompt's value" means comes
with the candidates: accuracy on dev rows for a pool-level selector, the episode's value inside the MDP.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from rl_select.errors import ConfigError
from rl_select.tasks.task import Example

Prompt = list[int]
"""Candidate indices in prompt order (first demonstration first)."""


@dataclass
class Candidates:
    """What a selector chooses among.

    Attributes:
        examples: The candidates.
        similarity: ``[M]`` similarity of each candidate to the anchor (the query, or a centroid), or None.
        vectors: ``[M, D]`` their unit embeddings (pairwise similarity), or None.
        value: A prompt's value (higher is better), or None where nothing values prompts.
        scorer: Scores queries under a prompt (for entropy-based selectors), or None.
        labels: The task's labels, in its order.
        query: The query the candidates are chosen for (query-level choices), or None.
    """

    examples: list[Example]
    similarity: np.ndarray | None = None
    vectors: np.ndarray | None = None
    value: Callable[[Prompt], float] | None = None
    scorer: Any = None
    labels: tuple[str, ...] = ()
    query: Example | None = None

    def __len__(self) -> int:
        return len(self.examples)

    def prompt(self, indices: Sequence[int]) -> list[Example]:
        """The examples of a prompt."""
        return [self.examples[i] for i in indices]

    def nearest_first(self) -> np.ndarray:
        """Candidate indices by decreasing similarity (ties by index)."""
        return np.argsort(-self.needs("similarity"), kind="stable")

    def needs(self, what: str) -> Any:
        """A field a selector cannot do without (a clear error when the candidates lack it)."""
        field = getattr(self, what)
        if field is None:
            raise ConfigError(f"these candidates carry no {what}; this selector needs it")
        return field
