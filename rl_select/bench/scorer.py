"""Scorer throughput: the naive Hugging Face loop, rl-select's scorer and llama.cpp, measured in one run.

Shape: the 4-shot SST-2 setting (k demonstrations drawn from the sst2 pool, 256 dev queries). Every path scores
the same token sequences. The naive loop (plain transformers with its default attention: one padded forward per
prompt, full logits) runs in fp32 on a CPU and bf16 on CUDA; our scorer runs at that dtype too (predictions must
be identical), at the dtype ``--dtype auto`` picks, and on a CPU in both fp32 and bf16; llama.cpp reads the same
GGUF file where ``llama-cpp-python`` is installed. Each timed run uses a fresh scorer with caches off, so the
demonstration prefix is computed inside the timing. Compute rates (2 × non-embedding parameters per real token,
over the run's wall time) are set against the GEMM peak measured in the same run at the model's linear shapes,
per dtype.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rl_select.bench.llama_cpp import LlamaCppScorer, llama_cpp_available
from rl_select.bench.records import EnvThroughput, ScorerBench, TimingRow
from rl_select.observation import FeatureConfig
from rl_select.provenance import cpu_flags, cpu_model
from rl_select.resources import Resources
from rl_select.scoring import LanguageModel, Scorer, ScoringConfig, load_language_model, naive_log_scores
from rl_select.scoring.model import DEFAULT_MODEL_ALIASES, default_gguf_path, resolve_device
from rl_select.selectors import RandomSelector
from rl_select.tasks.task import Task

ProgressFactory = Callable[[str, int], Callable[[int], None]]


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def time_scorer(
    lm: LanguageModel,
    task: Task,
    demos: list,
    queries: list,
    progress: Callable[[int], None] | None = None,
    *,
    batch_tokens: int | None = None,
    logit_reads: str | None = None,
) -> tuple[np.ndarray, float, dict]:
    """One timed run of a fresh scorer, caches off: its log-scores, wall seconds and stats.

    ``batch_tokens`` and ``logit_reads`` (``rows``, ``head`` or ``full``: see :class:`TorchBackend`) override what
    the scorer would pick.
    """
    scorer = Scorer(lm, task, ScoringConfig(calibrate=False, batch_tokens=batch_tokens))
    if logit_reads is not None:
        scorer.backend.logit_reads = logit_reads
    _sync(lm)
    started = time.perf_counter()
    result = scorer.score(demos, queries, use_cache=False, progress=progress)
    _sync(lm)
    return result.log_scores, time.perf_counter() - started, scorer.stats.to_dict()


def _sync(lm: LanguageModel) -> None:
    if lm.device.type == "cuda":
        torch.cuda.synchronize(lm.device)


def forward_flops(lm: LanguageModel, tokens: int) -> float:
    """Matmul FLOPs of ``tokens`` tokens through the transformer body (2 × non-embedding parameters per token)."""
    embedding = lm.model.get_input_embeddings().weight.numel()
    return 2.0 * (sum(p.numel() for p in lm.model.parameters()) - embedding) * tokens


def env_reward_throughput(
    lm: LanguageModel,
    task: Task,
    *,
    n_envs: int,
    steps: int,
    batch_prefixes: bool,
    seed: int = 0,
    reward_rows: int = 64,
) -> EnvThroughput:
    """Rewards/s of the vectorised env (``reward_rows`` dev queries per reward), random valid actions."""
    from rl_select.envs import DemoSelectionEnv, EnvConfig, FeatureBank  # deferred: loads gymnasium
    from rl_select.envs.vector import DemoSelectionVecEnv  # deferred: loads stable-baselines3 and gymnasium

    resources = Resources(task, lm=lm, scoring=ScoringConfig(batch_prefixes=batch_prefixes))
    m = min(16, len(task.train))
    config = EnvConfig(
        k=min(4, m - 1), num_candidates=m, reward_rows=reward_rows, features=FeatureConfig(llm_features=False)
    )
    bank = FeatureBank(resources, config.features)
    envs = [DemoSelectionEnv(task, config=config, resources=resources, features=bank) for _ in range(n_envs)]
    vec = DemoSelectionVecEnv(envs, seed=seed)
    rng = np.random.default_rng(seed)
    vec.reset()
    scorer = resources.scorer
    before = replace(scorer.stats)
    _sync(lm)
    started = time.perf_counter()
    for _ in range(steps):
        masks = vec.action_masks()
        vec.step(np.array([rng.choice(np.flatnonzero(m)) for m in masks]))
    _sync(lm)
    seconds = time.perf_counter() - started
    after = scorer.stats
    return EnvThroughput(
        batch_prefixes=batch_prefixes,
        n_envs=n_envs,
        steps=steps,
        reward_rows=reward_rows,
        batch_tokens=scorer.batch_tokens,
        seconds=seconds,
        rewards_per_s=n_envs * steps / seconds,
        forwards=after.forwards - before.forwards,
        tokens=after.tokens - before.tokens,
        reward_cache_hit_rate=scorer.rewards.hit_rate,
    )


def run_scorer_benchmark(
    task: Task,
    *,
    model: str | None = None,
    device: str = "auto",
    num_queries: int = 256,
    k: int = 4,
    seed: int = 0,
    naive_batch: int | None = None,
    env_steps: int = 0,
    env_envs: int | None = None,
    llama_cpp: bool = True,
    repeats: int = 3,
    progress: ProgressFactory | None = None,
) -> ScorerBench:
    """Run the naive loop, our scorer and (on a CPU, when installed) llama.cpp on the same prompts.

    Our scorer runs at the naive loop's dtype (predictions must be identical), at the dtype ``--dtype auto``
    picks here (with its reason), and on a CPU in both float32 and bfloat16. Each path's compute rate is set
    against the GEMM peak measured in this run at the model's linear shapes in its dtype. Our paths, llama.cpp
    and the GEMM peaks are timed ``repeats`` times, interleaved, and their medians reported (the naive loop,
    about 30× longer, once). With ``env_steps``, the vectorised env's reward computation is timed too.
    """
    torch_device = resolve_device(device)
    naive_dtype = torch.bfloat16 if torch_device.type == "cuda" else torch.float32
    auto, models = _models_by_dtype(model, torch_device, naive_dtype)
    lm = models[naive_dtype]
    naive_batch = naive_batch or (256 if torch_device.type == "cuda" else 16)
    rng = np.random.default_rng(seed)
    demos = [task.train[i] for i in RandomSelector().select(task, None, k, rng)]
    queries = task.sample("dev", num_queries, seed=seed)
    warm_demos = [task.train[i] for i in RandomSelector().select(task, None, k, rng)]
    scorer = Scorer(lm, task)
    encoder = scorer.encoder
    # the naive loop is plain transformers: its default attention, not rl-select's
    plain = load_language_model(model, device=str(torch_device), dtype=_name(naive_dtype), attn_implementation="sdpa")
    # warm-up: kernel selection and allocator growth happen outside the timings
    for model_at_dtype in models.values():
        time_scorer(model_at_dtype, task, warm_demos, queries[:8], None)
    naive_log_scores(plain, encoder, warm_demos, queries[:8], max_tokens=lm.max_positions, batch_size=naive_batch)
    naive, naive_run = time_naive(plain, encoder, demos, queries, naive_batch, progress)
    ours, scores, peak_samples = _time_ours_repeated(models, task, demos, queries, naive, repeats, progress)
    runs = [naive_run, *ours]
    for run in ours:
        run.default = run.dtype == _name(auto.dtype)
    gguf = _gguf_file(model)
    if llama_cpp and torch_device.type == "cpu" and gguf is not None and llama_cpp_available():
        runs.append(_time_llama_cpp(gguf, encoder, demos, queries, lm.max_positions, naive, repeats, progress))
    peaks = {dtype: float(np.median(samples)) for dtype, samples in peak_samples.items()}
    _rate_runs(runs, lm, peaks)
    n_envs = env_envs or (16 if torch_device.type == "cuda" else 4)
    pool = task.subset_pool(512, seed=seed)
    environment = [
        env_reward_throughput(auto, pool, n_envs=n_envs, steps=env_steps, batch_prefixes=batched, seed=seed)
        for batched in ((False, True) if env_steps else ())
    ]
    memory = torch.cuda.max_memory_allocated(torch_device) / 2**30 if torch_device.type == "cuda" else None
    return ScorerBench(
        task=task.name,
        k=k,
        queries=len(queries),
        seed=seed,
        device=str(torch_device),
        cpu=cpu_model(),
        cpu_flags=cpu_flags(),
        naive_batch=naive_batch,
        batch_tokens=scorer.batch_tokens,
        prefix_tokens=len(encoder.prefix(demos)),
        mean_query_tokens=float(np.mean([len(encoder.query(q)) for q in queries])),
        label_tokens=[len(t) for t in encoder.label_tokens],
        runs=runs,
        **_summary(runs, scores[naive_dtype].argmax(1) == naive.argmax(1)),
        gemm_peak_tflops=peaks,
        gemm_peak_samples=peak_samples,
        repeats=repeats,
        dtype_reason=auto.dtype_reason,
        gpu_max_memory_gb=memory,
        env=environment,
        model=auto.info(),
    )


def _models_by_dtype(
    model: str | None, device: torch.device, naive_dtype: torch.dtype
) -> tuple[LanguageModel, dict[torch.dtype, LanguageModel]]:
    """The model as ``--dtype auto`` loads it, and one per dtype timed (naive's, auto's, fp32 and bf16 on a CPU)."""
    auto = load_language_model(model, device=str(device), dtype="auto")
    extra = [torch.float32, torch.bfloat16] if device.type == "cpu" else []
    models = {
        dtype: auto if dtype == auto.dtype else load_language_model(model, device=str(device), dtype=_name(dtype))
        for dtype in dict.fromkeys([naive_dtype, auto.dtype, *extra])
    }
    return auto, models


def _gguf_file(model: str | None) -> Path | None:
    """The GGUF file the model was read from (the embedded default or a ``.gguf`` path), else None."""
    if model is None or model in DEFAULT_MODEL_ALIASES:
        return default_gguf_path()
    path = Path(model).expanduser()
    return path if path.suffix == ".gguf" and path.is_file() else None


def gemm_peak(lm: LanguageModel, dtype: torch.dtype, rows: int, min_seconds: float = 0.2) -> float:
    """TFLOP/s of torch matmuls at the model's linear shapes (``rows`` tokens), weighted as one forward has them.

    Every distinct ``(in, out)`` shape of the model's linear layers but the LM head is timed; the peak is the
    FLOPs of one pass through all of them (each as often as the model has it) over the time those matmuls
    take: the rate a forward would reach if nothing but its GEMMs ran.
    """
    head = lm.model.get_output_embeddings()
    shapes: dict[tuple[int, int], int] = defaultdict(int)
    for module in lm.model.modules():
        if isinstance(module, torch.nn.Linear) and module is not head:
            shapes[(module.in_features, module.out_features)] += 1
    flops = seconds = 0.0
    with torch.inference_mode():
        for (width_in, width_out), count in shapes.items():
            x = torch.randn(rows, width_in, dtype=dtype, device=lm.device)
            weight = torch.randn(width_out, width_in, dtype=dtype, device=lm.device)
            torch.nn.functional.linear(x, weight)
            repeats, started = 0, time.perf_counter()
            while time.perf_counter() - started < min_seconds or repeats < 3:
                torch.nn.functional.linear(x, weight)
                repeats += 1
            _sync(lm)
            seconds += count * (time.perf_counter() - started) / repeats
            flops += count * 2.0 * rows * width_in * width_out
    return flops / seconds / 1e12


def time_naive(
    lm: Any, encoder: Any, demos: list, queries: list, batch: int, progress: ProgressFactory | None
) -> tuple[np.ndarray, TimingRow]:
    """The naive loop's scores and its timing row."""
    advance = progress("naive HF loop", len(queries)) if progress else None
    _sync(lm)
    started = time.perf_counter()
    naive = naive_log_scores(
        lm, encoder, demos, queries, max_tokens=lm.max_positions, batch_size=batch, progress=advance
    )
    _sync(lm)
    seconds = time.perf_counter() - started
    return naive, TimingRow("naive HF", _name(lm.dtype), seconds, len(queries) / seconds, agreement_with_naive=1.0)


