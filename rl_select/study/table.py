"""The study's table: ``results.md``, ``summary.json`` and ``accuracy.png`` from its evaluations."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rl_select.evaluation import PairedDelta, format_cost, stratified_bootstrap
from rl_select.provenance import Provenance, markdown_table, provenance, provenance_markdown, write_json
from rl_select.runs.dirs import RuleChoice
from rl_select.scoring import LLMCost
from rl_select.study.config import StudyConfig
from rl_select.study.rows import (
    CHECKED_TRANSFER,
    EQUAL_BUDGET,
    LEARNED_QUERY,
    LEARNED_TASK,
    POOLED_QUERY,
    POOLED_TASK,
    RANKED_TASK,
    SCORED_TASK,
    TRANSFER_QUERY,
    VERIFIED_EVERY,
    VERIFIED_POOLED,
    VERIFIED_QUERY,
    ranked_transfer_task_row,
    small_best_of_n_row,
    transfer_task_row,
)
from rl_select.study.state import PolicyChoice, PooledChoice
from rl_select.study.view import StudyView as Study

DELTAS = {
    "delta_vs_knn": (LEARNED_QUERY, "knn"),
    "delta_vs_best_of_n": (LEARNED_TASK, EQUAL_BUDGET),
    "scored_vs_best_of_n": (SCORED_TASK, EQUAL_BUDGET),
    "pooled_task_vs_best_of_n": (POOLED_TASK, EQUAL_BUDGET),
    "ranked_task_vs_best_of_n": (RANKED_TASK, EQUAL_BUDGET),
    "transfer_vs_knn": (TRANSFER_QUERY, "knn"),
}
"""Paired differences with a fixed baseline: name → (method, baseline)."""

QUERY_BARS = (
    (LEARNED_QUERY, "delta"),
    (VERIFIED_QUERY, "verified"),
    (POOLED_QUERY, "pooled"),
    (VERIFIED_POOLED, "verified_pooled"),
    (VERIFIED_EVERY, "verified_every"),
)
"""The query-mode rows held to the per-task and average bars, each with its deltas' key prefix."""

ZERO_COST = ("zero-shot", "random", "balanced", "knn", "bm25", "mmr", "votek")
"""Baselines that cost no LLM calls to choose: what a policy that transfers (no LLM calls on the task) must beat."""


def learning_costs(study: Study, task: str) -> dict[str, LLMCost]:
    """LLM work each row spent *learning* on this task (choosing is in the evaluation reports)."""
    costs = {LEARNED_QUERY: study.query_cost(task).total, LEARNED_TASK: study.task_cost(task).total}
    if study.config.task.scored_prompts:
        costs[SCORED_TASK] = costs[LEARNED_TASK]  # its scored prompts come from the same episodes
    if study.config.task.ranked_draws:
        costs[RANKED_TASK] = costs[LEARNED_TASK]  # the same Q-function ranks its draws: no LLM calls
    if study.config.task.pooled:
        costs[POOLED_TASK] = costs[LEARNED_TASK]  # the task's own rows; the other tasks' rows are theirs
    verified = study.stored_rule(task) if study.config.query.verify_rows else None
    if verified is not None:
        costs[VERIFIED_QUERY] = costs[LEARNED_QUERY] + verified.cost
    if study.config.transfer:
        costs[TRANSFER_QUERY] = LLMCost()  # its rows come from the other tasks
    checked = study.stored_transfer_rule(task) if study.config.transfer_check_rows else None
    if checked is not None:
        costs[CHECKED_TRANSFER] = costs[TRANSFER_QUERY] + checked.cost  # the check reads dev labels: no LLM calls
    if study.config.pooled:
        costs[POOLED_QUERY] = costs[LEARNED_QUERY]  # the task's own rows; the other tasks' rows are theirs
    pooled = study.stored_pooled_choice(task) if study.config.pooled else None
    if pooled is not None and VERIFIED_QUERY in costs:
        costs[VERIFIED_POOLED] = costs[VERIFIED_QUERY] + pooled[1]
    every = study.stored_every_policy_choice(task) if study.config.every_policy else None
    if every is not None and VERIFIED_QUERY in costs:
        costs[VERIFIED_EVERY] = costs[VERIFIED_QUERY] + every[1]
    return costs


