"""What a run will spend, said before it starts: LLM calls, forward tokens and projected minutes.

Projections count scored queries exactly where the protocol fixes them, and estimate tokens from the task's
measured token lengths (a demonstration block, a query, the content-free inputs) and time from the model's
measured throughput on this machine: a fixed cost per forward plus a cost per token, timed on two plain forwards,
then scaled to the scorer's own time on a few of the tasks' real prompts (its answer reads, masks, padding and
prompt building took 1.2–1.5× a plain forward of the same tokens on an AMX Xeon). Cache hits, and the stop action
ending episodes early, make real runs cheaper than projected: the counts are upper bounds of that kind. The minutes
are the scoring's alone (loading, embedding, fitting come on top).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from rl_select.envs.features import ZERO_SHOT_BLOCK
from rl_select.proposals import ProposerConfig
from rl_select.scoring.prompts import PromptEncoder
from rl_select.scoring.readout import answer_branch_tokens
from rl_select.scoring.scorer import Scorer
from rl_select.tasks.task import Example, Task


@dataclass(frozen=True)
class TokenProfile:
    """Mean token lengths of one task's prompt pieces.

    Attributes:
        block: A demonstration block (query part, answer, separator).
        query: A scored query: its query part and its answer branches (each multi-token label's tokens but the
            last, fed to read the rest).
        content_free: The content-free calibration inputs together, scored as queries.
        prefix: Special tokens before the first block.
    """

    block: float
    query: float
    content_free: float
    prefix: float

    @classmethod
    def of(cls, task: Task, tokenizer: Any, sample: int = 200) -> TokenProfile:
        """Measured on up to ``sample`` rows of the pool and the test split."""
        encoder = PromptEncoder(task, tokenizer)
        branches = answer_branch_tokens(encoder.label_tokens)
        blocks = [len(encoder.block(e)) for e in task.train[:sample]]
        queries = [len(encoder.query(e)) + branches for e in task.test[:sample]]
        free = sum(len(encoder.query(cf)) + branches for cf in encoder.content_free)
        return cls(float(np.mean(blocks)), float(np.mean(queries)), float(free), float(len(encoder.special_prefix)))

    def prompt(self, k: int) -> float:
        """Tokens of a query-level prompt scored alone: prefix, k blocks, the query, the content-free inputs."""
        return self.prefix + k * self.block + self.query + self.content_free


@dataclass(frozen=True)
class Throughput:
    """Forward-pass cost on this machine: ``overhead + tokens × per_token`` seconds."""

    overhead: float
    per_token: float

    def seconds(self, tokens: float, forwards: float) -> float:
        """Projected seconds of ``forwards`` forward passes over ``tokens`` tokens in all."""
        return forwards * self.overhead + tokens * self.per_token

    def scaled(self, factor: float) -> Throughput:
        """Both costs times ``factor``."""
        return Throughput(overhead=self.overhead * factor, per_token=self.per_token * factor)


def measure_throughput(lm: Any, tasks: Sequence[Task], k: int = 4) -> Throughput:
    """This machine's scoring cost: :func:`plain_forward_cost`, scaled by :func:`scorer_scale` on ``tasks``' prompts."""
    plain = plain_forward_cost(lm)
    return plain.scaled(scorer_scale(lm, tasks, k, plain))


def scorer_scale(lm: Any, tasks: Sequence[Task], k: int, plain: Throughput) -> float:
    """The scorer's measured time over ``plain``'s projection of the same forwards, on ``tasks``' prompts.

    A plain forward leaves out what the scorer adds to each forward (the answer reads and their log-softmax over
    the vocabulary, the tree mask, padding, building the prompts). Measured on :func:`calibration_prompts` of every
    task (scored twice, caches off; the second, timed, pass sees shapes the first already warmed).
    """
    measured = projected = 0.0
    for task in tasks:
        scorer = Scorer(lm, task)
        prompts = calibration_prompts(task, k)
        for timed in (False, True):
            before = replace(scorer.stats)
            started = time.perf_counter()
            for demos, queries in prompts:
                scorer.score(demos, queries, use_cache=False)
            if timed:
                measured += time.perf_counter() - started
                projected += plain.seconds(scorer.stats.tokens - before.tokens, scorer.stats.forwards - before.forwards)
    return measured / projected if projected > 0 else 1.0


def calibration_prompts(task: Task, k: int, seed: int = 0) -> list[tuple[list[Example], list[Example]]]:
    """The prompts timed by :func:`measure_throughput`: the two shapes runs score most.

    Query-level prompts (k demonstrations for one query, four times) and one task-level prompt (k demonstrations
    for 16 queries), drawn from the pool and the test split (dev where test is empty).
    """
    rng = np.random.default_rng(seed)
    queries = task.test or task.dev or task.train
    k = min(k, len(task.train))

    def demos() -> list[Example]:
        return [task.train[i] for i in rng.choice(len(task.train), size=k, replace=False)]

    def rows(n: int) -> list[Example]:
        return [queries[i] for i in rng.choice(len(queries), size=min(n, len(queries)), replace=False)]

    return [*((demos(), rows(1)) for _ in range(4)), (demos(), rows(16))]


def plain_forward_cost(lm: Any, long: int = 384, short: int = 16, repeats: int = 2) -> Throughput:
    """Time plain forwards of ``short`` and ``long`` tokens (after a warm-up) and fit the two-term cost model."""
    vocab = int(lm.model.config.vocab_size)

    def timed(n: int) -> float:
        ids = torch.randint(0, min(vocab, 1000), (1, n), device=lm.device)
        with torch.inference_mode():
            lm.model(input_ids=ids, logits_to_keep=1)
            started = time.perf_counter()
            for _ in range(repeats):
                lm.model(input_ids=ids, logits_to_keep=1)
        return (time.perf_counter() - started) / repeats

    t_short, t_long = timed(short), timed(long)
    per_token = max((t_long - t_short) / (long - short), 1e-6)
    return Throughput(overhead=max(t_short - short * per_token, 0.0), per_token=per_token)


@dataclass
class Step:
    """One projected step: scored queries, forward tokens and forward passes."""

    name: str
    queries: float = 0.0
    tokens: float = 0.0
    forwards: float = 0.0

    def add(self, queries: float, tokens: float, forwards: float) -> Step:
        """Accumulate work; returns self."""
        self.queries += queries
        self.tokens += tokens
        self.forwards += forwards
        return self


@dataclass
class Projection:
    """A run's projected steps."""

    steps: list[Step] = field(default_factory=list)

    def rows(self, throughput: Throughput | None) -> list[list[str]]:
        """Table rows: step, scored queries, forward tokens, projected minutes (and a total)."""
        rows = []
        for step in [*self.steps, self.total]:
            minutes = "" if throughput is None else f"{throughput.seconds(step.tokens, step.forwards) / 60:.1f}"
            rows.append([step.name, f"{step.queries:,.0f}", f"{step.tokens:,.0f}", minutes])
        return rows

    @property
    def total(self) -> Step:
        """Everything together."""
        total = Step("total")
        for step in self.steps:
            total.add(step.queries, step.tokens, step.forwards)
        return total


