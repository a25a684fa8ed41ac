"""The LLM scorer: label distributions of queries under demonstration prefixes.

How it is fast (see ``packing.py`` for the layout):

* the KV cache of a demonstration prefix is computed once and reused for every query scored under it, and a
  prefix one demonstration longer than a cached one is computed from it (an episode's state t+1 is state t
  plus one demonstration, so each step costs one block);
* queries are packed without padding into one row per forward; multi-token answers are branches after their
  query, so a query's tokens are computed once whatever the number of labels;
* logits are computed only at the positions whose next token is scored.

A label's score is the log-probability of its answer's full token sequence (the sum over its tokens; divided by
the token count with ``length_normalize``). The label distribution is the softmax of those scores over the
task's labels. Contextual calibration (Zhao et al. 2021) scores the content-free inputs "N/A", "" and "[MASK]"
under the same prefix, averages their label distributions into ``p_cf``, and reports ``p ∝ p_raw / p_cf``
(their ``W = diag(p_cf)^-1``, ``b = 0``, renormalised), so a prompt's bias toward a label is divided out.
Raw and calibrated results come from the same forward passes; ``calibrate`` picks which one is primary.
"""

from __future__ import annotations

import hashlib
import inspect
import itertools
import json
import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
import torch

from rl_select.errors import ConfigError
from rl_select.scoring.cache import CachedScores, PrefixCache, PrefixState, RewardCache
from rl_select.scoring.model import LanguageModel
from rl_select.scoring.packing import TokenTree, additive_mask
from rl_select.scoring.prompts import PromptEncoder, TruncationReport
from rl_select.tasks.task import Example, Task

Progress = Callable[[int], None]


@dataclass(frozen=True)
class ScoringConfig:
    """How prompts are scored. Fields that change scores are part of every reward-cache key.

    Attributes:
        calibrate: Report contextually calibrated distributions as primary (raw ones are always computed too).
        length_normalize: Divide each label's log-probability by its token count.
        max_prompt_tokens: Cap on prompt length (default: the model's context length).
        prefix_perplexity: Also score the demonstration prefix itself (a feature of the MDP; costs the LM head
            over every prefix token).
        extend_prefixes: Compute a prefix's KV state by extending its longest cached ancestor (one block per MDP
            step) instead of from scratch. Off by default: the two agree only up to float rounding (~1e-5 in a
            log-probability), so with it a score depends on what happened to be cached, and a resumed run or a
            rerun in another order can differ in the last bits. On a CPU, where a forward's cost is mostly
            streaming the weights, it saves little (a few % of an env step).
        batch_tokens: Tokens packed per forward pass (default: 512 on CPU, 8192 on CUDA). Does not change scores.
        batch_prefixes: Score the queries of several prefixes in one batched forward (one row per prefix, its
            KV cache left-padded) in :meth:`Scorer.score_many`; default on CUDA, where each forward's launch cost
            dominates at this model size. Changes scores only by float rounding.
        prefix_cache_mb: Memory for cached prefix KV states. Does not change scores.
        reward_cache_size: Scoring results kept in memory. Does not change scores.
        reward_cache_path: SQLite file to share scoring results across processes and runs.
    """

    calibrate: bool = True
    length_normalize: bool = False
    max_prompt_tokens: int | None = None
    prefix_perplexity: bool = False
    extend_prefixes: bool = False
    batch_tokens: int | None = None
    batch_prefixes: bool | None = None
    prefix_cache_mb: int = 512
    reward_cache_size: int = 50_000
    reward_cache_path: str | None = None

    def __post_init__(self) -> None:
        if self.max_prompt_tokens is not None and self.max_prompt_tokens < 8:
            raise ConfigError(f"max_prompt_tokens must be at least 8, got {self.max_prompt_tokens}")
        if self.batch_tokens is not None and self.batch_tokens < 16:
            raise ConfigError(f"batch_tokens must be at least 16, got {self.batch_tokens}")
        if self.prefix_cache_mb < 1:
            raise ConfigError(f"prefix_cache_mb must be at least 1, got {self.prefix_cache_mb}")

    def score_key(self) -> str:
        """The fields that change scores, as a stable string."""
        return json.dumps(
            {
                "length_normalize": self.length_normalize,
                "max_prompt_tokens": self.max_prompt_tokens,
                "prefix_perplexity": self.prefix_perplexity,
            },
            sort_keys=True,
        )

    def to_dict(self) -> dict:
        """JSON form."""
        return asdict(self)


def _softmax(x: np.ndarray) -> np.ndarray:
    z = x - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _entropy(p: np.ndarray) -> np.ndarray:
    return -(p * np.log(np.clip(p, 1e-12, None))).sum(axis=-1)