def learned_rows(config: StudyConfig) -> set[str]:
    """Rows that learned something (the rest are baselines)."""
    budgets = (row(n) for n in config.task_transfer_budgets for row in (transfer_task_row, ranked_transfer_task_row))
    transfer = (TRANSFER_QUERY, CHECKED_TRANSFER, POOLED_QUERY, VERIFIED_POOLED, VERIFIED_EVERY)
    task_mode = (LEARNED_TASK, SCORED_TASK, RANKED_TASK, POOLED_TASK)
    return {LEARNED_QUERY, VERIFIED_QUERY, *task_mode, *transfer, *budgets}


@dataclass
class TableRow:
    """One method's line of a table: accuracy in percent (mean, sd over seeds) and its LLM costs."""

    calibrated: float
    raw: float
    cost_to_choose_per_seed: LLMCost
    cost_to_learn: LLMCost
    calibrated_sd: float | None = None  # None in the average over tasks
    raw_sd: float | None = None

    def to_dict(self) -> dict[str, object]:
        """JSON form (``summary.json``)."""
        data = {
            "calibrated": self.calibrated,
            "calibrated_sd": self.calibrated_sd,
            "raw": self.raw,
            "raw_sd": self.raw_sd,
            "cost_to_choose_per_seed": self.cost_to_choose_per_seed.to_dict(),
            "cost_to_learn": self.cost_to_learn.to_dict(),
        }
        return {key: value for key, value in data.items() if value is not None}


@dataclass
class TaskTable:
    """One task's table: its rows, its strongest baselines and the paired deltas (name → delta)."""

    rows: dict[str, TableRow]
    test_rows: int
    seeds: int
    equal_budget_sets: int
    best_baseline: str
    best_zero_cost: str | None
    deltas: dict[str, PairedDelta] = field(default_factory=dict)
    verified_rule: RuleChoice | None = None
    transfer_rule: RuleChoice | None = None
    pooled_choice: PooledChoice | None = None
    every_policy_choice: PolicyChoice | None = None

    def to_dict(self) -> dict[str, object]:
        """JSON form: the rows, the counts, the best rows, the rules dev chose and each delta at the top level."""
        best: dict[str, object] = {"best_baseline": self.best_baseline}
        if self.best_zero_cost is not None:
            best["best_zero_cost"] = self.best_zero_cost
        if self.verified_rule is not None:
            best["verified_rule"] = self.verified_rule.to_dict()
        if self.transfer_rule is not None:
            best["transfer_rule"] = self.transfer_rule.to_dict()
        if self.pooled_choice is not None:
            best["pooled_choice"] = self.pooled_choice.to_dict()
        if self.every_policy_choice is not None:
            best["every_policy_choice"] = self.every_policy_choice.to_dict()
        return {
            "rows": {name: row.to_dict() for name, row in self.rows.items()},
            "test_rows": self.test_rows,
            "seeds": self.seeds,
            "equal_budget_sets": self.equal_budget_sets,
            **best,
            **{key: delta.to_dict() for key, delta in self.deltas.items()},
        }


@dataclass
class AverageTable:
    """The rows averaged over the finished tasks, and deltas whose bootstrap resamples every task."""

    rows: dict[str, TableRow]
    tasks: list[str]
    best_single_baseline: str
    best_single_zero_cost: str | None
    deltas: dict[str, PairedDelta] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """JSON form, as :meth:`TaskTable.to_dict`."""
        return {
            "rows": {name: row.to_dict() for name, row in self.rows.items()},
            "tasks": self.tasks,
            "best_single_baseline": self.best_single_baseline,
            "best_single_zero_cost": self.best_single_zero_cost,
            **{key: delta.to_dict() for key, delta in self.deltas.items()},
        }


