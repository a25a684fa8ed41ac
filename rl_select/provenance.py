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
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from rl_select._version import __version__
from rl_select.errors import ArtifactError, ConfigError
from rl_select.types import JsonObject

SOURCE_ROOT = Path(__file__).resolve().parent.parent


def command_line() -> str:
    """The command as typed: ``rl-select …`` for the console script, else the full argv."""
    argv = list(sys.argv)
    if argv and Path(argv[0]).name in ("rl-select", "__main__.py"):
        argv[0] = "rl-select"
    return shlex.join(argv)


RESULT_DIRS = ("experiments/results", "experiments/policies")
"""Committed outputs: a command rewriting its own earlier results there does not make the source tree dirty."""


def git_state(root: Path = SOURCE_ROOT) -> tuple[str | None, bool | None]:
    """Commit of the source tree and whether it has uncommitted changes outside :data:`RESULT_DIRS`.

    ``$RL_SELECT_COMMIT`` overrides both (the commit given, dirtiness unknown).
    """
    if os.environ.get("RL_SELECT_COMMIT"):
        return os.environ["RL_SELECT_COMMIT"], None
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            [
                "git",
                "status",
                "--porcelain",
                "--untracked-files=no",
                "--",
                ".",
                *(f":(exclude){d}" for d in RESULT_DIRS),
            ],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        return commit, bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        return None, None


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


@dataclass(frozen=True)
class Hardware:
    """The machine a result came from (torch's fields only when torch was loaded, GPU fields only with a GPU)."""

    platform: str
    cpu: str
    cpu_flags: list[str]
    cpu_count: int | None
    usable_cpus: int | None
    memory_gb: float | None = None
    torch: str | None = None
    threads: int | None = None
    gpu: str | None = None
    gpu_count: int | None = None
    gpu_memory_gb: float | None = None

    def to_dict(self) -> JsonObject:
        """JSON form (fields that do not apply are left out)."""
        return {key: value for key, value in asdict(self).items() if value is not None}

    @classmethod
    def from_dict(cls, data: JsonObject) -> Hardware:
        """Inverse of :meth:`to_dict` (unknown fields of other versions are ignored)."""
        known = {f.name for f in fields(cls)}
        values = {key: value for key, value in data.items() if key in known}
        return cls(**{"platform": "?", "cpu": "?", "cpu_flags": [], "cpu_count": None, "usable_cpus": None, **values})


