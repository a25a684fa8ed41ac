"""Shared CLI plumbing: consoles, logging, progress bars, model/task loading with clear errors."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from rl_select.errors import ConfigError
from rl_select.logs import setup_logging as setup_logging  # re-exported for the command modules
from rl_select.settings import DATA_DIR_HELP, DEVICE_HELP, DTYPE_HELP, MODEL_HELP

if TYPE_CHECKING:
    from rich.table import Table

# Plain text: what is printed (commands, paths, task names, result tables) may hold brackets, which rich markup eats.
console = Console(soft_wrap=True, markup=False)
err_console = Console(stderr=True, highlight=False, soft_wrap=True, markup=False)

DataDirOption = typer.Option(None, "--data-dir", help=DATA_DIR_HELP)
ModelOption = typer.Option(None, "--model", help=MODEL_HELP)
DeviceOption = typer.Option("auto", "--device", help=DEVICE_HELP)
DtypeOption = typer.Option("auto", "--dtype", help=DTYPE_HELP)
VerboseOption = typer.Option(False, "--verbose", "-v", help="Log progress details to stderr.")


def make_progress() -> Progress:
    """A rich progress display with counts, elapsed and remaining time."""
    return Progress(
        TextColumn("{task.description}", style="progress.description", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )


def progress_factory(progress: Progress) -> Callable[[str, int], Callable[[int], None]]:
    """Adapter for library code: ``factory(description, total)`` returns ``advance(n)``.

    Finished bars leave the live display (each as one printed line), so the active bar stays in view however many
    steps a command has (12 selectors × 5 seeds overflowed the terminal when every bar stayed).
    """

    def factory(description: str, total: int) -> Callable[[int], None]:
        for task in list(progress.tasks):
            if task.finished:
                elapsed = task.finished_time or task.elapsed or 0.0
                progress.console.print(f"done: {task.description} ({task.completed:,.0f} in {elapsed:.0f} s)")
                progress.remove_task(task.id)
        task_id = progress.add_task(description, total=total)
        return lambda n: progress.advance(task_id, n)

    return factory


@contextlib.contextmanager
def progress_bars() -> Iterator[Callable[[str, int], Callable[[int], None]]]:
    """A live progress display for the duration of the block, shown from its first bar on.

    Until then nothing is drawn, so what a command prints first (a status, its projected cost, an error) stays
    as it is.
    """
    progress = make_progress()
    bars = progress_factory(progress)

    def factory(description: str, total: int) -> Callable[[int], None]:
        if not progress.live.is_started:
            progress.start()
        return bars(description, total)

    try:
        yield factory
    finally:
        if progress.live.is_started:
            progress.stop()


def seeds_from(count: int) -> list[int]:
    """``--seeds N`` → ``[0, 1, …, N-1]``."""
    if count < 1:
        raise ConfigError(f"--seeds must be at least 1, got {count}")
    return list(range(count))


def default_out(kind: str, name: str) -> Path:
    """``runs/<kind>/<name>.json`` under the working directory."""
    return Path("runs") / kind / f"{name}.json"


def load_model_with_status(model: str | None, device: str, dtype: str):
    """Load the scoring model with a status line."""
    from rl_select.scoring import load_language_model  # deferred: CLI start-up (loads torch)

    with err_console.status(f"loading model {model or 'smollm2-135m-instruct'} …"):
        return load_language_model(model, device=device, dtype=dtype)


def timed_model(model: str | None, device: str, dtype: str, tasks, k: int):
    """The scoring model (loaded once, shared with the run) and its throughput on this machine, with a status line."""
    from rl_select.budget import measure_throughput  # deferred: CLI start-up (loads torch)
    from rl_select.scoring.model import shared_language_model  # deferred: CLI start-up (loads torch)

    with err_console.status("loading the model and timing it …"):
        lm = shared_language_model(model, device, dtype)
        return lm, measure_throughput(lm, tasks, k)


def announce_budget(projection, throughput, *, table: bool) -> None:
    """Say what a run is about to spend: the total (and with ``table`` every step) on stderr."""
    from rl_select.budget import describe  # deferred: CLI start-up (loads torch)

    total = projection.total
    minutes = throughput.seconds(total.tokens, total.forwards) / 60
    shown = f"{minutes:.1f}" if minutes < 10 else f"{minutes:.0f}"
    if table:
        err_console.print(describe(projection, throughput), highlight=False)
    err_console.print(
        f"about to spend ≈ {total.queries:,.0f} LLM queries, {total.tokens:,.0f} forward tokens, "
        f"≈ {shown} min of scoring on this machine (projected from an empty cache, a warm one makes it "
        "less; loading, embedding and fitting come on top)"
    )


def print_table(title: str, headers: list[str], rows: list[list[str]]) -> None:
    """A rich table on stdout (the first column left-aligned, the rest right-aligned)."""
    from rich.table import Table  # deferred: CLI start-up

    table = Table(title=title)
    for i, column in enumerate(headers):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(str(cell) for cell in row))
    print_whole(table)


def print_whole(table: Table) -> None:
    """A rich table on stdout: fitted to a terminal's width; whole in a log or pipe (not cut to rich's 80 columns)."""
    fitted = console.width
    if not console.is_terminal:
        console.width = max(fitted, console.measure(table, options=console.options.update_width(10_000)).maximum)
    try:
        console.print(table)
    finally:
        console.width = fitted


def results_and_next(results: str, *next_commands: str) -> None:
    """A command's last lines (stderr): where its results went, then what to run next."""
    err_console.print(f"results: {results}", highlight=False, soft_wrap=True)
    for i, command in enumerate(next_commands):
        err_console.print(f"{'next:' if i == 0 else '':<9}{command}", highlight=False, soft_wrap=True)