@dataclass
class StudyTable:
    """The study's table: one :class:`TaskTable` per finished task and their average."""

    tasks: dict[str, TaskTable]
    average: AverageTable

    def to_dict(self) -> dict[str, object]:
        """JSON form (``summary.json``, after its provenance): each task by name, then ``average``."""
        return {**{name: table.to_dict() for name, table in self.tasks.items()}, "average": self.average.to_dict()}


def best_rows(config: StudyConfig, rows: dict[str, TableRow]) -> tuple[str, str | None]:
    """The strongest comparisons of a task (by calibrated test accuracy): the best baseline, the best zero-cost one."""
    learned = learned_rows(config)
    baselines = [name for name in rows if name not in learned]
    zero_cost = [name for name in baselines if name in ZERO_COST]
    best = max(baselines, key=lambda name: rows[name].calibrated)
    return best, (max(zero_cost, key=lambda name: rows[name].calibrated) if zero_cost else None)


def comparisons(config: StudyConfig, best_baseline: str, best_zero_cost: str | None) -> dict[str, tuple[str, str]]:
    """Every paired difference of a task: the fixed ones, against its best rows, and the transfer budgets."""
    pairs = dict(DELTAS)
    pairs["delta_vs_best_baseline"] = (LEARNED_QUERY, best_baseline)
    if config.query.verify_rows:
        pairs["verified_vs_best_baseline"] = (VERIFIED_QUERY, best_baseline)
    if config.pooled:
        pairs["pooled_vs_best_baseline"] = (POOLED_QUERY, best_baseline)
        pairs["verified_pooled_vs_best_baseline"] = (VERIFIED_POOLED, best_baseline)
    if config.every_policy:
        pairs["verified_every_vs_best_baseline"] = (VERIFIED_EVERY, best_baseline)
    if best_zero_cost is not None:
        pairs["transfer_vs_best_baseline"] = (TRANSFER_QUERY, best_zero_cost)
        if config.transfer_check_rows:
            pairs["checked_transfer_vs_best_baseline"] = (CHECKED_TRANSFER, best_zero_cost)
    for n in config.task_transfer_budgets:
        pairs[f"task_transfer_vs_best_of_n_{n}"] = (transfer_task_row(n), small_best_of_n_row(n))
        if config.task.ranked_draws:
            pairs[f"ranked_task_transfer_vs_best_of_n_{n}"] = (ranked_transfer_task_row(n), small_best_of_n_row(n))
    return pairs


def task_table(study: Study, task: str) -> TaskTable:
    """One task's rows (accuracy, cost to learn and to choose) and paired deltas."""
    reports = {r.name: r for r in study.reports(task)}
    learned = learning_costs(study, task)
    rows = {
        name: TableRow(
            calibrated=round(100 * report.calibrated[0], 2),
            calibrated_sd=round(100 * report.calibrated[1], 2),
            raw=round(100 * report.raw[0], 2),
            raw_sd=round(100 * report.raw[1], 2),
            cost_to_choose_per_seed=report.cost,
            cost_to_learn=learned.get(name, LLMCost()),
        )
        for name, report in reports.items()
    }
    first = next(iter(reports.values()))
    best_baseline, best_zero_cost = best_rows(study.config, rows)
    table = TaskTable(
        rows=rows,
        test_rows=len(first.gold),
        seeds=len(first.seeds),
        equal_budget_sets=study.equal_budget_sets(task),
        best_baseline=best_baseline,
        best_zero_cost=best_zero_cost,
        verified_rule=study.stored_rule(task) if study.config.query.verify_rows else None,
        transfer_rule=study.stored_transfer_rule(task) if study.config.transfer_check_rows else None,
        pooled_choice=_pooled(study, task),
        every_policy_choice=_every(study, task),
    )
    for key, (method, baseline) in comparisons(study.config, best_baseline, best_zero_cost).items():
        if method in reports and baseline in reports:
            table.deltas[key] = stratified_bootstrap([(reports[method].correct(), reports[baseline].correct())])
            table.deltas[f"{key}_raw"] = stratified_bootstrap(
                [(reports[method].correct(calibrated=False), reports[baseline].correct(calibrated=False))]
            )
    return table


