"""Evaluating selectors on held-out rows, every method under the same scoring.

For each seed a selector chooses demonstrations (once for a task-level selector, per query for a query-level
one) and the scorer scores the evaluation rows under them. The rows are the same for every seed and selector
(a subsample seeded by ``data_seed``), so differences between methods are paired. Raw and contextually
calibrated accuracies come from the same forward passes; both are reported.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from rl_select.errors import ConfigError
from rl_select.selectors.base import Resources, Selector
from rl_select.tasks.task import Example

ProgressFactory = Callable[[str, int], Callable[[int], None]]


@dataclass
class SeedResult:
    """One seed of one selector."""

    seed: int
    accuracy: float
    accuracy_raw: float
    accuracy_calibrated: float
    queries: int
    seconds: float
    selection: list[int] | None = None
    truncation: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON form."""
        return dict(self.__dict__)


@dataclass
class SelectorReport:
    """All seeds of one selector on one task."""

    selector: dict
    task: str
    split: str
    k: int
    calibrate: bool
    seeds: list[SeedResult]

    def _stat(self, attribute: str) -> tuple[float, float]:
        values = np.array([getattr(s, attribute) for s in self.seeds], dtype=np.float64)
        sd = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        return float(values.mean()), sd

    @property
    def name(self) -> str:
        """The selector's name."""
        return str(self.selector["name"])

    @property
    def mean_sd(self) -> tuple[float, float]:
        """Mean and sample standard deviation of the primary accuracy over seeds."""
        return self._stat("accuracy")

    @property
    def raw(self) -> tuple[float, float]:
        """Mean and sd of uncalibrated accuracy."""
        return self._stat("accuracy_raw")

    @property
    def calibrated(self) -> tuple[float, float]:
        """Mean and sd of calibrated accuracy."""
        return self._stat("accuracy_calibrated")

    def to_dict(self) -> dict:
        """JSON form, with the aggregates."""
        return {
            "selector": self.selector,
            "task": self.task,
            "split": self.split,
            "k": self.k,
            "calibrate": self.calibrate,
            "accuracy_mean": self.mean_sd[0],
            "accuracy_sd": self.mean_sd[1],
            "accuracy_raw_mean": self.raw[0],
            "accuracy_raw_sd": self.raw[1],
            "accuracy_calibrated_mean": self.calibrated[0],
            "accuracy_calibrated_sd": self.calibrated[1],
            "seeds": [s.to_dict() for s in self.seeds],
        }


def evaluation_rows(resources: Resources, split: str, n: int | None) -> list[Example]:
    """The rows every selector is evaluated on: a subsample of ``split`` seeded by ``resources.data_seed``."""
    if n is not None and n <= 0:
        raise ConfigError(f"--n-test must be positive, got {n}")
    return resources.task.sample(split, n, seed=resources.data_seed)


def evaluate_selector(
    selector: Selector,
    resources: Resources,
    *,
    k: int,
    seeds: Sequence[int],
    n_rows: int | None = None,
    split: str = "test",
    progress: ProgressFactory | None = None,
) -> SelectorReport:
    """Evaluate one selector over ``seeds`` on the same evaluation rows.

    Args:
        selector: The selector (built here with ``resources`` if it was not).
        resources: Task, scorer and retrieval resources.
        k: Demonstrations per prompt.
        seeds: Seeds of the selector's randomness (one result each).
        n_rows: Evaluation rows (None: the whole split).
        split: Split to evaluate on (``test`` unless you are tuning).
        progress: Returns an ``advance(n)`` callback for a description and a total.
    """
    if not seeds:
        raise ConfigError("give at least one seed")
    if selector.resources is None:
        selector.build(resources)
    task = resources.task
    rows = evaluation_rows(resources, split, n_rows)
    results = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        started = time.perf_counter()
        advance = progress(f"{task.name} · {selector.name} · seed {seed}", len(rows)) if progress else None
        if selector.query_level:
            selections = selector.retrieve(task, rows, k, rng)
            pairs = [([task.train[i] for i in ids], row) for ids, row in zip(selections, rows, strict=True)]
            scored = resources.scorer.score_pairs(pairs, progress=advance)
            selection = None
        else:
            selection = list(selector.select(task, None, k, rng))
            scored = resources.scorer.score([task.train[i] for i in selection], rows, progress=advance)
        results.append(
            SeedResult(
                seed=int(seed),
                accuracy=scored.accuracy,
                accuracy_raw=scored.accuracy_raw,
                accuracy_calibrated=scored.accuracy_calibrated,
                queries=len(rows),
                seconds=round(time.perf_counter() - started, 3),
                selection=selection,
                truncation=scored.truncation.to_dict(),
            )
        )
    return SelectorReport(
        selector=selector.describe(),
        task=task.name,
        split=split,
        k=k,
        calibrate=resources.scoring.calibrate,
        seeds=results,
    )
