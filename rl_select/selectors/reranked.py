"""Baselines of the learned-selection papers: TopK + MDL, TopK + ConE (LLM reranking of neighbours) and Vote-k.

- **TopK + MDL** — Wu et al. 2023, "Self-Adaptive In-Context Learning: An Information Compression Perspective
  for In-Context Example Selection and Ordering" (ACL): among random organizations of the query's nearest
  neighbours, keep the one under which the LLM's label distribution for the query has minimum entropy (the
  shortest code for the unknown label). Costs ``num_sets`` scored queries per test query.
- **TopK + ConE** — Peng et al. 2024, "Revisiting Demonstration Selection Strategies in In-Context Learning"
  (ACL): rank the query's nearest neighbours by the conditional entropy of the test input given each one (the
  LLM's NLL of the query text after the demonstration) and keep the ``k`` lowest. Costs ``num_candidates``
  scored prefixes per test query.
- **Vote-k** — Su et al. 2023, "Selective Annotation Makes Language Models Better Few-Shot Learners" (ICLR):
  choose a diverse, representative annotation set of ``budget`` pool examples by voting on the embedding
  kNN graph (the graph stage, as OpenICL's ``VotekRetriever``; the paper's LM-confidence stage is left out),
  then give each query its nearest neighbours within that set. No LLM calls.

All order the chosen demonstrations so the best (lowest entropy or NLL, or most similar) sits last, right
before the query, as kNN does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rl_select.errors import ConfigError
from rl_select.selectors.base import PromptWork, Selector, require_query
from rl_select.selectors.candidates import Candidates, Prompt
from rl_select.selectors.retrieval import most_similar_last, neighbour_candidates
from rl_select.settings import check_fields, setting
from rl_select.tasks.task import Example, Task


@dataclass(frozen=True)
class MDLOptions:
    """mdl's settings."""

    num_candidates: int = setting(16, help="Nearest neighbours the organizations are drawn from.", minimum=1, cpu=8)
    num_sets: int = setting(8, help="Random organizations scored per query.", minimum=1, cpu=3)

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class ConEOptions:
    """cone's settings."""

    num_candidates: int = setting(16, help="Nearest neighbours reranked.", minimum=1, cpu=8)

    def __post_init__(self) -> None:
        check_fields(self)


def _positive(name: str, value: int) -> int:
    if value < 1:
        raise ConfigError(f"{name} must be positive, got {value}")
    return value


class MDLSelector(Selector):
    """TopK + MDL (Wu et al. 2023): the organization of the query's neighbours with minimum label entropy.

    Args:
        num_candidates: Nearest neighbours the organizations are drawn from (TopK).
        num_sets: Random organizations (k of the neighbours, most similar last) scored per query.
    """

    name = "mdl"
    query_level = True
    uses_resources = True
    uses_llm = True

    schema = MDLOptions

    def __init__(self, num_candidates: int = MDLOptions.num_candidates, num_sets: int = MDLOptions.num_sets) -> None:
        super().__init__()
        MDLOptions(num_candidates, num_sets)  # checks the bounds
        self.num_candidates, self.num_sets = num_candidates, num_sets

    def options(self) -> dict:
        """The selector's settings."""
        return {"num_candidates": self.num_candidates, "num_sets": self.num_sets}

    def choice_work(self, task: Task, k: int, rows: int) -> list[PromptWork]:
        """Per row, ``num_sets`` organizations of the query's neighbours, each scored on the query."""
        return [PromptWork(rows * self.num_sets, k, 1)]

    def pool_candidates(self, task: Task, query: Example | None, k: int, rng: np.random.Generator):
        """The query's ``num_candidates`` nearest neighbours, with the scorer."""
        return neighbour_candidates(self, task, query, max(self.num_candidates, k))

    def choose(self, candidates: Candidates, k: int, rng: np.random.Generator) -> Prompt:
        """The lowest-entropy of ``num_sets`` organizations; the first is kNN's own prompt."""
        scorer, query = candidates.needs("scorer"), candidates.needs("query")
        prompts = [most_similar_last(candidates, candidates.nearest_first()[:k])]
        for _ in range(self.num_sets - 1):
            drawn = rng.choice(len(candidates), size=k, replace=False)
            prompts.append(most_similar_last(candidates, drawn))
        results = scorer.score_many([(candidates.prompt(p), [query]) for p in prompts])
        entropy = [float(result.entropy[0]) for result in results]
        return prompts[int(np.argmin(entropy))]


class ConESelector(Selector):
    """TopK + ConE (Peng et al. 2024): the neighbours that most lower the LLM's NLL of the test input.

    Args:
        num_candidates: Nearest neighbours reranked (TopK).
    """

    name = "cone"
    seeded = False
    query_level = True
    uses_resources = True
    uses_llm = True

    schema = ConEOptions

    def __init__(self, num_candidates: int = ConEOptions.num_candidates) -> None:
        super().__init__()
        self.num_candidates = ConEOptions(num_candidates).num_candidates

    def options(self) -> dict:
        """The selector's settings."""
        return {"num_candidates": self.num_candidates}

    def choice_work(self, task: Task, k: int, rows: int) -> list[PromptWork]:
        """Per row, the query's NLL after each neighbour alone."""
        return [PromptWork(rows * max(self.num_candidates, k), 1, 1)]

    def pool_candidates(self, task: Task, query: Example | None, k: int, rng: np.random.Generator):
        """The query's ``num_candidates`` nearest neighbours, with the scorer."""
        return neighbour_candidates(self, task, query, max(self.num_candidates, k))

    def choose(self, candidates: Candidates, k: int, rng: np.random.Generator) -> Prompt:
        """The ``k`` lowest conditional entropies, the lowest last (ties by similarity rank)."""
        scorer, query = candidates.needs("scorer"), candidates.needs("query")
        nll = scorer.query_nll([[example] for example in candidates.examples], query)
        rank = {int(i): r for r, i in enumerate(candidates.nearest_first())}
        best = sorted(range(len(candidates)), key=lambda i: (nll[i], rank[i]))[:k]
        return best[::-1]