def _pooled(study: Study, task: str) -> PooledChoice | None:
    found = study.stored_pooled_choice(task) if study.config.pooled else None
    return found[0] if found is not None else None


def _every(study: Study, task: str) -> PolicyChoice | None:
    found = study.stored_every_policy_choice(task) if study.config.every_policy else None
    return found[0] if found is not None else None


def average_table(study: Study, per_task: dict[str, TaskTable]) -> AverageTable:
    """Rows averaged over tasks, and the deltas with a bootstrap that resamples every task."""
    names = list(next(iter(per_task.values())).rows)
    rows = {}
    for name in names:
        values = [table.rows[name] for table in per_task.values() if name in table.rows]
        rows[name] = TableRow(
            calibrated=round(float(np.mean([v.calibrated for v in values])), 2),
            raw=round(float(np.mean([v.raw for v in values])), 2),
            cost_to_choose_per_seed=_mean_cost([v.cost_to_choose_per_seed for v in values]),
            cost_to_learn=_mean_cost([v.cost_to_learn for v in values]),
        )
    best_single, best_single_zero_cost = best_rows(study.config, rows)
    average = AverageTable(rows, list(per_task), best_single, best_single_zero_cost)
    reports = {task: {r.name: r for r in study.reports(task)} for task in per_task}
    single = {
        "delta_vs_best_single_baseline": (LEARNED_QUERY, best_single),
        "verified_vs_best_single_baseline": (VERIFIED_QUERY, best_single),
        "transfer_vs_best_single_zero_cost": (TRANSFER_QUERY, best_single_zero_cost),
        "checked_transfer_vs_best_single_zero_cost": (CHECKED_TRANSFER, best_single_zero_cost),
        "pooled_vs_best_single_baseline": (POOLED_QUERY, best_single),
        "verified_pooled_vs_best_single_baseline": (VERIFIED_POOLED, best_single),
        "verified_every_vs_best_single_baseline": (VERIFIED_EVERY, best_single),
    }
    own = {task: comparisons(study.config, t.best_baseline, t.best_zero_cost) for task, t in per_task.items()}
    for key in {**comparisons(study.config, best_single, best_single_zero_cost), **single}:
        pairs = []
        for task, found in reports.items():  # per task, the task's own best rows
            method, baseline = {**own[task], **single}.get(key, (None, None))
            if method in found and baseline in found:
                pairs.append((found[method].correct(), found[baseline].correct()))
        if pairs:
            average.deltas[key] = stratified_bootstrap(pairs)
    return average


def _mean_cost(costs: list[LLMCost]) -> LLMCost:
    return LLMCost(round(float(np.mean([c.queries for c in costs]))), round(float(np.mean([c.tokens for c in costs]))))


def write_table(study: Study, tasks: list[str] | None = None) -> StudyTable:
    """Write the table files under the study's directory; return the table.

    ``tasks``: the tasks finished so far (default: all). With fewer than all, the table is marked partial — the
    cells a long or interrupted study has finished, each complete, while the rest are still to come.
    """
    config = study.config
    tasks = list(tasks or config.tasks)
    per_task = {task: task_table(study, task) for task in tasks}
    table = StudyTable(per_task, average_table(study, per_task))
    lm = study.resources(tasks[0]).lm
    record = provenance(seeds=list(range(config.evaluation.seeds)), model=lm.info(), train_seed=config.seed)
    partial = tasks != list(config.tasks)
    payload = {"provenance": record, "config": config.to_dict(), "partial": partial, "tasks_finished": tasks}
    write_json(study.root / "summary.json", {**payload, **table.to_dict()})
    (study.root / "results.md").write_text(markdown(study, table, record, tasks))
    plot(study, table, tasks)
    return table


def _delta(table: TaskTable | AverageTable, key: str) -> str:
    delta = table.deltas.get(key)
    return f"{delta.mean:+.1f} [{delta.ci95[0]:+.1f}, {delta.ci95[1]:+.1f}]" if delta else "–"


