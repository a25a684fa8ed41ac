"""Where a query's candidates come from: several named proposers, merged into a fixed number M.

A query-mode policy chooses among M candidates. Offering only the query's M nearest embedding neighbours locks it
into kNN's neighbourhood; where those are not the demonstrations this LLM needs (sst2: random prompts beat kNN),
it cannot escape. So the candidates are the union of named proposers' lists:

* ``embedding``: the query's nearest pool neighbours (kNN's space);
* ``bm25``: its nearest pool rows by BM25 (lexical overlap);
* ``balanced``: a label-balanced diverse set: each label's nearest examples, taken round-robin over the labels;
* ``task``: the demonstrations of the best task-level prompts found on dev (the same for every query).

They are taken in that order, without repeats, each up to its count; the rest of the M slots are filled with
further embedding neighbours, so M never changes. Each candidate's features say which proposers offered it and
at which rank, so one policy can reproduce kNN (embedding ranks), BM25, best-of-N's prompt (task ranks) or mix
them per query, on any task: the columns are the same whatever the counts.

Plain numpy: the environment (training) and the exported runtime (inference) propose with the same functions.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from rl_select.errors import ConfigError
from rl_select.observation import PROPOSER_COLUMNS, PROPOSERS
from rl_select.settings import check_fields, setting
from rl_select.types import JsonObject


@dataclass(frozen=True)
class ProposerConfig:
    """How many candidates each proposer offers a query (query mode); further embedding neighbours fill up to M."""

    embedding: int = setting(8, help="The query's nearest pool neighbours by embedding.", minimum=0)
    bm25: int = setting(0, help="Its nearest pool rows by BM25.", minimum=0)
    balanced: int = setting(
        0, help="A label-balanced set: each label's nearest examples, round-robin over labels.", minimum=0
    )
    task: int = setting(
        0, help="Demonstrations of the best task-level prompts on dev (LLM calls once per task).", minimum=0
    )
    task_prompts: int = setting(2, help="How many of the best task-level prompts 'task' draws from.", minimum=0)
    task_sets: int = setting(20, help="Random prompts scored on dev to find them (best-of-N's N).", minimum=0)
    task_dev_rows: int = setting(32, help="Dev rows each of those prompts is scored on.", minimum=0)

    def __post_init__(self) -> None:
        for name in (*PROPOSERS, "task_prompts", "task_sets", "task_dev_rows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"proposers.{name} must be a non-negative integer, got {value!r}")
        check_fields(self)
        if self.task and min(self.task_prompts, self.task_sets, self.task_dev_rows) < 1:
            raise ConfigError("the task proposer needs task_prompts, task_sets and task_dev_rows of at least 1")

    def counts(self) -> dict[str, int]:
        """Proposer name → how many it offers."""
        return {name: getattr(self, name) for name in PROPOSERS}

    def check(self, num_candidates: int) -> None:
        """Reject counts that add up to more than M."""
        total = sum(self.counts().values())
        if total > num_candidates:
            raise ConfigError(f"the proposers offer {total} candidates, more than num_candidates M={num_candidates}")

    def without_task(self) -> ProposerConfig:
        """The same proposers without the task-level one (its slots go to embedding neighbours): no LLM calls."""
        return ProposerConfig(**{**asdict(self), "task": 0})

    def to_dict(self) -> JsonObject:
        """JSON form."""
        return asdict(self)


@dataclass(frozen=True)
class Proposal:
    """A query's M candidates and their proposer features.

    Attributes:
        candidates: ``[M]`` pool ids.
        features: ``[M, len(PROPOSER_COLUMNS)]`` from/rank columns per proposer.
    """

    candidates: np.ndarray
    features: np.ndarray


def balanced_ranking(similarity: np.ndarray, labels: np.ndarray, count: int, exclude: int | None = None) -> np.ndarray:
    """Each label's nearest examples taken round-robin over the labels (labels by their nearest example first).

    Args:
        similarity: ``[N]`` similarity of every pool row to the query.
        labels: ``[N]`` label index of every pool row.
        count: How many to return (fewer if the pool is smaller).
        exclude: A pool id never returned (the query itself, when it is a pool row).
    """
    order = np.argsort(-similarity, kind="stable")
    if exclude is not None:
        order = order[order != exclude]
    by_label = [order[labels[order] == label] for label in np.unique(labels)]
    by_label.sort(key=lambda ids: -similarity[ids[0]])
    picked: list[int] = []
    depth = 0
    while len(picked) < count and any(depth < len(ids) for ids in by_label):
        picked += [int(ids[depth]) for ids in by_label if depth < len(ids)][: count - len(picked)]
        depth += 1
    return np.asarray(picked, dtype=np.int64)


def merge_proposals(ranked: dict[str, np.ndarray], counts: dict[str, int], num_candidates: int) -> Proposal:
    """The M candidates: each proposer's top ``count`` in :data:`PROPOSERS` order, topped up from ``embedding``.

    Args:
        ranked: Proposer name → pool ids, best first (``embedding`` must rank at least M rows; the query itself
            already left out).
        counts: Proposer name → how many of its list it offers.
        num_candidates: M.
    """
    embedding = np.asarray(ranked["embedding"], dtype=np.int64)
    offered = {name: np.asarray(ranked.get(name, ()), dtype=np.int64)[: counts.get(name, 0)] for name in PROPOSERS}
    offered["embedding"] = embedding[: max(num_candidates, counts.get("embedding", 0))]
    candidates: list[int] = []
    seen: set[int] = set()
    for name in PROPOSERS:
        for pool_id in offered[name][: counts.get(name, 0)]:
            if int(pool_id) not in seen:
                seen.add(int(pool_id))
                candidates.append(int(pool_id))
    for pool_id in embedding:  # top up with further neighbours
        if len(candidates) >= num_candidates:
            break
        if int(pool_id) not in seen:
            seen.add(int(pool_id))
            candidates.append(int(pool_id))
    if len(candidates) < num_candidates:
        raise ConfigError(f"only {len(candidates)} distinct candidates for M={num_candidates}: the pool is too small")
    chosen = np.asarray(candidates[:num_candidates], dtype=np.int64)
    return Proposal(chosen, proposer_features(chosen, offered))


def proposer_features(candidates: np.ndarray, offered: dict[str, np.ndarray]) -> np.ndarray:
    """``[M, len(PROPOSER_COLUMNS)]``: for each proposer, whether it offered each candidate and at which rank."""
    out = np.zeros((len(candidates), len(PROPOSER_COLUMNS)), dtype=np.float32)
    for p, name in enumerate(PROPOSERS):
        ids = offered.get(name, np.zeros(0, dtype=np.int64))
        position = {int(pool_id): r for r, pool_id in enumerate(ids)}
        for c, pool_id in enumerate(candidates):
            r = position.get(int(pool_id))
            out[c, 2 * p] = 0.0 if r is None else 1.0
            out[c, 2 * p + 1] = 1.0 if r is None else r / max(len(ids), 1)
    return out