def hardware() -> Hardware:
    """CPU, core count, memory and GPU of this machine."""
    try:
        memory_gb: float | None = round(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        memory_gb = None
    info = Hardware(
        platform=platform.platform(),
        cpu=cpu_model(),
        cpu_flags=cpu_flags(),
        cpu_count=os.cpu_count(),
        usable_cpus=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        memory_gb=memory_gb,
    )
    if "torch" not in sys.modules:  # not imported here just to describe it
        return info
    import torch  # deferred: only once something else has loaded it (checked above)

    gpu: dict[str, Any] = {}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        gpu = {
            "gpu": props.name,
            "gpu_count": torch.cuda.device_count(),
            "gpu_memory_gb": round(props.total_memory / 2**30, 1),
        }
    return replace(info, torch=torch.__version__, threads=torch.get_num_threads(), **gpu)


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


@dataclass(frozen=True)
class Provenance:
    """What produced a result: command, commit, package versions, hardware, time, seeds and model.

    ``details`` holds what a kind of result adds (``train_seed``, ``cpu_steal_share``, ``llm_cost``, ...).
    """

    command: str
    commit: str | None
    dirty: bool | None
    versions: dict[str, str]
    hardware: Hardware
    time_utc: str
    seeds: list[int] | None = None
    model: JsonObject | None = None
    details: JsonObject = field(default_factory=dict)

    def with_details(self, **details: Any) -> Provenance:
        """The same record with ``details`` added."""
        return replace(self, details={**self.details, **details})

    def to_dict(self) -> JsonObject:
        """JSON form: the fields at the top level, ``details`` merged in, absent ones left out."""
        data: JsonObject = {
            "command": self.command,
            "commit": self.commit,
            "dirty": self.dirty,
            "versions": dict(self.versions),
            "hardware": self.hardware.to_dict(),
            "time_utc": self.time_utc,
        }
        if self.seeds is not None:
            data["seeds"] = list(self.seeds)
        if self.model is not None:
            data["model"] = self.model
        return {**data, **self.details}

    @classmethod
    def from_dict(cls, data: JsonObject) -> Provenance:
        """Inverse of :meth:`to_dict`; tolerant of older files (a missing field reads as unknown)."""
        known = {"command", "commit", "dirty", "versions", "hardware", "time_utc", "seeds", "model"}
        hardware_data = data.get("hardware")
        return cls(
            command=str(data.get("command", "?")),
            commit=data.get("commit"),
            dirty=data.get("dirty"),
            versions=dict(data.get("versions") or {}),
            hardware=Hardware.from_dict(hardware_data if isinstance(hardware_data, dict) else {}),
            time_utc=str(data.get("time_utc", "?")),
            seeds=data.get("seeds"),
            model=data.get("model"),
            details={key: value for key, value in data.items() if key not in known},
        )


def provenance(*, seeds: list[int] | None = None, model: JsonObject | None = None, **details: Any) -> Provenance:
    """Command, commit, package versions, hardware and UTC time of this run, with its seeds, model and details."""
    versions = {"rl_select": __version__, "python": platform.python_version()}
    for name in ("transformers", "stable_baselines3", "gymnasium", "ray"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = getattr(module, "__version__", "?")
    commit, dirty = git_state()
    return Provenance(
        command=command_line(),
        commit=commit,
        dirty=dirty,
        versions=versions,
        hardware=hardware(),
        time_utc=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        seeds=seeds,
        model=model,
        details=details,
    )


def read_result_file(path: Path) -> JsonObject | None:
    """A resumable result file read back: its JSON object (``{}`` if it holds another JSON value), None if absent.

    An unreadable file is an :class:`~rl_select.errors.ArtifactError`: a command never overwrites what it cannot read.
    """
    if not path.is_file():
        return None
    try:
        stored = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ArtifactError(f"{path} is not a readable result file; move it away or use another --out") from None
    return stored if isinstance(stored, dict) else {}


def continues(path: Path, stored: JsonObject, key: JsonObject, file_format: int, what: str) -> bool:
    """Whether ``stored`` is a run of the same work (format and ``key``), which a new run continues.

    A partial file of other work is a :class:`~rl_select.errors.ConfigError` (it is never overwritten); a complete
    one is replaced by the new run.
    """
    same = stored.get("format") == file_format and stored.get("key") == key
    if not same and stored.get("partial"):
        stored_key = stored.get("key") if isinstance(stored.get("key"), dict) else {}
        differs = sorted(name for name in key if stored_key.get(name) != key[name])  # type: ignore[union-attr]
        raise ConfigError(
            f"{path} holds a partial {what} with other settings ({', '.join(differs) or 'format'}); "
            "rerun with those settings to continue it, or use another --out"
        )
    return same


def write_json(path: Path, payload: Any) -> Path:
    """Write ``payload`` as indented JSON atomically (a crash never leaves half a file).

    Objects and lists of containers are indented; a list of plain values (per-row predictions, a prompt's
    pool ids), or of such lists (every row's pool ids), stays on one line, so per-row logs stay a fraction of the
    size ``indent=2`` would give them.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(_indented(to_json(payload), "") + "\n")
    tmp.replace(path)
    return path


def _indented(value: Any, margin: str) -> str:
    """JSON text of ``value`` (already plain JSON types), indented by two spaces per level."""
    inner = margin + "  "
    if isinstance(value, dict) and value:
        items = (f"{inner}{json.dumps(key)}: {_indented(item, inner)}" for key, item in value.items())
        return "{\n" + ",\n".join(items) + f"\n{margin}}}"
    if isinstance(value, list) and not all(map(_plain_row, value)):
        return "[\n" + ",\n".join(inner + _indented(item, inner) for item in value) + f"\n{margin}]"
    return json.dumps(value, separators=(", ", ": "))


def _plain(value: Any) -> bool:
    """Whether ``value`` is a plain JSON value (no object or list)."""
    return not isinstance(value, dict | list)


def _plain_row(value: Any) -> bool:
    """Whether ``value`` is a plain value or a list of them (it goes on its list's one line)."""
    return _plain(value) or (isinstance(value, list) and all(map(_plain, value)))


def to_json(value: Any) -> Any:
    """``value`` as plain JSON types: records by their ``to_dict``, arrays as lists, paths as text."""
    return json.loads(json.dumps(value, default=_jsonable))


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


def provenance_markdown(record: Provenance) -> str:
    """A short markdown block naming command, commit, model, seeds and hardware."""
    hw = record.hardware
    device = hw.gpu or f"{hw.cpu} ({hw.usable_cpus or '?'} cores)"
    model = record.model or {}
    lines = [
        f"- command: `{record.command}`",
        f"- commit: `{record.commit}`" + (" (uncommitted changes)" if record.dirty else ""),
        f"- model: {model.get('name', '?')} ({model.get('dtype', '?')} on {model.get('device', '?')})"
        if model
        else "- model: none",
        f"- seeds: {record.seeds if record.seeds is not None else '?'}",
        f"- hardware: {device}",
        f"- time: {record.time_utc}",
    ]
    steal = record.details.get("cpu_steal_share")
    if isinstance(steal, float | int):
        lines.append(f"- CPU time taken by the hypervisor (steal) during the run: {steal:.1%}")
    return "\n".join(lines) + "\n"