def markdown(study: Study, table: StudyTable, record: Provenance, tasks: list[str]) -> str:
    """The results table in markdown, one section per task and the average first."""
    config = study.config
    headers = ["method", "calibrated", "raw", "LLM cost to learn", "LLM cost to choose (per seed)"]
    lines = [f"# Learned selectors vs baselines: {', '.join(tasks)} (k={config.k}, SmolLM2-135M unless noted)\n"]
    if tasks != list(config.tasks):
        lines.append(
            f"**Partial**: {len(tasks)} of the study's {len(config.tasks)} tasks are finished "
            f"({', '.join(t for t in config.tasks if t not in tasks)} still to come; the leave-one-task-out row needs "
            "every task's rows). Rerun the study's command to continue it.\n"
        )
    lines += [
        f"Test split, {config.evaluation.rows} rows per task (all where fewer), {config.evaluation.seeds} seed(s), "
        "mean ± sd "
        "over seeds; every row is scored on the same rows. Deltas are paired, in points, with 95% bootstrap "
        "intervals over test rows × seeds (for the average, every task resampled on its own). "
        f"LLM cost: {LLMCost.NOTE}. Learners never see test rows before this evaluation; "
        "dev rows serve their rewards and model selection.\n",
        "## Average over tasks\n",
    ]
    average = table.average
    rows = [[name, f"{row.calibrated:.1f}", f"{row.raw:.1f}", *_costs(row)] for name, row in average.rows.items()]
    lines.append(markdown_table(headers, rows))
    lines.append(
        f"\nlearned query mode − the best single baseline ({average.best_single_baseline}): "
        f"**{_delta(average, 'delta_vs_best_single_baseline')}**; − each task's best baseline: "
        f"**{_delta(average, 'delta_vs_best_baseline')}**; − kNN: **{_delta(average, 'delta_vs_knn')}**; learned "
        f"task mode − best-of-N at equal budget: **{_delta(average, 'delta_vs_best_of_n')}**; transfer (other tasks) "
        f"− each task's best zero-cost baseline: **{_delta(average, 'transfer_vs_best_baseline')}**, − kNN: "
        f"**{_delta(average, 'transfer_vs_knn')}** (calibrated).\n"
    )
    lines += average_notes(config, table, tasks)
    lines += ["", *bars(table, tasks), ""]
    for task in tasks:
        lines += task_section(task, table.tasks[task], headers)
    lines.append("\n" + provenance_markdown(record))
    return "\n".join(lines)


