"""Finding tasks by name: a data directory, a task file, or the hub.

``load_task(spec)`` resolves ``spec`` in this order:

1. a path to a ``task.json`` or to a directory holding one (a user task);
2. ``hub:<name>``: one of the seven benchmark tasks from the Hugging Face hub;
3. a name, looked up in the data directory (``--data-dir``, else ``$RL_SELECT_DATA``) when one is set;
4. a name of a hub task, when no data directory is set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from rl_select.errors import DataError, did_you_mean
from rl_select.tasks.files import TASK_FILE, load_task_dir, read_task_spec
from rl_select.tasks.hub import HUB_TASKS, load_hub_task
from rl_select.tasks.task import Task

DATA_ENV = "RL_SELECT_DATA"


@dataclass(frozen=True)
class TaskInfo:
    """One available task: its name, where it comes from and (for local tasks) its row counts."""

    name: str
    source: str
    location: str
    rows: dict[str, int] | None = None


def resolve_data_dir(data_dir: str | Path | None) -> Path | None:
    """The data directory to use: ``data_dir``, else ``$RL_SELECT_DATA``, else None. It must exist."""
    chosen = data_dir if data_dir not in (None, "") else os.environ.get(DATA_ENV) or None
    if chosen is None:
        return None
    path = Path(chosen).expanduser()
    if not path.is_dir():
        where = "--data-dir" if data_dir not in (None, "") else f"${DATA_ENV}"
        raise DataError(f"data directory {path} does not exist (from {where})")
    return path.resolve()


def _looks_like_path(spec: str) -> bool:
    return spec.endswith(".json") or "/" in spec or os.sep in spec or spec.startswith((".", "~"))


def load_task(spec: str, data_dir: str | Path | None = None) -> Task:
    """Load a task by path, ``hub:<name>`` or name (see the module docstring)."""
    if not spec or not spec.strip():
        raise DataError("task name is empty")
    if spec.startswith("hub:"):
        name = spec.removeprefix("hub:")
        if name not in HUB_TASKS:
            raise DataError(
                f"unknown hub task '{name}'{did_you_mean(name, HUB_TASKS)} (hub tasks: {', '.join(sorted(HUB_TASKS))})"
            )
        return _load_hub_cached(name)
    if _looks_like_path(spec):
        path = Path(spec).expanduser()
        if not path.exists():
            raise DataError(f"task file or directory {path} does not exist")
        return _load_dir_cached(path.resolve(), None, "file")
    root = resolve_data_dir(data_dir)
    if root is not None:
        task_dir = root / spec
        if (task_dir / TASK_FILE).is_file():
            return _load_dir_cached(task_dir.resolve(), spec, "data-dir")
        available = local_task_names(root)
        raise DataError(
            f"unknown task '{spec}' in data directory {root}{did_you_mean(spec, available)} "
            f"(available: {', '.join(available) or 'none'})"
        )
    if spec in HUB_TASKS:
        return _load_hub_cached(spec)
    raise DataError(
        f"unknown task '{spec}'{did_you_mean(spec, HUB_TASKS)}; no data directory is set (--data-dir or "
        f"${DATA_ENV}) and the hub tasks are: {', '.join(sorted(HUB_TASKS))}"
    )


@lru_cache(maxsize=16)
def _load_dir_cached(path: Path, name: str | None, kind: str) -> Task:
    return load_task_dir(path, name=name, source_kind=kind)


@lru_cache(maxsize=16)
def _load_hub_cached(name: str) -> Task:
    return load_hub_task(name)


def local_task_names(root: Path) -> list[str]:
    """Names of the task directories (those holding a ``task.json``) under ``root``."""
    return sorted(p.name for p in root.iterdir() if (p / TASK_FILE).is_file())


def list_tasks(data_dir: str | Path | None = None) -> list[TaskInfo]:
    """Every task available: those in the data directory (if any), then the hub tasks."""
    infos = []
    root = resolve_data_dir(data_dir)
    if root is not None:
        for name in local_task_names(root):
            spec = read_task_spec(root / name / TASK_FILE)
            rows = spec.get("rows") if isinstance(spec.get("rows"), dict) else None
            infos.append(TaskInfo(name=name, source="data-dir", location=str(root / name), rows=rows))
    for name, hub in sorted(HUB_TASKS.items()):
        location = hub.dataset + (f" ({hub.config})" if hub.config else "")
        infos.append(TaskInfo(name=f"hub:{name}" if root is not None else name, source="hub", location=location))
    return infos