def _time_ours_repeated(
    models: dict[torch.dtype, LanguageModel],
    task: Task,
    demos: list,
    queries: list,
    naive: np.ndarray,
    repeats: int,
    progress: ProgressFactory | None,
) -> tuple[list[TimingRow], dict[torch.dtype, np.ndarray], dict[str, list[float]]]:
    """Our rows per dtype, their scores, and GEMM-peak samples, all taken ``repeats`` times interleaved.

    Interleaving means a slow spell of a shared machine hits every path and the GEMM peak alike.
    """
    timings: dict[torch.dtype, list[tuple[np.ndarray, float, dict]]] = defaultdict(list)
    peak_samples: dict[str, list[float]] = defaultdict(list)
    for repeat in range(repeats):
        for dtype, lm in models.items():
            peak_samples[_name(dtype)].append(gemm_peak(lm, dtype, Scorer(lm, task).batch_tokens))
            label = f"rl-select ({_name(dtype)}) {repeat + 1}/{repeats}"
            advance = progress(label, len(queries)) if progress else None
            timings[dtype].append(time_scorer(lm, task, demos, queries, advance))
    rows, scores = [], {}
    for dtype, lm in models.items():
        row, scores[dtype] = _ours_row(lm, timings[dtype], len(queries), naive)
        rows.append(row)
    return rows, scores, dict(peak_samples)


