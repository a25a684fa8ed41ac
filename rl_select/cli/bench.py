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
    env_steps: int = typer.Option(8, "--env-steps", help="Vectorised-env steps to time (0: skip)."),
    env_envs: int | None = typer.Option(None, "--env-envs", help="Sub-envs of the env measurement (4 CPU, 16 GPU)."),
    out: Path | None = typer.Option(
        None, "--out", help="Result JSON (default experiments/results/bench_scorer_<device>.json)."
    ),
    verbose: bool = VerboseOption,
) -> None:
    """Naive HF loop vs. rl-select's scorer at the 4-shot SST-2 shape: queries/s, ratio, agreement."""
    setup_logging(verbose)
    from rl_select.bench.scorer import run_scorer_benchmark
    from rl_select.provenance import cpu_steal_meter, markdown_table, provenance, provenance_markdown, write_json
    from rl_select.selectors import check_k
    from rl_select.tasks import load_task

    stolen = cpu_steal_meter()

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
            env_steps=env_steps,
            env_envs=env_envs,
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
    env_rows = []
    for run in result["env"]:
        env_rows.append(
            [
                "batched prefixes" if run["batch_prefixes"] else "one prefix at a time",
                str(run["n_envs"]),
                str(run["reward_rows"]),
                f"{run['rewards_per_s']:.2f}",
                str(run["forwards"]),
            ]
        )
        console.print(
            f"vectorised env, {env_rows[-1][0]}: {run['rewards_per_s']:.2f} rewards/s "
            f"({run['n_envs']} sub-envs, {run['reward_rows']} dev queries per reward)"
        )
    flops = [
        f"{r['dtype']} {r['achieved_tflops']:.3f} TFLOP/s"
        + (f" ({r['share_of_bf16_peak']:.1%} of the bf16 peak)" if r.get("share_of_bf16_peak") else "")
        for r in result["runs"][1:]
    ]
    console.print("rl-select compute rate: " + "; ".join(flops))
    if result["gpu_max_memory_gb"] is not None:
        console.print(f"GPU memory (peak allocated): {result['gpu_max_memory_gb']:.2f} GiB")
    record = provenance(seeds=[seed], model=result["model"], cpu_steal_share=stolen())
    path = out or RESULTS_DIR / f"bench_scorer_{result['device'].split(':')[0]}.json"
    write_json(path, {"provenance": record, **result})
    path.with_suffix(".md").write_text(
        f"# Scorer benchmark: {loaded.name}, k={k}, {result['queries']} dev queries, {result['device']}\n\n"
        f"Prefix {result['prefix_tokens']} tokens, queries {result['mean_query_tokens']:.1f} tokens on average; "
        f"naive batch {result['naive_batch']}.\n\n"
        + markdown_table(headers, rows)
        + f"\nratio = **{result['ratio']:.2f}** (default dtype {result['default_dtype']}); predictions at equal "
        f"dtype: {same}; agreement across dtypes: {across}\n\n"
        f"Compute rate of rl-select's forward passes (2 × non-embedding parameters per computed token): "
        f"{'; '.join(flops)}.\n\n"
        + (
            "## Rewards inside the vectorised env\n\n"
            + markdown_table(["scoring", "sub-envs", "dev queries per reward", "rewards/s", "forward passes"], env_rows)
            + "\n"
            + _batching_note(result["env"], result["mean_query_tokens"])
            if env_rows
            else ""
        )
        + (
            f"GPU memory, peak allocated: {result['gpu_max_memory_gb']:.2f} GiB\n\n"
            if result["gpu_max_memory_gb"] is not None
            else ""
        )
        + provenance_markdown(record)
    )
    err_console.print(f"wrote {path} and {path.with_suffix('.md')}")
    if not result["identical_predictions_same_dtype"]:
        raise typer.Exit(1)


