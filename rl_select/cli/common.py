"""Shared CLI plumbing: consoles, logging, progress bars, model/task loading with clear errors."""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

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

console = Console(soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

DataDirOption = typer.Option(None, "--data-dir", help="Task data directory (default: $RL_SELECT_DATA).")
ModelOption = typer.Option(None, "--model", help="HF model id or path, or a .gguf file (default: SmolLM2-135M).")
DeviceOption = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N.")
DtypeOption = typer.Option("auto", "--dtype", help="auto, float32, bfloat16 or float16.")
VerboseOption = typer.Option(False, "--verbose", "-v", help="Log progress details to stderr.")


def setup_logging(verbose: bool = False) -> None:
    """Plain-text logging to stderr; quiet third-party libraries unless ``verbose``."""
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        force=True,
    )
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    if not verbose:
        warnings.filterwarnings("ignore")
        for noisy in ("transformers", "datasets", "huggingface_hub", "sentence_transformers", "bm25s"):
            logging.getLogger(noisy).setLevel(logging.ERROR)
        with contextlib.suppress(ImportError):
            import transformers

            transformers.logging.set_verbosity_error()
            transformers.logging.disable_progress_bar()


def make_progress() -> Progress:
    """A rich progress display with counts, elapsed and remaining time."""
    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )


def progress_factory(progress: Progress) -> Callable[[str, int], Callable[[int], None]]:
    """Adapter for library code: ``factory(description, total)`` returns ``advance(n)``."""

    def factory(description: str, total: int) -> Callable[[int], None]:
        task_id = progress.add_task(description, total=total)
        return lambda n: progress.advance(task_id, n)

    return factory


@contextlib.contextmanager
def progress_bars() -> Iterator[Callable[[str, int], Callable[[int], None]]]:
    """A live progress display for the duration of the block."""
    with make_progress() as progress:
        yield progress_factory(progress)


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
    from rl_select.scoring import load_language_model

    with err_console.status(f"loading model {model or 'smollm2-135m-instruct'} …"):
        return load_language_model(model, device=device, dtype=dtype)


def announce_budget(projection, throughput, *, table: bool) -> None:
    """Say what a run is about to spend: the total (and with ``table`` every step) on stderr."""
    from rl_select.budget import describe

    total = projection.total
    minutes = throughput.seconds(total.tokens, total.forwards) / 60
    if table:
        err_console.print(describe(projection, throughput), highlight=False)
    err_console.print(
        f"about to spend ≈ {total.queries:,.0f} scored LLM queries, {total.tokens:,.0f} forward tokens, "
        f"≈ {minutes:.0f} min on this machine (projected; cache hits make it less)"
    )