def _forwards(tokens: float, batch_tokens: int = 512) -> float:
    return max(1.0, math.ceil(tokens / batch_tokens))


def greedy_prompt(profile: TokenProfile, k: int, m: int, rows: int) -> Step:
    """The action rows of ``k`` states, ``m`` candidates valued on ``rows`` rows (append order): a greedy choice."""
    step = Step("greedy")
    for t in range(k):
        extensions = m - t
        tokens = extensions * (profile.block + rows * profile.query + profile.content_free)
        step.add(extensions * rows, tokens + profile.prefix + t * profile.block, _forwards(tokens) + (t > 0))
    return step


def dense_episode(profile: TokenProfile, k: int, m: int, rows: int) -> Step:
    """One episode with an action row at every state, valued on ``rows`` rows (append order)."""
    step = Step("episode").add(rows, profile.prefix + rows * profile.query + profile.content_free, 1)
    rows_work = greedy_prompt(profile, k, m, rows)
    return step.add(rows_work.queries, rows_work.tokens, rows_work.forwards)


def zero_shot_features(profile: TokenProfile, pool: int, candidates: float) -> Step:
    """Candidates' zero-shot features (``llm_features``), scored in blocks of pool rows, each block once.

    Every candidate may fall in a block of its own, so up to ``candidates`` blocks, and never more than the pool.
    """
    queries = min(pool, candidates * ZERO_SHOT_BLOCK)
    tokens = queries * (profile.query + profile.content_free / 3)
    return Step("zero-shot features").add(queries, tokens, _forwards(queries * profile.query))


def query_level(profile: TokenProfile, k: int, prompts: float) -> Step:
    """``prompts`` query-level prompts, each scored alone in one forward."""
    return Step("query-level").add(prompts, prompts * profile.prompt(k), prompts)


def task_level(profile: TokenProfile, k: int, prompts: float, rows: int) -> Step:
    """``prompts`` task-level prompts, each scored on ``rows`` rows after its KV-cached prefix."""
    tokens = profile.prefix + k * profile.block + rows * profile.query + profile.content_free
    return Step("task-level").add(prompts * rows, prompts * tokens, prompts * (1 + _forwards(rows * profile.query)))


