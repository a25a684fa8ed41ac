"""A query's candidates from several proposers (:mod:`rl_select.proposals`), as the environment draws them.

The embedding, BM25 and label-balanced proposers need no LLM. The task-level proposer offers the demonstrations
of the best task-level prompts: ``task_sets`` random k-prompts scored on ``task_dev_rows`` dev rows (best-of-N),
the best ``task_prompts`` kept. That is computed once per task (and cached on disk with what it cost); its LLM
calls are learning cost, charged to whichever run computed it first.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rl_select.envs.features import FeatureBank
from rl_select.observation import nearest_first
from rl_select.paths import cache_dir, file_lock
from rl_select.proposals import Proposal, ProposerConfig, balanced_ranking, merge_proposals
from rl_select.resources import Resources
from rl_select.scoring import LLMCost
from rl_select.tasks.task import Example


@dataclass(frozen=True)
class TaskProposals:
    """The best task-level prompts on dev and the demonstrations they offer.

    Attributes:
        ids: Pool ids offered, best prompt first (each prompt in prompt order), without repeats.
        prompts: The kept prompts (pool ids in prompt order), best first.
        scores: Their mean gold-label probability on the dev rows.
        cost: The LLM work it took to find them.
    """

    ids: list[int]
    prompts: list[list[int]]
    scores: list[float]
    cost: LLMCost

    def to_dict(self) -> dict:
        """JSON form."""
        return {**asdict(self), "cost": self.cost.to_dict()}


def task_proposals(resources: Resources, config: ProposerConfig, k: int, seed: int) -> TaskProposals:
    """The task proposer's list for this task (computed once, then read from the cache directory)."""
    task, scorer = resources.task, resources.scorer
    key = f"{task.name}-{task.fingerprint('train')}-{task.fingerprint('dev')}-{scorer.namespace}"
    settings = f"k{k}-s{seed}-n{config.task_sets}-d{config.task_dev_rows}-p{config.task_prompts}"
    path = cache_dir("proposals") / f"{key}-{settings}.json"
    with file_lock(path.with_suffix(".lock")):
        if path.is_file():
            return _read(path)
        found = _best_prompts(resources, config, k, seed)
        staging = path.with_suffix(".tmp")
        staging.write_text(json.dumps(found.to_dict(), indent=2) + "\n")
        staging.replace(path)
    return found


def _best_prompts(resources: Resources, config: ProposerConfig, k: int, seed: int) -> TaskProposals:
    """Best-of-N on dev: ``task_sets`` random k-prompts, the ``task_prompts`` best by gold-label probability."""
    task, scorer = resources.task, resources.scorer
    rng = np.random.default_rng(seed)
    rows = task.sample("dev", config.task_dev_rows, seed=seed)
    before = scorer.cost()
    label = f"{task.name} · task proposer: {config.task_sets} prompts × {len(rows)} dev rows (once per task)"
    advance = resources.progress(label, config.task_sets) if resources.progress else None
    scored = []
    for _ in range(config.task_sets):
        prompt = [int(i) for i in rng.choice(len(task.train), size=min(k, len(task.train)), replace=False)]
        value = float(scorer.score([task.train[i] for i in prompt], rows).gold_probs.mean())
        scored.append((value, prompt))
        if advance is not None:
            advance(1)
    best = sorted(scored, key=lambda pair: -pair[0])[: config.task_prompts]
    ids: list[int] = []
    for _, prompt in best:
        ids += [i for i in prompt if i not in ids]
    return TaskProposals(ids, [p for _, p in best], [v for v, _ in best], scorer.cost() - before)


def _read(path: Path) -> TaskProposals:
    data = json.loads(path.read_text())
    return TaskProposals(data["ids"], data["prompts"], data["scores"], LLMCost(**data["cost"]))


class QueryProposer:
    """Proposes a query's M candidates from the env's candidate pool.

    Args:
        bank: The task's feature bank (embeddings in the similarity space, labels).
        resources: The task's resources (BM25 index, scorer for the task-level proposer).
        config: How many each proposer offers.
        pool: Pool ids the env may offer.
        num_candidates: M.
        k: Demonstrations per prompt (the task-level prompts' size).
        seed: Seed of the task-level prompts.
    """

    def __init__(
        self,
        bank: FeatureBank,
        resources: Resources,
        config: ProposerConfig,
        pool: np.ndarray,
        num_candidates: int,
        k: int,
        seed: int,
    ) -> None:
        self.bank = bank
        self.resources = resources
        self.config = config
        self.pool = np.asarray(pool, dtype=np.int64)
        self.allowed = set(int(i) for i in self.pool)
        self.num_candidates = num_candidates
        self.k = k
        self.seed = seed
        self._task_ids: list[int] | None = None

    @property
    def task_ids(self) -> list[int]:
        """The task-level proposer's list (computed on first use)."""
        if self._task_ids is None:
            found = task_proposals(self.resources, self.config, self.k, self.seed) if self.config.task else None
            self._task_ids = [] if found is None else [i for i in found.ids if i in self.allowed]
        return self._task_ids

    def propose(self, query: Example, anchor: np.ndarray) -> Proposal:
        """The query's M candidates (never the query itself) and their proposer features."""
        exclude = query.id if query.split == "train" else None
        pool = self.pool if exclude is None else self.pool[self.pool != exclude]
        similarity = self.bank.space_pool[pool] @ anchor
        ranked = {"embedding": pool[nearest_first(self.bank.space_pool[pool], anchor)]}
        counts = self.config.counts()
        if counts["bm25"]:  # enough hits that ``count`` remain after leaving out the query and rows not offered
            wanted = counts["bm25"] + 1 + len(self.resources.task.train) - len(self.pool)
            _, found = self.resources.bm25.search(query.input_text, wanted)
            ranked["bm25"] = np.asarray([int(i) for i in found if int(i) in self.allowed and int(i) != exclude])
        if counts["balanced"]:
            ranked["balanced"] = pool[balanced_ranking(similarity, self.bank.pool_labels[pool], counts["balanced"])]
        if counts["task"]:
            ranked["task"] = np.asarray([i for i in self.task_ids if i != exclude], dtype=np.int64)
        return merge_proposals(ranked, counts, self.num_candidates)
