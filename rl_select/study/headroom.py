"""Headroom of query-level selection: how much better than kNN can a choice among the same candidates be?

For each test query, the M nearest pool neighbours are the candidates (as in query mode). Three prompts of k
demonstrations are built from them, most similar or best last:

* ``knn``: KATE's prompt (the k nearest, most similar last);
* ``oracle``: greedy by the query's *own* calibrated gold-label probability: each step adds the candidate whose
  addition raises it most (an upper bound: it reads the test label);
* ``transferable``: the same greedy, but by the mean gold-label probability of the query's D nearest *dev*
  rows: what a policy could learn to do without the query's label.

Each prompt is then scored on the query itself, raw and calibrated. The differences to kNN, with paired
bootstrap intervals over the queries, say how much a learner can gain and where; the per-query records say on
which queries.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rl_select.budget import Projection, Throughput, TokenProfile, measure_throughput, project_headroom
from rl_select.errors import ArtifactError, ConfigError, Interrupted
from rl_select.evaluation import PairedDelta, paired_bootstrap
from rl_select.observation import nearest_first
from rl_select.provenance import (
    Provenance,
    continues,
    markdown_table,
    provenance,
    provenance_markdown,
    read_result_file,
    write_json,
)
from rl_select.resources import Resources
from rl_select.scoring import LanguageModel, LLMCost, Scorer, ScoringConfig
from rl_select.selectors import check_k
from rl_select.study.headroom_request import HeadroomRequest
from rl_select.tasks import load_task
from rl_select.tasks.task import Example
from rl_select.types import JsonObject, JsonValue

ProgressFactory = Callable[[str, int], Callable[[int], None]]
PROMPTS = ("knn", "oracle", "transferable")
HEADROOM_FORMAT = 1


@dataclass(frozen=True)
class PromptOutcome:
    """One prompt kind on one query: its demonstrations (pool ids, prompt order), gold probability, correctness."""

    prompt: list[int]
    gold_probability: float
    correct_calibrated: bool
    correct_raw: bool


@dataclass(frozen=True)
class HeadroomRecord:
    """One test query of the analysis: its id, gold label index and the outcome of each prompt kind."""

    id: int
    gold: int
    outcomes: dict[str, PromptOutcome]

    def to_dict(self) -> dict[str, object]:
        """JSON form: ``id``, ``gold`` and one object per prompt kind."""
        return {"id": self.id, "gold": self.gold, **{name: asdict(o) for name, o in self.outcomes.items()}}

    @classmethod
    def from_dict(cls, data: object) -> HeadroomRecord:
        """Inverse of :meth:`to_dict`; raises ``ValueError`` on a damaged record."""
        if not isinstance(data, dict) or not all(isinstance(data.get(p), dict) for p in PROMPTS):
            raise ValueError("not a headroom record")
        try:
            outcomes = {p: PromptOutcome(**data[p]) for p in PROMPTS}
            return cls(id=int(data["id"]), gold=int(data["gold"]), outcomes=outcomes)
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a headroom record ({exc})") from None


@dataclass(frozen=True)
class PromptSummary:
    """One prompt kind over all queries."""

    accuracy_calibrated: float
    accuracy_raw: float
    gold_probability: float


@dataclass(frozen=True)
class HeadroomSummary:
    """Accuracies and gold probabilities per prompt kind, deltas to kNN, and where the transferable greedy differs.

    ``knn_right_kept_right``: of the queries kNN gets right, the share the transferable greedy keeps right;
    ``knn_wrong_made_right``: of those kNN gets wrong, the share it gets right (None where there are none).
    """

    queries: int
    cost: LLMCost
    prompts: dict[str, PromptSummary]
    minus_knn: dict[str, PairedDelta]
    knn_right_kept_right: float | None
    knn_wrong_made_right: float | None

    def to_dict(self) -> dict[str, object]:
        """JSON form."""
        return {
            "queries": self.queries,
            "cost": self.cost.to_dict(),
            **{name: asdict(summary) for name, summary in self.prompts.items()},
            **{f"{name}_minus_knn": delta.to_dict() for name, delta in self.minus_knn.items()},
            "transferable_where": {
                "knn_right_kept_right": self.knn_right_kept_right,
                "knn_wrong_made_right": self.knn_wrong_made_right,
            },
        }


@dataclass
class Headroom:
    """The headroom analysis of one task.

    Attributes:
        task: Task name.
        k: Demonstrations per prompt.
        num_candidates: Nearest neighbours offered (M).
        dev_neighbours: Dev rows the transferable greedy scores on (D).
        records: Per query: its id, gold label, and per prompt the pool ids (prompt order), calibrated gold
            probability, and raw and calibrated correctness.
        cost: LLM work of the whole analysis.
    """

    task: str
    k: int
    num_candidates: int
    dev_neighbours: int
    records: list[HeadroomRecord] = field(default_factory=list)
    cost: LLMCost = field(default_factory=LLMCost)

    def correct(self, prompt: str, calibrated: bool = True) -> np.ndarray:
        """``[1, queries]`` correctness of one prompt kind (for :func:`paired_bootstrap`)."""
        outcomes = [r.outcomes[prompt] for r in self.records]
        return np.array([[o.correct_calibrated if calibrated else o.correct_raw for o in outcomes]], dtype=np.float64)

    def summary(self) -> HeadroomSummary:
        """Accuracies (raw and calibrated), gold-label probabilities and deltas to kNN with 95% intervals."""
        prompts = {
            prompt: PromptSummary(
                accuracy_calibrated=float(self.correct(prompt).mean()),
                accuracy_raw=float(self.correct(prompt, calibrated=False).mean()),
                gold_probability=float(np.mean([r.outcomes[prompt].gold_probability for r in self.records])),
            )
            for prompt in PROMPTS
        }
        knn = self.correct("knn")
        minus_knn = {prompt: paired_bootstrap(self.correct(prompt), knn) for prompt in PROMPTS[1:]}
        transferable, knn_right = self.correct("transferable")[0], knn[0] > 0
        return HeadroomSummary(
            queries=len(self.records),
            cost=self.cost,
            prompts=prompts,
            minus_knn=minus_knn,
            knn_right_kept_right=float(transferable[knn_right].mean()) if knn_right.any() else None,
            knn_wrong_made_right=float(transferable[~knn_right].mean()) if (~knn_right).any() else None,
        )


def headroom(
    resources: Resources,
    queries: list[Example],
    *,
    k: int = 4,
    num_candidates: int = 8,
    dev_neighbours: int = 4,
    progress: ProgressFactory | None = None,
    result: Headroom | None = None,
    checkpoint: Callable[[Headroom], None] | None = None,
) -> Headroom:
    """Run the headroom analysis on ``queries`` (see the module docstring).

    ``result`` continues an interrupted analysis (its queries are not scored again); ``checkpoint`` is called
    with the result after every query, so an interruption loses at most one query's work.
    """
    task, scorer = resources.task, resources.scorer
    result = result or Headroom(task.name, k, num_candidates, dev_neighbours)
    done = {record.id for record in result.records}
    todo = [query for query in queries if query.id not in done]
    pool_vectors = resources.index.vectors
    dev_vectors = resources.query_vectors(task.dev)
    earlier, started = result.cost, scorer.cost()
    advance = progress(f"{task.name} · headroom", len(todo)) if progress and todo else None
    for query in todo:
        vector = resources.query_vectors([query])[0]
        candidates = [task.train[int(i)] for i in nearest_first(pool_vectors, vector)[:num_candidates]]
        neighbours = [task.dev[int(i)] for i in nearest_first(dev_vectors, vector)[:dev_neighbours]]
        prompts = {
            "knn": candidates[:k][::-1],
            "oracle": _greedy(scorer, candidates, [query], k),
            "transferable": _greedy(scorer, candidates, neighbours, k),
        }
        result.records.append(_record(scorer, query, int(task.gold([query])[0]), prompts))
        result.cost = earlier + (scorer.cost() - started)
        if checkpoint is not None:
            checkpoint(result)
        if advance is not None:
            advance(1)
    return result


def _record(scorer: Scorer, query: Example, gold: int, prompts: dict[str, list[Example]]) -> HeadroomRecord:
    """One query's record: each prompt's demonstrations, gold-label probability and correctness."""
    outcomes = {}
    for name, prompt in prompts.items():
        scored = scorer.score(prompt, [query])
        outcomes[name] = PromptOutcome(
            prompt=[d.id for d in prompt],
            gold_probability=float(scored.gold_probs[0]),
            correct_calibrated=bool(scored.probs_calibrated.argmax(-1)[0] == gold),
            correct_raw=bool(scored.probs_raw.argmax(-1)[0] == gold),
        )
    return HeadroomRecord(query.id, gold, outcomes)


def _greedy(scorer: Scorer, candidates: list[Example], rows: list[Example], k: int) -> list[Example]:
    """Grow a prompt (appending) by the candidate that most raises the mean gold-label probability on ``rows``."""
    chosen: list[Example] = []
    for _ in range(k):
        remaining = [c for c in candidates if c not in chosen]
        values = [r.gold_probs.mean() for r in scorer.score_extensions(chosen, remaining, rows)]
        chosen.append(remaining[int(np.argmax(values))])
    return chosen


def headroom_report(result: Headroom, summary: HeadroomSummary | None = None) -> tuple[list[str], list[list[str]]]:
    """The analysis as a table: accuracy of each prompt kind and its paired difference to kNN.

    ``summary``: the result's :meth:`Headroom.summary` when the caller has it (its bootstrap is not redone).
    """
    summary = summary or result.summary()
    headers = ["prompt", "calibrated", "raw", "gold-label probability", "calibrated − kNN (95% CI)"]
    rows = []
    for prompt in PROMPTS:
        delta, found = summary.minus_knn.get(prompt), summary.prompts[prompt]
        rows.append(
            [
                prompt,
                f"{100 * found.accuracy_calibrated:.1f}",
                f"{100 * found.accuracy_raw:.1f}",
                f"{found.gold_probability:.3f}",
                f"{delta.mean:+.1f} [{delta.ci95[0]:+.1f}, {delta.ci95[1]:+.1f}]" if delta else "",
            ]
        )
    return headers, rows


def headroom_key(task: str, queries: list[Example], model: JsonObject, **settings: JsonValue) -> JsonObject:
    """What identifies an analysis: task, settings (k, M, D, embedder, data seed), model and test queries."""
    return {
        "task": task,
        **settings,
        "model": {name: model.get(name) for name in ("name", "fingerprint", "dtype", "device")},
        "queries": [query.id for query in queries],
    }


class HeadroomFile:
    """A headroom analysis's result file: JSON (summary and per-query records) and markdown beside it.

    Written after every query and marked ``partial`` until the last. Opening the file of the same analysis (the
    ``key``: task, k, M, D, embedder, model, data seed and test queries) continues it: its records are kept and
    its provenance stays the first run's, while a continuing run that adds a query is listed in ``resumed_by``.
    A partial file of another analysis is refused (never overwritten); a complete one is replaced.
    """

    def __init__(self, path: Path, key: JsonObject, record: Provenance) -> None:
        self.path = Path(path)
        self.key = json.loads(json.dumps(key, default=str))
        self.provenance = record
        self.resumed_by: list[Provenance] = []
        self._continuing: Provenance | None = None
        self._loaded = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)  # an unwritable place fails now, not after the work

    def open(self, result: Headroom) -> Headroom:
        """``result`` with the records and cost of a stored run of the same analysis (if any) added."""
        stored = read_result_file(self.path)
        if not stored or not continues(self.path, stored, self.key, HEADROOM_FORMAT, "headroom analysis"):
            return result
        try:
            records = [HeadroomRecord.from_dict(r) for r in stored.get("records")]
            cost = LLMCost.from_dict(stored["summary"]["cost"])
        except (ValueError, TypeError, KeyError):
            raise ArtifactError(
                f"{self.path} holds damaged headroom records; move it away or use another --out"
            ) from None
        self._continuing = self.provenance
        first = stored.get("provenance")
        self.provenance = Provenance.from_dict(first) if isinstance(first, dict) else self.provenance
        self.resumed_by = [Provenance.from_dict(r) for r in stored.get("resumed_by", []) if isinstance(r, dict)]
        result.records, result.cost = records, cost
        self._loaded = len(records)
        return result

    def write(self, result: Headroom, queries: int, embedder: str) -> Path:
        """Write the analysis so far (``partial`` while fewer than ``queries`` records)."""
        if self._continuing is not None and len(result.records) > self._loaded:  # it added a query: list it once
            self.resumed_by.append(self._continuing)
            self._continuing = None
        partial = len(result.records) < queries
        summary = result.summary() if result.records else None
        payload = {
            "format": HEADROOM_FORMAT,
            "partial": partial,
            "key": self.key,
            "provenance": self.provenance.with_details(llm_cost=result.cost.to_dict()),
            "resumed_by": self.resumed_by,
            "task": result.task,
            "k": result.k,
            "num_candidates": result.num_candidates,
            "dev_neighbours": result.dev_neighbours,
            "embedder": embedder,
            "summary": summary.to_dict() if summary else {"queries": 0, "cost": result.cost.to_dict()},
            "records": [record.to_dict() for record in result.records],
        }
        write_json(self.path, payload)
        if summary is not None:
            text = headroom_markdown(result, summary, embedder, payload["provenance"], partial, self.resumed_by)
            self.path.with_suffix(".md").write_text(text)
        return self.path


def headroom_markdown(
    result: Headroom,
    summary: HeadroomSummary,
    embedder: str,
    record: Provenance,
    partial: bool,
    resumed_by: list[Provenance],
) -> str:
    """The analysis as markdown: what was compared, the table, where the transferable greedy differs, provenance."""
    headers, rows = headroom_report(result, summary)
    resumed = "".join(f"- continued by: `{r.commit}` at {r.time_utc}\n" for r in resumed_by)
    return (
        f"# Headroom: {result.task}, k={result.k}, M={result.num_candidates} nearest neighbours, "
        f"{len(result.records)} test queries{' (partial: rerun the command to continue)' if partial else ''}\n\n"
        "Per test query, prompts built from the same M nearest pool neighbours (embedder "
        f"{embedder}): KATE's kNN prompt; the greedy choice by the query's own calibrated gold-label probability "
        f"(an upper bound: it reads the test label); and the greedy choice by the mean of its {result.dev_neighbours} "
        "nearest dev rows' (what a policy could transfer). Each scored on the query; deltas are paired, with "
        "95% bootstrap intervals over the queries.\n\n"
        + markdown_table(headers, rows)
        + f"\nWhere the transferable greedy differs: it keeps {100 * (summary.knn_right_kept_right or 0):.0f}% of "
        f"the queries kNN gets right and gets {100 * (summary.knn_wrong_made_right or 0):.0f}% of those kNN gets "
        f"wrong. LLM cost: {result.cost.queries:,} scored queries, {result.cost.tokens:,} forward tokens.\n\n"
        + provenance_markdown(record)
        + resumed
    )


def run_headroom(
    request: HeadroomRequest,
    load_model: Callable[[], LanguageModel],
    *,
    progress: ProgressFactory | None = None,
    on_start: Callable[[Path, int, int], None] | None = None,
    on_budget: Callable[[Projection, Throughput], None] | None = None,
) -> tuple[Headroom, Path]:
    """Run (or continue) a headroom analysis, writing its file after every query; returns it and the file.

    ``on_start`` is told the file, the queries and how many an earlier run left; ``on_budget`` the projected LLM
    work of the queries still to do and this machine's measured throughput, before any is scored.

    Raises:
        Interrupted: On Ctrl-C, after the finished queries are on disk.
    """
    task = load_task(request.task, request.data_dir)
    check_k(request.k, len(task.train))
    if not request.k <= request.num_candidates <= len(task.train) or request.queries < 1 or request.dev_neighbours < 1:
        raise ConfigError("need k <= --num-candidates <= pool size, and positive --n-test and --dev-neighbours")
    queries = task.sample("test", request.queries, seed=request.data_seed)
    lm = load_model()
    path = Path(request.out) if request.out else Path("experiments/results") / f"headroom_{task.name}.json"
    shape = {"k": request.k, "num_candidates": request.num_candidates, "dev_neighbours": request.dev_neighbours}
    key = headroom_key(task.name, queries, lm.info(), data_seed=request.data_seed, embedder=request.embedder, **shape)
    file = HeadroomFile(path, key, provenance(seeds=[request.data_seed], model=lm.info()))
    result = file.open(Headroom(task.name, **shape))
    todo = len(queries) - len(result.records)
    if on_start is not None:
        on_start(path, len(queries), len(result.records))
    if todo and on_budget is not None:
        profile = TokenProfile.of(task, lm.tokenizer)
        projection = project_headroom(profile, request.k, request.num_candidates, request.dev_neighbours, todo)
        on_budget(projection, measure_throughput(lm, [task], request.k))
    resources = Resources(
        task, lm=lm, scoring=ScoringConfig(), embedder=request.embedder, data_seed=request.data_seed, progress=progress
    )
    try:
        headroom(
            resources,
            queries,
            **shape,
            progress=progress,
            result=result,
            checkpoint=lambda so_far: file.write(so_far, len(queries), request.embedder),
        )
    except KeyboardInterrupt:
        done = f"{len(result.records)} of {len(queries)} queries saved in {path}" if result.records else "none done"
        raise Interrupted(f"{done}; rerun the same command to continue") from None
    return result, path
