"""``rl-select tasks`` and ``rl-select evaluate``."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from rl_select.cli.common import (
    DataDirOption,
    DeviceOption,
    DtypeOption,
    ModelOption,
    VerboseOption,
    console,
    default_out,
    err_console,
    load_model_with_status,
    progress_bars,
    seeds_from,
    setup_logging,
)
from rl_select.errors import ConfigError


def tasks_command(data_dir: str | None = DataDirOption) -> None:
    """List the tasks available, and where each comes from."""
    from rl_select.tasks import list_tasks

    table = Table(title="tasks")
    for column in ("task", "source", "location", "train", "dev", "test"):
        table.add_column(column)
    for info in list_tasks(data_dir):
        rows = info.rows or {}
        table.add_row(info.name, info.source, info.location, *(str(rows.get(s, "")) for s in ("train", "dev", "test")))
    console.print(table)


ORDER_CHOICES = ("selected", "reversed", "both")


def evaluate_command(
    task: str = typer.Option(..., "--task", help="Task name, hub:<name>, or path to a task.json."),
    data_dir: str | None = DataDirOption,
    model: str | None = ModelOption,
    selector: str | None = typer.Option(
        None,
        "--selector",
        help="A baseline, a comma-separated list, or 'all' (default: random, or only --policy).",
    ),
    policy: list[Path] = typer.Option([], "--policy", help="A trained run directory (repeatable)."),
    k: int = typer.Option(4, "--k", help="Demonstrations per prompt."),
    seeds: int = typer.Option(5, "--seeds", help="Number of seeds (0 … N-1)."),
    n_test: int | None = typer.Option(None, "--n-test", help="Evaluate on a seeded subsample of N rows."),
    split: str = typer.Option("test", "--split", help="Split to evaluate on."),
    calibrate: bool = typer.Option(True, "--calibrate/--no-calibrate", help="Primary metric calibrated or raw."),
    embedder: str | None = typer.Option(None, "--embedder", help="sentence-transformers model (default: LLM)."),
    num_sets: int | None = typer.Option(None, "--num-sets", help="best-of-n: random prompts tried."),
    dev_size: int | None = typer.Option(None, "--dev-size", help="best-of-n / greedy-oracle: dev rows."),
    num_candidates: int | None = typer.Option(None, "--num-candidates", help="Candidates for greedy/mmr/dpp."),
    data_seed: int = typer.Option(0, "--data-seed", help="Seed of the evaluation and dev subsamples."),
    max_prompt_tokens: int | None = typer.Option(None, "--max-prompt-tokens", help="Cap on prompt length."),
    order: str = typer.Option(
        "selected",
        "--order",
        help="Prompt order: as each selector returns it ('selected'), 'reversed', or 'both' (order ablation).",
    ),
    device: str = DeviceOption,
    dtype: str = DtypeOption,
    deterministic: bool = typer.Option(
        False, "--deterministic", help="One torch thread and deterministic kernels (slower; see README)."
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Result JSON (a .md table beside it); rerunning with the same file continues it."
    ),
    verbose: bool = VerboseOption,
) -> None:
    """Evaluate demonstration selectors on a task's test split, every one under the same scoring."""
    setup_logging(verbose)
    from rl_select.evaluation import (
        REPORT_COLUMNS,
        EvaluationLog,
        evaluation_key,
        evaluation_markdown,
        report_row,
        run_evaluation,
    )
    from rl_select.provenance import provenance
    from rl_select.reproducibility import pin_determinism
    from rl_select.scoring import ScoringConfig
    from rl_select.selectors import SELECTORS, Resources, check_k, make_selector
    from rl_select.selectors.base import ReversedOrder
    from rl_select.tasks import SPLITS, load_task

    seed_list = seeds_from(seeds)
    loaded = load_task(task, data_dir)
    check_k(k, len(loaded.train))
    if split not in SPLITS:
        raise ConfigError(f"unknown split '{split}' (choose from {', '.join(SPLITS)})")
    if n_test is not None and n_test <= 0:
        raise ConfigError(f"--n-test must be positive, got {n_test}")
    if selector is None:
        selector = "" if policy else "random"
    names = list(SELECTORS) if selector == "all" else [s.strip() for s in selector.split(",") if s.strip()]
    options = {"num_sets": num_sets, "dev_size": dev_size, "num_candidates": num_candidates}
    selectors = [make_selector(name, strict=False, **options) for name in names]
    for run_dir in policy:
        from rl_select.policies.selector import PolicySelector

        selectors.append(PolicySelector.from_run(run_dir))
    if order not in ORDER_CHOICES:
        raise ConfigError(f"unknown --order '{order}' (choose from: {', '.join(ORDER_CHOICES)})")
    if order != "selected":
        pairs = [(s, ReversedOrder(s)) for s in selectors]
        selectors = [r for _, r in pairs] if order == "reversed" else [x for pair in pairs for x in pair]
    scoring = ScoringConfig(calibrate=calibrate, max_prompt_tokens=max_prompt_tokens)
    label = "all" if selector == "all" else "+".join([*names, *(p.name for p in policy)])
    label += "" if order == "selected" else f"-{order}-order"
    path = out or default_out("evaluate", f"{loaded.name}-k{k}-{label}")

    pinned = pin_determinism(deterministic)
    lm = load_model_with_status(model, device, dtype)
    resources = Resources(loaded, lm=lm, scoring=scoring, embedder=embedder, data_seed=data_seed)
    record = provenance(seeds=seed_list, model=lm.info(), reproducibility=pinned)
    key = evaluation_key(resources, k=k, split=split, n_rows=n_test, seeds=seed_list)
    header = {"provenance": record, "task": loaded.summary(), "scoring": scoring.to_dict()}
    log = EvaluationLog(path, key, header, render=evaluation_markdown)
    if log.resumed:
        err_console.print(
            f"continuing {path}: {log.resumed} selector-seed results kept from an earlier run of this evaluation "
            "(delete the file to evaluate afresh)"
        )
    with progress_bars() as factory:
        resources.progress_factory = factory
        reports = run_evaluation(
            selectors, resources, log, k=k, seeds=seed_list, n_rows=n_test, split=split, progress=factory
        )

    primary = "calibrated" if calibrate else "raw"
    table = Table(
        title=f"{loaded.name} · k={k} · {split} ({reports[0].seeds[0].queries} rows) · "
        f"{len(seed_list)} seed(s) · primary: {primary}"
    )
    for column in REPORT_COLUMNS:
        table.add_column(column, justify="left" if column in ("selector", "per seed") else "right")
    for report in reports:
        table.add_row(*report_row(report))
    console.print(table)
    stats = resources.scorer.cache_stats()
    err_console.print(
        f"reward cache hit rate {stats['reward_cache']['hit_rate']:.1%} · "
        f"{stats['queries']} queries scored in {stats['seconds']:.1f}s of forward passes"
    )
    err_console.print(f"wrote {path} and {path.with_suffix('.md')}")
