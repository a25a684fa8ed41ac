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

from typing import Annotated

import numpy as np
import torch
import typer

from rl_select.bench.scorer import time_naive, time_scorer
from rl_select.scoring import Scorer, load_language_model
from rl_select.selectors import RandomSelector
from rl_select.tasks import load_task


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
    sizes = [int(t) for t in batch_tokens.split(",")]
    print(f"device {lm.device} dtype {lm.dtype}; {len(queries)} queries; torch {torch.__version__}", flush=True)

    reference = None
    for tokens in sizes:
        time_scorer(lm, task, demos, queries, batch_tokens=tokens)  # warm-up at this shape
        for _ in range(2):
            scores, seconds, stats = time_scorer(lm, task, demos, queries, batch_tokens=tokens)
            print(f"rl-select batch_tokens={tokens}: {len(queries) / seconds:,.0f} q/s ({seconds:.3f} s) {stats}")
        reference = scores if reference is None else reference
    probed = Scorer(lm, task).backend.logit_reads
    print(f"logit reads on this transformers: {probed}")
    paths = [path for path in ("rows", "head", "full") if path != "rows" or probed == "rows"]
    runs = {path: [time_scorer(lm, task, demos, queries, batch_tokens=sizes[0], logit_reads=path)] for path in paths}
    for path in paths:
        runs[path].append(time_scorer(lm, task, demos, queries, batch_tokens=sizes[0], logit_reads=path))
    timings = {path: min(seconds for _, seconds, _ in timed) for path, timed in runs.items()}
    for path, seconds in timings.items():
        differs = max(float(np.abs(scores - reference).max()) for scores, _, _ in runs[path])
        print(
            f"logit reads {path}: {len(queries) / seconds:,.0f} q/s, {timings['full'] / seconds:.2f}x full logits;"
            f" scores differ from the probed path's by at most {differs:.2e}"
        )
    encoder = Scorer(lm, task).encoder
    for batch in [int(b) for b in naive_batches.split(",")]:
        time_naive(lm, encoder, demos, queries[:batch], batch, None)  # warm-up at this batch
        naive, row = time_naive(lm, encoder, demos, queries, batch, None)
        agree = float(np.mean(naive.argmax(1) == reference.argmax(1)))
        print(f"naive batch={batch}: {row.queries_per_s:,.0f} q/s ({row.seconds:.3f} s), agreement {agree:.4f}")
    activities = [torch.profiler.ProfilerActivity.CPU]
    if lm.device.type == "cuda":
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=activities) as profile:
        time_scorer(lm, task, demos, queries, batch_tokens=sizes[0])
    table = profile.key_averages()
    print(table.table(sort_by="self_cpu_time_total", row_limit=25))
    if lm.device.type == "cuda":
        print(table.table(sort_by="self_cuda_time_total", row_limit=15))


if __name__ == "__main__":
    typer.run(main)
