"""Scorer throughput: the naive Hugging Face loop against rl-select's scorer, measured in one run.

Shape: the 4-shot SST-2 setting (k demonstrations drawn from the sst2 pool, 256 dev queries). Both paths
score the same token sequences. The naive loop runs in fp32 on CPU and bf16 on CUDA; our scorer runs at that
dtype too (predictions must be identical) and at its own default dtype when that differs (agreement reported).
Each timed run uses a fresh scorer with caches off, so the demonstration prefix is computed inside the timing.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from rl_select.scoring import LanguageModel, Scorer, ScoringConfig, load_language_model, naive_log_scores
from rl_select.scoring.model import resolve_device, resolve_dtype
from rl_select.selectors import RandomSelector
from rl_select.tasks.task import Task

ProgressFactory = Callable[[str, int], Callable[[int], None]]


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _time_ours(
    lm: LanguageModel, task: Task, demos: list, queries: list, progress: Callable[[int], None] | None
) -> tuple[np.ndarray, float, dict]:
    scorer = Scorer(lm, task, ScoringConfig(calibrate=False))
    _sync(lm)
    started = time.perf_counter()
    result = scorer.score(demos, queries, use_cache=False, progress=progress)
    _sync(lm)
    return result.log_scores, time.perf_counter() - started, scorer.stats.to_dict()


def _sync(lm: LanguageModel) -> None:
    if lm.device.type == "cuda":
        torch.cuda.synchronize(lm.device)


BF16_PEAK_TFLOPS = {
    "H100 SXM": 989.0,
    "H100 80GB HBM3": 989.0,
    "H100 PCIe": 756.0,
    "H100 NVL": 835.0,
    "H200": 989.0,
    "A100": 312.0,
    "L4": 121.0,
}
"""Dense bf16 tensor-core peaks (vendor data sheets, without sparsity), matched against the device name."""


def bf16_peak_tflops(device_name: str) -> float | None:
    """The dense bf16 peak of a known GPU, else None."""
    for name, peak in BF16_PEAK_TFLOPS.items():
        if all(part in device_name for part in name.split()):
            return peak
    return None


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
) -> dict[str, Any]:
    """Rewards/s of the vectorised env (``reward_rows`` dev queries per reward), random valid actions."""
    from rl_select.envs import DemoSelectionEnv, EnvConfig, FeatureBank
    from rl_select.envs.vector import DemoSelectionVecEnv
    from rl_select.observation import FeatureConfig
    from rl_select.resources import Resources

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
    before = scorer.stats.to_dict()
    _sync(lm)
    started = time.perf_counter()
    for _ in range(steps):
        masks = vec.action_masks()
        vec.step(np.array([rng.choice(np.flatnonzero(m)) for m in masks]))
    _sync(lm)
    seconds = time.perf_counter() - started
    after = scorer.stats.to_dict()
    return {
        "batch_prefixes": batch_prefixes,
        "n_envs": n_envs,
        "steps": steps,
        "reward_rows": reward_rows,
        "batch_tokens": scorer.batch_tokens,
        "seconds": seconds,
        "rewards_per_s": n_envs * steps / seconds,
        "forwards": after["forwards"] - before["forwards"],
        "tokens": after["tokens"] - before["tokens"],
        "reward_cache_hit_rate": scorer.rewards.hit_rate,
    }


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
    progress: ProgressFactory | None = None,
) -> dict[str, Any]:
    """Run the naive loop and our scorer on the same prompts; return timings, ratios and agreement.

    With ``env_steps``, also time the vectorised env's reward computation (64 dev queries per reward) with
    prefixes scored one at a time and batched.

    Our scorer runs at the naive loop's dtype (predictions must be identical), at its own default dtype, and
    on CPU also in bf16, so the agreement across dtypes is always reported.
    """
    torch_device = resolve_device(device)
    naive_dtype = torch.bfloat16 if torch_device.type == "cuda" else torch.float32
    default_dtype = resolve_dtype("auto", torch_device)
    our_dtypes = list(dict.fromkeys([naive_dtype, default_dtype, torch.bfloat16]))
    models = {
        dtype: load_language_model(model, device=str(torch_device), dtype=_dtype_name(dtype)) for dtype in our_dtypes
    }
    lm = models[naive_dtype]
    naive_batch = naive_batch or (256 if torch_device.type == "cuda" else 16)
    rng = np.random.default_rng(seed)
    demos = [task.train[i] for i in RandomSelector().select(task, None, k, rng)]
    queries = task.sample("dev", num_queries, seed=seed)
    warm_demos = [task.train[i] for i in RandomSelector().select(task, None, k, rng)]
    encoder = Scorer(lm, task).encoder
    # warm-up: kernel selection and allocator growth happen outside the timings
    naive_log_scores(lm, encoder, warm_demos, queries[:8], max_tokens=lm.max_positions, batch_size=naive_batch)
    for model_at_dtype in models.values():
        _time_ours(model_at_dtype, task, warm_demos, queries[:8], None)
    naive, naive_run = _time_naive(lm, encoder, demos, queries, naive_batch, progress)
    runs, scores = [naive_run], {}
    for dtype, model_at_dtype in models.items():
        run, scores[dtype] = _time_dtype(model_at_dtype, task, demos, queries, naive, progress)
        run["default"] = dtype == default_dtype
        runs.append(run)
    peak = _rate_runs(runs, lm, torch_device)
    environment = [
        env_reward_throughput(
            models[default_dtype],
            task.subset_pool(512, seed=seed),
            n_envs=env_envs or (16 if torch_device.type == "cuda" else 4),
            steps=env_steps,
            batch_prefixes=batched,
            seed=seed,
        )
        for batched in ((False, True) if env_steps else ())
    ]
    summary = _summary(runs, scores[naive_dtype].argmax(1) == naive.argmax(1))
    return {
        "task": task.name,
        "k": k,
        "queries": len(queries),
        "seed": seed,
        "device": str(torch_device),
        "naive_batch": naive_batch,
        "prefix_tokens": len(encoder.prefix(demos)),
        "mean_query_tokens": float(np.mean([len(encoder.query(q)) for q in queries])),
        "label_tokens": [len(t) for t in encoder.label_tokens],
        "runs": runs,
        **summary,
        "bf16_peak_tflops": peak,
        "gpu_max_memory_gb": torch.cuda.max_memory_allocated(torch_device) / 2**30
        if torch_device.type == "cuda"
        else None,
        "env": environment,
        "model": models[default_dtype].info(),
    }


def _time_naive(
    lm: Any, encoder: Any, demos: list, queries: list, batch: int, progress: ProgressFactory | None
) -> tuple[np.ndarray, dict[str, Any]]:
    """The naive loop's scores and its timing row."""
    advance = progress("naive HF loop", len(queries)) if progress else None
    _sync(lm)
    started = time.perf_counter()
    naive = naive_log_scores(
        lm, encoder, demos, queries, max_tokens=lm.max_positions, batch_size=batch, progress=advance
    )
    _sync(lm)
    seconds = time.perf_counter() - started
    row = {
        "path": "naive HF",
        "dtype": _dtype_name(lm.dtype),
        "seconds": seconds,
        "queries_per_s": len(queries) / seconds,
        "agreement_with_naive": 1.0,
        "default": False,
    }
    return naive, row


