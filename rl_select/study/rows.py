"""The study table's rows: their names, in order, and the baselines among them as selectors."""

from __future__ import annotations

from rl_select.selectors import device_defaults, make_selector
from rl_select.selectors.base import Selector
from rl_select.study.config import StudyConfig

LEARNED_QUERY = "learned query mode"
VERIFIED_QUERY = "learned query mode, dev-verified"
LEARNED_TASK = "learned task mode"
SCORED_TASK = "learned task mode, with its scored prompts"
TRANSFER_QUERY = "learned query mode, other tasks"
CHECKED_TRANSFER = "learned query mode, other tasks, label-checked"
POOLED_QUERY = "learned query mode, all tasks' rows"
VERIFIED_POOLED = "learned query mode, all tasks' rows, dev-verified"
VERIFIED_EVERY = "learned query mode, every policy, dev-verified"
POOLED_TASK = "learned task mode, all tasks' rows"
RANKED_TASK = "learned task mode, Q-ranked proposals"
EQUAL_BUDGET = "best-of-n (equal budget)"


def transfer_task_row(budget: int) -> str:
    """The row of a task-mode policy fitted on the other tasks, proposing ``budget`` prompts."""
    return f"task policy, other tasks (N={budget})"


def ranked_transfer_task_row(budget: int) -> str:
    """The row of the task-mode policy fitted on the other tasks, proposing its ``budget`` best-valued prompts."""
    return f"task policy, other tasks, Q-ranked (N={budget})"


def small_best_of_n_row(budget: int) -> str:
    """The row of best-of-N at a small N (beside the transfer task policy's)."""
    return f"best-of-n (N={budget})"


def row_names(config: StudyConfig) -> list[str]:
    """The rows, in order: baselines, best-of-N at equal budget, learned, transfer, pooled, every, pooled task."""
    rows = [*config.evaluation.baselines, EQUAL_BUDGET, LEARNED_QUERY]
    if config.query.verify_rows:
        rows.append(VERIFIED_QUERY)
    rows.append(LEARNED_TASK)
    if config.task.scored_prompts:
        rows.append(SCORED_TASK)
    if config.task.ranked_draws:
        rows.append(RANKED_TASK)
    if config.transfer:
        rows.append(TRANSFER_QUERY)
    if config.transfer_check_rows:
        rows.append(CHECKED_TRANSFER)
    for budget in config.task_transfer_budgets:
        rows += [transfer_task_row(budget), small_best_of_n_row(budget)]
        if config.task.ranked_draws:
            rows.append(ranked_transfer_task_row(budget))
    if config.pooled:
        rows.append(POOLED_QUERY)
        if config.query.verify_rows:
            rows.append(VERIFIED_POOLED)
    if config.every_policy:
        rows.append(VERIFIED_EVERY)
    if config.task.pooled:
        rows.append(POOLED_TASK)
    return rows


def baseline_selectors(config: StudyConfig, device_type: str) -> list[Selector]:
    """The study's baselines (best-of-N at its usual N; the LLM-heavy ones with the device's settings)."""
    best = {"num_sets": config.evaluation.best_of_n_sets, "dev_size": config.evaluation.best_of_n_dev_rows}
    return [
        make_selector(b, **(best if b == "best-of-n" else device_defaults(b, device_type)))
        for b in config.evaluation.baselines
    ]


def best_of_n(config: StudyConfig, row: str, sets: int) -> Selector:
    """best-of-N with ``sets`` prompts on the study's dev rows, named ``row`` in the table."""
    selector = make_selector("best-of-n", num_sets=sets, dev_size=config.evaluation.best_of_n_dev_rows)
    selector.name = row  # type: ignore[misc]
    return selector
