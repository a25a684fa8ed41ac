"""What every consumer of one task shares: its LLM scorer, embedder, faiss index and BM25 index.

Selectors, environments, evaluation and training all take a :class:`Resources`: each piece is built on first
use and then shared, so a run loads one model and embeds a pool once. Everything a caller may want to supply
instead (a loaded model, a shared reward cache, a remote scorer or embedder) is a constructor argument.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cached_property
from typing import Any

import numpy as np

from rl_select.retrieval import BM25Index, make_embedder, pool_index
from rl_select.scoring import LLMCost, Scorer, ScoringConfig
from rl_select.scoring.cache import RewardCache
from rl_select.scoring.model import LanguageModel
from rl_select.tasks.task import Example, Task

ProgressFactory = Callable[[str, int], Callable[[int], None]]


class Resources:
    """What selectors, environments and evaluation share for one task, each built on first use.

    Args:
        task: The task.
        lm: The scoring model, or a function that loads it (called at most once).
        scoring: Scoring settings.
        embedder: Embedder spec (None: the scoring LLM's hidden states; else a sentence-transformers model).
        reward_cache: A reward cache to share with other scorers.
        data_seed: Seed of the dev subsamples that dev-based selectors score on.
        scorer: A scorer to use instead of building one from ``lm`` (Ray workers pass a central scorer's proxy;
            anything with the :class:`Scorer` methods works).
        embedder_impl: An embedder to use instead of building one from ``embedder`` (likewise).
        progress: Front ends' progress factory: ``progress(description, total)`` returns ``advance(n)``.
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
        scorer: Any = None,
        embedder_impl: Any = None,
        progress: ProgressFactory | None = None,
    ) -> None:
        self.task = task
        self._lm = lm
        self.scoring = scoring or ScoringConfig()
        self.embedder_spec = embedder
        self.reward_cache = reward_cache
        self.data_seed = data_seed
        self._scorer = scorer
        self._embedder = embedder_impl
        self.progress = progress
        self._query_vectors: dict[tuple[str, int], np.ndarray] = {}

    def for_task(self, task: Task) -> Resources:
        """Resources of another task with this one's model, scoring, embedder spec, reward cache and seed."""
        return Resources(
            task,
            lm=self._lm if "lm" not in self.__dict__ else self.lm,
            scoring=self.scoring,
            embedder=self.embedder_spec,
            reward_cache=self.reward_cache,
            data_seed=self.data_seed,
            progress=self.progress,
        )

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
        return self._scorer if self._scorer is not None else Scorer(self.lm, self.task, self.scoring, self.reward_cache)

    @cached_property
    def embedder(self) -> Any:
        """The embedder (see :func:`rl_select.retrieval.make_embedder`)."""
        if self._embedder is not None:
            return self._embedder

        return make_embedder(self.embedder_spec, lambda: self.lm)

    @cached_property
    def index(self) -> Any:
        """Faiss index over the pool's embeddings (cached on disk)."""
        return pool_index(self.task, self.embedder, progress=self.progress)

    @cached_property
    def bm25(self) -> Any:
        """BM25 index over the pool's texts."""
        return BM25Index([e.input_text for e in self.task.train])

    def llm_cost(self) -> LLMCost:
        """The LLM work this task's scorer has done so far (none when it was never built)."""
        return self.scorer.cost() if "scorer" in self.__dict__ else LLMCost()

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