@dataclass
class ScoreResult:
    """Scores of a set of queries.

    Attributes:
        log_scores: ``[Q, C]`` label log-probabilities (length-normalised if configured), uncalibrated.
        content_free: ``[Q, C]`` mean content-free label distribution under each query's prefix.
        gold: ``[Q]`` gold label indices.
        calibrate: Whether the primary distribution is the calibrated one.
        prefix_tokens: ``[Q]`` prompt tokens before each query (after the length policy).
        prefix_nll: ``[Q]`` mean NLL per prefix token (NaN unless ``prefix_perplexity``).
        truncation: What the over-long-prompt policy did.
    """

    log_scores: np.ndarray
    content_free: np.ndarray
    gold: np.ndarray
    calibrate: bool
    prefix_tokens: np.ndarray
    prefix_nll: np.ndarray
    truncation: TruncationReport = field(default_factory=TruncationReport)

    @cached_property
    def probs_raw(self) -> np.ndarray:
        """``[Q, C]`` label distribution without calibration."""
        return _softmax(self.log_scores)

    @cached_property
    def probs_calibrated(self) -> np.ndarray:
        """``[Q, C]`` contextually calibrated label distribution."""
        ratio = self.probs_raw / np.clip(self.content_free, 1e-12, None)
        return ratio / ratio.sum(axis=-1, keepdims=True)

    @property
    def probs(self) -> np.ndarray:
        """The primary label distribution."""
        return self.probs_calibrated if self.calibrate else self.probs_raw

    @property
    def predictions(self) -> np.ndarray:
        """``[Q]`` predicted label indices (primary distribution)."""
        return self.probs.argmax(axis=-1)

    @property
    def correct(self) -> np.ndarray:
        """``[Q]`` whether each prediction is right."""
        return self.predictions == self.gold

    @property
    def accuracy(self) -> float:
        """Accuracy of the primary distribution."""
        return float(self.correct.mean()) if len(self.gold) else float("nan")

    @property
    def accuracy_raw(self) -> float:
        """Accuracy without calibration."""
        return float((self.probs_raw.argmax(-1) == self.gold).mean())

    @property
    def accuracy_calibrated(self) -> float:
        """Accuracy with contextual calibration."""
        return float((self.probs_calibrated.argmax(-1) == self.gold).mean())

    @property
    def gold_probs(self) -> np.ndarray:
        """``[Q]`` primary probability of each query's gold label."""
        return self.probs[np.arange(len(self.gold)), self.gold]

    @property
    def entropy(self) -> np.ndarray:
        """``[Q]`` entropy (nats) of the primary distribution."""
        return _entropy(self.probs)

    @property
    def prefix_perplexity(self) -> float:
        """Perplexity of the demonstration prefix (mean over queries; NaN when not computed)."""
        finite = self.prefix_nll[np.isfinite(self.prefix_nll)]
        return float(np.exp(finite.mean())) if finite.size else float("nan")

    def summary(self) -> dict:
        """Accuracies, mean entropy and truncation counts."""
        return {
            "accuracy": self.accuracy,
            "accuracy_raw": self.accuracy_raw,
            "accuracy_calibrated": self.accuracy_calibrated,
            "mean_entropy": float(self.entropy.mean()),
            "queries": len(self.gold),
            "truncation": self.truncation.to_dict(),
        }


@dataclass(frozen=True)
class LLMCost:
    """LLM work, the unit every selector and learner is charged in.

    Attributes:
        queries: Queries scored under some prompt, counted when asked for whether or not a cache answered
            (the calls a cold cache would make; content-free calibration inputs are not counted).
        tokens: Tokens that went through the model's forward passes (what was actually computed).
    """

    queries: int = 0
    tokens: int = 0

    def __add__(self, other: LLMCost) -> LLMCost:
        return LLMCost(self.queries + other.queries, self.tokens + other.tokens)

    def __sub__(self, other: LLMCost) -> LLMCost:
        return LLMCost(self.queries - other.queries, self.tokens - other.tokens)

    def to_dict(self) -> dict[str, int]:
        """JSON form."""
        return asdict(self)


@dataclass
class ScorerStats:
    """Work done by a scorer: forward passes, tokens computed, queries scored, seconds in forward passes.

    ``requested`` counts the queries callers asked to score (cache hits included); ``queries`` only those the
    model computed.
    """

    forwards: int = 0
    tokens: int = 0
    queries: int = 0
    requested: int = 0
    seconds: float = 0.0
    prefix_hits: int = 0
    prefix_extensions: int = 0
    prefix_builds: int = 0

    def to_dict(self) -> dict:
        """JSON form."""
        return asdict(self)


@dataclass
class _Job:
    """Token sequences to score after one prefix: ``real`` queries first, then content-free inputs."""

    prefix: PrefixState
    items: list[tuple[int, ...]]
    real: int


@dataclass
class _Unit:
    """Token sequences scored after a shared head (a candidate's block, or a whole prompt's prefix), as one subtree.

    Attributes:
        owner: Whose scores these are (a candidate's index).
        head: Tokens every item follows.
        items: Token sequences whose answers are scored after the head.
        size: Tokens the subtree takes in a packed row (head, items, answer continuations).
    """

    owner: int
    head: tuple[int, ...]
    items: list[tuple[int, ...]]
    size: int


_EMPTY_PREFIX = PrefixState(key=(), kv=None, length=0, last_logprobs=None)


def _group_by_size(sizes: list[int], budget: int) -> list[list[int]]:
    """Consecutive indices grouped so each group's sizes sum to at most ``budget`` (a larger one stands alone)."""
    groups: list[list[int]] = []
    used = budget + 1
    for index, size in enumerate(sizes):
        if used + size > budget:
            groups.append([])
            used = 0
        groups[-1].append(index)
        used += size
    return groups


@dataclass
class _Plan:
    """How one request's queries are scored: per number of dropped demonstrations, its members and job."""

    plans: list
    groups: list[tuple[list[int], _Job]]


