"""Evaluating selectors on held-out rows, every method under the same scoring, resumable.

For each seed a selector chooses demonstrations (once for a task-level selector, per query for a query-level
one) and the scorer scores the evaluation rows under them. The rows are the same for every seed and selector
(a subsample seeded by ``data_seed``), so differences between methods are paired. Raw and contextually
calibrated accuracies come from the same forward passes; both are reported, with each row's predictions (for
paired intervals) and the LLM work the selector spent choosing (:class:`~rl_select.scoring.LLMCost`).

:class:`EvaluationLog` writes every finished (selector, seed) result to disk at once, marked partial until all
are done: an interrupted evaluation keeps what it finished, and a rerun with the same output file continues.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from rl_select.errors import ConfigError, Interrupted
from rl_select.provenance import continues, read_result_file, to_json, write_json
from rl_select.resources import Resources
from rl_select.scoring import LLMCost
from rl_select.selectors.base import Selector
from rl_select.tasks.task import Example
from rl_select.types import JsonObject, JsonValue

ProgressFactory = Callable[[str, int], Callable[[int], None]]
EVALUATION_FORMAT = 2


@dataclass
class SeedResult:
    """One seed of one selector.

    Attributes:
        seed: The selector's seed.
        accuracy: Accuracy of the primary distribution (calibrated unless turned off).
        accuracy_raw: Accuracy without calibration.
        accuracy_calibrated: Accuracy with contextual calibration.
        queries: Evaluation rows.
        seconds: Wall time of choosing and scoring.
        selection: The task-level prompt (pool ids); None for query-level selectors.
        truncation: What the over-long-prompt policy did.
        predictions_raw: Predicted label index of every evaluation row, uncalibrated.
        predictions_calibrated: The same, calibrated.
        cost: LLM work spent choosing the demonstrations (not scoring the evaluation rows).
        selections: Query-level selectors: the prompt (pool ids, in prompt order) of every evaluation row.
        probs_raw: The label distribution of every evaluation row, uncalibrated (5 decimals; kept only when asked).
        probs_calibrated: The same, calibrated.
    """

    seed: int
    accuracy: float
    accuracy_raw: float
    accuracy_calibrated: float
    queries: int
    seconds: float
    selection: list[int] | None = None
    truncation: dict[str, int] = field(default_factory=dict)
    predictions_raw: list[int] = field(default_factory=list)
    predictions_calibrated: list[int] = field(default_factory=list)
    cost: LLMCost = field(default_factory=LLMCost)
    selections: list[list[int]] | None = None
    probs_raw: list[list[float]] = field(default_factory=list)
    probs_calibrated: list[list[float]] = field(default_factory=list)

    def prompt_of(self, row: int) -> list[int]:
        """Pool ids of the prompt evaluation row ``row`` got, in prompt order."""
        return list(self.selections[row]) if self.selections is not None else list(self.selection or [])

    def to_dict(self) -> JsonObject:
        """JSON form."""
        data = asdict(self)
        data["cost"] = self.cost.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: JsonObject) -> SeedResult:
        """Inverse of :meth:`to_dict`."""
        return cls(**{**data, "cost": LLMCost(**data.get("cost", {}))})


@dataclass
class SelectorReport:
    """All seeds of one selector on one task.

    Attributes:
        selector: The selector's description (name, level, settings).
        task: Task name.
        split: Evaluated split.
        k: Demonstrations per prompt.
        calibrate: Whether the primary metric is calibrated.
        seeds: One result per seed.
        gold: Gold label index of every evaluation row (same order as the predictions).
    """

    selector: dict
    task: str
    split: str
    k: int
    calibrate: bool
    seeds: list[SeedResult]
    gold: list[int] = field(default_factory=list)

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

    @property
    def cost(self) -> LLMCost:
        """Mean LLM work per seed spent choosing demonstrations."""
        if not self.seeds:
            return LLMCost()
        n = len(self.seeds)
        return LLMCost(
            queries=round(sum(s.cost.queries for s in self.seeds) / n),
            tokens=round(sum(s.cost.tokens for s in self.seeds) / n),
        )

    def correct(self, calibrated: bool = True) -> np.ndarray:
        """``[seeds, rows]`` booleans: whether each row was predicted right under each seed."""
        gold = np.asarray(self.gold)
        key = "predictions_calibrated" if calibrated else "predictions_raw"
        return np.array([np.asarray(getattr(s, key)) == gold for s in self.seeds])

    def to_dict(self) -> JsonObject:
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
            "cost_per_seed": self.cost.to_dict(),
            "gold": list(self.gold),
            "seeds": [s.to_dict() for s in self.seeds],
        }

    @classmethod
    def from_dict(cls, data: JsonObject) -> SelectorReport:
        """Inverse of :meth:`to_dict` (the aggregates are recomputed)."""
        return cls(
            selector=data["selector"],
            task=data["task"],
            split=data["split"],
            k=data["k"],
            calibrate=data["calibrate"],
            seeds=[SeedResult.from_dict(s) for s in data["seeds"]],
            gold=list(data.get("gold", [])),
        )


def selector_key(selector: Selector) -> str:
    """What identifies a selector's results in an evaluation file: its description, as stable JSON."""
    return json.dumps(selector.describe(), sort_keys=True, default=str)


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
    finished: dict[int, SeedResult] | None = None,
    on_seed: Callable[[SelectorReport], None] | None = None,
    keep_probs: bool = False,
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
        finished: Results of seeds already done (from an earlier, interrupted run): kept, not recomputed.
        on_seed: Called with the report so far after every seed (to write it to disk at once).
        keep_probs: Keep every row's label distributions (what ``--dump`` writes; large, so off by default). A
            finished seed without them is evaluated again.

    A selector whose choice does not depend on the seed (``selector.seeded`` false: kNN, BM25, ConE, ...) is
    chosen and scored once; its other seeds repeat that result, as choosing again would (same prompts, same
    scores), with the choosing cost of that one choice and no time.
    """
    if not seeds:
        raise ConfigError("give at least one seed")
    finished = finished or {}
    task = resources.task
    rows = evaluation_rows(resources, split, n_rows)
    report = SelectorReport(
        selector=selector.describe(),
        task=task.name,
        split=split,
        k=k,
        calibrate=resources.scoring.calibrate,
        seeds=[],
        gold=task.gold(rows).tolist(),
    )
    for seed in seeds:
        done = finished.get(int(seed))
        if done is not None and kept(done, keep_probs):
            report.seeds.append(done)
            continue
        if report.seeds and not selector.seeded:
            report.seeds.append(replace(report.seeds[0], seed=int(seed), seconds=0.0))
        else:
            if selector.resources is None:
                selector.build(resources)
            result = evaluate_seed(selector, resources, rows, k, int(seed), progress, keep_probs=keep_probs)
            report.seeds.append(result)
        if on_seed is not None:
            on_seed(report)
    return report


def kept(done: SeedResult, keep_probs: bool) -> bool:
    """Whether an evaluation keeps a seed an earlier run finished (with ``keep_probs``, only one that has them)."""
    return bool(done.probs_calibrated) or not keep_probs


def evaluate_seed(
    selector: Selector,
    resources: Resources,
    rows: list[Example],
    k: int,
    seed: int,
    progress: ProgressFactory | None,
    *,
    keep_probs: bool = False,
) -> SeedResult:
    """Choose with ``seed``, score ``rows`` under the choice, and charge the choosing to the selector."""
    task, scorer = resources.task, resources.scorer
    rng = np.random.default_rng(seed)
    started = time.perf_counter()
    before = scorer.cost()
    selection = None
    selections: list[list[int]] | None = None
    if selector.query_level:
        selections = selector.retrieve(task, rows, k, rng)
        cost = scorer.cost() - before
        advance = progress(f"{task.name} · {selector.name} · seed {seed}", len(rows)) if progress else None
        pairs = [([task.train[i] for i in ids], row) for ids, row in zip(selections, rows, strict=True)]
        scored = scorer.score_pairs(pairs, progress=advance)
    else:
        selection = list(selector.select(task, None, k, rng))
        cost = scorer.cost() - before
        advance = progress(f"{task.name} · {selector.name} · seed {seed}", len(rows)) if progress else None
        scored = scorer.score([task.train[i] for i in selection], rows, progress=advance)
    return SeedResult(
        seed=seed,
        accuracy=scored.accuracy,
        accuracy_raw=scored.accuracy_raw,
        accuracy_calibrated=scored.accuracy_calibrated,
        queries=len(rows),
        seconds=round(time.perf_counter() - started, 3),
        selection=selection,
        truncation=scored.truncation.to_dict(),
        predictions_raw=scored.probs_raw.argmax(-1).tolist(),
        predictions_calibrated=scored.probs_calibrated.argmax(-1).tolist(),
        cost=cost,
        selections=None if selections is None else [[int(i) for i in ids] for ids in selections],
        probs_raw=np.round(scored.probs_raw, 5).tolist() if keep_probs else [],
        probs_calibrated=np.round(scored.probs_calibrated, 5).tolist() if keep_probs else [],
    )


def evaluation_key(resources: Resources, *, k: int, split: str, n_rows: int | None, seeds: Sequence[int]) -> dict:
    """Everything two evaluations must share for their results to be interchangeable (the resume check)."""
    task = resources.task
    return {
        "task": task.name,
        "fingerprints": {s: task.fingerprint(s) for s in ("train", "dev", "test")},
        "k": k,
        "split": split,
        "n_rows": n_rows,
        "seeds": [int(s) for s in seeds],
        "data_seed": resources.data_seed,
        "scoring": {"calibrate": resources.scoring.calibrate, "key": resources.scoring.score_key()},
        "model": resources.lm_fingerprint,
        "embedder": resources.embedder_spec,
    }


class EvaluationLog:
    """An evaluation's result file, written after every finished (selector, seed), partial until complete.

    Opening a file that holds an evaluation with the same :func:`evaluation_key` continues it: its finished
    seeds are kept (all of them, when it was complete: the same command twice scores nothing twice; delete the
    file to evaluate afresh), and so is its ``provenance`` (the run that started it), while each continuing run
    that adds a seed adds its own provenance to ``resumed_by`` (a rerun that finds everything done does not).
    A partial file of a different evaluation is refused (it is never overwritten); a complete one of a
    different evaluation is replaced by the new run.

    Args:
        path: The JSON file (``.md`` beside it gets the table).
        key: :func:`evaluation_key` of this evaluation.
        header: Extra top-level fields of the file (provenance, task summary, ...).
        render: Markdown of the payload, written beside the JSON each time.
    """

    def __init__(
        self,
        path: str | Path,
        key: JsonObject,
        header: JsonObject,
        render: Callable[[JsonObject], str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.key = json.loads(json.dumps(key, default=str))
        self.header = to_json(header)  # plain JSON, as a file read back holds it
        self.render = render
        self.reports: dict[str, SelectorReport] = {}
        self.order: list[str] = []
        self._continuing: JsonValue = None
        self.path.parent.mkdir(parents=True, exist_ok=True)  # an unwritable place fails now, not after the work
        self.resumed = self._load()

    def _load(self) -> int:
        """Reports of an interrupted run of the same evaluation; returns how many seeds were kept."""
        stored = read_result_file(self.path)
        if not stored or not continues(self.path, stored, self.key, EVALUATION_FORMAT, "evaluation"):
            return 0
        self._keep_first_provenance(stored)
        if not stored.get("partial"):
            for data in stored.get("reports", []):
                self.reports[data["selector_key"]] = SelectorReport.from_dict(data)
            self.order = list(self.reports)  # a rerun with fewer selectors keeps the others' results
            return sum(len(r.seeds) for r in self.reports.values())
        for name, data in stored.get("finished", {}).items():
            self.reports[name] = SelectorReport.from_dict(data)
        self.order = list(self.reports)
        return sum(len(r.seeds) for r in self.reports.values())

    def _keep_first_provenance(self, stored: JsonObject) -> None:
        """The file's provenance stays the first run's; this run is added to ``resumed_by``."""
        first = stored.get("provenance")
        if not isinstance(first, dict):
            return
        resumed_by = [r for r in stored.get("resumed_by", []) if isinstance(r, dict)]
        self._continuing = self.header.get("provenance")  # listed in resumed_by once it adds a result
        self.header = {**self.header, "provenance": first, "resumed_by": resumed_by}

    def finished(self, selector: Selector) -> dict[int, SeedResult]:
        """Seeds of ``selector`` already done."""
        report = self.reports.get(selector_key(selector))
        return {s.seed: s for s in report.seeds} if report else {}

    def kept_seeds(self, selector: Selector, keep_probs: bool = False) -> int:
        """How many of ``selector``'s finished seeds an evaluation keeps (:func:`kept`): its work not to project."""
        return sum(kept(done, keep_probs) for done in self.finished(selector).values())

    def record(self, selector: Selector, report: SelectorReport) -> None:
        """Store a selector's report so far and write the file (marked partial)."""
        key = selector_key(selector)
        before = self.reports.get(key)
        if self._continuing is not None and (before is None or len(report.seeds) > len(before.seeds)):
            self.header["resumed_by"].append(self._continuing)  # this continuing run computed something
            self._continuing = None
        self.reports[key] = report
        if key not in self.order:
            self.order.append(key)
        self.write(partial=True)

    def payload(self, partial: bool) -> JsonObject:
        """The file's content."""
        ordered = [k for k in self.order if k in self.reports]
        return {
            "format": EVALUATION_FORMAT,
            "partial": partial,
            **self.header,
            "key": self.key,
            "reports": [{**self.reports[k].to_dict(), "selector_key": k} for k in ordered],
            "finished": {k: self.reports[k].to_dict() for k in ordered} if partial else {},
        }

    def write(self, partial: bool) -> Path:
        """Write the JSON (and markdown) atomically."""
        payload = self.payload(partial)
        write_json(self.path, payload)
        if self.render is not None:
            self.path.with_suffix(".md").write_text(self.render(payload))
        return self.path