@bench_app.command("rollouts")
def bench_rollouts(
    workers: str = typer.Option("1,2,4", "--workers", help="Comma-separated worker counts."),
    placement: str = typer.Option("worker,central", "--placement", help="Scorer placements to compare."),
    episodes: int = typer.Option(16, "--episodes", help="Timed episodes per configuration."),
    task: str = typer.Option("sst2", "--task", help="Task of the episodes."),
    data_dir: str | None = DataDirOption,
    model: str | None = ModelOption,
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N."),
    dtype: str = typer.Option("auto", "--dtype", help="auto, float32, bfloat16 or float16."),
    k: int = typer.Option(4, "--k", help="Demonstrations per episode."),
    num_candidates: int = typer.Option(16, "--num-candidates", "-M", help="Candidates per episode."),
    reward_rows: int = typer.Option(8, "--reward-rows", help="Dev rows per reward."),
    pool_size: int | None = typer.Option(200, "--pool-size", help="Pool subset (0: the whole pool)."),
    address: str | None = typer.Option(None, "--address", help="Existing Ray cluster."),
    out: Path | None = typer.Option(
        None, "--out", help="Result JSON (default experiments/results/bench_rollouts_<device>.json)."
    ),
    verbose: bool = VerboseOption,
) -> None:
    """Episodes/s for each worker count and scorer placement in one run, with parallel efficiency."""
    setup_logging(verbose)
    from rl_select.bench.rollouts import run_rollout_benchmark
    from rl_select.policies.config import TrainConfig
    from rl_select.policies.training import load_tasks
    from rl_select.provenance import cpu_steal_meter, markdown_table, provenance, provenance_markdown, write_json
    from rl_select.scoring.model import resolve_device

    stolen = cpu_steal_meter()

    try:
        counts = sorted({int(w) for w in workers.split(",") if w.strip()})
    except ValueError:
        raise ConfigError(f"--workers takes comma-separated integers, got '{workers}'") from None
    if not counts or counts[0] < 1:
        raise ConfigError("--workers needs positive worker counts")
    placements = [p.strip() for p in placement.split(",") if p.strip()]
    if episodes < 1:
        raise ConfigError(f"--episodes must be positive, got {episodes}")
    config = TrainConfig.from_dict(
        {
            "tasks": [task],
            "algo": "cql",
            "data_dir": data_dir,
            "model": model,
            "device": device,
            "dtype": dtype,
            "pool_size": pool_size or None,
            "address": address,
            "scorer_placement": placements[0],
            "env": {"k": k, "num_candidates": num_candidates, "reward_rows": reward_rows},
        }
    )
    for name in placements:
        config.with_overrides({"scorer_placement": name})  # validates the names before Ray starts
    load_tasks(config)
    with progress_bars() as factory:
        result = run_rollout_benchmark(
            config, worker_counts=counts, placements=placements, episodes=episodes, progress=factory
        )
    headers = ["scorer placement", "workers", "episodes/s", "speedup", "parallel efficiency"]
    table = Table(title=f"rollout benchmark · {task} · k={k} · M={num_candidates} · {reward_rows} reward rows")
    for column in headers:
        table.add_column(column, justify="right")
    rows = []
    for row in result["rows"]:
        cells = [
            row["placement"],
            str(row["workers"]),
            f"{row['episodes_per_s']:.3f}",
            f"{row['speedup']:.2f}",
            f"{row['parallel_efficiency']:.2f}",
        ]
        table.add_row(*cells)
        rows.append(cells)
    console.print(table)
    fastest = result["fastest"]
    console.print(f"fastest: {fastest['placement']} scorer with {fastest['workers']} worker(s)")
    device_kind = resolve_device(device).type
    record = provenance(
        seeds=[config.seed],
        model={"name": model or "smollm2-135m-instruct", "device": device_kind, "dtype": dtype},
        cpu_steal_share=stolen(),
    )
    path = out or RESULTS_DIR / f"bench_rollouts_{device_kind}.json"
    write_json(path, {"provenance": record, "config": config.to_dict(), **result})
    path.with_suffix(".md").write_text(
        f"# Rollout benchmark: {task}, k={k}, M={num_candidates}, {reward_rows} reward rows, {episodes} episodes "
        f"per configuration, {result['cluster_cpus']:.0f} CPUs / {result['cluster_gpus']:.0f} GPUs\n\n"
        + markdown_table(headers, rows)
        + f"\nfastest: **{fastest['placement']} scorer, {fastest['workers']} worker(s)**\n\n"
        + provenance_markdown(record)
    )
    err_console.print(f"wrote {path} and {path.with_suffix('.md')}")


