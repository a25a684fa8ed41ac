"""The README's recipes, run as written.

Only what a test machine cannot have is swapped, each said where: the hub model id becomes a local model directory
(no hub access), ``runs/my-task`` is a tiny trained run, the port is a free one, and paths point into a temporary
directory so nothing is written into the checkout.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import run_cli

ROOT = Path(__file__).resolve().parents[2]


def recipe(heading: str) -> list[tuple[str, str]]:
    """The fenced blocks (language, text) under a README heading, up to the next heading."""
    text = (ROOT / "README.md").read_text()
    section = text.split(f"### {heading}\n", 1)[1]
    section = re.split(r"(?m)^#{2,3} ", section, maxsplit=1)[0]
    return re.findall(r"(?ms)^```(\w*)\n(.*?)^```", section)


def commands(block: str, swaps: dict[str, str]) -> list[list[str]]:
    """Each line of a bash block as arguments, with the swaps applied to every argument."""
    lines = []
    for line in block.strip().splitlines():
        args = shlex.split(line)
        lines.append([swaps.get(arg, arg) for arg in args])
    return lines


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def write_my_task(folder: Path, task_json: str, shared_data: Path) -> None:
    """The recipe's task folder: its task.json, with SST-2 rows in the splits it names (CSV and JSONL)."""
    folder.mkdir()
    (folder / "task.json").write_text(task_json)
    spec = json.loads(task_json)
    sizes = {"train": 300, "dev": 64, "test": 60}
    for split, name in spec["splits"].items():
        lines = (shared_data / "sst2" / f"{split}.jsonl").read_text().splitlines()[: sizes[split]]
        rows = [json.loads(line) for line in lines]
        if name.endswith(".csv"):
            with (folder / name).open("w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=["text", "label"])
                writer.writeheader()
                writer.writerows(rows)
        else:
            (folder / name).write_text("".join(json.dumps(row) + "\n" for row in rows))


@pytest.mark.slow
@pytest.mark.real_model
def test_your_own_task(shared_data, tmp_path, monkeypatch, capsys):
    (_, task_json), (_, bash) = recipe("Your own task")
    write_my_task(tmp_path / "my-task", task_json, shared_data)
    (tmp_path / "experiments").symlink_to(ROOT / "experiments")
    monkeypatch.chdir(tmp_path)
    evaluate, train = commands(bash, {})
    code, out, err = run_cli(evaluate[1:], capsys)
    assert code == 0, err
    assert all(name in out for name in ("random", "knn", "bm25"))
    report = json.loads((tmp_path / "runs/evaluate/my-task-k4-random+knn+bm25.json").read_text())
    assert report["request"]["rows"] == 50 and report["task"]["name"] == "my-task"
    code, _, err = run_cli(train[1:], capsys)
    assert code == 0, err
    assert "about to spend" in err and not (tmp_path / "runs/my-task").exists()  # --dry-run spends nothing


@pytest.mark.slow
@pytest.mark.real_model
def test_a_task_the_policy_never_trained_on(shared_data, tmp_path, monkeypatch, capsys):
    (_, task_json), _ = recipe("Your own task")
    [(_, bash)] = recipe("A task the policy never trained on")
    write_my_task(tmp_path / "my-task", task_json, shared_data)
    (tmp_path / "experiments").symlink_to(ROOT / "experiments")
    monkeypatch.chdir(tmp_path)
    copy, verify, evaluate = commands(bash, {})
    assert copy[:2] == ["cp", "-r"]
    shutil.copytree(copy[2], copy[3])  # cp -r, without a subprocess
    code, out, err = run_cli(verify[1:], capsys)
    assert code == 0, err
    choice = json.loads((tmp_path / "runs/transfer/policy/rules/my-task.json").read_text())
    assert choice["measure"] == "labels" and choice["cost"]["queries"] == 0 and choice["task"] == "my-task"
    assert "about to spend" not in err and not (ROOT / "experiments/policies/transfer-query/policy/rules").exists()
    code, out, err = run_cli(evaluate[1:], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "runs/evaluate/my-task-k4-knn+bm25+transfer.json").read_text())
    policy_row = next(r for r in report["reports"] if r["selector"]["name"].startswith("fqi-query"))
    assert policy_row["selector"]["verified"] == {"my-task": f"{choice['rule']} by labels"}


@pytest.mark.slow
def test_another_llm(shared_data, tiny_model_dir, tmp_path, monkeypatch, capsys):
    [(_, bash)] = recipe("Another LLM")
    monkeypatch.chdir(tmp_path)
    [command] = commands(bash, {"Qwen/Qwen2.5-0.5B-Instruct": str(tiny_model_dir), "../shared/data": str(shared_data)})
    code, out, err = run_cli(command[1:], capsys)
    assert code == 0, err
    report = json.loads((tmp_path / "runs/evaluate/trec-k4-knn+bm25.json").read_text())
    assert report["provenance"]["model"]["name"] == str(tiny_model_dir) and report["request"]["rows"] == 20


def test_export_select_serve(query_policy, tmp_path, capsys):
    run_dir, _ = query_policy
    [(_, bash)] = recipe("Export → select → serve")
    port = str(free_port())
    policy = tmp_path / "policies" / "my-task"
    swaps = {"runs/my-task": str(run_dir), "policies/my-task": str(policy), "8000": port}
    export, select, serve, curl = commands(bash.replace("localhost:8000", f"localhost:{port}"), swaps)
    for command in (export, select):
        code, out, err = run_cli(command[1:], capsys)
        assert code == 0, err
    assert (policy / "manifest.json").is_file() and "funny" not in err
    server = subprocess.Popen(
        [sys.executable, "-m", "rl_select.cli", *serve[1:]],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.3)
        else:
            pytest.fail("the service did not come up")
        if shutil.which("curl"):
            answer = subprocess.run(curl, capture_output=True, text=True, timeout=30, check=True).stdout
        else:  # the same request without curl
            body = curl[curl.index("-d") + 1]
            answer = httpx.post(
                f"http://127.0.0.1:{port}/v1/select",
                content=body,
                headers={"content-type": "application/json"},
                timeout=30,
            ).text
        demos = json.loads(answer).get("demonstrations")
        assert demos and all({"text", "label"} <= set(demo) for demo in demos)
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_from_langchain_or_dspy(query_policy):
    pytest.importorskip("langchain_core")
    pytest.importorskip("dspy")
    _, policy = query_policy
    [(_, code)] = recipe("From LangChain or DSPy")
    namespace: dict = {}
    exec(compile(code.replace("policies/my-task", str(policy)), "README recipe", "exec"), namespace)
    examples = namespace["examples"]
    assert examples and all({"input", "output"} <= set(example) for example in examples)
    assert namespace["program"] is not None