def run_evaluation(
    selectors: Sequence[Selector],
    resources: Resources,
    log: EvaluationLog,
    *,
    k: int,
    seeds: Sequence[int],
    n_rows: int | None = None,
    split: str = "test",
    progress: ProgressFactory | None = None,
    keep_probs: bool = False,
) -> list[SelectorReport]:
    """Evaluate every selector, writing each finished seed to ``log``; resumes what ``log`` already holds.

    ``keep_probs`` keeps every row's label distributions (see :func:`evaluate_selector`).

    Raises:
        Interrupted: On Ctrl-C or SIGTERM, after the finished results are on disk (marked partial).
    """
    reports = []
    try:
        for selector in selectors:
            report = evaluate_selector(
                selector,
                resources,
                k=k,
                seeds=seeds,
                n_rows=n_rows,
                split=split,
                progress=progress,
                finished=log.finished(selector),
                on_seed=lambda r, s=selector: log.record(s, r),
                keep_probs=keep_probs,
            )
            log.record(selector, report)
            reports.append(report)
    except KeyboardInterrupt:
        done = sum(len(r.seeds) for r in log.reports.values())
        total = len(selectors) * len(seeds)
        log.write(partial=True)
        raise Interrupted(
            f"{done} of {total} selector-seed results are kept in {log.path} (marked partial); "
            "rerun the same command to continue"
        ) from None
    log.write(partial=False)
    return reports