@bench_app.command("service")
def bench_service(
    policy_dir: Path = typer.Argument(..., help="An exported policy directory."),
    requests: int = typer.Option(500, "--requests", help="Timed requests per concurrency level."),
    concurrency: str = typer.Option("1,4", "--concurrency", help="Comma-separated requests in flight."),
    k: int | None = typer.Option(None, "--k", help="k per request (default: the policy's)."),
    queries: Path | None = typer.Option(
        None, "--queries", help="Text file of queries, one per line (default: pool texts)."
    ),
    out: Path | None = typer.Option(
        None, "--out", help="Result JSON (default experiments/results/bench_service_cpu_<mode>.json)."
    ),
    abuse: bool = typer.Option(
        False, "--abuse", help="Instead: a timed load, then slow-loris and malformed requests under load."
    ),
    clients: int = typer.Option(64, "--clients", help="--abuse: concurrent clients of the timed load."),
    seconds: float = typer.Option(30.0, "--seconds", help="--abuse: length of the timed load."),
    verbose: bool = VerboseOption,
) -> None:
    """Latency and throughput of `rl-select serve` under a bounded load on loopback; --abuse: load and abuse."""
    setup_logging(verbose)
    if abuse:
        _bench_service_abuse(policy_dir, queries, clients, seconds, out)
        return
    from rl_select.bench.service import default_queries, run_service_benchmark
    from rl_select.export.manifest import read_manifest
    from rl_select.provenance import cpu_steal_meter, markdown_table, provenance, provenance_markdown, write_json

    stolen = cpu_steal_meter()
    manifest = read_manifest(policy_dir)
    try:
        levels = sorted({int(c) for c in concurrency.split(",") if c.strip()})
    except ValueError:
        raise ConfigError(f"--concurrency takes comma-separated integers, got '{concurrency}'") from None
    if not levels or levels[0] < 1 or requests < 1:
        raise ConfigError("--requests and --concurrency levels must be positive")
    if queries is not None:
        if not queries.is_file():
            raise ConfigError(f"queries file {queries} does not exist")
        texts = [line.strip() for line in queries.read_text().splitlines() if line.strip()]
    else:
        texts = default_queries(policy_dir)
    if not texts:
        raise ConfigError("no queries to send")
    with progress_bars() as factory:
        result = run_service_benchmark(policy_dir, texts, requests=requests, concurrency=levels, k=k, progress=factory)
    headers = [
        "concurrency",
        "requests",
        "req/s",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "max ms",
        "server p50 ms",
        "server p99 ms",
        "errors",
    ]
    table = Table(
        title=f"service benchmark · {manifest['mode']} mode · pool {manifest['task']['pool_size']} · "
        f"k={k or manifest['k']}"
    )
    for column in headers:
        table.add_column(column, justify="right")
    rows = []
    for row in result["rows"]:
        cells = [
            str(row["concurrency"]),
            str(row["requests"]),
            f"{row['requests_per_s']:.1f}",
            f"{row['p50_ms']:.2f}",
            f"{row['p95_ms']:.2f}",
            f"{row['p99_ms']:.2f}",
            f"{row['max_ms']:.2f}",
            f"{row['server_p50_ms']:.2f}",
            f"{row['server_p99_ms']:.2f}",
            str(row["errors"]),
        ]
        table.add_row(*cells)
        rows.append(cells)
    console.print(table)
    record = provenance(
        seeds=[0],
        model={
            "name": manifest["embedder"]["id"],
            "device": "cpu",
            "dtype": "onnx" if manifest["embedder"].get("onnx") else "torch",
        },
        cpu_steal_share=stolen(),
    )
    path = out or RESULTS_DIR / f"bench_service_cpu_{manifest['mode']}.json"
    write_json(
        path,
        {
            "provenance": record,
            "manifest": {k_: manifest[k_] for k_ in ("algo", "mode", "k", "num_candidates", "embedder", "task")},
            **result,
        },
    )
    path.with_suffix(".md").write_text(
        f"# Service benchmark: {manifest['algo']} policy, {manifest['mode']} mode, pool of "
        f"{manifest['task']['pool_size']}, k={k or manifest['k']}, embedder {manifest['embedder']['id']} "
        f"({'ONNX' if manifest['embedder'].get('onnx') else 'torch'})\n\n"
        "Server: `rl-select serve` (1 uvicorn worker) in its own process; load generator: one keep-alive "
        "connection per thread on loopback (threads = concurrency), in another process on the same cores. "
        "Latency is end to end per request; *server* columns are the time spent choosing inside the service "
        "(its Server-Timing header), without HTTP and queueing.\n\n"
        + markdown_table(headers, rows)
        + "\n"
        + provenance_markdown(record)
    )
    err_console.print(f"wrote {path} and {path.with_suffix('.md')}")


