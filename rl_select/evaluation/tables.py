"""Evaluation results as table cells and markdown."""

from __future__ import annotations

from rl_select.evaluation.core import SelectorReport
from rl_select.provenance import Provenance, markdown_table, provenance_markdown
from rl_select.scoring import LLMCost
from rl_select.types import JsonObject


def format_mean_sd(mean_sd: tuple[float, float]) -> str:
    """``mean ± sd`` in points."""
    mean, sd = mean_sd
    return f"{100 * mean:.1f} ± {100 * sd:.1f}"


def format_cost(cost: LLMCost) -> str:
    """LLM work in a table cell: scored queries and forward tokens, compactly."""
    if not cost.queries and not cost.tokens:
        return "0"
    return f"{cost.queries:,} q / {_compact(cost.tokens)} tok"


def _compact(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


REPORT_COLUMNS = ("selector", "accuracy", "raw", "calibrated", "per seed", "LLM cost to choose (per seed)", "s/seed")


def report_row(report: SelectorReport) -> list[str]:
    """One table row of a selector's report (the columns of :data:`REPORT_COLUMNS`)."""
    seconds = sum(s.seconds for s in report.seeds) / max(len(report.seeds), 1)
    return [
        report.name,
        format_mean_sd(report.mean_sd),
        format_mean_sd(report.raw),
        format_mean_sd(report.calibrated),
        " ".join(f"{100 * s.accuracy:.1f}" for s in report.seeds),
        format_cost(report.cost),
        f"{seconds:.1f}",
    ]


def evaluation_markdown(payload: JsonObject) -> str:
    """The markdown table of an evaluation file's payload (partial ones say so)."""
    key = payload["key"]
    reports = [SelectorReport.from_dict(r) for r in payload["reports"]]
    primary = "calibrated" if key["scoring"]["calibrate"] else "raw"
    n_rows = reports[0].seeds[0].queries if reports and reports[0].seeds else "?"
    headers = list(REPORT_COLUMNS)
    headers[1] = f"accuracy ({primary})"
    title = f"# {key['task']}: k={key['k']}, {key['split']} split, {n_rows} rows\n\n"
    if payload.get("partial"):
        done = sum(len(r.seeds) for r in reports)
        title += f"**Partial**: {done} selector-seed results so far (interrupted or still running).\n\n"
    return (
        title
        + markdown_table(headers, [report_row(r) for r in reports])
        + f"\nLLM cost to choose: {LLMCost.NOTE}, spent picking the demonstrations, not scoring the evaluation "
        "rows.\n\n" + provenance_markdown(Provenance.from_dict(payload.get("provenance") or {}))
    )
