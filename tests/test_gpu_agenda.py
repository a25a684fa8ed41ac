"""The GPU agenda (experiments/gpu/agenda.py): its dry run on the CPU, pieces that stop and resume, its state pack."""

import json
import re
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from tests.helpers import experiment_module

AGENDA = Path(__file__).resolve().parents[1] / "experiments" / "gpu" / "agenda.py"


def load_agenda():
    return experiment_module("gpu/agenda.py")


def piece(state: Path, data_root: Path, model: Path, *extra: str) -> subprocess.CompletedProcess:
    args = [sys.executable, str(AGENDA), "--dry-run", "--state", str(state), "--data-dir", str(data_root)]
    args += ["--model", str(model), "--tasks", "tiny_sst,tiny_trec", *extra]
    return subprocess.run(args, capture_output=True, text=True, timeout=600)


def statuses(state: Path) -> dict[str, str]:
    return {s["name"]: s["status"] for s in json.loads((state / "agenda.json").read_text())["steps"]}


def test_a_step_past_the_deadline_gets_ctrl_c_and_then_is_killed():
    agenda = load_agenda()
    polite = "import signal, sys, time; signal.signal(signal.SIGINT, lambda *_: sys.exit(130)); time.sleep(60)"
    began = time.monotonic()
    code, interrupted, _ = agenda.run_step([sys.executable, "-c", polite], time.monotonic() + 1.0, grace_s=30)
    assert (code, interrupted) == (130, True) and time.monotonic() - began < 20
    stubborn = (
        "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); print('x', flush=True); time.sleep(60)"
    )
    code, interrupted, _ = agenda.run_step([sys.executable, "-c", stubborn], time.monotonic() + 1.0, grace_s=1.0)
    assert interrupted and code == -9 and time.monotonic() - began < 40
    code, interrupted, tail = agenda.run_step(
        [sys.executable, "-c", "import sys; sys.exit('no such thing')"], time.monotonic() + 30
    )
    assert (code, interrupted) == (1, False) and "no such thing" in tail


@pytest.mark.slow
def test_dry_run_goes_through_every_step_in_resumable_pieces(tmp_path, data_root, tiny_model_dir):
    state = tmp_path / "gpu"
    # a piece too short for the whole agenda stops where its time ends and says what is left
    first = piece(state, data_root, tiny_model_dir, "--piece-min", "0.2", "--grace-s", "4")
    assert first.returncode == 0, first.stderr
    assert "left:" in first.stderr.splitlines()[-1] and statuses(state)["study"] != "done"

    second = piece(state, data_root, tiny_model_dir, "--pack", str(tmp_path / "state.tar.gz"))
    assert second.returncode == 0, second.stderr
    assert statuses(state) == {"bench-scorer": "done", "study": "done"}
    bench = json.loads((state / "bench_scorer_gpu.json").read_text())
    assert bench["provenance"]["command"].startswith("rl-select bench scorer")
    summary = json.loads((state / "learned_gpu_dry_run" / "summary.json").read_text())
    assert set(summary) >= {"tiny_sst", "tiny_trec", "average"}
    with tarfile.open(tmp_path / "state.tar.gz") as tar:
        names = tar.getnames()
    assert any(n.endswith("agenda.json") for n in names) and any(n.endswith("summary.json") for n in names)
    assert not any("/cache" in n or ".sqlite" in n for n in names)

    # a third piece finds nothing left to do
    third = piece(state, data_root, tiny_model_dir)
    assert third.returncode == 0 and third.stderr.count("done earlier") == 2, third.stderr

    # --redo runs a done step again (the next commit's scorer), the others stay done
    fourth = piece(state, data_root, tiny_model_dir, "--redo", "bench-scorer")
    assert fourth.returncode == 0 and fourth.stderr.count("done earlier") == 1, fourth.stderr
    assert statuses(state) == {"bench-scorer": "done", "study": "done"}
    unknown = piece(state, data_root, tiny_model_dir, "--redo", "bench")
    assert unknown.returncode != 0 and unknown.stderr.strip().splitlines()[-1].startswith("error: --redo")


def test_bad_arguments_and_state_are_one_line_errors(tmp_path, data_root, tiny_model_dir):
    bad = piece(tmp_path / "gpu", data_root, tiny_model_dir, "--piece-min", "0")
    assert bad.returncode != 0 and bad.stderr.strip().splitlines()[-1].startswith("error: --piece-min")
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "agenda.json").write_text("{not json")
    broken = piece(tmp_path / "broken", data_root, tiny_model_dir)
    assert broken.returncode != 0 and "is not an agenda state file" in broken.stderr.strip().splitlines()[-1]


def test_scorer_profile_runs_every_logit_read_path_with_the_same_scores(data_root, tiny_model_dir):
    profile = AGENDA.with_name("profile_scorer.py")
    args = [sys.executable, str(profile), "--data-dir", str(data_root), "--task", "tiny_sst"]
    args += ["--model", str(tiny_model_dir), "--device", "cpu", "--times", "2", "--batch-tokens", "96,4096"]
    done = subprocess.run([*args, "--naive-batches", "4"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    paths = re.findall(r"logit reads (\w+): .* at most (\S+)", done.stdout)
    assert {path for path, _ in paths} >= {"head", "full"} and all(float(d) <= 1e-4 for _, d in paths)
    assert "naive batch=4:" in done.stdout and "agreement 1.0000" in done.stdout
    assert "Self CPU time total" in done.stdout  # the profile's table
