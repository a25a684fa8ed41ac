"""Which dtype a CPU scores fastest in, measured once per machine rather than guessed from CPU flags.

Flags mislead: an Intel Xeon with AVX512-BF16 but no AMX ran oneDNN's bf16 GEMM at 146 GFLOP/s against 241 for
fp32, while an AMD EPYC (Zen 5) with the same flags ran bf16 matmuls 4.5× faster than fp32. So on first use on a
machine, ``--dtype auto`` times the model's own forward (its first two layers, at the scorer's batch shape:
16 rows of 32 tokens) in float32 and bfloat16, keeps the faster, and caches the verdict keyed by CPU model, usable
core count, torch version and model under the cache directory. Every result records the dtype and why it was chosen.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from rl_select.paths import cache_dir, file_lock
from rl_select.provenance import cpu_model
from rl_select.types import JsonObject

CPU_CANDIDATES = (torch.float32, torch.bfloat16)
"""The dtypes ``auto`` chooses between on a CPU."""

PROBE_LAYERS = 2
PROBE_ROWS, PROBE_TOKENS = 16, 32
"""The timed forward: the model's first two layers (no LM head) over 16 rows of 32 tokens (a CPU scoring batch)."""


@dataclass(frozen=True)
class DtypeChoice:
    """A dtype and why it was chosen (recorded in every result's provenance)."""

    dtype: torch.dtype
    reason: str


def machine_key(model: str) -> str:
    """What a verdict is valid for: CPU model, usable cores, torch version, and the model (its shapes matter)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu_model()} | {cores} cores | torch {torch.__version__} | model {model}"


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def choose_fastest(seconds: dict[torch.dtype, float], *, cached: bool = False) -> DtypeChoice:
    """The dtype of the fastest forward, with a reason that states the measured speed-up."""
    fastest = min(seconds, key=seconds.__getitem__)
    slowest = max(seconds, key=seconds.__getitem__)
    times = ", ".join(f"{_name(d)} {seconds[d] * 1e3:.1f} ms" for d in seconds)
    ratio = seconds[slowest] / seconds[fastest] if seconds[fastest] > 0 else float("inf")
    when = "measured earlier on this machine (cached verdict)" if cached else "measured now"
    return DtypeChoice(
        fastest, f"auto: {_name(fastest)} forward {ratio:.2f}× faster than {_name(slowest)} ({times}; {when})"
    )


def verdict_file() -> Path:
    """Where measured verdicts are kept (one JSON object keyed by :func:`machine_key`)."""
    return cache_dir("dtype") / "cpu_verdicts.json"


def cpu_dtype(measure: Callable[[torch.dtype], float], model: str, path: Path | None = None) -> DtypeChoice:
    """The faster of float32 and bfloat16 on this CPU: the cached verdict, else ``measure`` each and cache it.

    Args:
        measure: Seconds of one representative forward in a dtype.
        model: The model's fingerprint (part of the verdict's key).
        path: The verdict file (default :func:`verdict_file`).
    """
    path = path or verdict_file()
    key = machine_key(model)
    with file_lock(path.with_suffix(".lock")):
        verdicts = _read(path)
        entry = verdicts.get(key)
        if isinstance(entry, dict) and isinstance(entry.get("seconds"), dict):
            try:
                seconds = {getattr(torch, name): float(value) for name, value in entry["seconds"].items()}
                return choose_fastest(seconds, cached=True)
            except (AttributeError, TypeError, ValueError):
                pass  # an unreadable entry is measured again
        seconds = {dtype: measure(dtype) for dtype in CPU_CANDIDATES}
        verdicts[key] = {
            "seconds": {_name(d): s for d, s in seconds.items()},
            "measured_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_suffix(".tmp")
        staging.write_text(json.dumps(verdicts, indent=2))
        staging.replace(path)
    return choose_fastest(seconds)


def _read(path: Path) -> JsonObject:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def forward_timer(model: torch.nn.Module, repeats: int = 5) -> Callable[[torch.dtype], float]:
    """A ``measure`` for :func:`cpu_dtype`: the best of ``repeats`` timed forwards of ``model``'s probe copy."""

    def measure(dtype: torch.dtype) -> float:
        probe = _probe_copy(model).to(dtype)
        body = getattr(probe, "base_model", probe)  # the layers without the LM head, which scoring mostly skips
        vocab = int(getattr(probe.config, "vocab_size", 1000))
        ids = torch.randint(0, min(vocab, 1000), (PROBE_ROWS, PROBE_TOKENS), generator=torch.Generator().manual_seed(0))
        best = float("inf")
        with torch.inference_mode():
            for attempt in range(repeats + 1):
                started = time.perf_counter()
                body(input_ids=ids, use_cache=False)
                if attempt:  # the first call warms up kernels and allocators
                    best = min(best, time.perf_counter() - started)
        return best

    return measure


def _probe_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A copy of ``model`` with only its first layers (the whole model when its layer stack is not found)."""
    body = getattr(model, "model", None)
    layers = getattr(body, "layers", None)
    if not isinstance(layers, torch.nn.ModuleList) or len(layers) <= PROBE_LAYERS:
        return copy.deepcopy(model)
    body.layers = torch.nn.ModuleList(list(layers)[:PROBE_LAYERS])
    try:
        return copy.deepcopy(model)
    finally:
        body.layers = layers