def average_notes(config: StudyConfig, table: StudyTable, tasks: list[str]) -> list[str]:
    """The average section's notes under its table: the rows that follow a rule chosen on dev, the budgets."""
    average, lines = table.average, []
    if config.query.verify_rows:
        lines.append(
            f"- learned query mode, dev-verified − the best single baseline ({average.best_single_baseline}): "
            f"**{_delta(average, 'verified_vs_best_single_baseline')}**; − each task's best baseline: "
            f"**{_delta(average, 'verified_vs_best_baseline')}**. Dev-verified: after training, the policy and every "
            f"rule it can reproduce (a proposer's own top k, zero-shot) are scored on {config.query.verify_rows} dev "
            "rows (all where fewer) and the best is kept; its dev choice per task: "
            + ", ".join(f"{t} {_rule(table.tasks[t].verified_rule)}" for t in tasks)
            + "."
        )
    if config.transfer_check_rows:
        lines.append(
            f"- transfer, label-checked − each task's best zero-cost baseline: "
            f"**{_delta(average, 'checked_transfer_vs_best_baseline')}**, − the best single zero-cost baseline "
            f"({average.best_single_zero_cost}): **{_delta(average, 'checked_transfer_vs_best_single_zero_cost')}**. "
            f"Label-checked: on {config.transfer_check_rows} dev rows of the task (all where fewer), the transfer "
            "policy and the embedding, BM25 and balanced rules are compared by how often their demonstrations carry "
            "the dev row's gold label (no LLM calls on the task) and the best is kept; its choice per task: "
            + ", ".join(f"{t} {_rule(table.tasks[t].transfer_rule)}" for t in tasks)
            + "."
        )
    if config.pooled:
        lines.append(
            f"- learned query mode, all tasks' rows − the best single baseline ({average.best_single_baseline}): "
            f"**{_delta(average, 'pooled_vs_best_single_baseline')}**; dev-verified: "
            f"**{_delta(average, 'verified_pooled_vs_best_single_baseline')}**, − each task's best baseline: "
            f"**{_delta(average, 'verified_pooled_vs_best_baseline')}**. The query-mode policy fitted on every "
            "task's rows (the task's own among them); dev-verified: it is scored on the dev rows the task's own "
            "policy was verified on and kept only where better than the task's own dev choice; kept per task: "
            + ", ".join(f"{t} {_kept(table.tasks[t].pooled_choice)}" for t in tasks)
            + "."
        )
    if config.every_policy:
        lines.append(
            f"- learned query mode, every policy, dev-verified − the best single baseline "
            f"({average.best_single_baseline}): **{_delta(average, 'verified_every_vs_best_single_baseline')}**; − "
            f"each task's best baseline: **{_delta(average, 'verified_every_vs_best_baseline')}**. The task's own "
            "dev-verified choice, the policy fitted on every task's rows and the policy fitted on the other tasks' "
            "rows, scored on the same dev rows; the first best kept: "
            + ", ".join(f"{t} {_kept_every(table.tasks[t].every_policy_choice)}" for t in tasks)
            + "."
        )
    if config.task.scored_prompts:
        lines.append(
            f"- learned task mode, with its scored prompts − best-of-N at equal budget: "
            f"**{_delta(average, 'scored_vs_best_of_n')}**. The same {max(config.task.proposals, 1)} prompts "
            f"verified on {config.task.verify_rows} dev rows, the first {config.task.scored_prompts} of them the "
            "best the learner scored while learning (each episode's best, on its reward rows; no new LLM calls to "
            "find them) instead of greedy proposals."
        )
    if config.task.pooled:
        lines.append(
            f"- learned task mode, all tasks' rows − best-of-N at equal budget: "
            f"**{_delta(average, 'pooled_task_vs_best_of_n')}**. The task-mode Q-function fitted on every task's "
            f"rows (the task's own among them; no new LLM calls to fit), its {max(config.task.proposals, 1)} "
            f"greedy prompts verified on {config.task.verify_rows} dev rows as learned task mode's are."
        )
    if config.task.ranked_draws:
        lines.append(
            f"- learned task mode, Q-ranked proposals − best-of-N at equal budget: "
            f"**{_delta(average, 'ranked_task_vs_best_of_n')}**. The same {max(config.task.proposals, 1)} prompts "
            f"verified on {config.task.verify_rows} dev rows, each the greedy prompt of one of "
            f"{config.task.ranked_draws} candidate draws, the draws whose first choice the Q-function values "
            "highest (no LLM calls to rank)."
        )
    for n in config.task_transfer_budgets:
        lines.append(
            f"- task policy fitted on the other tasks, N = {n} − best-of-N at N = {n}: "
            f"**{_delta(average, f'task_transfer_vs_best_of_n_{n}')}**"
        )
        if config.task.ranked_draws:
            lines.append(
                f"- task policy fitted on the other tasks, Q-ranked, N = {n} − best-of-N at N = {n}: "
                f"**{_delta(average, f'ranked_task_transfer_vs_best_of_n_{n}')}** (its {n} best-valued of "
                f"{config.task.ranked_draws} draws' greedy prompts{' verified' if n > 1 else ', no LLM calls'})"
            )
    return lines


