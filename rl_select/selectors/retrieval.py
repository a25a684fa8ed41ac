"""Query-level selectors over the pool: kNN (KATE), BM25, MMR and DPP diversity over kNN candidates.

All order the chosen demonstrations by increasing similarity, so the most similar one sits right before the
query (Liu et al. 2022, "What Makes Good In-Context Examples for GPT-3?").
"""

from __future__ import annotations

import numpy as np

from rl_select.errors import ConfigError
from rl_select.selectors.base import Selector, check_k, require_query
from rl_select.tasks.task import Example, Task
from rl_select.types import Selection


class KNNSelector(Selector):
    """KATE: the ``k`` pool examples nearest to the query in embedding space, most similar last."""

    name = "knn"
    query_level = True
    uses_resources = True

    def select(self, task: Task, query: Example | None, k: int, rng: np.random.Generator) -> Selection:
        """Nearest neighbours by cosine similarity."""
        query = require_query(self, query)
        check_k(k, len(task.train))
        resources = self._resources(task)
        _, ids = resources.index.search(resources.query_vectors([query]), k)
        return [int(i) for i in ids[0][::-1]]


class BM25Selector(Selector):
    """The ``k`` pool examples with the highest BM25 score for the query, best last."""

    name = "bm25"
    query_level = True
    uses_resources = True

    def select(self, task: Task, query: Example | None, k: int, rng: np.random.Generator) -> Selection:
        """Lexical top-k."""
        query = require_query(self, query)
        check_k(k, len(task.train))
        _, ids = self._resources(task).bm25.search(query.input_text, k)
        return [int(i) for i in ids[::-1]]


class _DiverseSelector(Selector):
    """Shared part of MMR and DPP: take the query's ``num_candidates`` nearest neighbours, then diversify."""

    query_level = True
    uses_resources = True

    def __init__(self, num_candidates: int = 32) -> None:
        super().__init__()
        if num_candidates < 1:
            raise ConfigError(f"num_candidates must be positive, got {num_candidates}")
        self.num_candidates = num_candidates

    def options(self) -> dict:
        """The selector's settings."""
        return {"num_candidates": self.num_candidates}

    def select(self, task: Task, query: Example | None, k: int, rng: np.random.Generator) -> Selection:
        """Diverse subset of the nearest neighbours, ordered by increasing similarity."""
        query = require_query(self, query)
        check_k(k, len(task.train))
        resources = self._resources(task)
        sims, ids = resources.index.search(resources.query_vectors([query]), max(k, self.num_candidates))
        sims, ids = sims[0], ids[0]
        vectors = resources.index.vectors[ids]
        picked = self._pick(sims, vectors @ vectors.T, k)
        picked.sort(key=lambda i: sims[i])
        return [int(ids[i]) for i in picked]

    def _pick(self, relevance: np.ndarray, similarity: np.ndarray, k: int) -> list[int]:
        raise NotImplementedError


class MMRSelector(_DiverseSelector):
    """Maximal marginal relevance: ``λ·sim(q, c) − (1 − λ)·max_s sim(c, s)``, greedily.

    Args:
        num_candidates: Nearest neighbours to choose from.
        lambda_: Weight of relevance against redundancy, in [0, 1].
    """

    name = "mmr"

    def __init__(self, num_candidates: int = 32, lambda_: float = 0.7) -> None:
        super().__init__(num_candidates)
        if not 0.0 <= lambda_ <= 1.0:
            raise ConfigError(f"MMR lambda must be in [0, 1], got {lambda_}")
        self.lambda_ = lambda_

    def options(self) -> dict:
        """The selector's settings."""
        return {**super().options(), "lambda": self.lambda_}

    def _pick(self, relevance: np.ndarray, similarity: np.ndarray, k: int) -> list[int]:
        chosen: list[int] = []
        redundancy = np.full(len(relevance), -np.inf)
        for _ in range(k):
            penalty = redundancy if chosen else np.zeros_like(relevance)
            gain = self.lambda_ * relevance - (1 - self.lambda_) * penalty
            gain[chosen] = -np.inf
            best = int(np.argmax(gain))
            chosen.append(best)
            redundancy = np.maximum(redundancy, similarity[best])
        return chosen


class DPPSelector(_DiverseSelector):
    """Greedy MAP of a k-DPP whose kernel is ``L = diag(r) S diag(r)``, ``r = (1 + sim(q, c)) / 2``.

    Uses the incremental Cholesky update of Chen et al. (2018), "Fast Greedy MAP Inference for DPP".
    """

    name = "dpp"

    def _pick(self, relevance: np.ndarray, similarity: np.ndarray, k: int) -> list[int]:
        quality = (1.0 + relevance) / 2.0
        kernel = quality[:, None] * similarity * quality[None, :]
        n = len(quality)
        rows = np.zeros((k, n))
        gains = np.diag(kernel).astype(np.float64).copy()
        chosen: list[int] = []
        best = int(np.argmax(gains))
        for step in range(k):
            chosen.append(best)
            if step == k - 1:
                break
            scale = np.sqrt(max(gains[best], 1e-12))
            row = (kernel[best] - rows[:step, best] @ rows[:step]) / scale
            rows[step] = row
            gains = gains - row**2
            gains[chosen] = -np.inf
            best = int(np.argmax(gains))
        return chosen
