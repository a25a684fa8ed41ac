"""``rl-select bench …``: side-by-side performance measurements, written as result files."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from rl_select.cli.common import (
    DataDirOption,
    ModelOption,
    VerboseOption,
    console,
    err_console,
    progress_bars,
    setup_logging,
)
from rl_select.errors import ConfigError

bench_app = typer.Typer(help="Benchmarks that measure ours against a baseline in the same run.", no_args_is_help=True)

RESULTS_DIR = Path("experiments/results")


@bench_app.command("scorer")
def bench_scorer(
    device: str = typer.Option("auto", "--device", help="cpu, cuda or auto."),
    task: str = typer.Option("sst2", "--task", help="Task to take demonstrations and dev queries from."),
    data_dir: str | None = DataDirOption,
    model: str | None = ModelOption,
    queries: int = typer.Option(256, "--queries", help="Dev queries scored."),
    k: int = typer.Option(4, "--k", help="Demonstrations in the prompt."),
    seed: int = typer.Option(0, "--seed", help="Seed of the demonstrations and query sample."),
    naive_batch: int | None = typer.Option(None, "--naive-batch", help="Prompts per naive forward (16 CPU, 256 GPU)."),
    out: Path | None = typer.Option(
        None, "--out", help="Result JSON (default experiments/results/bench_scorer_<device>.json)."
    ),
    verbose: bool = VerboseOption,
) -> None:
    """Naive HF loop vs. rl-select's scorer at the 4-shot SST-2 shape: queries/s, ratio, agreement."""
    setup_logging(verbose)
    from rl_select.bench.scorer import run_scorer_benchmark
    from rl_select.provenance import markdown_table, provenance, provenance_markdown, write_json
    from rl_select.selectors import check_k
    from rl_select.tasks import load_task

    if queries < 1:
        raise ConfigError(f"--queries must be positive, got {queries}")
    loaded = load_task(task, data_dir)
    check_k(k, len(loaded.train))
    with progress_bars() as factory:
        result = run_scorer_benchmark(
            loaded,
            model=model,
            device=device,
            num_queries=queries,
            k=k,
            seed=seed,
            naive_batch=naive_batch,
            progress=factory,
        )
    table = Table(title=f"scorer benchmark · {loaded.name} · k={k} · {result['queries']} queries · {result['device']}")
    headers = ["path", "dtype", "queries/s", "ratio vs naive", "agreement with naive"]
    for column in headers:
        table.add_column(column, justify="left" if column == "path" else "right")
    rows = []
    for run in result["runs"]:
        name = run["path"] + (" (default)" if run.get("default") else "")
        row = [
            name,
            run["dtype"],
            f"{run['queries_per_s']:.1f}",
            f"{run['ratio_vs_naive']:.2f}",
            f"{run['agreement_with_naive']:.2%}",
        ]
        table.add_row(*row)
        rows.append(row)
    console.print(table)
    console.print(f"ratio = {result['ratio']:.2f} (rl-select at its default dtype {result['default_dtype']} vs naive)")
    same = "identical" if result["identical_predictions_same_dtype"] else f"{result['mismatches_same_dtype']} differ"
    across = ", ".join(f"{dtype} {rate:.2%}" for dtype, rate in result["agreement_across_dtypes"].items()) or "n/a"
    console.print(
        f"predictions at equal dtype ({result['runs'][0]['dtype']}): {same}; "
        f"agreement across dtypes (vs naive {result['runs'][0]['dtype']}): {across}"
    )
    record = provenance(seeds=[seed], model=result["model"])
    path = out or RESULTS_DIR / f"bench_scorer_{result['device'].split(':')[0]}.json"
    write_json(path, {"provenance": record, **result})
    path.with_suffix(".md").write_text(
        f"# Scorer benchmark: {loaded.name}, k={k}, {result['queries']} dev queries, {result['device']}\n\n"
        f"Prefix {result['prefix_tokens']} tokens, queries {result['mean_query_tokens']:.1f} tokens on average; "
        f"naive batch {result['naive_batch']}.\n\n"
        + markdown_table(headers, rows)
        + f"\nratio = **{result['ratio']:.2f}** (default dtype {result['default_dtype']}); predictions at equal "
        f"dtype: {same}; agreement across dtypes: {across}\n\n" + provenance_markdown(record)
    )
    err_console.print(f"wrote {path} and {path.with_suffix('.md')}")
    if not result["identical_predictions_same_dtype"]:
        raise typer.Exit(1)