def task_section(task: str, part: TaskTable, headers: list[str]) -> list[str]:
    """One task's section: its table, its paired deltas and the rules dev chose for it."""
    lines = [f"\n## {task} ({part.test_rows} test rows)\n"]
    rows = [
        [name, f"{row.calibrated:.1f} ± {row.calibrated_sd:.1f}", f"{row.raw:.1f} ± {row.raw_sd:.1f}", *_costs(row)]
        for name, row in part.rows.items()
    ]
    lines.append(markdown_table(headers, rows))
    lines.append(
        f"\nlearned query mode − the best baseline here ({part.best_baseline}): "
        f"{_delta(part, 'delta_vs_best_baseline')}; − kNN: {_delta(part, 'delta_vs_knn')} calibrated, "
        f"{_delta(part, 'delta_vs_knn_raw')} raw; learned task mode − best-of-N at equal budget "
        f"(N = {part.equal_budget_sets}): {_delta(part, 'delta_vs_best_of_n')} calibrated; "
        f"transfer − the best zero-cost baseline here ({part.best_zero_cost or '–'}): "
        f"{_delta(part, 'transfer_vs_best_baseline')}; transfer − kNN: {_delta(part, 'transfer_vs_knn')}.\n"
    )
    if "scored_vs_best_of_n" in part.deltas:
        lines.append(
            f"Learned task mode with its scored prompts − best-of-N at equal budget: "
            f"{_delta(part, 'scored_vs_best_of_n')}.\n"
        )
    if "ranked_task_vs_best_of_n" in part.deltas:
        lines.append(
            f"Learned task mode, Q-ranked proposals − best-of-N at equal budget: "
            f"{_delta(part, 'ranked_task_vs_best_of_n')}.\n"
        )
    if "pooled_task_vs_best_of_n" in part.deltas:
        lines.append(
            f"Learned task mode, all tasks' rows − best-of-N at equal budget: "
            f"{_delta(part, 'pooled_task_vs_best_of_n')}.\n"
        )
    if part.verified_rule is not None:
        lines.append(
            f"Dev-verified: dev chose **{part.verified_rule.rule}** (calibrated accuracy on "
            f"{part.verified_rule.dev_rows} dev rows: {_scores(part.verified_rule)}); − the best baseline here: "
            f"{_delta(part, 'verified_vs_best_baseline')}.\n"
        )
    if part.transfer_rule is not None:
        lines.append(
            f"Transfer, label-checked: dev chose **{part.transfer_rule.rule}** (gold-label share of the "
            f"demonstrations on {part.transfer_rule.dev_rows} dev rows: {_scores(part.transfer_rule)}); − the "
            f"best zero-cost baseline here: {_delta(part, 'checked_transfer_vs_best_baseline')}.\n"
        )
    if part.pooled_choice is not None:
        choice = part.pooled_choice
        lines.append(
            f"All tasks' rows, dev-verified: dev kept **{choice.kept}** (calibrated dev accuracy: the pooled policy "
            f"{100 * choice.pooled_accuracy:.1f}, the task's own {choice.own_rule} {100 * choice.own_accuracy:.1f}); "
            f"− the best baseline here: {_delta(part, 'verified_pooled_vs_best_baseline')}.\n"
        )
    if part.every_policy_choice is not None:
        choice = part.every_policy_choice
        scores = ", ".join(f"{name} {100 * score:.1f}" for name, score in choice.scores.items())
        lines.append(
            f"Every policy, dev-verified: dev kept **{choice.kept_in_words}** (calibrated dev accuracy: {scores}); "
            f"− the best baseline here: {_delta(part, 'verified_every_vs_best_baseline')}.\n"
        )
    return lines


def _kept_every(choice: PolicyChoice | None) -> str:
    return "–" if choice is None else choice.kept_in_words


def _kept(choice: PooledChoice | None) -> str:
    return "–" if choice is None else ("pooled" if choice.pooled else f"own {choice.own_rule}")


def _rule(choice: RuleChoice | None) -> str:
    return choice.rule if choice is not None else "–"


def _scores(choice: RuleChoice) -> str:
    scores = ", ".join(f"{rule} {100 * score:.1f}" for rule, score in choice.dev_scores.items())
    return scores if choice.margin is None else f"{scores}; kept {choice.margin.describe()}, paired"


def _costs(row: TableRow) -> list[str]:
    return [format_cost(row.cost_to_learn), format_cost(row.cost_to_choose_per_seed)]


