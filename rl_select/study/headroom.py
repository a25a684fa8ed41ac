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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rl_select.errors import ArtifactError, ConfigError
from rl_select.evaluation import paired_bootstrap
from rl_select.observation import nearest_first
from rl_select.resources import Resources
from rl_select.scoring import LLMCost
from rl_select.tasks.task import Example

ProgressFactory = Callable[[str, int], Callable[[int], None]]
PROMPTS = ("knn", "oracle", "transferable")
HEADROOM_FORMAT = 1


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
    records: list[dict[str, Any]] = field(default_factory=list)
    cost: LLMCost = field(default_factory=LLMCost)

    def correct(self, prompt: str, calibrated: bool = True) -> np.ndarray:
        """``[1, queries]`` correctness of one prompt kind (for :func:`paired_bootstrap`)."""
        key = "correct_calibrated" if calibrated else "correct_raw"
        return np.array([[r[prompt][key] for r in self.records]], dtype=np.float64)

    def summary(self) -> dict[str, Any]:
        """Accuracies (raw and calibrated), gold-label probabilities and deltas to kNN with 95% intervals."""
        out: dict[str, Any] = {"queries": len(self.records), "cost": self.cost.to_dict()}
        for prompt in PROMPTS:
            out[prompt] = {
                "accuracy_calibrated": float(self.correct(prompt).mean()),
                "accuracy_raw": float(self.correct(prompt, calibrated=False).mean()),
                "gold_probability": float(np.mean([r[prompt]["gold_probability"] for r in self.records])),
            }
        for prompt in PROMPTS[1:]:
            out[f"{prompt}_minus_knn"] = paired_bootstrap(self.correct(prompt), self.correct("knn")).to_dict()
        knn_right = self.correct("knn")[0] > 0
        out["transferable_where"] = {
            "knn_right_kept_right": float(self.correct("transferable")[0][knn_right].mean())
            if knn_right.any()
            else None,
            "knn_wrong_made_right": float(self.correct("transferable")[0][~knn_right].mean())
            if (~knn_right).any()
            else None,
        }
        return out


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
    done = {record["id"] for record in result.records}
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


def _record(scorer: Any, query: Example, gold: int, prompts: dict[str, list[Example]]) -> dict[str, Any]:
    """One query's record: each prompt's demonstrations, gold-label probability and correctness."""
    record: dict[str, Any] = {"id": query.id, "gold": gold}
    for name, prompt in prompts.items():
        scored = scorer.score(prompt, [query])
        record[name] = {
            "prompt": [d.id for d in prompt],
            "gold_probability": float(scored.gold_probs[0]),
            "correct_calibrated": bool(scored.probs_calibrated.argmax(-1)[0] == gold),
            "correct_raw": bool(scored.probs_raw.argmax(-1)[0] == gold),
        }
    return record


def _greedy(scorer: Any, candidates: list[Example], rows: list[Example], k: int) -> list[Example]:
    """Grow a prompt (appending) by the candidate that most raises the mean gold-label probability on ``rows``."""
    chosen: list[Example] = []
    for _ in range(k):
        remaining = [c for c in candidates if c not in chosen]
        values = [r.gold_probs.mean() for r in scorer.score_extensions(chosen, remaining, rows)]
        chosen.append(remaining[int(np.argmax(values))])
    return chosen


def headroom_report(result: Headroom, summary: dict[str, Any] | None = None) -> tuple[list[str], list[list[str]]]:
    """The analysis as a table: accuracy of each prompt kind and its paired difference to kNN.

    ``summary``: the result's :meth:`Headroom.summary` when the caller has it (its bootstrap is not redone).
    """
    summary = summary or result.summary()
    headers = ["prompt", "calibrated", "raw", "gold-label probability", "calibrated − kNN (95% CI)"]
    rows = []
    for prompt in PROMPTS:
        delta = summary.get(f"{prompt}_minus_knn")
        rows.append(
            [
                prompt,
                f"{100 * summary[prompt]['accuracy_calibrated']:.1f}",
                f"{100 * summary[prompt]['accuracy_raw']:.1f}",
                f"{summary[prompt]['gold_probability']:.3f}",
                f"{delta['mean']:+.1f} [{delta['ci95'][0]:+.1f}, {delta['ci95'][1]:+.1f}]" if delta else "",
            ]
        )
    return headers, rows


