"""``rl-select verify``: a trained query-mode policy against the rules it can reproduce, on dev."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer

from rl_select.cli.common import (
    DataDirOption,
    VerboseOption,
    announce_budget,
    err_console,
    print_table,
    progress_bars,
    results_and_next,
    setup_logging,
)
from rl_select.rules import ACCURACY, LABELS, VERIFY_ROWS


def verify_command(
    run_dir: Path = typer.Argument(..., help="A finished query-mode training run."),
    task: str | None = typer.Option(None, "--task", help="Task whose dev rows decide (default: the run's first)."),
    data_dir: str | None = DataDirOption,
    rows: int = typer.Option(VERIFY_ROWS, "--rows", min=1, help="Dev rows every rule is scored on (all where fewer)."),
    by: str = typer.Option(
        ACCURACY,
        "--by",
        help=f"How rules are compared: {ACCURACY} (the LLM scores each on dev) or {LABELS} (the share of their "
        "demonstrations carrying the dev row's gold label: no LLM calls, for a task the policy never saw).",
    ),
    verbose: bool = VerboseOption,
) -> None:
    """Keep a query-mode policy, or a rule it can reproduce, whichever is best on dev.

    The rules: one proposer's own top k (kNN, BM25, best-of-N's prompt), or zero-shot. The choice is stored with
    the run for this task; evaluate, export and the service follow it there.
    """
    setup_logging(verbose)
    from rl_select.evaluation.verify import plan_verification, verify_run  # deferred: loads torch
    from rl_select.runs.dirs import rule_path  # deferred: loads gymnasium

    plan = plan_verification(run_dir, task, data_dir, by)  # a task-mode run or an unknown measure fails first
    loaded = plan.task
    err_console.print(f"verifying {run_dir} on {loaded.name} by {by}: {', '.join(plan.rules)}", highlight=False)
    with progress_bars() as progress:
        choice = verify_run(
            plan,
            rows=rows,
            progress=progress,
            on_budget=lambda projection, throughput: announce_budget(projection, throughput, table=False),
        )
    rows_shown = [
        [rule, f"{100 * score:.1f}", "kept" if rule == choice.rule else ""] for rule, score in choice.dev_scores.items()
    ]
    header = "dev accuracy, calibrated" if by == ACCURACY else "gold-label share of demonstrations"
    print_table(f"{loaded.name}: {choice.dev_rows} dev rows", ["rule", header, ""], rows_shown)
    if choice.margin is not None and not choice.margin.decided:
        err_console.print(
            f"note: on {choice.dev_rows} dev rows, {choice.rule} is {choice.margin.describe()} (points, paired "
            "95% interval): dev cannot tell them apart, so the choice may not hold on test; more dev rows "
            "(--rows, up to the dev split) would decide",
            highlight=False,
        )
    given = f"--task {shlex.quote(task or loaded.name)}"  # the task as it was given, so the commands find it
    given += f" --data-dir {shlex.quote(data_dir)}" if data_dir else ""
    results_and_next(
        f"{rule_path(run_dir, loaded.name)} (rule: {choice.rule}; LLM cost {choice.cost.queries:,} queries)",
        f"rl-select evaluate {given} --policy {run_dir} --selector knn,bm25",
        f"rl-select export {run_dir} {given} --out policies/{run_dir.name}",
    )
