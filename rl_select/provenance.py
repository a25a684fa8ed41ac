"""What produced a result: command, commit, versions, hardware, time. Written into every result file."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rl_select._version import __version__

SOURCE_ROOT = Path(__file__).resolve().parent.parent


def command_line() -> str:
    """The command as typed: ``rl-select …`` for the console script, else the full argv."""
    argv = list(sys.argv)
    if argv and Path(argv[0]).name in ("rl-select", "__main__.py"):
        argv[0] = "rl-select"
    return shlex.join(argv)


def git_state(root: Path = SOURCE_ROOT) -> dict[str, Any]:
    """Commit of the source tree and whether it has uncommitted changes (``$RL_SELECT_COMMIT`` overrides)."""
    if os.environ.get("RL_SELECT_COMMIT"):
        return {"commit": os.environ["RL_SELECT_COMMIT"], "dirty": None}
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        return {"commit": commit, "dirty": bool(status.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def cpu_model() -> str:
    """The CPU's model name (Linux), else ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")
"""The CPU flags that decide matmul speed per dtype (recorded with every benchmark)."""


def cpu_flags() -> list[str]:
    """Which of :data:`SIMD_FLAGS` this CPU reports (Linux; empty elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                present = set(line.split(":", 1)[1].split())
                return [flag for flag in SIMD_FLAGS if flag in present]
    except OSError:
        pass
    return []


def hardware() -> dict[str, Any]:
    """CPU, core count, memory and GPU of this machine."""
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_flags": cpu_flags(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
    }
    try:
        pages = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        info["memory_gb"] = round(pages / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        pass
    if "torch" in sys.modules:
        import torch

        info["torch"] = torch.__version__
        info["threads"] = torch.get_num_threads()
        if torch.cuda.is_available():
            props = torch.cuda.get_device_properties(0)
            info["gpu"] = props.name
            info["gpu_count"] = torch.cuda.device_count()
            info["gpu_memory_gb"] = round(props.total_memory / 2**30, 1)
    return info


def _cpu_times() -> tuple[int, int] | None:
    """(steal, total) jiffies of all CPUs since boot (Linux), else None."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()
    except (OSError, IndexError):
        return None
    if fields[0] != "cpu" or len(fields) < 9:
        return None
    values = [int(v) for v in fields[1:]]
    return values[7], sum(values[:8])  # user nice system idle iowait irq softirq steal (guest is in user)


def cpu_steal_meter() -> Callable[[], float | None]:
    """Start measuring the share of CPU time a hypervisor took from this VM; call the result to read it.

    Benchmarks record it: on a shared VM, timings taken while a neighbour steals cycles are not comparable.
    """
    start = _cpu_times()

    def share() -> float | None:
        end = _cpu_times()
        if start is None or end is None or end[1] <= start[1]:
            return None
        return round((end[0] - start[0]) / (end[1] - start[1]), 4)

    return share


def provenance(**extra: Any) -> dict[str, Any]:
    """Command, commit, package versions, hardware and UTC time, plus ``extra`` (seeds, model, ...)."""
    versions = {"rl_select": __version__, "python": platform.python_version()}
    for name in ("transformers", "stable_baselines3", "gymnasium", "ray"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = getattr(module, "__version__", "?")
    return {
        "command": command_line(),
        **git_state(),
        "versions": versions,
        "hardware": hardware(),
        "time_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        **extra,
    }


def write_json(path: Path, payload: Any) -> Path:
    """Write ``payload`` as indented JSON atomically (a crash never leaves half a file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=_jsonable) + "\n")
    tmp.replace(path)
    return path


def _jsonable(value: Any) -> Any:
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def provenance_markdown(record: dict[str, Any]) -> str:
    """A short markdown block naming command, commit, model, seeds and hardware."""
    hw = record.get("hardware", {})
    device = hw.get("gpu") or f"{hw.get('cpu', '?')} ({hw.get('usable_cpus', '?')} cores)"
    model = record.get("model") or {}
    lines = [
        f"- command: `{record.get('command', '?')}`",
        f"- commit: `{record.get('commit')}`" + (" (uncommitted changes)" if record.get("dirty") else ""),
        f"- model: {model.get('name', '?')} ({model.get('dtype', '?')} on {model.get('device', '?')})"
        if model
        else "- model: none",
        f"- seeds: {record.get('seeds', '?')}",
        f"- hardware: {device}",
        f"- time: {record.get('time_utc', '?')}",
    ]
    if record.get("cpu_steal_share") is not None:
        lines.append(f"- CPU time taken by the hypervisor (steal) during the run: {record['cpu_steal_share']:.1%}")
    return "\n".join(lines) + "\n"
