"""The study table's rows: their names, in order, and the baselines among them as selectors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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


TRANSFER_TASK = "task policy, other tasks"
"""The task-mode policy fitted on the other tasks (a row per budget: :func:`transfer_task_row`)."""
RANKED_TRANSFER_TASK = "task policy, other tasks, Q-ranked"
"""That policy proposing its best-valued prompts (a row per budget: :func:`ranked_transfer_task_row`)."""

BASELINE, BEST_OF_N, POLICY = "baseline", "best-of-n", "policy"
"""The kinds of row: a baseline selector, best-of-N at a given N, a learned policy."""


def transfer_task_row(budget: int) -> str:
    """The row of a task-mode policy fitted on the other tasks, proposing ``budget`` prompts."""
    return f"{TRANSFER_TASK} (N={budget})"


def ranked_transfer_task_row(budget: int) -> str:
    """The row of the task-mode policy fitted on the other tasks, proposing its ``budget`` best-valued prompts."""
    return f"{RANKED_TRANSFER_TASK} (N={budget})"


def small_best_of_n_row(budget: int) -> str:
    """The row of best-of-N at a small N (beside the transfer task policy's)."""
    return f"best-of-n (N={budget})"


@dataclass(frozen=True)
class Row:
    """One row of the study table: its name and what chooses its prompts.

    Attributes:
        name: The row's name in the table.
        kind: ``baseline``, ``best-of-n`` or ``policy``.
        learner: A policy row's learner (one of the row names above, or ``TRANSFER_TASK``/``RANKED_TRANSFER_TASK``
            for the rows per budget); default: ``name``.
        query_level: A policy row: whether it chooses per query.
        proposals: A task-mode policy row: prompts proposed and verified on ``verify_rows`` dev rows (1: none).
        verify_rows: Dev rows each proposal is scored on (0 where nothing is verified).
        sets: A best-of-N row's N (0: the task-mode learner's budget).
        all_tasks: Whether it needs every task's rows (the transfer and pooled rows: they come last).
    """

    name: str
    kind: str = POLICY
    learner: str = ""
    query_level: bool = False
    proposals: int = 1
    verify_rows: int = 0
    sets: int = 0
    all_tasks: bool = False

    @property
    def key(self) -> str:
        """The learner a policy row follows."""
        return self.learner or self.name


def study_rows(config: StudyConfig) -> list[Row]:
    """The rows, in order: baselines, best-of-N at equal budget, learned, transfer, pooled, every, pooled task."""
    task, dev_rows = config.task, config.evaluation.best_of_n_dev_rows
    verify = {"proposals": max(task.proposals, 1), "verify_rows": task.verify_rows}
    rows = [Row(name, BASELINE) for name in config.evaluation.baselines]
    rows += [Row(EQUAL_BUDGET, BEST_OF_N), Row(LEARNED_QUERY, query_level=True)]
    if config.query.verify_rows:
        rows.append(Row(VERIFIED_QUERY, query_level=True))
    rows.append(Row(LEARNED_TASK, **verify))
    if task.scored_prompts:  # the same verification budget, its first prompts the learner's best scored ones
        rows.append(Row(SCORED_TASK, **verify))
    if task.ranked_draws:  # the same verification budget, its greedy proposals the best-valued of more draws
        rows.append(Row(RANKED_TASK, **verify))
    if config.transfer:
        rows.append(Row(TRANSFER_QUERY, query_level=True, all_tasks=True))
        if config.transfer_check_rows:  # the rule the label check chose: no LLM calls on the task
            rows.append(Row(CHECKED_TRANSFER, query_level=True, all_tasks=True))
        for budget in config.task_transfer_budgets:
            small = {"proposals": budget, "verify_rows": dev_rows, "all_tasks": True}
            rows.append(Row(transfer_task_row(budget), learner=TRANSFER_TASK, **small))
            rows.append(Row(small_best_of_n_row(budget), BEST_OF_N, sets=budget, all_tasks=True))
            if task.ranked_draws:
                rows.append(Row(ranked_transfer_task_row(budget), learner=RANKED_TRANSFER_TASK, **small))
    if config.pooled:
        rows.append(Row(POOLED_QUERY, query_level=True, all_tasks=True))
        if config.query.verify_rows:
            rows.append(Row(VERIFIED_POOLED, query_level=True, all_tasks=True))
    if config.every_policy:
        rows.append(Row(VERIFIED_EVERY, query_level=True, all_tasks=True))
    if task.pooled:  # the same propose-and-verify budget as the task's own learner
        rows.append(Row(POOLED_TASK, all_tasks=True, **verify))
    return rows


def row_selectors(
    config: StudyConfig, rows: list[Row], device_type: str, equal_sets: int, policy: Callable[[Row], Any]
) -> list[Any]:
    """Each row as a selector: baselines and best-of-N built here, the policies by ``policy``.

    ``equal_sets``: best-of-N's N at the task-mode learner's budget. The baselines get the device's settings (the
    LLM-heavy ones smaller on a CPU); best-of-N its usual N unless the row sets one.
    """
    usual = {"num_sets": config.evaluation.best_of_n_sets, "dev_size": config.evaluation.best_of_n_dev_rows}
    selectors = []
    for row in rows:
        if row.kind == BASELINE:
            settings = usual if row.name == "best-of-n" else device_defaults(row.name, device_type)
            selectors.append(make_selector(row.name, **settings))
        elif row.kind == BEST_OF_N:
            selectors.append(best_of_n(config, row.name, row.sets or equal_sets))
        else:
            selectors.append(policy(row))
    return selectors


def best_of_n(config: StudyConfig, row: str, sets: int) -> Selector:
    """best-of-N with ``sets`` prompts on the study's dev rows, named ``row`` in the table."""
    selector = make_selector("best-of-n", num_sets=sets, dev_size=config.evaluation.best_of_n_dev_rows)
    selector.name = row  # type: ignore[misc]
    return selector
