"""Where the scorer's time goes on a GPU: throughput against batch size and query count, and a torch profile.

A diagnostic for the scorer benchmark (``rl-select bench scorer``), whose timings at 872 queries last well under a
second on an H200 (too short to tell launch and host overhead from model work). Prints, for the 4-shot SST-2 shape:
rl-select's scorer at several ``batch_tokens`` over the dev queries repeated ``--times`` times (caches off); its
logit-read paths side by side (per-row logits where this transformers has them, the output head on gathered hidden
states, full logits) with how far their scores differ; the naive loop at batch 256 and 1024 on the same queries; and
the top host and device operators of one scorer run::

    python experiments/gpu/profile_scorer.py --data-dir D --device cuda --times 8 > profile.txt

(``--task``, ``--model``: another task or model; a test runs it on a tiny one.)
"""

from __future__ import annotations

import time
from typing import Annotated

import numpy as np
import torch
import typer

from rl_select.scoring import Scorer, ScoringConfig, load_language_model, naive_log_scores
from rl_select.selectors import RandomSelector
from rl_select.tasks import load_task


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def main(
    data_dir: Annotated[str | None, typer.Option("--data-dir")] = None,
    task_name: Annotated[str, typer.Option("--task")] = "sst2",
    model: Annotated[str | None, typer.Option("--model", help="Scoring LLM (default: SmolLM2-135M).")] = None,
    device: Annotated[str, typer.Option("--device")] = "cuda",
    times: Annotated[int, typer.Option("--times", help="How often the dev queries are repeated.")] = 8,
    batch_tokens: Annotated[str, typer.Option("--batch-tokens")] = "8192,32768,131072",
    naive_batches: Annotated[str, typer.Option("--naive-batches")] = "256,1024",
) -> None:
    """Print throughputs and a profile (see the module docstring)."""
    task = load_task(task_name, data_dir)
    lm = load_language_model(model, device=device)
    demos = [task.train[i] for i in RandomSelector().select(task, None, 4, np.random.default_rng(0))]
    queries = list(task.dev) * times
    print(f"device {lm.device} dtype {lm.dtype}; {len(queries)} queries; torch {torch.__version__}", flush=True)

    def ours(tokens: int, logit_reads: str | None = None) -> tuple[np.ndarray, float, dict]:
        scorer = Scorer(lm, task, ScoringConfig(calibrate=False, batch_tokens=tokens))
        if logit_reads is not None:
            scorer.backend._logit_reads = logit_reads
        _sync(lm.device)
        started = time.perf_counter()
        result = scorer.score(demos, queries, use_cache=False)
        _sync(lm.device)
        return result.log_scores, time.perf_counter() - started, scorer.stats.to_dict()

    reference = None
    for tokens in [int(t) for t in batch_tokens.split(",")]:
        ours(tokens)  # warm-up at this shape
        for _ in range(2):
            scores, seconds, stats = ours(tokens)
            print(f"rl-select batch_tokens={tokens}: {len(queries) / seconds:,.0f} q/s ({seconds:.3f} s) {stats}")
        reference = scores if reference is None else reference
    probed = Scorer(lm, task).backend._logit_reads
    print(f"logit reads on this transformers: {probed}")
    first = int(batch_tokens.split(",")[0])
    paths = [path for path in ("rows", "head", "full") if path != "rows" or probed == "rows"]
    timings = {path: min(ours(first, path)[1] for _ in range(2)) for path in paths}
    for path, seconds in timings.items():
        differs = float(np.abs(ours(first, path)[0] - reference).max())
        print(
            f"logit reads {path}: {len(queries) / seconds:,.0f} q/s, {timings['full'] / seconds:.2f}x full logits;"
            f" scores differ from the probed path's by at most {differs:.2e}"
        )
    encoder = Scorer(lm, task).encoder
    for batch in [int(b) for b in naive_batches.split(",")]:
        naive_log_scores(lm, encoder, demos, queries[:batch], max_tokens=lm.max_positions, batch_size=batch)
        _sync(lm.device)
        started = time.perf_counter()
        naive = naive_log_scores(lm, encoder, demos, queries, max_tokens=lm.max_positions, batch_size=batch)
        _sync(lm.device)
        seconds = time.perf_counter() - started
        agree = float(np.mean(naive.argmax(1) == reference.argmax(1)))
        print(f"naive batch={batch}: {len(queries) / seconds:,.0f} q/s ({seconds:.3f} s), agreement {agree:.4f}")
    activities = [torch.profiler.ProfilerActivity.CPU]
    if lm.device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as profile:
        ours(int(batch_tokens.split(",")[0]))
    table = profile.key_averages()
    print(table.table(sort_by="self_cpu_time_total", row_limit=25))
    if lm.device.type == "cuda":
        print(table.table(sort_by="self_cuda_time_total", row_limit=15))


if __name__ == "__main__":
    typer.run(main)
