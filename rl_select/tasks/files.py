"""Reading task files: ``task.json`` plus JSONL or CSV splits, validated row by row.

The layout is the one of ``shared/data``::

    <dir>/task.json          labels, template, verbalizer (optional: name, separator, splits, description)
    <dir>/train.jsonl        candidate pool   ({"text": ..., "label": ...[, "text_pair": ...]} per line)
    <dir>/dev.jsonl          reward set
    <dir>/test.jsonl         held-out evaluation

A user task uses the same ``task.json``; its ``splits`` may name other files, JSONL or CSV (with a header row
naming ``text``, ``label`` and optionally ``text_pair``), relative to the task file.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from rl_select.errors import DataError
from rl_select.tasks.task import SPLITS, Example, Task
from rl_select.tasks.template import DEFAULT_SEPARATOR, PromptTemplate
from rl_select.types import JsonObject

TASK_FILE = "task.json"
ROW_FORMATS = (".jsonl", ".csv")
TASK_KEYS = {
    "name",
    "labels",
    "template",
    "verbalizer",
    "separator",
    "splits",
    "description",
    "source",
    "rows",
}


def read_text(path: Path) -> str:
    """Read a whole file as strict UTF-8, with a one-line error for anything else."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"file not found: {path}") from None
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"{path} is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); re-encode it as UTF-8"
        ) from None


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Any]]:
    for number, line in enumerate(read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{number}: not valid JSON ({exc.msg})") from None


def _csv_rows(path: Path) -> Iterator[tuple[int, Any]]:
    reader = csv.DictReader(io.StringIO(read_text(path), newline=""))
    if reader.fieldnames is None or "text" not in reader.fieldnames or "label" not in reader.fieldnames:
        raise DataError(f"{path}: CSV header must name the columns 'text' and 'label', got {reader.fieldnames}")
    for row in reader:
        if None in row:
            raise DataError(f"{path}:{reader.line_num}: more fields than the header names")
        yield reader.line_num, {k: v for k, v in row.items() if v is not None}


def read_split(path: Path, split: str, template: PromptTemplate) -> list[Example]:
    """Read and validate one split file (JSONL or CSV) into examples with ids 0..n-1."""
    if path.suffix not in ROW_FORMATS:
        raise DataError(f"{path}: unsupported file type '{path.suffix}' (use .jsonl or .csv)")
    rows = _jsonl_rows(path) if path.suffix == ".jsonl" else _csv_rows(path)
    examples = [
        _example(row, split, len_so_far, template, f"{path}:{number}") for len_so_far, (number, row) in enumerate(rows)
    ]
    if not examples:
        raise DataError(f"{path}: the {split} split has no rows")
    return examples


def examples_from_rows(
    rows: Sequence[Any], split: str, template: PromptTemplate, where: str, first_id: int = 0
) -> list[Example]:
    """Validate in-memory rows (``{"text", "label"[, "text_pair"]}`` dicts) into examples with ids from ``first_id``."""
    return [_example(row, split, first_id + i, template, f"{where} row {i}") for i, row in enumerate(rows)]


def _example(row: Any, split: str, index: int, template: PromptTemplate, where: str) -> Example:
    if not isinstance(row, dict):
        raise DataError(f"{where}: each row must be a JSON object, got {type(row).__name__}")
    text = row.get("text")
    if not isinstance(text, str):
        raise DataError(f"{where}: row has no 'text' string")
    if not text.strip():
        raise DataError(f"{where}: empty text")
    if "label" not in row or row["label"] is None or row["label"] == "":
        raise DataError(f"{where}: row has no label")
    label = str(row["label"]) if not isinstance(row["label"], str) else row["label"]
    if label not in template.labels:
        raise DataError(f"{where}: label '{label}' is not one of the task's labels {list(template.labels)}")
    pair = row.get("text_pair")
    if template.uses_text_pair:
        if not isinstance(pair, str) or not pair.strip():
            raise DataError(f"{where}: the template uses {{text_pair}} but the row has no non-empty 'text_pair'")
    elif pair is not None and not isinstance(pair, str):
        raise DataError(f"{where}: 'text_pair' must be a string")
    return Example(split=split, id=index, text=text, label=label, text_pair=pair if template.uses_text_pair else None)


def read_task_spec(path: Path) -> JsonObject:
    """Read and check a ``task.json`` (its keys and types; the template is checked by :class:`PromptTemplate`)."""
    try:
        spec = json.loads(read_text(path))
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(spec, dict):
        raise DataError(f"{path}: must hold a JSON object")
    unknown = sorted(set(spec) - TASK_KEYS)
    if unknown:
        raise DataError(f"{path}: unknown key(s) {unknown}; allowed: {sorted(TASK_KEYS)}")
    for key in ("labels", "template", "verbalizer"):
        if key not in spec:
            raise DataError(f"{path}: missing '{key}'")
    if not isinstance(spec["labels"], list) or not all(isinstance(x, str) for x in spec["labels"]):
        raise DataError(f"{path}: 'labels' must be a list of strings")
    if not isinstance(spec["template"], str):
        raise DataError(f"{path}: 'template' must be a string")
    if not isinstance(spec["verbalizer"], dict):
        raise DataError(f"{path}: 'verbalizer' must map labels to words")
    return spec


def template_from_spec(spec: JsonObject, where: str) -> PromptTemplate:
    """Build the :class:`PromptTemplate` of a task spec, prefixing errors with ``where``."""
    try:
        return PromptTemplate(
            template=spec["template"],
            verbalizer=dict(spec["verbalizer"]),
            labels=tuple(spec["labels"]),
            separator=spec.get("separator", DEFAULT_SEPARATOR),
        )
    except DataError as exc:
        raise DataError(f"{where}: {exc}") from None


def load_task_dir(path: Path, name: str | None = None, source_kind: str = "data-dir") -> Task:
    """Load a task from a directory holding ``task.json`` (or from the ``task.json`` path itself)."""
    task_file = path if path.is_file() else path / TASK_FILE
    if not task_file.is_file():
        raise DataError(f"{path}: no {TASK_FILE} found")
    spec = read_task_spec(task_file)
    template = template_from_spec(spec, str(task_file))
    base = task_file.parent
    split_files = spec.get("splits") or {}
    if not isinstance(split_files, dict) or set(split_files) - set(SPLITS):
        raise DataError(f"{task_file}: 'splits' must map some of {list(SPLITS)} to file names")
    splits: dict[str, list[Example]] = {}
    for split in SPLITS:
        if split in split_files:
            file = base / split_files[split]
        else:
            candidates = [base / f"{split}{suffix}" for suffix in ROW_FORMATS]
            file = next((c for c in candidates if c.is_file()), candidates[0])
        if not file.is_file():
            raise DataError(f"{task_file}: the {split} split file {file} does not exist")
        splits[split] = read_split(file, split, template)
    return Task(
        name=name or spec.get("name") or base.name,
        template=template,
        splits=splits,
        source=f"{source_kind}:{base}",
        description=str(spec.get("description", spec.get("source", ""))),
    )
