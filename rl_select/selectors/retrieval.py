"""Query-level selectors over the pool: kNN (KATE), BM25, MMR and DPP diversity over kNN candidates.

All order the chosen demonstrations by increasing similarity, so the most similar one sits right before the
query (Liu et al. 2022, "What Makes Good In-Context Examples for GPT-3?").
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rl_select.errors import ConfigError
from rl_select.selectors.base import Selector, require_query
from rl_select.selectors.candidates import Candidates, Prompt
from rl_select.tasks.task import Example, Task


def neighbour_candidates(
    selector: Selector, task: Task, query: Example | None, count: int
) -> tuple[Candidates, Sequence[int]]:
    """The query's ``count`` nearest pool neighbours (faiss, cosine), most similar first, as candidates.

    They carry the query and the scorer, for selectors that rerank neighbours with the LLM.
    """
    query = require_query(selector, query)
    resources = selector.resources_for(task)
    sims, ids = resources.index.search(resources.query_vectors([query]), count)
    ids = [int(i) for i in ids[0]]
    candidates = Candidates(
        [task.train[i] for i in ids],
        similarity=sims[0],
        vectors=resources.index.vectors[ids],
        labels=tuple(task.labels),
        query=query,
        scorer=resources.scorer if selector.uses_llm else None,
    )
    return candidates, ids


def most_similar_last(candidates: Candidates, picked: Sequence[int]) -> Prompt:
    """``picked`` in prompt order: by increasing similarity (rank among the candidates), the most similar last."""
    rank = {int(i): r for r, i in enumerate(candidates.nearest_first())}
    return sorted((int(i) for i in picked), key=lambda i: rank[i], reverse=True)


class KNNSelector(Selector):
    """KATE: the ``k`` pool examples nearest to the query in embedding space, most similar last."""

    name = "knn"
    seeded = False
    query_level = True
    uses_resources = True

    def pool_candidates(self, task: Task, query: Example | None, k: int, rng: np.random.Generator):
        """The ``k`` nearest neighbours."""
        return neighbour_candidates(self, task, query, k)

    def choose(self, candidates: Candidates, k: int, rng: np.random.Generator) -> Prompt:
        """The ``k`` most similar, most similar last."""
        return [int(i) for i in candidates.nearest_first()[:k][::-1]]


class BM25Selector(Selector):
    """The ``k`` pool examples with the highest BM25 score for the query, best last."""

    name = "bm25"
    seeded = False
    query_level = True
    uses_resources = True

    def pool_candidates(self, task: Task, query: Example | None, k: int, rng: np.random.Generator):
        """The ``k`` best BM25 matches, their scores as similarity."""
        query = require_query(self, query)
        scores, ids = self.resources_for(task).bm25.search(query.input_text, k)
        ids = [int(i) for i in ids]
        return Candidates([task.train[i] for i in ids], similarity=np.asarray(scores), labels=tuple(task.labels)), ids

    def choose(self, candidates: Candidates, k: int, rng: np.random.Generator) -> Prompt:
        """The ``k`` best matches, best last."""
        return [int(i) for i in candidates.nearest_first()[:k][::-1]]


class _DiverseSelector(Selector):
    """Shared part of MMR and DPP: take the query's ``num_candidates`` nearest neighbours, then diversify."""

    query_level = True
    seeded = False
    uses_resources = True

    def __init__(self, num_candidates: int = 32) -> None:
        super().__init__()
        if num_candidates < 1:
            raise ConfigError(f"num_candidates must be positive, got {num_candidates}")
        self.num_candidates = num_candidates

    def options(self) -> dict:
        """The selector's settings."""
        return {"num_candidates": self.num_candidates}

    def pool_candidates(self, task: Task, query: Example | None, k: int, rng: np.random.Generator):
        """The ``num_candidates`` nearest neighbours."""
        return neighbour_candidates(self, task, query, max(k, self.num_candidates))

    def choose(self, candidates: Candidates, k: int, rng: np.random.Generator) -> Prompt:
        """A diverse subset of the candidates, ordered by increasing similarity."""
        vectors = candidates.needs("vectors")
        return most_similar_last(candidates, self.pick(candidates.needs("similarity"), vectors @ vectors.T, k))

    def pick(self, relevance: np.ndarray, similarity: np.ndarray, k: int) -> list[int]:
        """``k`` candidates from their relevance to the query and their pairwise similarity."""
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

    def pick(self, relevance: np.ndarray, similarity: np.ndarray, k: int) -> list[int]:
        """Greedy MMR."""
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

    def pick(self, relevance: np.ndarray, similarity: np.ndarray, k: int) -> list[int]:
        """Greedy k-DPP MAP."""
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