class VoteKSelector(Selector):
    """Vote-k (Su et al. 2023): a diverse annotation set chosen by graph votes, then kNN within it.

    Args:
        budget: Pool examples in the annotation set (the paper's annotation budget).
        graph_neighbours: Neighbours per node of the embedding kNN graph (the paper's k = 10).
        discount: Vote discount ρ for nodes already covered by the set (the paper's 10).
    """

    name = "votek"
    seeded = False
    query_level = True
    uses_resources = True

    def __init__(self, budget: int = 100, graph_neighbours: int = 10, discount: float = 10.0) -> None:
        super().__init__()
        self.budget = _positive("budget", budget)
        self.graph_neighbours = _positive("graph_neighbours", graph_neighbours)
        if discount <= 1:
            raise ConfigError(f"discount must be > 1, got {discount}")
        self.discount = discount
        self.annotated: np.ndarray | None = None

    def options(self) -> dict:
        """The selector's settings."""
        return {"budget": self.budget, "graph_neighbours": self.graph_neighbours, "discount": self.discount}

    def build(self, resources) -> VoteKSelector:
        """Select the annotation set on the pool's embeddings (once per task)."""
        super().build(resources)
        vectors = np.asarray(resources.index.vectors, dtype=np.float32)
        self.annotated = votek_annotation_set(vectors, self.budget, self.graph_neighbours, self.discount)
        return self

    def pool_candidates(
        self, task: Task, query: Example | None, k: int, rng: np.random.Generator
    ) -> tuple[Candidates, Sequence[int]]:
        """The annotation set, with the query's similarity to each member."""
        query = require_query(self, query)
        resources = self.resources_for(task)
        if self.annotated is None or len(self.annotated) < k:
            raise ConfigError(f"votek's annotation set is smaller than k={k}; raise --budget")
        ids = [int(i) for i in self.annotated]
        vectors = resources.index.vectors[ids]
        similarity = vectors @ resources.query_vectors([query])[0]
        examples = [task.train[i] for i in ids]
        return Candidates(examples, similarity=similarity, vectors=vectors, labels=tuple(task.labels), query=query), ids

    def choose(self, candidates: Candidates, k: int, rng: np.random.Generator) -> Prompt:
        """The ``k`` most similar members, most similar last."""
        return [int(i) for i in candidates.nearest_first()[:k][::-1]]


def votek_annotation_set(vectors: np.ndarray, budget: int, neighbours: int, discount: float) -> np.ndarray:
    """Graph-based vote-k: repeatedly take the node whose uncovered voters vote most for it.

    Node ``u`` votes for its ``neighbours`` nearest nodes (cosine); among nodes not yet chosen, a vote from
    ``u`` counts ``discount ** -c(u)``, where ``c(u)`` is how many chosen nodes ``u`` already votes for. Returns the
    chosen pool indices, in choice order.
    """
    n = len(vectors)
    budget, neighbours = min(budget, n), min(neighbours, n - 1)
    votes_for = nearest_neighbours(vectors, neighbours)  # [n, neighbours]: u -> the nodes u votes for
    covered = np.zeros(n)  # c(u)
    voting = np.ones(n, dtype=bool)  # chosen nodes stop voting and cannot be chosen again
    chosen: list[int] = []
    for _ in range(budget):
        weight = np.where(voting, discount ** (-covered), 0.0)
        scores = np.bincount(votes_for.ravel(), weights=np.repeat(weight, neighbours), minlength=n)
        scores[~voting] = -np.inf
        pick = int(np.argmax(scores))
        chosen.append(pick)
        voting[pick] = False
        covered += (votes_for == pick).any(axis=1)
    return np.asarray(chosen, dtype=np.int64)


def nearest_neighbours(vectors: np.ndarray, count: int, chunk: int = 1024) -> np.ndarray:
    """``[n, count]`` indices of each unit vector's nearest others by cosine (itself excluded), in chunks."""
    result = np.empty((len(vectors), count), dtype=np.int64)
    for start in range(0, len(vectors), chunk):
        sims = vectors[start : start + chunk] @ vectors.T
        rows = np.arange(len(sims))
        sims[rows, start + rows] = -np.inf
        top = np.argpartition(-sims, count - 1, axis=1)[:, :count] if count < len(vectors) else np.argsort(-sims)
        order = np.take_along_axis(sims, top, axis=1).argsort(axis=1, kind="stable")[:, ::-1]
        result[start : start + chunk] = np.take_along_axis(top, order, axis=1)[:, :count]
    return result
