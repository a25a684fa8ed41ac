"""Helpers shared by the tests: small task fixtures on disk and an in-process CLI runner."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

POSITIVE = [
    "a great and moving film",
    "wonderful acting and a sharp script",
    "I loved every minute",
    "funny , warm and smart",
    "a joy to watch",
    "beautifully shot and deeply felt",
    "the best film of the year",
    "charming and clever",
    "a triumph of style",
    "moving and honest",
]
NEGATIVE = [
    "a dull and lifeless mess",
    "boring from start to end",
    "I hated the plot",
    "the acting is flat and the jokes fall flat",
    "a waste of time",
    "tedious and overlong",
    "the worst film of the year",
    "clumsy and loud",
    "a tired remake",
    "painfully slow",
]
QUESTIONS = {
    "abbreviation": [
        "What does NASA stand for ?",
        "What is the abbreviation for kilogram ?",
        "What does CPU mean ?",
        "What is the full form of UN ?",
    ],
    "number": [
        "How many legs does a spider have ?",
        "When was the wall built ?",
        "How far is the moon ?",
        "What year did the war end ?",
    ],
    "location": [
        "Where is the Eiffel tower ?",
        "What city hosts the games ?",
        "Where do penguins live ?",
        "Which country has the most lakes ?",
    ],
}


def experiment_module(relative: str):
    """A script under experiments/ as a module (experiments/ is not a package), registered under its file name."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "experiments" / relative
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def write_task(root: Path, name: str, spec: dict, rows: dict[str, list[dict]]) -> Path:
    """Write a task directory in the shared/data layout; return it."""
    task_dir = root / name
    task_dir.mkdir(parents=True, exist_ok=True)
    (task_dir / "task.json").write_text(json.dumps({"name": name, **spec}))
    for split, split_rows in rows.items():
        (task_dir / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in split_rows))
    return task_dir


def sentiment_rows() -> dict[str, list[dict]]:
    rows = [{"text": t, "label": "positive"} for t in POSITIVE] + [{"text": t, "label": "negative"} for t in NEGATIVE]
    train = rows[::2] + rows[1::4]
    dev = rows[1::2][:8]
    test = [{"text": t + " indeed", "label": r["label"]} for r in rows for t in [r["text"]]][:12]
    return {"train": train, "dev": dev, "test": test}


SENTIMENT_SPEC = {
    "labels": ["negative", "positive"],
    "template": "Review: {text}\nSentiment: {label}",
    "verbalizer": {"negative": "negative", "positive": "positive"},
}
QUESTION_SPEC = {
    "labels": ["abbreviation", "number", "location"],
    "template": "Question: {text}\nAnswer Type: {label}",
    "verbalizer": {"abbreviation": "Abbreviation", "number": "Number", "location": "Location"},
}
PAIR_SPEC = {
    "labels": ["entailment", "not_entailment"],
    "template": "{text}\nquestion: {text_pair} True or False?\nanswer: {label}",
    "verbalizer": {"entailment": "True", "not_entailment": "False"},
}


def question_rows() -> dict[str, list[dict]]:
    rows = [{"text": q, "label": label} for label, qs in QUESTIONS.items() for q in qs]
    return {"train": rows[::2] + rows[1::3], "dev": rows[1::2], "test": rows[::3]}


def pair_rows() -> dict[str, list[dict]]:
    rows = []
    for i, (p, n) in enumerate(zip(POSITIVE, NEGATIVE, strict=True)):
        rows.append({"text": f"The critic wrote: {p}.", "text_pair": "The critic liked it.", "label": "entailment"})
        rows.append(
            {
                "text": f"The critic wrote: {n}.",
                "text_pair": "The critic liked it.",
                "label": "not_entailment" if i % 3 else "entailment",
            }
        )
    return {"train": rows[:12], "dev": rows[12:16], "test": rows[16:]}


def announced_queries(err: str) -> int:
    """The LLM queries a command's "about to spend" line announced."""
    announced = re.search(r"about to spend ≈ ([\d,]+) LLM queries", err)
    assert announced, err
    return int(announced.group(1).replace(",", ""))


def timing_queries(data_root: Path, tasks: tuple[str, ...] = ("tiny_sst", "tiny_trec"), k: int = 2) -> int:
    """The queries ``measure_throughput`` scores before a command's announcement: calibration prompts, twice."""
    from rl_select.budget import calibration_prompts
    from rl_select.tasks import load_task

    return sum(2 * len(queries) for t in tasks for _, queries in calibration_prompts(load_task(t, data_root), k))


def run_cli(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """Run ``rl-select args`` in-process through the console entry point; return (status, stdout, stderr)."""
    from rl_select.cli import main

    old = sys.argv
    sys.argv = ["rl-select", *args]
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.argv = old
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_ends_with_results_and_next(err: str, where: object) -> None:
    """A command's last lines say where its results went (naming ``where``), then what to run next."""
    lines = [line for line in err.strip().splitlines() if line.strip()]
    starts = [i for i, line in enumerate(lines) if line.startswith("results: ")]
    assert starts, f"no 'results:' line in:\n{err[-1500:]}"
    tail = lines[starts[-1] :]
    assert str(where) in tail[0], tail
    assert len(tail) >= 2 and tail[1].startswith("next:    rl-select "), tail
    assert all(line.startswith("    ") for line in tail[2:]), tail
