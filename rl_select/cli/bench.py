"""``rl-select bench …``: side-by-side performance measurements, written as result files."""

from __future__ import annotations

from pathlib import Path

import typer

from rl_select.cli.common import (
    DataDirOption,
    DtypeOption,
    ModelOption,
    VerboseOption,
    console,
    err_console,
    print_table,
    progress_bars,
    results_and_next,
    setup_logging,
)
from rl_select.errors import ConfigError
from rl_select.provenance import Provenance, cpu_steal_meter, provenance

bench_app = typer.Typer(
    help="Benchmarks that measure ours against a baseline in the same run.", no_args_is_help=True, rich_markup_mode=None
)


def _integers(text: str, option: str) -> list[int]:
    """A positive, comma-separated integer list option."""
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise ConfigError(f"{option} takes comma-separated integers, got '{text}'") from None
    if not values or values[0] < 1:
        raise ConfigError(f"{option} needs positive integers")
    return values


def _publish(report, path: Path, payload: dict, record: Provenance) -> None:
    """Print the report's table and notes; write its files."""
    from rl_select.bench.reports import write_report  # deferred: CLI start-up

    print_table(report.title, report.headers, report.rows)
    for note in report.notes:
        console.print(note)
    write_report(path, payload, report, record)
    results_and_next(f"{path} and {path.with_suffix('.md')}")


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
    env_steps: int = typer.Option(8, "--env-steps", help="Vectorised-env steps to time (0: skip)."),
    env_envs: int | None = typer.Option(None, "--env-envs", help="Sub-envs of the env measurement (4 CPU, 16 GPU)."),
    llama_cpp: bool = typer.Option(
        True, "--llama-cpp/--no-llama-cpp", help="Add llama.cpp's row on a CPU where llama-cpp-python is installed."
    ),
    repeats: int = typer.Option(3, "--repeats", min=1, help="Timed runs per fast path (median reported)."),
    out: Path | None = typer.Option(None, "--out", help="Result JSON (default experiments/results/...)."),
    verbose: bool = VerboseOption,
) -> None:
    """Naive HF loop vs. rl-select's scorer (and llama.cpp) at the 4-shot SST-2 shape: queries/s, ratios, agreement."""
    setup_logging(verbose)
    from rl_select.bench.reports import RESULTS_DIR, scorer_report  # deferred: CLI start-up
    from rl_select.bench.scorer import run_scorer_benchmark  # deferred: CLI start-up (loads torch)
    from rl_select.selectors import check_k  # deferred: CLI start-up (loads torch)
    from rl_select.tasks import load_task  # deferred: CLI start-up

    stolen = cpu_steal_meter()
    if queries < 1:
        raise ConfigError(f"--queries must be positive, got {queries}")
    loaded = load_task(task, data_dir)
    check_k(k, len(loaded.train))
    options = {"naive_batch": naive_batch, "env_steps": env_steps, "env_envs": env_envs}
    options |= {"llama_cpp": llama_cpp, "repeats": repeats}
    with progress_bars() as factory:
        result = run_scorer_benchmark(
            loaded, model=model, device=device, num_queries=queries, k=k, seed=seed, progress=factory, **options
        )
    record = provenance(seeds=[seed], model=result.model, cpu_steal_share=stolen())
    path = out or RESULTS_DIR / f"bench_scorer_{result.device.split(':')[0]}.json"
    _publish(scorer_report(result, loaded.name, k), path, result.to_dict(), record)
    if not result.identical_predictions_same_dtype:
        raise typer.Exit(1)


@bench_app.command("projection")
def bench_projection(
    tasks: str = typer.Option("trec,sst2,agnews,rte", "--tasks", help="Comma-separated tasks to project and time."),
    data_dir: str | None = DataDirOption,
    model: str | None = ModelOption,
    device: str = typer.Option("auto", "--device", help="cpu, cuda or auto."),
    dtype: str = DtypeOption,
    k: int = typer.Option(4, "--k", help="Demonstrations per prompt (the k of the shapes that use it)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the demonstrations and queries drawn."),
    out: Path | None = typer.Option(None, "--out", help="Result JSON (default experiments/results/...)."),
    verbose: bool = VerboseOption,
) -> None:
    """Projected vs spent scoring time, per task and prompt shape, in one run: how far the announced minutes are off."""
    setup_logging(verbose)
    from rl_select.bench.projection import run_projection_benchmark  # deferred: CLI start-up (loads torch)
    from rl_select.bench.reports import RESULTS_DIR, projection_report  # deferred: CLI start-up
    from rl_select.scoring import load_language_model  # deferred: CLI start-up (loads torch)
    from rl_select.selectors import check_k  # deferred: CLI start-up (loads torch)
    from rl_select.tasks import load_task  # deferred: CLI start-up

    stolen = cpu_steal_meter()
    names = [name.strip() for name in tasks.split(",") if name.strip()]
    if not names:
        raise ConfigError("--tasks needs at least one task")
    loaded = [load_task(name, data_dir) for name in names]
    for task in loaded:
        check_k(k, len(task.train))
    lm = load_language_model(model, device=device, dtype=dtype)
    with progress_bars() as factory:
        result = run_projection_benchmark(lm, loaded, k=k, seed=seed, progress=factory)
    record = provenance(seeds=[seed], model=result.model, cpu_steal_share=stolen())
    path = out or RESULTS_DIR / f"bench_projection_{lm.device.type}.json"
    _publish(projection_report(result), path, result.to_dict(), record)


