"""``rl-select evaluate --dump FILE.jsonl``: what every test query got from every selector, one line each.

A line holds the selector and seed, the query, the demonstrations in prompt order (pool ids and texts), the
prediction (primary metric, raw and calibrated), the gold label and both label distributions — what OpenICL
users inspect to see why a retriever helps or hurts.
"""

from __future__ import annotations

import json
from pathlib import Path

from rl_select.errors import ArtifactError
from rl_select.evaluation.core import SeedResult, SelectorReport
from rl_select.tasks import Example, Task
from rl_select.types import JsonObject


def dump_lines(report: SelectorReport, seed: SeedResult, rows: list[Example], task: Task) -> list[JsonObject]:
    """One dict per evaluation row of one (selector, seed)."""
    labels = list(task.template.labels)
    if len(seed.probs_calibrated) != len(rows) or len(seed.probs_raw) != len(rows):
        raise ArtifactError(
            f"the result of {report.name} (seed {seed.seed}) holds no per-row label distributions; "
            "evaluate into a new --out to dump it"
        )
    primary = seed.predictions_calibrated if report.calibrate else seed.predictions_raw
    lines = []
    for i, row in enumerate(rows):
        demonstrations = [task.train[j] for j in seed.prompt_of(i)]
        lines.append(
            {
                "selector": report.name,
                "seed": seed.seed,
                "row": i,
                "query": {"id": row.id, "text": row.text, "text_pair": row.text_pair},
                "demonstrations": [{"id": d.id, "text": d.text, "label": d.label} for d in demonstrations],
                "prediction": labels[primary[i]],
                "prediction_raw": labels[seed.predictions_raw[i]],
                "prediction_calibrated": labels[seed.predictions_calibrated[i]],
                "gold": row.label,
                "probs_calibrated": dict(zip(labels, seed.probs_calibrated[i], strict=True)),
                "probs_raw": dict(zip(labels, seed.probs_raw[i], strict=True)),
            }
        )
    return lines


def write_dump(path: Path, reports: list[SelectorReport], rows: list[Example], task: Task) -> int:
    """Write every selector's every seed's rows to ``path`` (JSONL, atomically); return the lines written."""
    lines = [line for report in reports for seed in report.seeds for line in dump_lines(report, seed, rows, task)]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w") as handle:
        for line in lines:
            handle.write(json.dumps(line, ensure_ascii=False) + "\n")
    tmp.replace(path)
    return len(lines)