def bars(table: StudyTable, tasks: list[str]) -> list[str]:
    """The targets of the strongest-baseline table, each marked met or missed (by how much) on the finished tasks."""
    average = table.average

    def mean(part: TaskTable | AverageTable, key: str) -> float | None:
        return part.deltas[key].mean if key in part.deltas else None

    lines = ["Targets (calibrated, on the tasks finished so far):"]
    for row, prefix in QUERY_BARS:
        per_task = {t: mean(table.tasks[t], f"{prefix}_vs_best_baseline") for t in tasks}
        if all(d is None for d in per_task.values()):
            continue
        below = [f"{t} {d:+.1f}" for t, d in per_task.items() if d is not None and d < -1]
        verdict = "met" if not below else "missed on " + ", ".join(below)
        lines.append(f"- {row} ≥ each task's best baseline − 1: {verdict}")
        single = average.deltas.get(f"{prefix}_vs_best_single_baseline")
        if single:
            met = single.mean >= 3 and single.ci95[0] > 0
            lines.append(
                f"- {row}, average ≥ the best single baseline + 3, interval above 0: {'met' if met else 'missed'} "
                f"({_delta(average, f'{prefix}_vs_best_single_baseline')})"
            )
    for row, prefix in ((TRANSFER_QUERY, "transfer"), (CHECKED_TRANSFER, "checked_transfer")):
        transfer = {t: mean(table.tasks[t], f"{prefix}_vs_best_baseline") for t in tasks}
        if all(v is None for v in transfer.values()):
            continue
        within = sum(1 for v in transfer.values() if v is not None and v >= -1)
        avg = mean(average, f"{prefix}_vs_best_baseline")
        lines.append(
            f"- {row} ≥ the best zero-cost baseline − 1 on {within} of {len(tasks)} tasks (target: all but one), "
            f"and on average {_delta(average, f'{prefix}_vs_best_baseline')} (target ≥ 0): "
            f"{'met' if within >= len(tasks) - 1 and avg is not None and avg >= 0 else 'missed'}"
        )
    task_bars = (
        (LEARNED_TASK, "delta_vs_best_of_n"),
        (SCORED_TASK, "scored_vs_best_of_n"),
        (RANKED_TASK, "ranked_task_vs_best_of_n"),
        (POOLED_TASK, "pooled_task_vs_best_of_n"),
    )
    for row, key in task_bars:
        task_mode = mean(average, key)
        if task_mode is not None:
            lines.append(
                f"- {row} ≥ best-of-N at equal budget on average: {'met' if task_mode >= 0 else 'missed'} "
                f"({_delta(average, key)})"
            )
    return lines


def plot(study: Study, table: StudyTable, tasks: list[str]) -> None:
    """``accuracy.png``: calibrated accuracy of every row on every task and on average."""
    import matplotlib  # deferred: loads matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred: loads matplotlib

    groups: dict[str, TaskTable | AverageTable] = {
        **{task: table.tasks[task] for task in tasks},
        "average": table.average,
    }
    names = list(table.average.rows)
    fig, ax = plt.subplots(figsize=(max(6, 1.6 * len(groups)), 3.8))
    width = 0.85 / len(names)
    for i, name in enumerate(names):
        found = [group.rows.get(name) for group in groups.values()]
        means = [row.calibrated if row else 0.0 for row in found]
        sds = [(row.calibrated_sd or 0.0) if row else 0.0 for row in found]
        ax.bar(np.arange(len(groups)) + i * width, means, width, yerr=sds, label=name, capsize=1.5)
    ax.set_xticks(np.arange(len(groups)) + width * (len(names) - 1) / 2, list(groups))
    ax.set_ylabel("test accuracy, calibrated (%)")
    ax.legend(fontsize=6, ncol=2)
    ax.set_title(f"study {study.config.name}", fontsize=9)
    fig.tight_layout()
    fig.savefig(study.root / "accuracy.png", dpi=120)
    plt.close(fig)


__all__ = [
    "DELTAS",
    "QUERY_BARS",
    "ZERO_COST",
    "AverageTable",
    "StudyTable",
    "TableRow",
    "TaskTable",
    "average_table",
    "bars",
    "markdown",
    "plot",
    "task_table",
    "write_table",
]