@bench_app.command("rollouts")
def bench_rollouts(
    workers: str = typer.Option("1,2,4", "--workers", help="Comma-separated worker counts."),
    placement: str = typer.Option("worker,central", "--placement", help="Scorer placements to compare."),
    episodes: int = typer.Option(16, "--episodes", help="Timed episodes per configuration."),
    task: str = typer.Option("sst2", "--task", help="Task of the episodes."),
    data_dir: str | None = DataDirOption,
    model: str | None = ModelOption,
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    dtype: str = DtypeOption,
    k: int = typer.Option(4, "--k", help="Demonstrations per episode."),
    num_candidates: int = typer.Option(16, "--num-candidates", "-M", help="Candidates per episode."),
    reward_rows: int = typer.Option(8, "--reward-rows", help="Dev rows per reward."),
    pool_size: int | None = typer.Option(200, "--pool-size", help="Pool subset (0: the whole pool)."),
    address: str | None = typer.Option(None, "--address", help="Existing Ray cluster."),
    out: Path | None = typer.Option(None, "--out", help="Result JSON (default experiments/results/...)."),
    verbose: bool = VerboseOption,
) -> None:
    """Episodes/s for each worker count and scorer placement in one run, with parallel efficiency."""
    setup_logging(verbose)
    from rl_select.bench.reports import RESULTS_DIR, rollouts_report  # deferred: CLI start-up
    from rl_select.bench.rollouts import rollout_config, run_rollout_benchmark  # deferred: CLI start-up (loads torch)
    from rl_select.scoring.model import resolve_device  # deferred: CLI start-up (loads torch)

    stolen = cpu_steal_meter()
    counts = _integers(workers, "--workers")
    placements = [p.strip() for p in placement.split(",") if p.strip()]
    if episodes < 1:
        raise ConfigError(f"--episodes must be positive, got {episodes}")
    env = {"k": k, "num_candidates": num_candidates, "reward_rows": reward_rows}
    config = rollout_config(task, data_dir, model, device, dtype, pool_size or None, address, placements, env)
    with progress_bars() as factory:
        result = run_rollout_benchmark(
            config, worker_counts=counts, placements=placements, episodes=episodes, progress=factory
        )
    kind = resolve_device(device).type
    model_info = {"name": model or "smollm2-135m-instruct", "device": kind, "dtype": dtype}
    record = provenance(seeds=[config.seed], model=model_info, cpu_steal_share=stolen())
    report = rollouts_report(result, task, k, num_candidates, reward_rows, episodes)
    _publish(
        report,
        out or RESULTS_DIR / f"bench_rollouts_{kind}.json",
        {"config": config.to_dict(), **result.to_dict()},
        record,
    )


@bench_app.command("service")
def bench_service(
    policy_dir: Path = typer.Argument(..., help="An exported policy directory."),
    requests: int = typer.Option(500, "--requests", help="Timed requests per concurrency level."),
    concurrency: str = typer.Option("1,4", "--concurrency", help="Comma-separated requests in flight."),
    k: int | None = typer.Option(None, "--k", help="k per request (default: the policy's)."),
    queries: Path | None = typer.Option(None, "--queries", help="Queries, one per line (default: pool texts)."),
    out: Path | None = typer.Option(None, "--out", help="Result JSON (default experiments/results/...)."),
    abuse: bool = typer.Option(False, "--abuse", help="Instead: a timed load, then abuse under load."),
    clients: int = typer.Option(64, "--clients", help="--abuse: concurrent clients of the timed load."),
    seconds: float = typer.Option(30.0, "--seconds", help="--abuse: length of the timed load."),
    verbose: bool = VerboseOption,
) -> None:
    """Latency and throughput of `rl-select serve` under a bounded load on loopback; --abuse: load and abuse."""
    setup_logging(verbose)
    from rl_select.bench.reports import RESULTS_DIR, abuse_report, service_report  # deferred: CLI start-up
    from rl_select.bench.service import (  # deferred: CLI start-up
        query_texts,
        run_abuse_on_server,
        run_service_benchmark,
    )
    from rl_select.export.manifest import read_manifest  # deferred: CLI start-up (loads pydantic)

    stolen = cpu_steal_meter()
    manifest = read_manifest(policy_dir)
    texts = query_texts(policy_dir, queries)
    embedder = {"name": manifest.embedder.id, "device": "cpu", "dtype": "onnx" if manifest.embedder.onnx else "torch"}
    if abuse:
        if clients < 1 or seconds <= 0:
            raise ConfigError("--clients and --seconds must be positive")
        err_console.print(f"load: {clients} clients for {seconds:g} s, then 32 slow-loris + 1000 malformed under load")
        result = run_abuse_on_server(policy_dir, texts, clients=clients, seconds=seconds)
        record = provenance(seeds=[0], model=embedder, cpu_steal_share=stolen())
        path = out or RESULTS_DIR / f"bench_service_abuse_cpu_{manifest.mode}.json"
        _publish(abuse_report(result, manifest), path, result.to_dict(), record)
        if result.failed:
            raise typer.Exit(1)
        return
    levels = _integers(concurrency, "--concurrency")
    if requests < 1:
        raise ConfigError("--requests must be positive")
    with progress_bars() as factory:
        result = run_service_benchmark(policy_dir, texts, requests=requests, concurrency=levels, k=k, progress=factory)
    record = provenance(seeds=[0], model=embedder, cpu_steal_share=stolen())
    summary = manifest.model_dump(include={"algo", "mode", "k", "num_candidates", "embedder", "task"})
    path = out or RESULTS_DIR / f"bench_service_cpu_{manifest.mode}.json"
    _publish(service_report(result, manifest, k), path, {"manifest": summary, **result.to_dict()}, record)
