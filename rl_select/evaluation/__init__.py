"""Evaluating selectors on held-out rows, every method under the same scoring, resumable.

``core`` (per-seed results and reports, the resumable evaluation log), ``stats`` (paired bootstrap intervals),
``tables`` (cells and markdown) and ``command`` (the ``rl-select evaluate`` protocol as a library call).
"""

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
from rl_select.evaluation.tables import REPORT_COLUMNS, evaluation_markdown, format_cost, format_mean_sd, report_row

__all__ = [
    "EVALUATION_FORMAT",
    "REPORT_COLUMNS",
    "EvaluationLog",
    "PairedDelta",
    "SeedResult",
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
