"""The selector interface.

Every selector answers ``select(task, query | None, k, rng) -> ordered pool ids`` (first demonstration first).
*Task-level* selectors pick one prompt for the whole task and ignore the query; *query-level* selectors
(``query_level = True``) pick per query. ``retrieve(queries, k, rng)`` gives OpenICL's contract: one list of
pool ids per query. Constructors are cheap; indexes, embeddings and dev scoring happen in :meth:`build`.

A selector's algorithm is :meth:`Selector.choose` over :class:`~rl_select.selectors.candidates.Candidates`;
:meth:`Selector.select` only gathers the candidates from the pool (and the env baselines gather them from an
MDP episode), so each algorithm exists once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from rl_select.errors import ConfigError
from rl_select.resources import Resources
from rl_select.selectors.candidates import Candidates, Prompt
from rl_select.tasks.task import Example, Task
from rl_select.types import JsonObject, Selection


@dataclass(frozen=True)
class PromptWork:
    """``prompts`` prompts of ``demos`` demonstrations, each scoring ``queries`` queries (for cost projections)."""

    prompts: int
    demos: int
    queries: int


def check_k(k: int, pool_size: int) -> None:
    """Reject ``k`` outside ``1 .. pool_size - 1`` with a one-line error."""
    if k <= 0:
        raise ConfigError(f"k must be a positive number of demonstrations, got {k}")
    if k >= pool_size:
        raise ConfigError(f"k={k} must be smaller than the candidate pool ({pool_size} examples)")


class Selector(ABC):
    """Chooses an ordered list of demonstrations from a task's pool."""

    name: ClassVar[str]
    query_level: ClassVar[bool] = False
    uses_resources: ClassVar[bool] = False
    uses_llm: ClassVar[bool] = False
    """Whether choosing queries the LLM (its cost is counted; slow on a CPU)."""
    seeded: ClassVar[bool] = True
    """Whether the choice depends on the seed; when not, every seed repeats the first's prompts (cache hits)."""
    schema: ClassVar[type | None] = None
    """The settings schema of the constructor's options, whose fields declare their CPU values (cheaper LLM
    search when the scoring model runs on a CPU); None: no options with a device profile."""

    def __init__(self) -> None:
        self.resources: Resources | None = None

    def choice_work(self, task: Task, k: int, rows: int) -> list[PromptWork]:
        """The LLM work of choosing for ``rows`` evaluation rows, per seed (none unless :attr:`uses_llm`)."""
        return []

    def build(self, resources: Resources) -> Selector:
        """Attach the shared resources (and do any expensive set-up). Returns ``self``."""
        self.resources = resources
        return self

    def resources_for(self, task: Task) -> Resources:
        """The resources this selector was built with, checked to belong to ``task``."""
        if self.resources is None:
            raise ConfigError(f"selector '{self.name}' must be built with build(resources) before select()")
        if self.resources.task is not task:
            raise ConfigError(
                f"selector '{self.name}' was built for task '{self.resources.task.name}', not '{task.name}'"
            )
        return self.resources

    def select(self, task: Task, query: Example | None, k: int, rng: np.random.Generator) -> Selection:
        """Ordered pool ids of ``k`` distinct demonstrations for ``query`` (or for the whole task)."""
        check_k(k, len(task.train))
        candidates, ids = self.pool_candidates(task, query, k, rng)
        return [int(ids[i]) for i in self.choose(candidates, k, rng)]

    def pool_candidates(
        self, task: Task, query: Example | None, k: int, rng: np.random.Generator
    ) -> tuple[Candidates, Sequence[int]]:
        """The candidates this selector considers in the pool, and their pool ids (default: the whole pool)."""
        return Candidates(list(task.train), labels=tuple(task.labels)), range(len(task.train))

    @abstractmethod
    def choose(self, candidates: Candidates, k: int, rng: np.random.Generator) -> Prompt:
        """``k`` distinct candidate indices in prompt order: the selector's algorithm."""

    def retrieve(self, task: Task, queries: Sequence[Example], k: int, rng: np.random.Generator) -> list[Selection]:
        """One selection per query (OpenICL's ``retrieve`` contract)."""
        if not self.query_level:
            shared = self.select(task, None, k, rng)
            return [list(shared) for _ in queries]
        return [self.select(task, q, k, rng) for q in queries]

    def options(self) -> JsonObject:
        """The selector's settings, for result files."""
        return {}

    def describe(self) -> JsonObject:
        """Name, level and settings."""
        return {"name": self.name, "query_level": self.query_level, **self.options()}


class ReversedOrder(Selector):
    """Another selector's demonstrations in reverse prompt order: the order ablation (e.g. KATE most similar first).

    Args:
        inner: The selector whose choices are reversed.
    """

    def __init__(self, inner: Selector) -> None:
        super().__init__()
        self.inner = inner
        self.name = f"{inner.name} (reversed)"  # type: ignore[misc]
        self.query_level = inner.query_level  # type: ignore[misc]
        self.uses_resources = inner.uses_resources  # type: ignore[misc]
        self.uses_llm = inner.uses_llm  # type: ignore[misc]
        self.seeded = inner.seeded  # type: ignore[misc]

    def choice_work(self, task: Task, k: int, rows: int) -> list[PromptWork]:
        """The inner selector's (with ``--order both``, the same prompts come from the cache)."""
        return self.inner.choice_work(task, k, rows)

    def build(self, resources: Resources) -> ReversedOrder:
        """Build the inner selector (unless it is already built on ``resources``, as with ``--order both``)."""
        if self.inner.resources is not resources:
            self.inner.build(resources)
        self.resources = resources
        return self

    def select(self, task: Task, query: Example | None, k: int, rng: np.random.Generator) -> Selection:
        """The inner selection, reversed."""
        return list(self.inner.select(task, query, k, rng))[::-1]

    def choose(self, candidates: Candidates, k: int, rng: np.random.Generator) -> Prompt:
        """The inner choice, reversed."""
        return list(self.inner.choose(candidates, k, rng))[::-1]

    def retrieve(self, task: Task, queries: Sequence[Example], k: int, rng: np.random.Generator) -> list[Selection]:
        """The inner selections, each reversed."""
        return [list(s)[::-1] for s in self.inner.retrieve(task, queries, k, rng)]

    def options(self) -> JsonObject:
        """The inner selector's settings, marked reversed."""
        return {**self.inner.options(), "reversed": True}


def dev_value(resources: Resources, candidates: list[Example], dev_size: int) -> Callable[[Prompt], float]:
    """A pool-level prompt's value: its (primary) accuracy on the seeded dev subsample."""
    dev = resources.dev_sample(dev_size)
    return lambda prompt: resources.scorer.score([candidates[i] for i in prompt], dev).accuracy


def require_query(selector: Selector, query: Example | None) -> Example:
    """The query, or a clear error for a query-level selector asked for a task-level prompt."""
    if query is None:
        raise ConfigError(f"selector '{selector.name}' chooses demonstrations per query; give it a query")
    return query
