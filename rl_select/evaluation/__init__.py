"""Evaluating selectors on held-out rows, every method under the same scoring, resumable.

``request`` (what ``rl-select evaluate`` evaluates: a settings schema), ``core`` (per-seed results and reports,
the resumable evaluation log), ``stats`` (paired bootstrap intervals), ``tables`` (cells and markdown) and
``command`` (the ``rl-select evaluate`` protocol as a library call).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from rl_select.evaluation.request import ORDER_CHOICES, EvaluateRequest, SelectorOptions

if TYPE_CHECKING:
    from rl_select.evaluation.core import (
        EVALUATION_FORMAT,
        EvaluationLog,
        SeedResult,
        SelectorReport,
        evaluate_selector,
        evaluation_key,
        evaluation_rows,
        run_evaluation,
        selector_key,
    )
    from rl_select.evaluation.stats import PairedDelta, paired_bootstrap, stratified_bootstrap
    from rl_select.evaluation.tables import (
        REPORT_COLUMNS,
        evaluation_markdown,
        format_cost,
        format_mean_sd,
        report_row,
    )

LAZY = {
    **dict.fromkeys(
        (
            "EVALUATION_FORMAT",
            "EvaluationLog",
            "SeedResult",
            "SelectorReport",
            "evaluate_selector",
            "evaluation_key",
            "evaluation_rows",
            "run_evaluation",
            "selector_key",
        ),
        "core",
    ),
    **dict.fromkeys(("PairedDelta", "paired_bootstrap", "stratified_bootstrap"), "stats"),
    **dict.fromkeys(("REPORT_COLUMNS", "evaluation_markdown", "format_cost", "format_mean_sd", "report_row"), "tables"),
}
"""Names imported on first use: evaluating imports the scorer (torch), which the request (the command line's
options) never needs."""


def __getattr__(name: str) -> Any:
    if name in LAZY:
        return getattr(importlib.import_module(f"rl_select.evaluation.{LAZY[name]}"), name)
    raise AttributeError(f"module 'rl_select.evaluation' has no attribute '{name}'")


__all__ = [
    "EVALUATION_FORMAT",
    "ORDER_CHOICES",
    "REPORT_COLUMNS",
    "EvaluateRequest",
    "EvaluationLog",
    "PairedDelta",
    "SeedResult",
    "SelectorOptions",
    "SelectorReport",
    "evaluate_selector",
    "evaluation_key",
    "evaluation_markdown",
    "evaluation_rows",
    "format_cost",
    "format_mean_sd",
    "paired_bootstrap",
    "report_row",
    "run_evaluation",
    "selector_key",
    "stratified_bootstrap",
]