def _time_dtype(
    lm: Any, task: Task, demos: list, queries: list, naive: np.ndarray, progress: ProgressFactory | None
) -> tuple[dict[str, Any], np.ndarray]:
    """Our scorer's timing row at one dtype, and its scores."""
    label = f"rl-select ({_dtype_name(lm.dtype)})"
    ours, seconds, stats = _time_ours(lm, task, demos, queries, progress(label, len(queries)) if progress else None)
    row = {
        "path": "rl-select",
        "dtype": _dtype_name(lm.dtype),
        "seconds": seconds,
        "queries_per_s": len(queries) / seconds,
        "agreement_with_naive": float((ours.argmax(1) == naive.argmax(1)).mean()),
        "max_abs_logprob_diff": float(np.abs(ours - naive).max()),
        "stats": stats,
    }
    return row, ours


def _rate_runs(runs: list[dict[str, Any]], lm: Any, device: torch.device) -> float | None:
    """Ratios to the naive loop, compute rates and (on CUDA) the share of the bf16 peak; returns the peak."""
    peak = bf16_peak_tflops(torch.cuda.get_device_name(device)) if device.type == "cuda" else None
    for run in runs:
        run["ratio_vs_naive"] = run["queries_per_s"] / runs[0]["queries_per_s"]
    for run in runs[1:]:
        run["achieved_tflops"] = forward_flops(lm, run["stats"]["tokens"]) / run["stats"]["seconds"] / 1e12
        run["share_of_bf16_peak"] = run["achieved_tflops"] / peak if peak and run["dtype"] == "bfloat16" else None
    return peak


def _summary(runs: list[dict[str, Any]], same_prediction: np.ndarray) -> dict[str, Any]:
    """The headline numbers: the default dtype's ratio, agreement at equal and other dtypes."""
    default_run = next(r for r in runs if r["default"])
    return {
        "ratio": default_run["ratio_vs_naive"],
        "ratio_same_dtype": next(r for r in runs[1:] if r["dtype"] == runs[0]["dtype"])["ratio_vs_naive"],
        "identical_predictions_same_dtype": bool(same_prediction.all()),
        "mismatches_same_dtype": int((~same_prediction).sum()),
        "agreement_across_dtypes": {
            r["dtype"]: r["agreement_with_naive"] for r in runs[1:] if r["dtype"] != runs[0]["dtype"]
        },
        "default_dtype": default_run["dtype"],
    }
