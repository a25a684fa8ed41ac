"""The LLM scorer: label distributions of queries under demonstration prefixes.

How it is fast:

* the KV cache of a demonstration prefix is computed once and reused for every query scored under it
  (``extend_prefixes``: a prefix one demonstration longer than a cached one is computed from it, so an MDP step
  costs one block);
* the queries after a prefix are batched as rows (a query and its answer branches each), sorted by length so
  padding stays small, every row reading the shared prefix's KV state (``forward.py``);
* multi-token answers are branches after their query in a row's token tree, so a query is computed once
  whatever the number of labels (``packing.py``); logits are computed only where answers are read.

Label read-out and contextual calibration are in ``readout.py``; raw and calibrated results come from the same
forward passes, and ``calibrate`` picks which one is primary.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import numpy as np

from rl_select.errors import ConfigError
from rl_select.scoring.cache import CachedScores, PrefixCache, PrefixState, RewardCache
from rl_select.scoring.config import ScoringConfig
from rl_select.scoring.forward import Row, TorchBackend
from rl_select.scoring.model import LanguageModel
from rl_select.scoring.packing import PackedItems, batches_by_width, pack_items
from rl_select.scoring.prompts import PromptEncoder, TruncationReport
from rl_select.scoring.readout import Job, LabelReadout, Plan
from rl_select.scoring.results import CacheStats, LLMCost, ScoreResult, ScorerStats
from rl_select.tasks.task import Example, Task

Progress = Callable[[int], None]
Request = tuple[tuple[Example, ...], list[Example]]
"""Demonstrations in prompt order, and the queries to score after them."""

_EMPTY_PREFIX = PrefixState(key=(), kv=None, length=0, last_logprobs=None)


@dataclass
class _Unit:
    """Token sequences scored after a shared head (a candidate's block, or a whole prompt's prefix), as one row.

    Attributes:
        head: Tokens every item follows.
        items: Token sequences whose answers are scored after the head.
        size: Tokens the row takes (head, items, answer continuations).
    """

    head: tuple[int, ...]
    items: list[tuple[int, ...]]
    size: int


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
        self.backend = TorchBackend(lm, self.stats)
        self.readout = LabelReadout(self.encoder.label_tokens, self.config.length_normalize, lm.device)
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

        With ``batch_prefixes``, uncached requests share forwards: those that fit one row (a prompt, its queries
        and the content-free inputs) side by side, the queries of larger ones in batched forwards, one row per
        prefix. Scores then depend in their last float bits on what shared a forward; without it each request
        is scored as :meth:`score` would.
        """
        if not self.batch_prefixes:
            return [self.score(demos, queries, use_cache=use_cache) for demos, queries in requests]
        batch = [(tuple(demos), list(queries)) for demos, queries in requests]
        self.stats.requested += sum(len(queries) for _, queries in batch)
        found = self._batched_scores(batch, use_cache)
        return [self._result(cached, queries) for cached, (_, queries) in zip(found, batch, strict=True)]

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
        cached = CachedScores(
            np.zeros((n, num_labels)), np.zeros((n, num_labels)), np.zeros(n, dtype=np.int64), np.full(n, np.nan), {}
        )
        report = TruncationReport()
        for members in groups.values():
            queries = [pairs[i][1] for i in members]
            part = self._cached_scores(tuple(pairs[members[0]][0]), queries, use_cache, progress)
            cached.log_scores[members] = part.log_scores
            cached.content_free[members] = part.content_free
            cached.prefix_tokens[members] = part.prefix_tokens
            cached.prefix_nll[members] = part.prefix_nll
            report.merge(TruncationReport(**part.truncation))
        cached.truncation = report.to_dict()
        return self._result(cached, [q for _, q in pairs])

    def score_extensions(
        self, demos: Sequence[Example], candidates: Sequence[Example], queries: Sequence[Example]
    ) -> list[ScoreResult]:
        """Scores of ``queries`` under ``demos + [c]`` for every candidate ``c``: one MDP state's action row.

        The prefix of ``demos`` is computed once (or found in the prefix cache); then each candidate's block,
        with the queries and the content-free inputs as branches after it, is one batch row, many candidates
        per forward pass. An action row of M candidates so costs about M blocks and M × (queries + 3) short
        items in a few forwards, instead of 2 M forwards. The scores agree with :meth:`score` of each extended
        prompt up to float rounding (another batching) and do not go into the reward cache; a prompt that would
        need the over-long policy is scored with :meth:`score` instead.
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
        for (owner, _), unit_scores in zip(units, self._score_units(prefix, [u for _, u in units]), strict=True):
            parts[owner].append(unit_scores)
        self.stats.queries += len(packed) * len(queries)
        self.stats.requested += len(packed) * len(queries)
        results: list[ScoreResult] = []
        scored = {candidate: np.concatenate(parts[j]) for j, candidate in enumerate(packed)}
        for i, candidate in enumerate(candidates):
            if i in scored:
                block_length = len(self.encoder.block(candidate))
                cached = self.readout.from_items(scored[i], len(queries), prefix.length + block_length)
                results.append(self._result(cached, queries))
            else:
                results.append(self.score([*demos, candidate], queries))
        return results

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
            nll[start : start + len(chunk)] = self.backend.target_nll(chunk, target)
        self.stats.requested += len(rows)
        return nll

    def prefix_log_perplexity(self, demos: Sequence[Example]) -> float:
        """Mean NLL per token of the demonstration prefix (needs ``prefix_perplexity``; NaN for no tokens)."""
        if not self.config.prefix_perplexity:
            raise ConfigError("prefix perplexity needs ScoringConfig(prefix_perplexity=True)")
        state = self._prefix_state(tuple(demos))
        return state.nll_sum / state.nll_count if state.nll_count else float("nan")

    def cost(self) -> LLMCost:
        """The LLM work charged to this scorer so far (see :class:`LLMCost`)."""
        return LLMCost(queries=self.stats.requested, tokens=self.stats.tokens)

    def cache_stats(self) -> CacheStats:
        """Reward-cache hits, prefix-cache use and the work done."""
        return CacheStats(self.rewards.stats(), len(self.prefixes), replace(self.stats))

    # ------------------------------------------------------------------ requests and the reward cache

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
            cached = self._score_request(demos, queries, progress)
            if key:
                self.rewards.put(key, cached)
        elif progress is not None:
            progress(len(queries))
        return cached

    def _batched_scores(self, requests: list[Request], use_cache: bool) -> list[CachedScores]:
        """Scores of several requests: cached ones looked up, one-row prompts batched, the rest by prefix rows."""
        keys = [self._cache_key(d, q) if use_cache else None for d, q in requests]
        found: list[CachedScores | None] = [self.rewards.get(key) if key else None for key in keys]
        todo = [i for i, cached in enumerate(found) if cached is None]
        units = {i: unit for i in todo if (unit := self._single_row_unit(*requests[i])) is not None}
        small = list(units)
        for i, scores in zip(small, self._score_units(_EMPTY_PREFIX, [units[i] for i in small]), strict=True):
            found[i] = self.readout.from_items(scores, len(requests[i][1]), len(units[i].head))
            self.stats.queries += len(requests[i][1])
        rest = [i for i in todo if i not in units]
        plans = {i: self._plan(*requests[i]) for i in rest}
        scores = iter(self._score_jobs([job for i in rest for _, job in plans[i].groups]))
        for i in rest:
            found[i] = self.readout.assemble(plans[i], [next(scores) for _ in plans[i].groups])
        for i in todo:
            if keys[i]:
                self.rewards.put(keys[i], found[i])
        return found  # type: ignore[return-value]

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

    def _score_request(
        self, demos: tuple[Example, ...], queries: list[Example], progress: Progress | None
    ) -> CachedScores:
        """Score queries under one prefix; queries whose prompt is too long drop demonstrations first.

        A request that fits one row (a query-level prompt: a prefix, one query, the content-free inputs) is
        scored as one token tree, prefix included; larger ones compute the prefix's KV state once and score the
        queries after it in batched rows. Which way is a function of the request alone, so scores never depend
        on what was cached.
        """
        unit = self._single_row_unit(demos, queries)
        if unit is not None:
            scores = self._score_units(_EMPTY_PREFIX, [unit], [len(queries)], progress)[0]
            self.stats.queries += len(queries)
            return self.readout.from_items(scores, len(queries), len(unit.head))
        plan = self._plan(demos, queries)
        return self.readout.assemble(plan, [self._score_job(job, progress) for _, job in plan.groups])

    def _single_row_unit(self, demos: tuple[Example, ...], queries: list[Example]) -> _Unit | None:
        """The whole request as one :class:`_Unit` when it fits one row unshortened, else None."""
        if self.config.prefix_perplexity or not queries:
            return None
        head = tuple(self.encoder.prefix(demos))
        items = [self.encoder.query(q) for q in queries]
        items += [self.encoder.plan((), cf, self.max_tokens).tokens for cf in self.encoder.content_free]
        if len(head) + max(len(t) for t in items) + self.encoder.max_label_length > self.max_tokens:
            return None
        size = len(head) + sum(len(t) + self.readout.answer_tokens for t in items)
        return _Unit(head, items, size) if size <= self.batch_tokens else None

    def _plan(self, demos: tuple[Example, ...], queries: list[Example]) -> Plan:
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
            groups.append((members, Job(self._prefix_state(kept), items, len(members))))
        return Plan(plans, groups)

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
        else:
            if base is not None:
                self.stats.prefix_extensions += 1
            else:
                self.stats.prefix_builds += 1
            state = self.backend.prefix_state(key, tokens, base, self.config.prefix_perplexity)
        self.prefixes.put(state)
        return state

    # ------------------------------------------------------------------ rows

    def _score_job(self, job: Job, progress: Progress | None) -> np.ndarray:
        """``[len(items), C]`` raw label log-probabilities of a job's items: one row per item after its prefix."""
        rows = [pack_items(job.prefix.length, [((), [tokens])], self.encoder.label_tokens) for tokens in job.items]
        counts = [1 if i < job.real else 0 for i in range(len(job.items))]
        scores = self._score_rows([(job.prefix, row) for row in rows], self.batch_tokens, counts, progress)
        self.stats.queries += job.real
        return np.concatenate(scores)

    def _score_units(
        self,
        prefix: PrefixState,
        units: list[_Unit],
        counts: list[int] | None = None,
        progress: Progress | None = None,
    ) -> list[np.ndarray]:
        """Per unit, ``[items, C]`` raw answer log-probabilities: one row per unit after ``prefix``."""
        labels = self.encoder.label_tokens
        rows = [(prefix, pack_items(prefix.length, [(unit.head, unit.items)], labels)) for unit in units]
        return self._score_rows(rows, self.batch_tokens, counts, progress)

    def _score_jobs(self, jobs: list[Job]) -> list[np.ndarray]:
        """Raw scores of many jobs in batched forwards, one row per job after its own prefix.

        Batches hold up to ``4 × batch_tokens`` tokens, prefixes included; a job too big for one row goes
        through :meth:`_score_job`.
        """
        results: list[np.ndarray | None] = [None] * len(jobs)
        single = []
        for j, job in enumerate(jobs):
            if sum(len(t) for t in job.items) + self.readout.answer_tokens * len(job.items) > self.batch_tokens:
                results[j] = self._score_job(job, None)
            else:
                single.append(j)
        labels = self.encoder.label_tokens
        rows = [(jobs[j].prefix, pack_items(jobs[j].prefix.length, [((), jobs[j].items)], labels)) for j in single]
        for j, scores in zip(single, self._score_rows(rows, 4 * self.batch_tokens, with_prefix=True), strict=True):
            self.stats.queries += jobs[j].real
            results[j] = scores
        return results  # type: ignore[return-value]

    def _score_rows(
        self,
        rows: list[tuple[PrefixState, PackedItems]],
        budget: int,
        counts: list[int] | None = None,
        progress: Progress | None = None,
        with_prefix: bool = False,
    ) -> list[np.ndarray]:
        """Per row, ``[items, C]`` raw answer log-probabilities; rows go in batches of ``budget`` padded tokens.

        A row's width is its tree's (``with_prefix``: plus its prefix, for rows after different prefixes, whose
        KV states are left-padded to the longest). ``counts`` (real queries per row) advance ``progress`` after
        each batch.
        """
        widths = [len(packed.tree) + (prefix.length if with_prefix else 0) for prefix, packed in rows]
        scores: list[np.ndarray | None] = [None] * len(rows)
        for batch in batches_by_width(widths, budget):
            batch_rows = [Row(rows[r][0], rows[r][1].tree, rows[r][1].reads) for r in batch]
            logprobs = self.backend.forward_rows(batch_rows)
            for r, row_scores in zip(batch, self.readout.scores([rows[r] for r in batch], logprobs), strict=True):
                scores[r] = row_scores
            if progress is not None and counts is not None:
                progress(sum(counts[r] for r in batch))
        return scores  # type: ignore[return-value]

    def _extension_units(self, candidates: list[Example], items: list[tuple[int, ...]]) -> list[tuple[int, _Unit]]:
        """Each candidate's block with its items, as ``(candidate index, unit)``; split where a row can't hold all."""
        units = []
        extra = self.readout.answer_tokens
        for index, candidate in enumerate(candidates):
            block = self.encoder.block(candidate)
            members: list[tuple[int, ...]] = []
            size = len(block)
            for tokens in items:
                cost = len(tokens) + extra
                if members and size + cost > self.batch_tokens:
                    units.append((index, _Unit(block, members, size)))
                    members, size = [], len(block)
                members.append(tokens)
                size += cost
            units.append((index, _Unit(block, members, size)))
        return units