def _ours_row(
    lm: Any, samples: list[tuple[np.ndarray, float, dict]], num_queries: int, naive: np.ndarray
) -> tuple[TimingRow, np.ndarray]:
    """Our scorer's timing row at one dtype (the median of its repeats), and its scores."""
    seconds = [elapsed for _, elapsed, _ in samples]
    ours, _, stats = samples[0]
    row = TimingRow(
        path="rl-select",
        dtype=_name(lm.dtype),
        attention=lm.info()["attention"],
        seconds=float(np.median(seconds)),
        seconds_each=seconds,
        queries_per_s=num_queries / float(np.median(seconds)),
        agreement_with_naive=float((ours.argmax(1) == naive.argmax(1)).mean()),
        max_abs_logprob_diff=float(np.abs(ours - naive).max()),
        tokens=stats["tokens"],
        stats=stats,
    )
    return row, ours


def _time_llama_cpp(
    gguf: Path,
    encoder: Any,
    demos: list,
    queries: list,
    max_tokens: int,
    naive: np.ndarray,
    repeats: int,
    progress: ProgressFactory | None,
) -> TimingRow:
    """llama.cpp's timing row: a warm-up pass, then the median of ``repeats`` timed runs."""
    engine = LlamaCppScorer(gguf, threads=torch.get_num_threads())
    seconds = []
    try:
        engine.log_scores(encoder, demos, queries[:8], max_tokens)
        for repeat in range(repeats):
            advance = progress(f"llama.cpp {repeat + 1}/{repeats}", len(queries)) if progress else None
            started = time.perf_counter()
            scores = engine.log_scores(encoder, demos, queries, max_tokens, advance)
            seconds.append(time.perf_counter() - started)
    finally:
        engine.close()
    tokens = len(encoder.prefix(demos)) + sum(len(encoder.query(q)) for q in queries)
    return TimingRow(
        path="llama.cpp",
        dtype=f"gguf ({gguf.name})",
        seconds=float(np.median(seconds)),
        seconds_each=seconds,
        queries_per_s=len(queries) / float(np.median(seconds)),
        agreement_with_naive=float((scores.argmax(1) == naive.argmax(1)).mean()),
        max_abs_logprob_diff=float(np.abs(scores - naive).max()),
        tokens=tokens,
    )