def task_proposer_search(profile: TokenProfile, k: int, proposers: ProposerConfig | None) -> Step:
    """The task-level proposer's search, once per task: its ``task_sets`` random prompts on ``task_dev_rows`` dev rows.

    Nothing where there is no task-level proposer.
    """
    if proposers is None or not proposers.task:
        return Step("task proposer")
    return task_level(profile, k, proposers.task_sets, proposers.task_dev_rows)


def task_mode_choosing(task: Any, dev_rows: int) -> int:
    """The most a task-mode learner (the study's ``task`` settings) can spend choosing one prompt.

    Its candidates' zero-shot features (computed in blocks) for each draw, and with propose and verify, every
    proposed prompt scored on the dev rows. Best-of-N at the learner's budget is given this much more.
    """
    draws = max(task.proposals, 1)
    choosing = draws * task.num_candidates * ZERO_SHOT_BLOCK if task.features.get("llm_features", True) else 0
    if task.proposals > 1:
        choosing += task.proposals * min(task.verify_rows, dev_rows)
    return choosing


def equal_budget_sets(learning_queries: float, dev_rows: int) -> int:
    """best-of-N's N at a learner's budget: as many random prompts as its scored queries pay for on ``dev_rows``."""
    return max(1, math.ceil(learning_queries / dev_rows))


def prompt_work(profile: TokenProfile, prompts: float, demos: int, queries: int) -> Step:
    """``prompts`` prompts of ``demos`` demonstrations, each scoring ``queries`` queries after its cached prefix."""
    tokens = profile.prefix + demos * profile.block + queries * profile.query + profile.content_free
    forwards = 1 + _forwards(queries * profile.query) if queries > 1 else 1
    return Step("prompts").add(prompts * queries, prompts * tokens, prompts * forwards)


def project_evaluation(
    selectors: Sequence[Any],
    task: Task,
    profile: TokenProfile,
    k: int,
    rows: int,
    seeds: int,
    finished: Callable[[Any], int] | None = None,
) -> Projection:
    """An evaluation's work per selector and seed: choosing (LLM-scored selectors) and scoring ``rows`` rows.

    A selector whose choice does not depend on the seed (``seeded`` false) is counted once: its later seeds
    repeat the first seed's prompts, which the scorer's cache answers. ``finished(selector)``: how many of its
    seeds an interrupted run already finished (kept, so not projected again).
    """
    steps = []
    for selector in selectors:
        step = Step(selector.name)
        work = [(w.prompts, w.demos, w.queries) for w in selector.choice_work(task, k, rows)]
        work.append((rows, k, 1) if selector.query_level else (1, k, rows))
        done = finished(selector) if finished is not None else 0
        repeats = max(seeds - done, 0) if selector.seeded else int(done == 0)
        for prompts, demos, queries in work:
            part = prompt_work(profile, repeats * prompts, demos, queries)
            step.add(part.queries, part.tokens, part.forwards)
        steps.append(step)
    return Projection(steps)


def project_headroom(profile: TokenProfile, k: int, m: int, dev_neighbours: int, queries: int) -> Projection:
    """The headroom analysis of ``queries`` test queries: two greedy choices each, then three prompts scored."""
    parts = {
        "greedy by the query's label": greedy_prompt(profile, k, m, 1),
        f"greedy by {dev_neighbours} dev neighbours": greedy_prompt(profile, k, m, dev_neighbours),
        "kNN, oracle, transferable scored": query_level(profile, k, 3),
    }
    return Projection(
        [Step(name).add(queries * p.queries, queries * p.tokens, queries * p.forwards) for name, p in parts.items()]
    )


def describe(projection: Projection, throughput: Throughput | None) -> str:
    """A plain-text table of a projection."""
    rows = projection.rows(throughput)
    width = max([32, *(len(row[0]) for row in rows)])  # a sweep's trial names run longer than a run's steps
    lines = [f"{'step':{width}s} {'scored queries':>15s} {'forward tokens':>16s} {'minutes':>8s}"]
    for name, queries, tokens, minutes in rows:
        lines.append(f"{name:{width}s} {queries:>15s} {tokens:>16s} {minutes:>8s}")
    return "\n".join(lines)


def profiles_for(tasks: Sequence[Task], tokenizer: Any) -> dict[str, TokenProfile]:
    """Token profiles of several tasks."""
    return {task.name: TokenProfile.of(task, tokenizer) for task in tasks}
