"""Benchmarks' results as tables: the rows a front end prints, the notes under them, the markdown file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rl_select.bench.records import AbuseBench, EnvThroughput, RolloutBench, ScorerBench, ServiceBench
from rl_select.provenance import Provenance, markdown_table, provenance_markdown, write_json
from rl_select.types import JsonObject

if TYPE_CHECKING:
    from rl_select.bench.projection import ProjectionBench  # loads torch (via the budget); only its type here

RESULTS_DIR = Path("experiments/results")


@dataclass
class BenchReport:
    """A benchmark's table and what goes around it.

    Attributes:
        title: Table title.
        headers: Column names.
        rows: Cells, as text.
        notes: Lines printed under the table.
        markdown: The result file's body (provenance is appended when it is written).
    """

    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    markdown: str = ""


def write_report(path: Path, payload: JsonObject, report: BenchReport, record: Provenance) -> Path:
    """``path`` (JSON: provenance and payload) and the markdown beside it."""
    write_json(path, {"provenance": record, **payload})
    path.with_suffix(".md").write_text(report.markdown + provenance_markdown(record))
    return path


def scorer_report(result: ScorerBench, task: str, k: int) -> BenchReport:
    """``bench scorer``: per path queries/s, ratio, share of the GEMM peak, agreement; env rewards/s."""
    naive_dtype = result.runs[0].dtype
    headers = ["path", "dtype", "queries/s", f"ratio vs naive {naive_dtype}", "share of GEMM peak", "agreement"]
    rows = [
        [
            run.path + (" (default)" if run.default else ""),
            run.dtype,
            f"{run.queries_per_s:.1f}",
            f"{run.ratio_vs_naive:.2f}",
            f"{run.share_of_gemm_peak:.1%}" if run.share_of_gemm_peak else "n/a",
            f"{run.agreement_with_naive:.2%}",
        ]
        for run in result.runs
    ]
    same = "identical" if result.identical_predictions_same_dtype else f"{result.mismatches_same_dtype} differ"
    across = ", ".join(f"{dtype} {rate:.2%}" for dtype, rate in result.agreement_across_dtypes.items()) or "n/a"
    peaks = "; ".join(f"{dtype} {tflops:.3f} TFLOP/s" for dtype, tflops in result.gemm_peak_tflops.items())
    flops = "; ".join(f"{r.path} {r.dtype} {r.achieved_tflops:.3f} TFLOP/s" for r in result.runs[1:])
    versus = result.default_vs_llama_cpp
    llama = (
        f"default path vs llama.cpp: {versus:.2f}× its queries/s"
        if versus
        else "llama.cpp: not measured (llama-cpp-python not installed, not a CPU run, or no GGUF file)"
    )
    machine = f"{result.cpu} (flags: {', '.join(result.cpu_flags) or 'none found'})"
    env_rows = [
        [
            "batched prefixes" if run.batch_prefixes else "one prefix at a time",
            str(run.n_envs),
            str(run.reward_rows),
            f"{run.rewards_per_s:.2f}",
            str(run.forwards),
        ]
        for run in result.env
    ]
    memory = result.gpu_max_memory_gb
    notes = [
        f"ratio = {result.ratio:.2f} (rl-select at its default dtype {result.default_dtype} vs naive "
        f"{naive_dtype}); {llama}",
        f"dtype {result.default_dtype}: {result.dtype_reason}",
        f"predictions at equal dtype ({naive_dtype}): {same}; agreement across dtypes: {across}",
        f"GEMM peak at the model's shapes ({result.batch_tokens} rows): {peaks}",
        f"compute rate: {flops}",
        f"machine: {machine}",
        *(
            f"vectorised env, {row[0]}: {row[3]} rewards/s ({row[1]} sub-envs, {row[2]} dev queries per reward)"
            for row in env_rows
        ),
        *([f"GPU memory (peak allocated): {memory:.2f} GiB"] if memory is not None else []),
    ]
    env_part = ""
    if env_rows:
        env_headers = ["scoring", "sub-envs", "dev queries per reward", "rewards/s", "forward passes"]
        env_part = "## Rewards inside the vectorised env\n\n" + markdown_table(env_headers, env_rows) + "\n"
        env_part += _batching_note(result.env, result.mean_query_tokens)
    markdown = (
        f"# Scorer benchmark: {task}, k={k}, {result.queries} dev queries, {result.device}\n\n"
        f"Machine: {machine}. Prefix {result.prefix_tokens} tokens, queries "
        f"{result.mean_query_tokens:.1f} tokens on average; naive batch {result.naive_batch}.\n\n"
        + markdown_table(headers, rows)
        + f"\nratio = **{result.ratio:.2f}** (default dtype {result.default_dtype}); {llama}; predictions "
        f"at equal dtype: {same}; agreement across dtypes: {across}.\n\n"
        f"Default dtype {result.default_dtype}: {result.dtype_reason}.\n\n"
        f"Share of GEMM peak: each path's compute rate (2 × non-embedding parameters per real token, over its wall "
        f"time) over torch matmuls at the model's linear shapes with {result.batch_tokens} rows, timed in this "
        f"run: {peaks}. Compute rates: {flops}.\n\n"
        + env_part
        + (f"GPU memory, peak allocated: {memory:.2f} GiB\n\n" if memory is not None else "")
    )
    title = f"scorer benchmark · {task} · k={k} · {result.queries} queries · {result.device}"
    return BenchReport(title, headers, rows, notes, markdown)


def _batching_note(env_runs: list[EnvThroughput], mean_query_tokens: float) -> str:
    """Why batched and one-at-a-time prefixes ran the same number of forwards, when they did."""
    forwards = {run.forwards for run in env_runs}
    if len(forwards) != 1:
        return ""
    run = env_runs[0]
    reward_tokens = run.reward_rows * mean_query_tokens
    return (
        f"Both ran the same forwards: one reward's {run.reward_rows} queries (~{reward_tokens:.0f} tokens) "
        f"already exceed a forward's {run.batch_tokens} tokens on this device, so there is nothing left to "
        "batch across prefixes. Batching pays where a forward holds many rewards (8192 tokens on CUDA).\n\n"
    )


def rollouts_report(result: RolloutBench, task: str, k: int, m: int, reward_rows: int, episodes: int) -> BenchReport:
    """``bench rollouts``: episodes/s, speed-up and efficiency per placement and worker count."""
    headers = ["scorer placement", "workers", "episodes/s", "speedup", "parallel efficiency"]
    rows = [
        [
            row.placement,
            str(row.workers),
            f"{row.episodes_per_s:.3f}",
            f"{row.speedup:.2f}",
            f"{row.parallel_efficiency:.2f}",
        ]
        for row in result.rows
    ]
    fastest = result.fastest
    markdown = (
        f"# Rollout benchmark: {task}, k={k}, M={m}, {reward_rows} reward rows, {episodes} episodes "
        f"per configuration, {result.cluster_cpus:.0f} CPUs / {result.cluster_gpus:.0f} GPUs\n\n"
        + markdown_table(headers, rows)
        + f"\nfastest: **{fastest.placement} scorer, {fastest.workers} worker(s)**\n\n"
    )
    title = f"rollout benchmark · {task} · k={k} · M={m} · {reward_rows} reward rows"
    notes = [f"fastest: {fastest.placement} scorer with {fastest.workers} worker(s)"]
    return BenchReport(title, headers, rows, notes, markdown)


SERVICE_HEADERS = ["concurrency", "requests", "req/s", "p50 ms", "p95 ms", "p99 ms", "max ms", "server p50 ms"]


def service_report(result: ServiceBench, manifest: Any, k: int | None) -> BenchReport:
    """``bench service``: latency percentiles and throughput per concurrency level."""
    headers = [*SERVICE_HEADERS, "server p99 ms", "errors"]
    rows = [
        [
            str(row.concurrency),
            str(row.requests),
            f"{row.requests_per_s:.1f}",
            *(f"{value:.2f}" for value in (row.p50_ms, row.p95_ms, row.p99_ms, row.max_ms)),
            *(f"{value:.2f}" for value in (row.server_p50_ms, row.server_p99_ms)),
            str(row.errors),
        ]
        for row in result.rows
    ]
    embedder = f"{manifest.embedder.id} ({'ONNX' if manifest.embedder.onnx else 'torch'})"
    markdown = (
        f"# Service benchmark: {manifest.algo} policy, {manifest.mode} mode, pool of {manifest.task.pool_size}, "
        f"k={k or manifest.k}, embedder {embedder}\n\n"
        "Server: `rl-select serve` (1 uvicorn worker) in its own process; load generator: one keep-alive "
        "connection per thread on loopback (threads = concurrency), in another process on the same cores. "
        "Latency is end to end per request; *server* columns are the time spent choosing inside the service "
        "(its Server-Timing header), without HTTP and queueing.\n\n" + markdown_table(headers, rows) + "\n"
    )
    title = f"service benchmark · {manifest.mode} mode · pool {manifest.task.pool_size} · k={k or manifest.k}"
    return BenchReport(title, headers, rows, [], markdown)


def abuse_report(result: AbuseBench, manifest: Any) -> BenchReport:
    """``bench service --abuse``: the load phase, then slow-loris and malformed requests under load."""
    load, under, slow, bad = result.load, result.under_abuse, result.slow_loris, result.malformed
    headers = ["phase", "requests", "errors", "req/s", "p50 ms", "p99 ms", "outcome"]
    rows = [
        [
            f"{load.clients} clients × {load.seconds:.0f} s",
            str(load.requests),
            str(load.errors),
            f"{load.requests_per_s:.1f}",
            f"{load.p50_ms:.1f}",
            f"{load.p99_ms:.1f}",
            "0 errors" if not load.errors else f"{load.errors} errors",
        ],
        [
            f"{under.clients} clients during the abuse below",
            str(under.requests),
            str(under.errors),
            "",
            "",
            f"{under.p99_ms:.1f}",
            "kept answering" if not under.errors else "errors under abuse",
        ],
        [
            f"{slow.clients} slow-loris bodies",
            str(slow.clients),
            str(slow.still_open),
            "",
            "",
            "",
            f"{slow.answered_408} answered 408, {slow.closed_by_server} dropped",
        ],
        [
            f"{bad.requests} malformed requests",
            str(bad.requests),
            str(bad.failures),
            "",
            "",
            "",
            "all 4xx (or dropped, for non-HTTP bytes)" if not bad.failures else "some not refused",
        ],
    ]
    statuses = "; ".join(
        f"{name}: " + ", ".join(f"{status}×{n}" for status, n in sorted(tally.items()))
        for name, tally in bad.statuses.items()
    )
    markdown = (
        f"# Service load and abuse: {manifest.algo} policy, {manifest.mode} mode, pool of {manifest.task.pool_size}\n\n"
        "Server: `rl-select serve` (1 uvicorn worker, body timeout 10 s) in its own process on loopback; clients "
        "are threads of another process on the same 2 cores. *errors*: non-200 answers to valid requests, "
        "connections left open by the server, or malformed requests that were not refused.\n\n"
        + markdown_table(headers, rows)
        + f"\nHealthy after (healthz and a valid selection): **{result.healthy_after}**.\n\n"
        f"Answers to malformed requests (status×count; 0 = connection dropped): {statuses}.\n\n"
    )
    title = f"service load and abuse · {manifest.mode} mode · pool {manifest.task.pool_size}"
    return BenchReport(title, headers, rows, [f"healthy after: {result.healthy_after}"], markdown)


def projection_report(result: ProjectionBench) -> BenchReport:
    """``bench projection``: per task and shape, projected vs computed tokens and projected vs spent seconds."""
    headers = ["task", "shape", "queries", "tokens / projected", "seconds", "spent / projected", "plain: spent / proj."]
    rows = [
        [
            t.task,
            t.shape,
            str(t.queries),
            f"{t.tokens / t.projected_tokens:.2f}",
            f"{t.seconds:.2f}",
            f"{t.ratio:.2f}",
            f"{t.plain_ratio:.2f}",
        ]
        for t in result.timings
    ]
    ratios = [t.ratio for t in result.timings]
    notes = [
        f"all shapes: spent / projected = {result.total_ratio():.2f} (per shape {min(ratios):.2f}–{max(ratios):.2f}); "
        f"with the plain forwards alone {result.total_ratio(plain=True):.2f}",
        f"measuring the throughput took {result.throughput_seconds:.1f} s (what every announcing command adds)",
    ]
    markdown = (
        f"# Projected vs spent scoring time (k = {result.k})\n\n"
        "Each task and prompt shape is projected as the commands project it (tokens from the task's token profile, "
        "seconds from the throughput measured at the start: plain forwards scaled to the scorer's time on a few "
        "calibration prompts), then scored with caches off and timed, in the same run. A ratio above 1: the run "
        "takes longer than announced.\n\n"
        + markdown_table(headers, rows)
        + "\n\n"
        + "\n".join(f"- {note}" for note in notes)
        + "\n\n"
    )
    return BenchReport("Projected vs spent scoring time", headers, rows, notes, markdown)
