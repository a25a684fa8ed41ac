"""``bench projection``: the minutes a run announces beside the minutes its scoring takes, in one run.

Every long command says up front what it will spend (:mod:`rl_select.budget`): tokens from the task's token
profile, seconds from this machine's measured throughput. This checks both against the scorer itself: for each task
and a few prompt shapes (query-level prompts with and without demonstrations, task-level prompts over many queries,
a mix), the same work is projected and then scored (caches off), and the ratios spent / projected are reported —
for the throughput the commands use (plain forwards scaled to the scorer's own time) and for the plain forwards
alone, which leave out what the scorer adds to each forward.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace

from rl_select.budget import Throughput, TokenProfile, plain_forward_cost, prompt_work, scorer_scale
from rl_select.scoring.scorer import Scorer
from rl_select.tasks.task import Task
from rl_select.types import JsonObject


@dataclass(frozen=True)
class Shape:
    """Prompts of one shape: ``prompts`` prompts of ``demos`` demonstrations, each scoring ``queries`` queries."""

    name: str
    prompts: int
    demos: int
    queries: int

    def demos_at(self, k: int) -> int:
        """Demonstrations per prompt when the run's k is ``k``."""
        return k if self.demos < 0 else self.demos

    def queries_from(self, task: Task) -> int:
        """Queries per prompt on ``task`` (its test split, dev where test is empty, caps them)."""
        return min(self.queries, len(task.test or task.dev))


SHAPES = (
    Shape("query-level, k demos", 40, -1, 1),
    Shape("query-level, zero-shot", 40, 0, 1),
    Shape("task-level, k demos × 60 queries", 3, -1, 60),
    Shape("2 demos × 5 queries", 20, 2, 5),
)
"""The shapes timed; ``demos = -1`` stands for the run's k. Chosen to differ from the calibration prompts that
:func:`~rl_select.budget.measure_throughput` times (4 query-level prompts, one 16-query prompt)."""


@dataclass(frozen=True)
class ShapeTiming:
    """One task and shape: the work projected and spent, in tokens and seconds."""

    task: str
    shape: str
    queries: int
    projected_tokens: float
    tokens: int
    projected_seconds: float
    plain_seconds: float
    seconds: float

    @property
    def ratio(self) -> float:
        """Spent / projected seconds with the scaled throughput (the commands' projection)."""
        return self.seconds / self.projected_seconds

    @property
    def plain_ratio(self) -> float:
        """Spent / projected seconds with the plain forwards' throughput alone."""
        return self.seconds / self.plain_seconds


@dataclass(frozen=True)
class ProjectionBench:
    """A run of the benchmark: the two throughputs and every task × shape timing."""

    model: JsonObject
    k: int
    throughput: Throughput
    plain: Throughput
    throughput_seconds: float
    timings: list[ShapeTiming]

    def total_ratio(self, plain: bool = False) -> float:
        """All spent seconds over all projected seconds."""
        projected = sum(t.plain_seconds if plain else t.projected_seconds for t in self.timings)
        return sum(t.seconds for t in self.timings) / projected

    def to_dict(self) -> JsonObject:
        """JSON form, with every ratio."""
        return {
            "model": self.model,
            "k": self.k,
            "throughput": asdict(self.throughput),
            "plain_throughput": asdict(self.plain),
            "throughput_measurement_seconds": round(self.throughput_seconds, 2),
            "ratio_spent_over_projected": round(self.total_ratio(), 3),
            "plain_ratio_spent_over_projected": round(self.total_ratio(plain=True), 3),
            "timings": [
                {**asdict(t), "ratio": round(t.ratio, 3), "plain_ratio": round(t.plain_ratio, 3)} for t in self.timings
            ],
        }


def time_shape(scorer: Scorer, task: Task, shape: Shape, k: int, seed: int) -> tuple[float, int, int]:
    """Score ``shape``'s prompts (random pool demonstrations, random test queries; caches off).

    Returns seconds, forward tokens and scored queries.
    """
    rng = random.Random(seed)
    demos, queries = shape.demos_at(k), shape.queries_from(task)
    before = replace(scorer.stats)
    started = time.perf_counter()
    for _ in range(shape.prompts):
        scorer.score(rng.sample(task.train, demos), rng.sample(task.test or task.dev, queries), use_cache=False)
    seconds = time.perf_counter() - started
    return seconds, scorer.stats.tokens - before.tokens, scorer.stats.queries - before.queries


def run_projection_benchmark(
    lm: object,
    tasks: Sequence[Task],
    *,
    k: int = 4,
    seed: int = 0,
    progress: Callable[[str, int], Callable[[int], None]] | None = None,
) -> ProjectionBench:
    """Measure the throughput as the commands do, then project and score every task × shape.

    The throughput is :func:`~rl_select.budget.measure_throughput`'s, its plain forwards kept for the plain ratio.
    """
    started = time.perf_counter()
    plain = plain_forward_cost(lm)
    throughput = plain.scaled(scorer_scale(lm, tasks, k, plain))  # what measure_throughput does, plain kept
    measured = time.perf_counter() - started
    advance = progress("projected vs spent", len(tasks) * len(SHAPES)) if progress else None
    timings = []
    for task in tasks:
        profile = TokenProfile.of(task, lm.tokenizer)  # type: ignore[attr-defined]
        scorer = Scorer(lm, task)
        time_shape(scorer, task, SHAPES[0], k, seed + 1)  # warm-up, as a run's first prompts are
        for i, shape in enumerate(SHAPES):
            step = prompt_work(profile, shape.prompts, shape.demos_at(k), shape.queries_from(task))
            seconds, tokens, queries = time_shape(scorer, task, shape, k, seed + 10 + i)
            timings.append(
                ShapeTiming(
                    task=task.name,
                    shape=shape.name,
                    queries=queries,
                    projected_tokens=round(step.tokens, 1),
                    tokens=tokens,
                    projected_seconds=throughput.seconds(step.tokens, step.forwards),
                    plain_seconds=plain.seconds(step.tokens, step.forwards),
                    seconds=seconds,
                )
            )
            if advance:
                advance(1)
    return ProjectionBench(lm.info(), k, throughput, plain, measured, timings)  # type: ignore[attr-defined]


__all__ = ["SHAPES", "ProjectionBench", "Shape", "ShapeTiming", "run_projection_benchmark", "time_shape"]