def _batching_note(env_runs: list[dict], mean_query_tokens: float) -> str:
    """Why batched and one-at-a-time prefixes ran the same number of forwards, when they did."""
    forwards = {run["forwards"] for run in env_runs}
    if len(forwards) != 1:
        return ""
    run = env_runs[0]
    reward_tokens = run["reward_rows"] * mean_query_tokens
    return (
        f"Both ran the same forwards: one reward's {run['reward_rows']} queries (~{reward_tokens:.0f} tokens) "
        f"already exceed a forward's {run['batch_tokens']} tokens on this device, so there is nothing left to "
        "batch across prefixes. Batching pays where a forward holds many rewards (8192 tokens on CUDA).\n\n"
    )


def _bench_service_abuse(
    policy_dir: Path, queries: Path | None, clients: int, seconds: float, out: Path | None
) -> None:
    """``bench service --abuse``: run it, print and write the load/abuse table."""
    from rl_select.bench.service import default_queries, free_port, run_abuse_benchmark, start_server
    from rl_select.export.manifest import read_manifest
    from rl_select.provenance import cpu_steal_meter, markdown_table, provenance, provenance_markdown, write_json

    if clients < 1 or seconds <= 0:
        raise ConfigError("--clients and --seconds must be positive")
    manifest = read_manifest(policy_dir)
    texts = default_queries(policy_dir) if queries is None else queries.read_text().splitlines()
    stolen = cpu_steal_meter()
    port = free_port()
    err_console.print(f"load: {clients} clients for {seconds:g} s, then 32 slow-loris + 1000 malformed under load")
    server = start_server(policy_dir, port)
    try:
        result = run_abuse_benchmark(port, texts, clients=clients, seconds=seconds)
    finally:
        server.terminate()
        server.wait(timeout=10)
    load, under, slow, bad = result["load"], result["under_abuse"], result["slow_loris"], result["malformed"]
    headers = ["phase", "requests", "errors", "req/s", "p50 ms", "p99 ms", "outcome"]
    rows = [
        [
            f"{load['clients']} clients × {load['seconds']:.0f} s",
            load["requests"],
            load["errors"],
            f"{load['requests_per_s']:.1f}",
            f"{load['p50_ms']:.1f}",
            f"{load['p99_ms']:.1f}",
            "0 errors" if not load["errors"] else f"{load['errors']} errors",
        ],
        [
            f"{under['clients']} clients during the abuse below",
            under["requests"],
            under["errors"],
            "",
            "",
            f"{under['p99_ms']:.1f}",
            "kept answering" if not under["errors"] else "errors under abuse",
        ],
        [
            f"{slow['clients']} slow-loris bodies",
            slow["clients"],
            slow["still_open"],
            "",
            "",
            "",
            f"{slow['answered_408']} answered 408, {slow['closed_by_server']} dropped",
        ],
        [
            f"{bad['requests']} malformed requests",
            bad["requests"],
            bad["failures"],
            "",
            "",
            "",
            "all 4xx (or dropped, for non-HTTP bytes)" if not bad["failures"] else "some not refused",
        ],
    ]
    table = Table(title=f"service load and abuse · {manifest['mode']} mode · pool {manifest['task']['pool_size']}")
    for column in headers:
        table.add_column(column)
    for row in rows:
        table.add_row(*map(str, row))
    console.print(table)
    console.print(f"healthy after: {result['healthy_after']}")
    record = provenance(seeds=[0], cpu_steal_share=stolen())
    path = out or RESULTS_DIR / f"bench_service_abuse_cpu_{manifest['mode']}.json"
    write_json(path, {"provenance": record, **result})
    statuses = "; ".join(
        f"{name}: " + ", ".join(f"{status}×{n}" for status, n in sorted(tally.items()))
        for name, tally in bad["statuses"].items()
    )
    path.with_suffix(".md").write_text(
        f"# Service load and abuse: {manifest['algo']} policy, {manifest['mode']} mode, pool of "
        f"{manifest['task']['pool_size']}\n\n"
        "Server: `rl-select serve` (1 uvicorn worker, body timeout 10 s) in its own process on loopback; clients "
        "are threads of another process on the same 2 cores. *errors*: non-200 answers to valid requests, "
        "connections left open by the server, or malformed requests that were not refused.\n\n"
        + markdown_table(headers, rows)
        + f"\nHealthy after (healthz and a valid selection): **{result['healthy_after']}**.\n\n"
        f"Answers to malformed requests (status×count; 0 = connection dropped): {statuses}.\n\n"
        + provenance_markdown(record)
    )
    err_console.print(f"wrote {path} and {path.with_suffix('.md')}")
    if load["errors"] or under["errors"] or bad["failures"] or slow["still_open"] or not result["healthy_after"]:
        raise typer.Exit(1)