class Scorer:
    """Scores queries of one task with one language model.

    Args:
        lm: The language model.
        task: The task (template, verbalizer, labels).
        config: Scoring settings.
        reward_cache: A cache to share between scorers (default: a new one from ``config``).

    Example:
        >>> scorer = Scorer(load_language_model(), load_task("sst2", "../shared/data"))  # doctest: +SKIP
        >>> scorer.score(task.train[:4], task.dev[:64]).accuracy  # doctest: +SKIP
    """

    def __init__(
        self,
        lm: LanguageModel,
        task: Task,
        config: ScoringConfig | None = None,
        reward_cache: RewardCache | None = None,
    ) -> None:
        self.lm = lm
        self.task = task
        self.config = config or ScoringConfig()
        self.encoder = PromptEncoder(task, lm.tokenizer)
        self.max_tokens = min(self.config.max_prompt_tokens or lm.max_positions, lm.max_positions)
        if self.max_tokens <= self.encoder.max_label_length + 2:
            raise ConfigError(f"max prompt length {self.max_tokens} is too short for this task's answers")
        default_batch = 8192 if lm.device.type == "cuda" else 512
        self.batch_tokens = self.config.batch_tokens or default_batch
        batch_prefixes = self.config.batch_prefixes
        self.batch_prefixes = lm.device.type == "cuda" if batch_prefixes is None else batch_prefixes
        self.prefixes = PrefixCache(self.config.prefix_cache_mb * 2**20)
        self.rewards = reward_cache or RewardCache(self.config.reward_cache_size, self.config.reward_cache_path)
        self.stats = ScorerStats()
        self._first_tokens = torch.tensor([t[0] for t in self.encoder.label_tokens], device=lm.device)
        self._multi_labels = [c for c, t in enumerate(self.encoder.label_tokens) if len(t) > 1]
        self._label_lengths = np.array([len(t) for t in self.encoder.label_tokens], dtype=np.float64)
        self._answer_tokens = sum(len(self.encoder.label_tokens[c]) - 1 for c in self._multi_labels)
        self._keeps_logits = "logits_to_keep" in inspect.signature(lm.model.forward).parameters
        self.namespace = hashlib.sha256(
            "|".join(
                [
                    lm.fingerprint,
                    str(lm.dtype),
                    task.name,
                    task.fingerprint("train"),
                    task.fingerprint("dev"),
                    task.fingerprint("test"),
                    self.config.score_key(),
                ]
            ).encode()
        ).hexdigest()[:16]

    # ------------------------------------------------------------------ public API

    def score(
        self,
        demos: Sequence[Example],
        queries: Sequence[Example],
        *,
        use_cache: bool = True,
        progress: Progress | None = None,
    ) -> ScoreResult:
        """Score ``queries`` under one demonstration prefix (``demos`` in prompt order)."""
        queries = list(queries)
        self.stats.requested += len(queries)
        return self._result(self._cached_scores(tuple(demos), queries, use_cache, progress), queries)

    def score_many(
        self, requests: Sequence[tuple[Sequence[Example], Sequence[Example]]], *, use_cache: bool = True
    ) -> list[ScoreResult]:
        """Score several (demonstrations, queries) requests in one call (the vectorised env's reward path).

        With ``batch_prefixes``, uncached requests share forwards: small ones (a prompt that fits one forward) are
        packed side by side as token trees, and the queries of larger ones go through batched forwards, one row
        per prefix. Scores then depend in their last float bits on what shared a forward.
        """
        if not self.batch_prefixes:
            return [self.score(demos, queries, use_cache=use_cache) for demos, queries in requests]
        requests = [(tuple(demos), list(queries)) for demos, queries in requests]
        self.stats.requested += sum(len(queries) for _, queries in requests)
        keys = [self._cache_key(d, q) if use_cache else None for d, q in requests]
        found = [self.rewards.get(key) if key else None for key in keys]
        todo = [i for i, cached in enumerate(found) if cached is None]
        units = {i: unit for i in todo if (unit := self._single_forward_unit(*requests[i])) is not None}
        small = list(units)
        for group in _group_by_size([units[i].size for i in small], 4 * self.batch_tokens):  # as _score_jobs
            members = [small[g] for g in group]
            for i, unit_scores in zip(
                members, self._score_units(_EMPTY_PREFIX, [units[i] for i in members]), strict=True
            ):
                self.stats.queries += len(requests[i][1])
                found[i] = self._cached_from_items(unit_scores, len(requests[i][1]), len(units[i].head))
                if keys[i]:
                    self.rewards.put(keys[i], found[i])
        todo = [i for i in todo if i not in units]
        plans = {i: self._plan(*requests[i]) for i in todo}
        jobs = [job for i in todo for _, job in plans[i].groups]
        scores = iter(self._score_jobs(jobs))
        for i in todo:
            found[i] = self._assemble(plans[i], [next(scores) for _ in plans[i].groups])
            if keys[i]:
                self.rewards.put(keys[i], found[i])
        return [self._result(cached, queries) for cached, (_, queries) in zip(found, requests, strict=True)]

    def score_pairs(
        self,
        pairs: Sequence[tuple[Sequence[Example], Example]],
        *,
        use_cache: bool = True,
        progress: Progress | None = None,
    ) -> ScoreResult:
        """Score queries that each have their own demonstrations (query-level selection).

        Pairs with identical demonstrations share one prefix computation and one reward-cache entry.
        """
        groups: dict[tuple, list[int]] = defaultdict(list)
        for i, (demos, _) in enumerate(pairs):
            groups[tuple(d.key for d in demos)].append(i)
        n = len(pairs)
        self.stats.requested += n
        num_labels = self.task.num_labels
        log_scores = np.zeros((n, num_labels))
        content_free = np.zeros((n, num_labels))
        prefix_tokens = np.zeros(n, dtype=np.int64)
        prefix_nll = np.full(n, np.nan)
        report = TruncationReport()
        for members in groups.values():
            queries = [pairs[i][1] for i in members]
            part = self._cached_scores(tuple(pairs[members[0]][0]), queries, use_cache, progress)
            log_scores[members] = part.log_scores
            content_free[members] = part.content_free
            prefix_tokens[members] = part.prefix_tokens
            prefix_nll[members] = part.prefix_nll
            report.merge(TruncationReport(**part.truncation))
        cached = CachedScores(log_scores, content_free, prefix_tokens, prefix_nll, report.to_dict())
        return self._result(cached, [q for _, q in pairs])

    def score_extensions(
        self, demos: Sequence[Example], candidates: Sequence[Example], queries: Sequence[Example]
    ) -> list[ScoreResult]:
        """Scores of ``queries`` under ``demos + [c]`` for every candidate ``c``: one MDP state's action row.

        The prefix of ``demos`` is computed once (or found in the prefix cache); then each candidate's block,
        with the queries and the content-free inputs as branches after it, is packed into token trees, many
        candidates per forward pass. An action row of M candidates so costs about M blocks and M × (queries + 3)
        short items in a few forwards, instead of 2 M forwards. The scores agree with :meth:`score` of each
        extended prompt up to float rounding (another packing) and do not go into the reward cache; a prompt
        that would need the over-long policy is scored with :meth:`score` instead.
        """
        demos, candidates, queries = tuple(demos), list(candidates), list(queries)
        prefix = self._prefix_state(demos)
        items = [self.encoder.query(q) for q in queries]
        items += [self.encoder.plan((), cf, self.max_tokens).tokens for cf in self.encoder.content_free]
        room = self.max_tokens - self.encoder.max_label_length - prefix.length
        longest = max(len(t) for t in items)
        packed = [i for i, c in enumerate(candidates) if len(self.encoder.block(c)) + longest <= room]
        units = self._extension_units([candidates[i] for i in packed], items)
        parts: dict[int, list[np.ndarray]] = defaultdict(list)
        for row in _group_by_size([u.size for u in units], self.batch_tokens):
            for unit, unit_scores in zip(row, self._score_units(prefix, [units[u] for u in row]), strict=True):
                parts[units[unit].owner].append(unit_scores)
        self.stats.queries += len(packed) * len(queries)
        self.stats.requested += len(packed) * len(queries)
        results: list[ScoreResult] = []
        scored = {candidate: np.concatenate(parts[j]) for j, candidate in enumerate(packed)}
        for i, candidate in enumerate(candidates):
            if i in scored:
                block_length = len(self.encoder.block(candidate))
                cached = self._cached_from_items(scored[i], len(queries), prefix.length + block_length)
                results.append(self._result(cached, queries))
            else:
                results.append(self.score([*demos, candidate], queries))
        return results

    def _extension_units(self, candidates: list[Example], items: list[tuple[int, ...]]) -> list[_Unit]:
        """Each candidate's block with its items, split where one forward could not hold them all."""
        units = []
        extra = self._answer_tokens
        for index, candidate in enumerate(candidates):
            block = self.encoder.block(candidate)
            members: list[tuple[int, ...]] = []
            size = len(block)
            for tokens in items:
                cost = len(tokens) + extra
                if members and size + cost > self.batch_tokens:
                    units.append(_Unit(index, block, members, size))
                    members, size = [], len(block)
                members.append(tokens)
                size += cost
            units.append(_Unit(index, block, members, size))
        return units

    def _score_units(self, prefix: PrefixState, units: list[_Unit]) -> list[np.ndarray]:
        """One forward over several units after ``prefix``; per unit, ``[items, C]`` answer log-probabilities."""
        labels = self.encoder.label_tokens
        tree = TokenTree(past_length=prefix.length)
        first_reads: list[int] = []
        continuations: list[tuple[int, int, int, int]] = []
        for unit in units:
            head = tree.add(unit.head)
            for tokens in unit.items:
                node = tree.add(tokens, parent=head)
                row = len(first_reads)
                first_reads.append(tree.last_index(node))
                for c in self._multi_labels:
                    start = tree.starts[tree.add(labels[c][:-1], parent=node)]
                    continuations += [(row, c, start + t, labels[c][t + 1]) for t in range(len(labels[c]) - 1)]
        reads = [r for r in first_reads if r >= 0] + [index for _, _, index, _ in continuations]
        logprobs = self._forward(tree, prefix if prefix.length else None, reads)[0]
        scores = self._assemble_scores(prefix, first_reads, continuations, logprobs)
        bounds = np.cumsum([0, *(len(u.items) for u in units)])
        return [scores[a:b] for a, b in itertools.pairwise(bounds)]

    def query_nll(self, prefixes: Sequence[Sequence[Example]], query: Example, batch: int = 8) -> np.ndarray:
        """Mean NLL per token of ``query``'s input part (no answer) after each demonstration prefix.

        ConE's conditional entropy of the test input given demonstrations (Peng et al. 2024). One right-padded
        forward per ``batch`` prefixes; each prefix counts as one scored query in :meth:`cost`.
        """
        target = list(self.encoder.query(query))
        rows = [self.encoder.prefix(demos) for demos in prefixes]
        nll = np.zeros(len(rows))
        for start in range(0, len(rows), batch):
            chunk = rows[start : start + batch]
            nll[start : start + len(chunk)] = self._target_nll(chunk, target)
        self.stats.requested += len(rows)
        return nll

    def _target_nll(self, prefixes: list[list[int]], target: list[int]) -> np.ndarray:
        """Left-padded rows ``prefix + target``; only the logits that predict the target are computed."""
        if min(len(prefix) for prefix in prefixes) < 1:
            raise ConfigError("query_nll needs a non-empty prefix (a demonstration or the tokenizer's BOS)")
        device = self.lm.device
        width = max(len(prefix) for prefix in prefixes) + len(target)
        rows = [[0] * (width - len(prefix) - len(target)) + prefix + target for prefix in prefixes]
        mask = torch.tensor([[0] * (width - len(p) - len(target)) + [1] * (len(p) + len(target)) for p in prefixes])
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        kwargs: dict[str, Any] = {
            "input_ids": torch.tensor(rows, device=device),
            "attention_mask": mask.to(device),
            "position_ids": positions.to(device),
        }
        if self._keeps_logits:
            kwargs["logits_to_keep"] = len(target) + 1
        started = time.perf_counter()
        with torch.inference_mode():
            logits = self.lm.model(**kwargs).logits[:, -len(target) - 1 : -1].float()
        self._count_forward(started, int(mask.sum()))
        logprobs = torch.log_softmax(logits, dim=-1)
        wanted = torch.tensor(target, device=device)
        picked = logprobs[:, torch.arange(len(target), device=device), wanted]
        return (-picked.mean(dim=-1)).cpu().numpy().astype(np.float64)

    def prefix_log_perplexity(self, demos: Sequence[Example]) -> float:
        """Mean NLL per token of the demonstration prefix (needs ``prefix_perplexity``; NaN for no tokens)."""
        if not self.config.prefix_perplexity:
            raise ConfigError("prefix perplexity needs ScoringConfig(prefix_perplexity=True)")
        state = self._prefix_state(tuple(demos))
        return state.nll_sum / state.nll_count if state.nll_count else float("nan")

    def cost(self) -> LLMCost:
        """The LLM work charged to this scorer so far (see :class:`LLMCost`)."""
        return LLMCost(queries=self.stats.requested, tokens=self.stats.tokens)

    def cache_stats(self) -> dict:
        """Reward-cache hits and prefix-cache use."""
        return {
            "reward_cache": self.rewards.stats(),
            "prefix_states": len(self.prefixes),
            **self.stats.to_dict(),
        }

    # ------------------------------------------------------------------ internals

    def _cache_key(self, demos: tuple[Example, ...], queries: list[Example]) -> str:
        query_digest = hashlib.sha1(repr([q.key for q in queries]).encode()).hexdigest()
        return f"{self.namespace}|{[d.key for d in demos]}|{query_digest}"

    def _cached_scores(
        self, demos: tuple[Example, ...], queries: list[Example], use_cache: bool, progress: Progress | None
    ) -> CachedScores:
        """Scores of ``queries`` under ``demos``: from the reward cache, else computed (and cached)."""
        key = self._cache_key(demos, queries) if use_cache else None
        cached = self.rewards.get(key) if key else None
        if cached is None:
            cached = self._score_shared(demos, queries, progress)
            if key:
                self.rewards.put(key, cached)
        elif progress is not None:
            progress(len(queries))
        return cached

    def _result(self, cached: CachedScores, queries: list[Example]) -> ScoreResult:
        return ScoreResult(
            log_scores=cached.log_scores,
            content_free=cached.content_free,
            gold=self.task.gold(queries),
            calibrate=self.config.calibrate,
            prefix_tokens=cached.prefix_tokens,
            prefix_nll=cached.prefix_nll,
            truncation=TruncationReport(**cached.truncation),
        )

    def _score_shared(
        self, demos: tuple[Example, ...], queries: list[Example], progress: Progress | None
    ) -> CachedScores:
        """Score queries under one prefix; queries whose prompt is too long drop demonstrations first.

        A request that fits one forward (a query-level prompt: a prefix, one query, the content-free inputs) is
        scored as one token tree, prefix included; larger ones compute the prefix's KV state once and score the
        queries after it in chunks. Which way is a function of the request alone, so scores never depend on
        what was cached.
        """
        unit = self._single_forward_unit(demos, queries)
        if unit is not None:
            scores = self._score_units(_EMPTY_PREFIX, [unit])[0]
            self.stats.queries += len(queries)
            if progress is not None:
                progress(len(queries))
            return self._cached_from_items(scores, len(queries), len(unit.head))
        plan = self._plan(demos, queries)
        return self._assemble(plan, [self._score_items(job, progress) for _, job in plan.groups])

    def _single_forward_unit(self, demos: tuple[Example, ...], queries: list[Example]) -> _Unit | None:
        """The whole request as one :class:`_Unit` when it fits one forward unshortened, else None."""
        if self.config.prefix_perplexity or not queries:
            return None
        head = tuple(self.encoder.prefix(demos))
        items = [self.encoder.query(q) for q in queries]
        items += [self.encoder.plan((), cf, self.max_tokens).tokens for cf in self.encoder.content_free]
        if len(head) + max(len(t) for t in items) + self.encoder.max_label_length > self.max_tokens:
            return None
        size = len(head) + sum(len(t) + self._answer_tokens for t in items)
        return _Unit(0, head, items, size) if size <= self.batch_tokens else None

    def _cached_from_items(self, scores: np.ndarray, num_queries: int, prefix_length: int) -> CachedScores:
        """Per-query arrays from the scores of a request's items (its queries, then the content-free inputs)."""
        real, free = scores[:num_queries], scores[num_queries:]
        free = free[np.isfinite(free).all(axis=1)]
        uniform = np.full(self.task.num_labels, 1.0 / self.task.num_labels)
        content_free = _softmax(free).mean(axis=0) if len(free) else uniform
        if self.config.length_normalize:
            real = real / self._label_lengths
        return CachedScores(
            log_scores=real,
            content_free=np.tile(content_free, (num_queries, 1)),
            prefix_tokens=np.full(num_queries, prefix_length, dtype=np.int64),
            prefix_nll=np.full(num_queries, np.nan),
            truncation=TruncationReport(queries=num_queries).to_dict(),
        )

    def _plan(self, demos: tuple[Example, ...], queries: list[Example]) -> _Plan:
        """Apply the length policy and build one job per distinct prefix (the prefixes' KV states included)."""
        encoder = self.encoder
        plans = [encoder.plan(demos, q, self.max_tokens) for q in queries]
        by_dropped: dict[int, list[int]] = defaultdict(list)
        for i, plan in enumerate(plans):
            by_dropped[plan.num_dropped].append(i)
        groups = []
        for dropped, members in sorted(by_dropped.items()):
            kept = demos[dropped:]
            free = [encoder.plan(kept, cf, self.max_tokens).tokens for cf in encoder.content_free]
            items = [plans[i].tokens for i in members] + free
            groups.append((members, _Job(self._prefix_state(kept), items, len(members))))
        return _Plan(plans, groups)

    def _assemble(self, plan: _Plan, scores: list[np.ndarray]) -> CachedScores:
        """Per-query arrays of one request from its jobs' scores."""
        n = len(plan.plans)
        log_scores = np.zeros((n, self.task.num_labels))
        content_free = np.zeros((n, self.task.num_labels))
        prefix_tokens = np.zeros(n, dtype=np.int64)
        prefix_nll = np.full(n, np.nan)
        for (members, job), job_scores in zip(plan.groups, scores, strict=True):
            log_scores[members] = job_scores[: job.real]
            cf_scores = job_scores[job.real :]
            cf_scores = cf_scores[np.isfinite(cf_scores).all(axis=1)]
            content_free[members] = _softmax(cf_scores).mean(axis=0) if len(cf_scores) else 1.0 / self.task.num_labels
            prefix_tokens[members] = job.prefix.length
            if job.prefix.nll_count:
                prefix_nll[members] = job.prefix.nll_sum / job.prefix.nll_count
        report = TruncationReport(
            queries=n,
            queries_with_dropped_demos=sum(1 for p in plan.plans if p.num_dropped),
            demos_dropped=sum(p.num_dropped for p in plan.plans),
            queries_truncated=sum(1 for p in plan.plans if p.truncated),
        )
        return CachedScores(log_scores, content_free, prefix_tokens, prefix_nll, report.to_dict())

    def _prefix_state(self, demos: tuple[Example, ...]) -> PrefixState:
        """KV state of ``demos``' prefix: cached, or built (from its longest cached ancestor: ``extend_prefixes``)."""
        key = tuple(d.key for d in demos)
        state = self.prefixes.get(key)
        if state is not None:
            self.stats.prefix_hits += 1
            return state
        base, start = None, 0
        for j in range(len(demos) - 1, -1, -1) if self.config.extend_prefixes else ():
            base = self.prefixes.get(key[:j])
            if base is not None:
                start = j
                break
        tokens: list[int] = [] if base is not None else list(self.encoder.special_prefix)
        for demo in demos[start:]:
            tokens.extend(self.encoder.block(demo))
        if base is None and not tokens:
            state = PrefixState(key=key, kv=None, length=0, last_logprobs=None)
            self.prefixes.put(state)
            return state
        if base is not None:
            self.stats.prefix_extensions += 1
        else:
            self.stats.prefix_builds += 1
        past_length = base.length if base is not None else 0
        tree = TokenTree(past_length=past_length)
        tree.add(tokens)
        reads = list(range(len(tokens))) if self.config.prefix_perplexity else [len(tokens) - 1]
        logprobs, cache = self._forward(tree, base, reads, keep_cache=True)
        nll_sum, nll_count = (base.nll_sum, base.nll_count) if base is not None else (0.0, 0)
        if self.config.prefix_perplexity:
            targets = torch.tensor(tokens[1:], device=logprobs.device)
            nll_sum -= float(logprobs[:-1].gather(1, targets[:, None]).sum())
            nll_count += len(tokens) - 1
            if base is not None and base.last_logprobs is not None:
                nll_sum -= float(base.last_logprobs[tokens[0]])
                nll_count += 1
        kv = [(entry[0], entry[1]) for entry in cache]
        state = PrefixState(
            key=key,
            kv=kv,
            length=past_length + len(tokens),
            last_logprobs=logprobs[-1],
            nll_sum=nll_sum,
            nll_count=nll_count,
        )
        self.prefixes.put(state)
        return state

    def _score_items(self, job: _Job, progress: Progress | None) -> np.ndarray:
        """``[len(items), C]`` label log-probabilities of a job's token sequences, in chunks of ``batch_tokens``."""
        prefix, items, real = job.prefix, job.items, job.real
        labels = self.encoder.label_tokens
        extra = self._answer_tokens
        out = np.full((len(items), len(labels)), -np.inf)
        chunk: list[int] = []
        size = 0
        for i, tokens in enumerate(items):
            cost = len(tokens) + extra
            if chunk and size + cost > self.batch_tokens:
                self._score_chunk(prefix, items, chunk, out)
                if progress is not None:
                    progress(sum(1 for j in chunk if j < real))
                chunk, size = [], 0
            chunk.append(i)
            size += cost
        if chunk:
            self._score_chunk(prefix, items, chunk, out)
            if progress is not None:
                progress(sum(1 for j in chunk if j < real))
        self.stats.queries += real
        return out / self._label_lengths if self.config.length_normalize else out

    def _score_jobs(self, jobs: list[_Job]) -> list[np.ndarray]:
        """Scores of many jobs in batched forwards, one row per job.

        Batches hold up to ``4 × batch_tokens`` padded tokens; a job too big for one row goes through
        :meth:`_score_items`.
        """
        results: list[np.ndarray | None] = [None] * len(jobs)
        packed = []
        for j, job in enumerate(jobs):
            if sum(len(t) for t in job.items) + self._answer_tokens * len(job.items) > self.batch_tokens:
                results[j] = self._score_items(job, None)
            else:
                packed.append((j, *self._pack(job.prefix.length, job.items)))
        batch: list = []
        for row in sorted(packed, key=lambda r: jobs[r[0]].prefix.length):
            widths = [len(r[1]) + jobs[r[0]].prefix.length for r in (*batch, row)]
            if batch and max(widths) * len(widths) > 4 * self.batch_tokens:
                self._score_rows(jobs, batch, results)
                batch = []
            batch.append(row)
        if batch:
            self._score_rows(jobs, batch, results)
        return results  # type: ignore[return-value]

    def _score_rows(self, jobs: list[_Job], rows: list, results: list) -> None:
        """One batched forward: row r holds job r's prefix KV (left-padded) and its packed tree (right-padded)."""
        device, dtype = self.lm.device, self.lm.dtype
        past = max(jobs[j].prefix.length for j, *_ in rows)
        width = max(len(tree) for _, tree, _, _ in rows)
        ids = torch.zeros((len(rows), width), dtype=torch.long)
        positions = torch.zeros((len(rows), width), dtype=torch.long)
        allowed = np.zeros((len(rows), width, past + width), dtype=bool)
        reads = []
        for r, (j, tree, first_reads, continuations) in enumerate(rows):
            length, size = jobs[j].prefix.length, len(tree)
            ids[r, :size] = torch.tensor(tree.ids)
            positions[r, :size] = torch.tensor(tree.positions)
            own = tree.allowed()
            allowed[r, :size, past - length : past] = own[:, :length]
            allowed[r, :size, past : past + size] = own[:, length:]
            allowed[r, np.arange(size, width), past + np.arange(size, width)] = True  # padding attends to itself
            reads.append([i for i in first_reads if i >= 0] + [index for _, _, index, _ in continuations])
        cache = None
        if past:  # some row has a prefix: pad every row's KV on the left to the longest
            from transformers import DynamicCache

            cache = DynamicCache()
            reference = next(jobs[j].prefix.kv for j, *_ in rows if jobs[j].prefix.kv)
            for layer, (ref_keys, ref_values) in enumerate(reference):
                keys = torch.zeros((len(rows), ref_keys.shape[1], past, ref_keys.shape[-1]), dtype=dtype, device=device)
                values = torch.zeros(
                    (len(rows), ref_values.shape[1], past, ref_values.shape[-1]), dtype=dtype, device=device
                )
                for r, (j, *_) in enumerate(rows):
                    prefix = jobs[j].prefix
                    if prefix.kv:
                        keys[r, :, past - prefix.length :] = prefix.kv[layer][0][0]
                        values[r, :, past - prefix.length :] = prefix.kv[layer][1][0]
                cache.update(keys, values, layer)
        keep = torch.zeros((len(rows), max(len(r) for r in reads)), dtype=torch.long)
        for r, row_reads in enumerate(reads):
            keep[r, : len(row_reads)] = torch.tensor(row_reads, dtype=torch.long)
        mask = additive_mask(allowed, dtype, device)[:, None]
        logprobs = self._forward_batch(ids.to(device), positions.to(device), mask, cache, keep.to(device))
        for r, (j, _, first_reads, continuations) in enumerate(rows):
            scores = self._assemble_scores(jobs[j].prefix, first_reads, continuations, logprobs[r, : len(reads[r])])
            self.stats.queries += jobs[j].real
            results[j] = scores / self._label_lengths if self.config.length_normalize else scores

    def _score_chunk(
        self, prefix: PrefixState, items: list[tuple[int, ...]], chunk: list[int], out: np.ndarray
    ) -> None:
        """Score ``items[chunk]`` in one packed forward and write their label log-probabilities into ``out``."""
        tree, first_reads, continuations = self._pack(prefix.length, [items[i] for i in chunk])
        reads = [r for r in first_reads if r >= 0] + [index for _, _, index, _ in continuations]
        logprobs = self._forward(tree, prefix if prefix.length else None, reads)[0] if reads else None
        out[chunk] = self._assemble_scores(prefix, first_reads, continuations, logprobs)

    def _pack(self, past_length: int, items: list[tuple[int, ...]]) -> tuple[TokenTree, list[int], list[tuple]]:
        """The token tree of ``items`` after a prefix, with where to read each answer's token log-probabilities.

        Returns:
            The tree; per item the packed index whose logits score every answer's first token (-1: the answer
            follows the prefix directly); and ``(item, label, packed index, token)`` for every later answer token.
        """
        labels = self.encoder.label_tokens
        tree = TokenTree(past_length=past_length)
        first_reads: list[int] = []
        continuations: list[tuple[int, int, int, int]] = []
        for row, tokens in enumerate(items):
            node = tree.add(tokens)
            first_reads.append(tree.last_index(node))
            for c in self._multi_labels:
                start = tree.starts[tree.add(labels[c][:-1], parent=node)]
                continuations += [(row, c, start + j, labels[c][j + 1]) for j in range(len(labels[c]) - 1)]
        return tree, first_reads, continuations

    def _assemble_scores(
        self, prefix: PrefixState, first_reads: list[int], continuations: list[tuple], logprobs: torch.Tensor | None
    ) -> np.ndarray:
        """``[items, C]`` answer log-probabilities.

        ``logprobs`` holds the log-softmax rows read at ``first_reads`` (those >= 0), then at ``continuations``.
        """
        device = self.lm.device
        scores = torch.full((len(first_reads), len(self.encoder.label_tokens)), -torch.inf, device=device)
        cursor = 0
        for row, read in enumerate(first_reads):
            if read >= 0:
                scores[row] = logprobs[cursor, self._first_tokens]
                cursor += 1
            elif prefix.last_logprobs is not None:  # an empty query: the answer follows the prefix directly
                scores[row] = prefix.last_logprobs[self._first_tokens]
        if continuations:
            rows, cols, _, tokens = (torch.tensor(column, device=device) for column in zip(*continuations, strict=True))
            offsets = cursor + torch.arange(len(continuations), device=device)
            scores = scores.index_put((rows, cols), logprobs[offsets, tokens], accumulate=True)
        return scores.double().cpu().numpy()

    @cached_property
    def _keeps_row_logits(self) -> bool:
        """Whether the model takes per-row positions (a 2D ``logits_to_keep``), probed once on two tokens.

        Recent transformers gather them per row; older releases index every row with the whole 2D tensor,
        which gives logits of the wrong shape, so the batched path then computes full logits and gathers.
        """
        if not self._keeps_logits:
            return False
        device = self.lm.device
        ids = torch.zeros((2, 2), dtype=torch.long, device=device)
        keep = torch.tensor([[0], [1]], dtype=torch.long, device=device)
        with torch.inference_mode():
            logits = self.lm.model(input_ids=ids, logits_to_keep=keep, use_cache=False).logits
        return tuple(logits.shape[:2]) == (2, 1) and logits.dim() == 3

    @torch.inference_mode()
    def _forward_batch(
        self, ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, cache: object, keep: torch.Tensor
    ) -> torch.Tensor:
        """A batched forward; float32 log-softmax ``[rows, reads, vocab]`` at the per-row positions ``keep``."""
        kwargs = _model_inputs(ids, positions, mask, cache)
        started = time.perf_counter()
        if self._keeps_row_logits:
            logits = self.lm.model(**kwargs, logits_to_keep=keep).logits
        else:
            full = self.lm.model(**kwargs).logits
            logits = full.gather(1, keep[..., None].expand(-1, -1, full.shape[-1]))
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        self._count_forward(started, int(ids.numel()))
        return logprobs

    @torch.inference_mode()
    def _forward(
        self, tree: TokenTree, past: PrefixState | None, reads: list[int], keep_cache: bool = False
    ) -> tuple[torch.Tensor, object]:
        """Run the packed row; return float32 log-softmax at ``reads`` and the updated KV cache."""
        device = self.lm.device
        ids = torch.tensor([tree.ids], device=device)
        positions = torch.tensor([tree.positions], device=device)
        mask = tree.attention_mask(self.lm.dtype, device)
        if past is not None and past.kv is not None:
            cache = past.as_cache()
        else:
            from transformers import DynamicCache

            cache = DynamicCache() if keep_cache else None
        kwargs = _model_inputs(ids, positions, mask, cache)
        read_index = torch.tensor(reads, device=device, dtype=torch.long)
        if self._keeps_logits:
            kwargs["logits_to_keep"] = read_index
        started = time.perf_counter()
        output = self.lm.model(**kwargs)
        logits = output.logits[0] if self._keeps_logits else output.logits[0, read_index]
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        self._count_forward(started, len(tree))
        return logprobs, output.past_key_values if keep_cache else None

    def _count_forward(self, started: float, tokens: int) -> None:
        """Add one finished forward (waiting for the GPU, so the time is real) to :attr:`stats`."""
        if self.lm.device.type == "cuda":
            torch.cuda.synchronize(self.lm.device)
        self.stats.seconds += time.perf_counter() - started
        self.stats.forwards += 1
        self.stats.tokens += tokens


def _model_inputs(ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, cache: object) -> dict[str, Any]:
    """Keyword arguments of a forward over packed rows with explicit positions, a 4D mask and an optional KV cache."""
    return {
        "input_ids": ids,
        "position_ids": positions,
        "attention_mask": mask,
        "past_key_values": cache,
        "use_cache": cache is not None,
    }


def accuracy_interval(accuracies: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    values = np.asarray(accuracies, dtype=np.float64)
    if values.size == 0:
        return math.nan, math.nan
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else 0.0
