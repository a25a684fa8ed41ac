"""``rl-select tasks`` and ``rl-select evaluate``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from rl_select.cli.common import (
    SELECTOR_NAMES,
    DataDirOption,
    DeviceOption,
    DtypeOption,
    ModelOption,
    VerboseOption,
    announce_budget,
    console,
    err_console,
    load_model_with_status,
    progress_bars,
    setup_logging,
)

EmbedderOption = typer.Option(
    None, "--embedder", help="minilm, lm (the scoring LLM) or a sentence-transformers model (default: minilm on a CPU)."
)
DevSizeOption = typer.Option(
    None, "--dev-size", help="best-of-n / greedy-oracle: dev rows (default 200 / 100; on a CPU 64 / 32)."
)
NumCandidatesOption = typer.Option(
    None, "--num-candidates", help="Candidates of greedy-oracle, max-entropy, mmr, dpp, mdl, cone."
)


def tasks_command(data_dir: str | None = DataDirOption) -> None:
    """List the tasks available, and where each comes from."""
    from rl_select.tasks import list_tasks  # deferred: CLI start-up

    table = Table(title="tasks")
    for column in ("task", "source", "location", "train", "dev", "test"):
        table.add_column(column)
    for info in list_tasks(data_dir):
        rows = info.rows or {}
        table.add_row(info.name, info.source, info.location, *(str(rows.get(s, "")) for s in ("train", "dev", "test")))
    console.print(table)


def evaluate_command(
    task: str = typer.Option(..., "--task", help="Task name, hub:<name>, or path to a task.json."),
    data_dir: str | None = DataDirOption,
    model: str | None = ModelOption,
    selector: str | None = typer.Option(
        None,
        "--selector",
        help=f"A baseline, a comma-separated list, or 'all' (default: random, or only --policy): "
        f"{', '.join(SELECTOR_NAMES)}.",
    ),
    policy: list[Path] = typer.Option([], "--policy", help="A trained run directory (repeatable)."),
    k: int = typer.Option(4, "--k", help="Demonstrations per prompt."),
    seeds: int | None = typer.Option(
        None, "--seeds", help="Number of seeds (0 … N-1); default 5, or 3 when the model runs on a CPU."
    ),
    n_test: int | None = typer.Option(None, "--n-test", help="Evaluate on a seeded subsample of N rows."),
    split: str = typer.Option("test", "--split", help="Split to evaluate on."),
    calibrate: bool = typer.Option(True, "--calibrate/--no-calibrate", help="Primary metric calibrated or raw."),
    embedder: str | None = EmbedderOption,
    num_sets: int | None = typer.Option(None, "--num-sets", help="best-of-n: random prompts tried."),
    dev_size: int | None = DevSizeOption,
    num_candidates: int | None = NumCandidatesOption,
    data_seed: int = typer.Option(0, "--data-seed", help="Seed of the evaluation and dev subsamples."),
    max_prompt_tokens: int | None = typer.Option(None, "--max-prompt-tokens", help="Cap on prompt length."),
    order: str = typer.Option("selected", "--order", help="selected, reversed, or both (the order ablation)."),
    device: str = DeviceOption,
    dtype: str = DtypeOption,
    deterministic: bool = typer.Option(False, "--deterministic", help="One torch thread, deterministic kernels."),
    out: Path | None = typer.Option(None, "--out", help="Result JSON (.md beside it); the same file continues."),
    dump: Path | None = typer.Option(
        None, "--dump", help="Also write each query's demonstrations, prediction and label probabilities (JSONL)."
    ),
    verbose: bool = VerboseOption,
) -> None:
    """Evaluate demonstration selectors on a task's test split, every one under the same scoring."""
    setup_logging(verbose)
    from rl_select.evaluation.command import EvaluateRequest, evaluate  # deferred: CLI start-up (loads torch)

    names = selector if selector is not None else ("" if policy else "random")
    options = {"num_sets": num_sets, "dev_size": dev_size, "num_candidates": num_candidates}
    request = EvaluateRequest(
        task=task,
        selectors=tuple(s.strip() for s in names.split(",") if s.strip()),
        policies=tuple(policy),
        k=k,
        seeds=seeds,
        rows=n_test,
        split=split,
        order=order,
        options=options,
        calibrate=calibrate,
        max_prompt_tokens=max_prompt_tokens,
        embedder=embedder,
        data_seed=data_seed,
        data_dir=data_dir,
        model=model,
        device=device,
        dtype=dtype,
        deterministic=deterministic,
        out=out,
        dump=dump,
    )
    with progress_bars() as factory:
        outcome = evaluate(
            request,
            progress=factory,
            load_model=lambda: load_model_with_status(model, device, dtype),
            on_resume=lambda path, kept: err_console.print(
                f"continuing {path}: {kept} selector-seed results kept from an earlier run of this evaluation "
                "(delete the file to evaluate afresh)"
            ),
            on_start=lambda path: err_console.print(f"results go to {path} (and {path.with_suffix('.md')})"),
            on_budget=lambda projection, throughput: announce_budget(projection, throughput, table=True),
        )
    render_reports(outcome, k, split, len(outcome.reports[0].seeds), calibrate)


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
    console.print(table)
    stats = outcome.scorer_stats
    err_console.print(
        f"reward cache hit rate {stats.reward_cache.hit_rate:.1%} · "
        f"{stats.work.queries} queries scored in {stats.work.seconds:.1f}s of forward passes"
    )
    err_console.print(f"wrote {outcome.path} and {outcome.path.with_suffix('.md')}")
    if outcome.dumped:
        err_console.print(f"wrote {outcome.dumped} query lines to the dump file")