def _rate_runs(runs: list[TimingRow], lm: Any, peaks: dict[str, float]) -> None:
    """Ratios to the naive loop; compute rates over each run's wall time and their share of the GEMM peak."""
    for run in runs:
        run.ratio_vs_naive = run.queries_per_s / runs[0].queries_per_s
    for run in runs[1:]:
        run.achieved_tflops = forward_flops(lm, run.tokens or 0) / run.seconds / 1e12
        peak = peaks.get(run.dtype)
        run.share_of_gemm_peak = run.achieved_tflops / peak if peak else None


def _summary(runs: list[TimingRow], same_prediction: np.ndarray) -> dict[str, object]:
    """The headline numbers (fields of :class:`ScorerBench`): the default dtype's ratio, agreement across dtypes."""
    default_run = next(r for r in runs if r.default)
    ours = [r for r in runs if r.path == "rl-select"]
    return {
        "ratio": default_run.ratio_vs_naive,
        "ratio_same_dtype": next(r for r in ours if r.dtype == runs[0].dtype).ratio_vs_naive,
        "identical_predictions_same_dtype": bool(same_prediction.all()),
        "mismatches_same_dtype": int((~same_prediction).sum()),
        "agreement_across_dtypes": {r.dtype: r.agreement_with_naive for r in ours if r.dtype != runs[0].dtype},
        "default_dtype": default_run.dtype,
        "default_share_of_gemm_peak": default_run.share_of_gemm_peak,
        "default_vs_llama_cpp": next(
            (default_run.queries_per_s / r.queries_per_s for r in runs if r.path == "llama.cpp"), None
        ),
    }
