"""``rl-select study`` (the learned-selector table) and ``rl-select headroom`` (what a learner could gain)."""

from __future__ import annotations

from pathlib import Path

import typer

from rl_select.cli.common import (
    DataDirOption,
    VerboseOption,
    announce_budget,
    console,
    err_console,
    load_model_with_status,
    print_table,
    progress_bars,
    results_and_next,
    setup_logging,
    timed_model,
)
from rl_select.cli.options import parse_sets, with_options
from rl_select.errors import ConfigError
from rl_select.settings import nest
from rl_select.study.headroom_request import HeadroomRequest
from rl_select.types import Overrides


def headroom_run(settings: Overrides, verbose: bool = VerboseOption) -> None:
    """Headroom over kNN: the greedy choice among the same M candidates, by the query's label or its dev neighbours."""
    setup_logging(verbose)
    from rl_select.study.headroom import headroom_report, run_headroom  # deferred: CLI start-up (loads torch)

    if "task" not in settings:
        raise ConfigError("give --task")
    request = HeadroomRequest.from_dict(nest(settings))
    with progress_bars() as factory:
        result, path = run_headroom(
            request,
            lambda: load_model_with_status(request.model, request.device, request.dtype),
            progress=factory,
            on_start=lambda path, queries, done: err_console.print(
                f"headroom on {queries} {request.task} test queries"
                + (f" ({done} done in {path}, continuing)" if done else "")
            ),
            on_budget=lambda projection, throughput: announce_budget(projection, throughput, table=True),
        )
    headers, rows = headroom_report(result)  # the file was written after the last query (or was complete)
    title = f"headroom · {result.task} · k={request.k} · M={request.num_candidates} · {request.queries} test queries"
    print_table(title, headers, rows)
    results_and_next(
        f"{path} and {path.with_suffix('.md')}",
        f"rl-select train --config experiments/configs/quickstart-cpu.yaml --task {request.task}   (learn to close it)",
    )


headroom_command = with_options(HeadroomRequest, headroom_run)
"""``rl-select headroom``: one option per field of :class:`~rl_select.study.headroom_request.HeadroomRequest`."""


def announce_study_budget(config) -> None:
    """Project the study's LLM work per step on this machine and print it."""
    from rl_select.budget import profiles_for  # deferred: CLI start-up (loads torch)
    from rl_select.study.projection import project_study  # deferred: CLI start-up (loads torch)
    from rl_select.study.state import StudyState  # deferred: CLI start-up
    from rl_select.tasks import load_task  # deferred: CLI start-up

    tasks = [load_task(name, config.data_dir) for name in config.tasks]
    lm, throughput = timed_model(config.model, config.device, config.dtype, tasks, config.k)
    state = StudyState(config.root)  # a resumed study's finished work is not projected again
    projection = project_study(config, tasks, profiles_for(tasks, lm.tokenizer), lm.device.type, state)
    announce_budget(projection, throughput, table=True)


def study_command(
    config_file: Path = typer.Argument(..., help="Study YAML (see experiments/configs/learned-cpu.yaml)."),
    data_dir: str | None = DataDirOption,
    out: str | None = typer.Option(None, "--out", help="Result directory (default: the file's 'out')."),
    export_transfer: Path | None = typer.Option(
        None, "--export-transfer", help="Also copy the all-task transfer policy (config + weights) here."
    ),
    sets: list[str] = typer.Option([], "--set", help="Any setting by its path: key=value (e.g. query.rounds=2)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the projected LLM calls and time, then stop."),
    table_only: bool = typer.Option(
        False, "--table-only", help="Write the table of the tasks finished so far (no new LLM work), then stop."
    ),
    verbose: bool = VerboseOption,
) -> None:
    """Learned selectors against the baselines on every task of a study, at a counted LLM budget (resumable)."""
    setup_logging(verbose)
    from rl_select.study.config import StudyConfig, read_study  # deferred: CLI start-up
    from rl_select.study.learned import Study  # deferred: CLI start-up (loads torch)

    config = read_study(config_file, {"data_dir": data_dir, "out": out, **parse_sets(StudyConfig, sets)})
    if table_only:
        summary = Study(config).table_so_far()
        console.print((config.root / "results.md").read_text())
        err_console.print(
            f"wrote {config.root}/results.md, summary.json, accuracy.png ({', '.join(summary.average.tasks)})"
        )
        return
    err_console.print(f"study {config.name}: {', '.join(config.tasks)} into {config.root} (rerun to continue)")
    announce_study_budget(config)
    if dry_run:
        return
    with progress_bars() as factory:
        study = Study(config, progress=factory)
        summary = study.run()
    console.print((config.root / "results.md").read_text())
    if export_transfer is not None:
        study.export_transfer_policy(export_transfer)
        err_console.print(f"transfer policy copied to {export_transfer}")
    tasks = len(summary.average.tasks)
    transfer = export_transfer or "DIR   (after a rerun with --export-transfer DIR)"
    results_and_next(
        f"{config.root} (results.md, summary.json, accuracy.png; {tasks} tasks)",
        f"rl-select evaluate --task TASK --policy {transfer}",
    )
