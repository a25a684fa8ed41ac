"""The selector interface and the shared resources selectors draw on.

Every selector answers ``select(task, query | None, k, rng) -> ordered pool ids`` (first demonstration first).
*Task-level* selectors pick one prompt for the whole task and ignore the query; *query-level* selectors
(``query_level = True``) pick per query. ``retrieve(queries, k, rng)`` gives OpenICL's contract: one list of
pool ids per query. Constructors are cheap; indexes, embeddings and dev scoring happen in :meth:`build`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any, ClassVar

import numpy as np

from rl_select.errors import ConfigError
from rl_select.scoring.cache import RewardCache
from rl_select.scoring.model import LanguageModel
from rl_select.scoring.scorer import Scorer, ScoringConfig
from rl_select.tasks.task import Example, Task
from rl_select.types import Selection


def check_k(k: int, pool_size: int) -> None:
    """Reject ``k`` outside ``1 .. pool_size - 1`` with a one-line error."""
    if k <= 0:
        raise ConfigError(f"k must be a positive number of demonstrations, got {k}")
    if k >= pool_size:
        raise ConfigError(f"k={k} must be smaller than the candidate pool ({pool_size} examples)")


class Resources:
    """What selectors and evaluation share for one task, each built on first use.

    Args:
        task: The task.
        lm: The scoring model, or a function that loads it (called at most once).
        scoring: Scoring settings.
        embedder: Embedder spec (None: the scoring LLM's hidden states; else a sentence-transformers model).
        reward_cache: A reward cache to share with other scorers.
        data_seed: Seed of the dev subsamples that dev-based selectors score on.
    """

    def __init__(
        self,
        task: Task,
        *,
        lm: LanguageModel | Callable[[], LanguageModel],
        scoring: ScoringConfig | None = None,
        embedder: str | None = None,
        reward_cache: RewardCache | None = None,
        data_seed: int = 0,
    ) -> None:
        self.task = task
        self._lm = lm
        self.scoring = scoring or ScoringConfig()
        self.embedder_spec = embedder
        self.reward_cache = reward_cache
        self.data_seed = data_seed
        self._query_vectors: dict[tuple[str, int], np.ndarray] = {}
        self.progress_factory: Callable[[str, int], Callable[[int], None]] | None = None
        """Set by front ends: given a description and a total, returns an ``advance(n)`` callback."""

    @cached_property
    def lm(self) -> LanguageModel:
        """The scoring model."""
        return self._lm() if callable(self._lm) else self._lm

    @property
    def lm_fingerprint(self) -> str:
        """Identifies the scoring model's weights (loads the model)."""
        return self.lm.fingerprint

    @cached_property
    def scorer(self) -> Scorer:
        """The task's scorer."""
        return Scorer(self.lm, self.task, self.scoring, self.reward_cache)

    @cached_property
    def embedder(self) -> Any:
        """The embedder (see :func:`rl_select.retrieval.make_embedder`)."""
        from rl_select.retrieval import make_embedder

        return make_embedder(self.embedder_spec, lambda: self.lm)

    @cached_property
    def index(self) -> Any:
        """Faiss index over the pool's embeddings (cached on disk)."""
        from rl_select.retrieval import pool_index

        return pool_index(self.task, self.embedder, progress=self.progress_factory)

    @cached_property
    def bm25(self) -> Any:
        """BM25 index over the pool's texts."""
        from rl_select.retrieval import BM25Index

        return BM25Index([e.input_text for e in self.task.train])

    def attach(self, *, scorer: Any = None, embedder: Any = None) -> Resources:
        """Use this scorer and/or embedder instead of building them from the local model.

        Rollout workers attach proxies of a central scorer actor here (see ``rl_select.rollouts.workers``);
        anything with the :class:`Scorer` / :class:`~rl_select.retrieval.Embedder` methods works.
        """
        if scorer is not None:
            self.__dict__["scorer"] = scorer
        if embedder is not None:
            self.__dict__["embedder"] = embedder
        return self

    def query_vectors(self, queries: Sequence[Example]) -> np.ndarray:
        """Embeddings of ``queries`` (memoised per example)."""
        missing = [q for q in queries if q.key not in self._query_vectors]
        if missing:
            vectors = self.embedder.embed([q.input_text for q in missing])
            for q, v in zip(missing, vectors, strict=True):
                self._query_vectors[q.key] = v
        return np.stack([self._query_vectors[q.key] for q in queries])

    def dev_sample(self, size: int | None) -> list[Example]:
        """The seeded dev subsample that dev-based selectors score on."""
        return self.task.sample("dev", size, seed=self.data_seed)


class Selector(ABC):
    """Chooses an ordered list of demonstrations from a task's pool."""

    name: ClassVar[str]
    query_level: ClassVar[bool] = False
    uses_resources: ClassVar[bool] = False

    def __init__(self) -> None:
        self.resources: Resources | None = None

    def build(self, resources: Resources) -> Selector:
        """Attach the shared resources (and do any expensive set-up). Returns ``self``."""
        self.resources = resources
        return self

    def _resources(self, task: Task) -> Resources:
        if self.resources is None:
            raise ConfigError(f"selector '{self.name}' must be built with build(resources) before select()")
        if self.resources.task is not task:
            raise ConfigError(
                f"selector '{self.name}' was built for task '{self.resources.task.name}', not '{task.name}'"
            )
        return self.resources

    @abstractmethod
    def select(self, task: Task, query: Example | None, k: int, rng: np.random.Generator) -> Selection:
        """Ordered pool ids of ``k`` distinct demonstrations for ``query`` (or for the whole task)."""

    def retrieve(self, task: Task, queries: Sequence[Example], k: int, rng: np.random.Generator) -> list[Selection]:
        """One selection per query (OpenICL's ``retrieve`` contract)."""
        if not self.query_level:
            shared = self.select(task, None, k, rng)
            return [list(shared) for _ in queries]
        return [self.select(task, q, k, rng) for q in queries]

    def options(self) -> dict[str, Any]:
        """The selector's settings, for result files."""
        return {}

    def describe(self) -> dict[str, Any]:
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

    def build(self, resources: Resources) -> ReversedOrder:
        """Build the inner selector (unless it is already built on ``resources``, as with ``--order both``)."""
        if self.inner.resources is not resources:
            self.inner.build(resources)
        self.resources = resources
        return self

    def select(self, task: Task, query: Example | None, k: int, rng: np.random.Generator) -> Selection:
        """The inner selection, reversed."""
        return list(self.inner.select(task, query, k, rng))[::-1]

    def retrieve(self, task: Task, queries: Sequence[Example], k: int, rng: np.random.Generator) -> list[Selection]:
        """The inner selections, each reversed."""
        return [list(s)[::-1] for s in self.inner.retrieve(task, queries, k, rng)]

    def options(self) -> dict[str, Any]:
        """The inner selector's settings, marked reversed."""
        return {**self.inner.options(), "reversed": True}


def require_query(selector: Selector, query: Example | None) -> Example:
    """The query, or a clear error for a query-level selector asked for a task-level prompt."""
    if query is None:
        raise ConfigError(f"selector '{selector.name}' chooses demonstrations per query; give it a query")
    return query