def headroom_key(task: str, queries: list[Example], model: dict[str, Any], **settings: Any) -> dict[str, Any]:
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

    def __init__(self, path: Path, key: dict[str, Any], provenance: dict[str, Any]) -> None:
        self.path = Path(path)
        self.key = json.loads(json.dumps(key, default=str))
        self.provenance = provenance
        self.resumed_by: list[dict[str, Any]] = []
        self._continuing: dict[str, Any] | None = None
        self._loaded = 0
        self.path.parent.mkdir(parents=True, exist_ok=True)  # an unwritable place fails now, not after the work

    def open(self, result: Headroom) -> Headroom:
        """``result`` with the records and cost of a stored run of the same analysis (if any) added."""
        stored = self._stored()
        if stored is None or stored.get("format") != HEADROOM_FORMAT or stored.get("key") != self.key:
            if stored is not None and stored.get("partial"):
                differs = sorted(k for k in self.key if (stored.get("key") or {}).get(k) != self.key[k])
                raise ConfigError(
                    f"{self.path} holds a partial headroom analysis with other settings ({', '.join(differs)}); "
                    "rerun with those settings to continue it, or use another --out"
                )
            return result
        records, cost = stored.get("records"), (stored.get("summary") or {}).get("cost")
        if not isinstance(records, list) or not all(_is_record(r) for r in records) or not _is_cost(cost):
            raise ArtifactError(f"{self.path} holds damaged headroom records; move it away or use another --out")
        self._continuing = self.provenance
        self.provenance = stored.get("provenance") or self.provenance
        self.resumed_by = [r for r in stored.get("resumed_by", []) if isinstance(r, dict)]
        result.records, result.cost = records, LLMCost(cost["queries"], cost["tokens"])
        self._loaded = len(records)
        return result

    def _stored(self) -> dict[str, Any] | None:
        if not self.path.is_file():
            return None
        try:
            stored = json.loads(self.path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ArtifactError(f"{self.path} is not readable JSON; move it away or use another --out") from None
        return stored if isinstance(stored, dict) else {}

    def write(self, result: Headroom, queries: int, embedder: str) -> Path:
        """Write the analysis so far (``partial`` while fewer than ``queries`` records)."""
        from rl_select.provenance import write_json

        if self._continuing is not None and len(result.records) > self._loaded:  # it added a query: list it once
            self.resumed_by.append(self._continuing)
            self._continuing = None
        partial = len(result.records) < queries
        summary = result.summary() if result.records else {"queries": 0, "cost": result.cost.to_dict()}
        payload = {
            "format": HEADROOM_FORMAT,
            "partial": partial,
            "key": self.key,
            "provenance": {**self.provenance, "llm_cost": result.cost.to_dict()},
            "resumed_by": self.resumed_by,
            "task": result.task,
            "k": result.k,
            "num_candidates": result.num_candidates,
            "dev_neighbours": result.dev_neighbours,
            "embedder": embedder,
            "summary": summary,
            "records": result.records,
        }
        write_json(self.path, payload)
        if result.records:
            self.path.with_suffix(".md").write_text(headroom_markdown(result, embedder, payload, partial))
        return self.path


def _is_record(record: Any) -> bool:
    keys = ("prompt", "gold_probability", "correct_calibrated", "correct_raw")
    return (
        isinstance(record, dict)
        and "id" in record
        and all(isinstance(record.get(p), dict) and all(k in record[p] for k in keys) for p in PROMPTS)
    )


def _is_cost(cost: Any) -> bool:
    return isinstance(cost, dict) and all(isinstance(cost.get(k), int) for k in ("queries", "tokens"))


def headroom_markdown(result: Headroom, embedder: str, payload: dict[str, Any], partial: bool) -> str:
    """The analysis as markdown: what was compared, the table, where the transferable greedy differs, provenance."""
    from rl_select.provenance import markdown_table, provenance_markdown

    headers, rows = headroom_report(result, payload["summary"])
    where = payload["summary"]["transferable_where"]
    resumed = "".join(f"- continued by: `{r.get('commit')}` at {r.get('time_utc')}\n" for r in payload["resumed_by"])
    return (
        f"# Headroom: {result.task}, k={result.k}, M={result.num_candidates} nearest neighbours, "
        f"{len(result.records)} test queries{' (partial: rerun the command to continue)' if partial else ''}\n\n"
        "Per test query, prompts built from the same M nearest pool neighbours (embedder "
        f"{embedder}): KATE's kNN prompt; the greedy choice by the query's own calibrated gold-label probability "
        f"(an upper bound: it reads the test label); and the greedy choice by the mean of its {result.dev_neighbours} "
        "nearest dev rows' (what a policy could transfer). Each scored on the query; deltas are paired, with "
        "95% bootstrap intervals over the queries.\n\n"
        + markdown_table(headers, rows)
        + f"\nWhere the transferable greedy differs: it keeps {100 * (where['knn_right_kept_right'] or 0):.0f}% of "
        f"the queries kNN gets right and gets {100 * (where['knn_wrong_made_right'] or 0):.0f}% of those kNN gets "
        f"wrong. LLM cost: {result.cost.queries:,} scored queries, {result.cost.tokens:,} forward tokens.\n\n"
        + provenance_markdown(payload["provenance"])
        + resumed
    )
