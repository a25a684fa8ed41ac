"""A run's final evaluation on the test split and its result files (``results.json``, ``results.md``, the PNG)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rl_select.budget import equal_budget_sets
from rl_select.errors import ArtifactError
from rl_select.evaluation import (
    REPORT_COLUMNS,
    EvaluationLog,
    SelectorReport,
    evaluation_key,
    evaluation_rows,
    format_cost,
    report_row,
    run_evaluation,
)
from rl_select.provenance import Provenance, markdown_table, provenance, provenance_markdown, write_json
from rl_select.rules import POLICY_RULE
from rl_select.runs.config import TrainConfig
from rl_select.runs.dirs import read_rule_choices, read_trained_on
from rl_select.runs.policy import KnnComparison, PolicySelector, load_policy
from rl_select.runs.setup import RunSetup
from rl_select.scoring import LLMCost
from rl_select.selectors import make_selector
from rl_select.selectors.base import Selector
from rl_select.tasks import Task, load_task
from rl_select.train.curve import Curve, plot_curve

ProgressFactory = Callable[[str, int], Callable[[int], None]]


@dataclass
class TrainResult:
    """What a training run produced.

    Attributes:
        run_dir: The run directory.
        reports: The learned policy and every baseline on each task (test split).
        transfer: Evaluated tasks the policy never trained on.
        versus_knn: Query mode: how far the policy's prompts are from kNN's, per task.
        learning_cost: The LLM work training spent (data collection and rewards).
    """

    run_dir: Path
    reports: list[SelectorReport]
    transfer: list[str] = field(default_factory=list)
    versus_knn: dict[str, KnnComparison] = field(default_factory=dict)
    learning_cost: LLMCost = field(default_factory=LLMCost)


def baseline_selectors(config: TrainConfig, learning_cost: LLMCost) -> list[Selector]:
    """The run's baselines; best-of-N also at the learner's budget (as ``best-of-n (equal budget)``)."""
    evaluation = config.evaluation
    options = {"num_sets": evaluation.best_of_n_sets, "dev_size": evaluation.best_of_n_dev_rows}
    selectors = [make_selector(name, strict=False, **options) for name in evaluation.baselines]
    if "best-of-n" in evaluation.baselines and learning_cost.queries:
        sets = equal_budget_sets(learning_cost.queries, evaluation.best_of_n_dev_rows)
        equal = make_selector("best-of-n", num_sets=sets, dev_size=evaluation.best_of_n_dev_rows)
        equal.name = "best-of-n (equal budget)"  # type: ignore[misc]
        selectors.append(equal)
    return selectors


def learned_row(config: TrainConfig, rule: str = POLICY_RULE) -> str:
    """The learned policy's name in the run's result tables (with the rule dev chose over it, if one did)."""
    chosen = "" if rule == POLICY_RULE else f", dev chose {rule}"
    return f"{config.algo} ({config.env.mode} mode{chosen})"


def transfer_tasks(config: TrainConfig) -> list[Task]:
    """The tasks the final evaluation adds to the training tasks (``evaluation.tasks``), pools cut as in training."""
    return [
        load_task(name, config.data_dir).subset_pool(config.pool_size, seed=config.seed)
        for name in config.evaluation.tasks
    ]


def final_evaluation(setup: RunSetup, learning_cost: LLMCost, progress: ProgressFactory | None) -> TrainResult:
    """The learned policy against the baselines on each training (and transfer) task's test split.

    Every finished (selector, seed) result is written to ``evaluation/<task>.json`` at once, so an interrupted
    evaluation continues where it stopped on ``--resume``.
    """
    config = setup.config
    policy = load_policy(setup.run_dir)
    trained_on = read_trained_on(setup.run_dir)
    verified = read_rule_choices(setup.run_dir)
    seeds = list(range(config.evaluation.seeds))
    rows = config.evaluation.rows
    template = next(iter(setup.resources.values()))
    transfer = transfer_tasks(config)
    result = TrainResult(setup.run_dir, [], [t.name for t in transfer], learning_cost=learning_cost)
    for task in [*setup.tasks, *transfer]:
        resources = setup.resources.get(task.name) or template.for_task(task)  # transfer: same model and cache
        resources.progress = progress
        choice = verified.get(task.name)  # a task never verified on (a transfer task): the Q-function
        rule = POLICY_RULE if choice is None else choice.rule
        learned = PolicySelector(
            policy,
            name=learned_row(config, rule),
            trained_on=trained_on,
            rule=rule,
            zero_cost=bool(choice and choice.zero_cost),
        )
        selectors = [learned, *baseline_selectors(config, learning_cost)]
        key = evaluation_key(resources, k=config.env.k, split="test", n_rows=rows, seeds=seeds)
        log = EvaluationLog(setup.run_dir / "evaluation" / f"{task.name}.json", key, {})
        result.reports += run_evaluation(
            selectors, resources, log, k=config.env.k, seeds=seeds, n_rows=rows, progress=progress
        )
        if learned.query_level:
            result.versus_knn[task.name] = learned.compare_with_knn(task, evaluation_rows(resources, "test", rows))
    return result


def write_results(setup: RunSetup, result: TrainResult, seconds: float) -> Path:
    """results.json, results.md and learning_curve.png."""
    config, run_dir = setup.config, setup.run_dir
    lm = next(iter(setup.resources.values())).lm
    record = provenance(seeds=list(range(config.evaluation.seeds)), model=lm.info(), train_seed=config.seed)
    payload = {
        "provenance": record,
        "config": config.to_dict(),
        "train_seconds": round(seconds, 1),
        "learning_cost": result.learning_cost.to_dict(),
        "reports": [r.to_dict() for r in result.reports],
        "transfer": result.transfer,
        "versus_knn": {task: asdict(comparison) for task, comparison in result.versus_knn.items()},
        "scorer": {name: r.scorer.cache_stats() for name, r in setup.resources.items()},
    }
    write_json(run_dir / "results.json", payload)
    (run_dir / "results.md").write_text(results_markdown(config, result, record))
    curve = run_dir / "curve.csv"
    if curve.is_file():
        title = f"{config.algo} · {config.env.mode} mode · {', '.join(config.tasks)} · seed {config.seed}"
        plot_curve(Curve(curve), run_dir / "learning_curve.png", title)
    return run_dir / "results.json"


def results_markdown(config: TrainConfig, result: TrainResult, record: Provenance) -> str:
    """The run's comparison table, with the LLM cost of learning and of choosing."""
    primary = "calibrated" if config.env.calibrate else "raw"
    headers = ["task", *REPORT_COLUMNS[:4], REPORT_COLUMNS[5]]
    headers[2] = f"accuracy ({primary})"
    rows = []
    for report in result.reports:
        task = report.task + (" (new task)" if report.task in result.transfer else "")
        row = report_row(report)
        rows.append([task, *row[:4], row[5]])
    n_rows = result.reports[0].seeds[0].queries
    versus = "".join(
        f"{task}: the greedy prompt equals kNN's over the same candidates on {100 * v.same_as_knn:.0f}% of "
        f"{v.queries} test queries; mean neighbour rank by prompt position (0 = nearest): "
        f"{v.mean_rank_by_position}.\n"
        for task, v in result.versus_knn.items()
    )
    return (
        f"# {config.algo} ({config.env.mode} mode) on {', '.join(config.tasks)}: k={config.env.k}, "
        f"M={config.env.num_candidates}, {config.total_steps} steps\n\n"
        f"Test split, {n_rows} rows, {config.evaluation.seeds} seed(s) (mean ± sd); primary metric {primary}. "
        f"LLM cost to learn: {format_cost(result.learning_cost)} (scored queries / forward tokens).\n\n"
        + markdown_table(headers, rows)
        + "\n"
        + versus
        + "\n"
        + provenance_markdown(record)
    )


def read_results(run_dir: Path) -> TrainResult:
    """The evaluation of a finished run, from its ``results.json``."""
    try:
        payload = json.loads((run_dir / "results.json").read_text())
        reports = [SelectorReport.from_dict(r) for r in payload["reports"]]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{run_dir / 'results.json'} is corrupt ({exc}); delete it to evaluate again") from None
    return TrainResult(
        run_dir=run_dir,
        reports=reports,
        transfer=payload.get("transfer", []),
        versus_knn={task: KnnComparison.from_dict(v) for task, v in payload.get("versus_knn", {}).items()},
        learning_cost=LLMCost(**payload.get("learning_cost", {})),
    )
