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

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rl_select.evaluation import paired_bootstrap
from rl_select.observation import nearest_first
from rl_select.resources import Resources
from rl_select.scoring import LLMCost
from rl_select.tasks.task import Example

ProgressFactory = Callable[[str, int], Callable[[int], None]]
PROMPTS = ("knn", "oracle", "transferable")


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
) -> Headroom:
    """Run the headroom analysis on ``queries`` (see the module docstring)."""
    task, scorer = resources.task, resources.scorer
    pool_vectors = resources.index.vectors
    dev = task.dev
    dev_vectors = resources.query_vectors(dev)
    result = Headroom(task.name, k, num_candidates, dev_neighbours)
    started = scorer.cost()
    advance = progress(f"{task.name} · headroom", len(queries)) if progress else None
    for query in queries:
        vector = resources.query_vectors([query])[0]
        candidates = [task.train[int(i)] for i in nearest_first(pool_vectors, vector)[:num_candidates]]
        neighbours = [dev[int(i)] for i in nearest_first(dev_vectors, vector)[:dev_neighbours]]
        prompts = {
            "knn": candidates[:k][::-1],
            "oracle": _greedy(scorer, candidates, [query], k),
            "transferable": _greedy(scorer, candidates, neighbours, k),
        }
        record: dict[str, Any] = {"id": query.id, "gold": int(task.gold([query])[0])}
        for name, prompt in prompts.items():
            scored = scorer.score(prompt, [query])
            record[name] = {
                "prompt": [d.id for d in prompt],
                "gold_probability": float(scored.gold_probs[0]),
                "correct_calibrated": bool(scored.probs_calibrated.argmax(-1)[0] == record["gold"]),
                "correct_raw": bool(scored.probs_raw.argmax(-1)[0] == record["gold"]),
            }
        result.records.append(record)
        if advance is not None:
            advance(1)
    result.cost = scorer.cost() - started
    return result


def _greedy(scorer: Any, candidates: list[Example], rows: list[Example], k: int) -> list[Example]:
    """Grow a prompt (appending) by the candidate that most raises the mean gold-label probability on ``rows``."""
    chosen: list[Example] = []
    for _ in range(k):
        remaining = [c for c in candidates if c not in chosen]
        values = [r.gold_probs.mean() for r in scorer.score_extensions(chosen, remaining, rows)]
        chosen.append(remaining[int(np.argmax(values))])
    return chosen


def headroom_report(result: Headroom) -> tuple[list[str], list[list[str]]]:
    """The analysis as a table: accuracy of each prompt kind and its paired difference to kNN."""
    summary = result.summary()
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


def write_headroom(result: Headroom, path: Path, lm: Any, embedder: str, data_seed: int) -> Path:
    """The analysis's JSON (summary and per-query records) and markdown, with provenance."""
    from rl_select.provenance import markdown_table, provenance, provenance_markdown, write_json

    summary = result.summary()
    record = provenance(seeds=[data_seed], model=lm.info(), llm_cost=result.cost.to_dict())
    payload = {
        "provenance": record,
        "task": result.task,
        "k": result.k,
        "num_candidates": result.num_candidates,
        "dev_neighbours": result.dev_neighbours,
        "embedder": embedder,
        "summary": summary,
        "records": result.records,
    }
    write_json(path, payload)
    headers, rows = headroom_report(result)
    where = summary["transferable_where"]
    path.with_suffix(".md").write_text(
        f"# Headroom: {result.task}, k={result.k}, M={result.num_candidates} nearest neighbours, "
        f"{len(result.records)} test queries\n\n"
        "Per test query, prompts built from the same M nearest pool neighbours (embedder "
        f"{embedder}): KATE's kNN prompt; the greedy choice by the query's own calibrated gold-label probability "
        f"(an upper bound: it reads the test label); and the greedy choice by the mean of its {result.dev_neighbours} "
        "nearest dev rows' (what a policy could transfer). Each scored on the query; deltas are paired, with "
        "95% bootstrap intervals over the queries.\n\n"
        + markdown_table(headers, rows)
        + f"\nWhere the transferable greedy differs: it keeps {100 * (where['knn_right_kept_right'] or 0):.0f}% of "
        f"the queries kNN gets right and gets {100 * (where['knn_wrong_made_right'] or 0):.0f}% of those kNN gets "
        f"wrong. LLM cost: {result.cost.queries:,} scored queries, {result.cost.tokens:,} forward tokens.\n\n"
        + provenance_markdown(record)
    )
    return path
