"""``rl-select tasks`` and ``rl-select evaluate``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from rl_select.cli.common import (
    DataDirOption,
    VerboseOption,
    announce_budget,
    err_console,
    load_model_with_status,
    print_whole,
    progress_bars,
    results_and_next,
    setup_logging,
)
from rl_select.cli.help import first_screen
from rl_select.cli.options import parse_sets, with_options
from rl_select.errors import ConfigError
from rl_select.evaluation.request import EvaluateRequest
from rl_select.runs.config import read_yaml_mapping
from rl_select.settings import fit_to_device, flatten, nest
from rl_select.types import Overrides


def tasks_command(data_dir: str | None = DataDirOption) -> None:
    """List the tasks available, and where each comes from."""
    from rl_select.tasks import list_tasks  # deferred: CLI start-up

    table = Table(title="tasks")
    for column in ("task", "source", "location", "train", "dev", "test"):
        table.add_column(column)
    for info in list_tasks(data_dir):
        rows = info.rows or {}
        table.add_row(info.name, info.source, info.location, *(str(rows.get(s, "")) for s in ("train", "dev", "test")))
    print_whole(table)
    err_console.print("next:    rl-select evaluate --task TASK --selector random,knn,bm25", highlight=False)


def evaluate_run(
    settings: Overrides,
    config_file: Path | None = typer.Option(None, "--config", help="YAML file of the request (options override it)."),
    sets: list[str] = typer.Option([], "--set", help="Any setting by its path: key=value (e.g. options.dev_size=16)."),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the settings fitted to this machine, the projected LLM calls and time; stop."
    ),
    verbose: bool = VerboseOption,
) -> None:
    """Evaluate demonstration selectors on a task's test split, every one under the same scoring."""
    setup_logging(verbose)
    from rl_select.evaluation.command import evaluate  # deferred: CLI start-up (loads torch)
    from rl_select.scoring.model import resolve_device  # deferred: CLI start-up (loads torch)

    given = {**(read_yaml_mapping(config_file, "evaluation settings") if config_file else {}), **settings}
    given |= parse_sets(EvaluateRequest, sets)
    if "task" not in nest(given):
        raise ConfigError("give --task (or a task in --config)")
    request = EvaluateRequest.from_dict(given)
    request, fitted = fit_to_device(request, set(flatten(given, EvaluateRequest)), resolve_device(request.device).type)
    values = ", ".join(f"{path}={value}" for path, value in fitted.items())
    said = f"fitted to this machine (give a value to override): {values}\n" if fitted else ""
    with progress_bars() as factory:
        outcome = evaluate(
            request,
            progress=factory,
            load_model=lambda: load_model_with_status(request.model, request.device, request.dtype),
            on_resume=lambda path, kept: err_console.print(
                f"continuing {path}: {kept} selector-seed results kept from an earlier run of this evaluation "
                "(delete the file to evaluate afresh)"
            ),
            on_start=lambda path: err_console.print(
                f"{said}results {'would go' if dry_run else 'go'} to {path} (and {path.with_suffix('.md')})"
            ),
            on_budget=lambda projection, throughput: announce_budget(projection, throughput, table=True),
            dry_run=dry_run,
        )
    if outcome is None:
        err_console.print("dry run: nothing was scored; run the same command without --dry-run", highlight=False)
        return
    render_reports(outcome, request.k, request.split, len(outcome.reports[0].seeds), request.calibrate)


evaluate_command = with_options(EvaluateRequest, evaluate_run)
"""``rl-select evaluate``: one option per setting of :class:`~rl_select.evaluation.EvaluateRequest`."""
EVALUATE_HELP = first_screen(
    "task", "selectors", "policies", "data_dir", "model", "k", "rows", "seeds", "out", "dry_run", "config_file"
)
"""What ``rl-select evaluate --help`` shows first."""


def render_reports(outcome: Any, k: int, split: str, seeds: int, calibrate: bool) -> None:
    """The evaluation's table on stdout, cache statistics and where the files are on stderr."""
    from rl_select.evaluation import REPORT_COLUMNS, report_row  # deferred: CLI start-up (loads torch)

    reports = outcome.reports
    table = Table(
        title=f"{outcome.task} · k={k} · {split} ({reports[0].seeds[0].queries} rows) · {seeds} seed(s) · "
        f"primary: {'calibrated' if calibrate else 'raw'}"
    )
    for column in REPORT_COLUMNS:
        table.add_column(column, justify="left" if column in ("selector", "per seed") else "right")
    for report in reports:
        table.add_row(*report_row(report))
    print_whole(table)
    stats = outcome.scorer_stats
    err_console.print(
        f"reward cache hit rate {stats.reward_cache.hit_rate:.1%} · "
        f"{stats.work.queries} queries scored in {stats.work.seconds:.1f}s of forward passes"
    )
    dumped = f"; {outcome.dumped} query lines in the dump file" if outcome.dumped else ""
    results_and_next(
        f"{outcome.path} and {outcome.path.with_suffix('.md')}{dumped}",
        "rl-select train --config experiments/configs/quickstart-cpu.yaml --task TASK   (learn a selector for it)",
    )
