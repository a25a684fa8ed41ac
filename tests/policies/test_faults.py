"""Runs that are killed, interrupted or cannot write lose nothing and say so in one line."""

import errno
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from tests.helpers import run_cli
from tests.policies.test_train_cli import base

REPO = Path(__file__).resolve().parents[2]

# A child process that runs the CLI and SIGKILLs itself halfway through the second policy update: after the
# first optimizer step of that update, before the next checkpoint. Nothing gets a chance to clean up.
KILL_MID_UPDATE = textwrap.dedent(
    """
    import os, signal, sys
    import torch
    algo = sys.argv[1]
    if algo == "ppo":
        from sb3_contrib import MaskablePPO as Algorithm
    else:
        from rl_select.policies.dqn import MaskedDQN as Algorithm
    updates = [0]
    original_train = Algorithm.train

    def train(self, *args, **kwargs):
        updates[0] += 1
        if updates[0] == 2:
            step = self.policy.optimizer.step

            def step_then_die(*a, **k):
                result = step(*a, **k)
                os.kill(os.getpid(), signal.SIGKILL)
                return result

            self.policy.optimizer.step = step_then_die
        return original_train(self, *args, **kwargs)

    Algorithm.train = train
    from rl_select.cli import main
    sys.argv = ["rl-select", *sys.argv[2:]]
    main()
    """
)


def rl_select(args, *, kill_mid_update: str | None = None, env=None) -> subprocess.CompletedProcess:
    """``rl-select args`` in a fresh process (the same thread settings every time)."""
    if kill_mid_update:
        command = [sys.executable, "-c", KILL_MID_UPDATE, kill_mid_update, *args]
    else:
        command = [sys.executable, "-m", "rl_select.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=600)


def policy_state(run: Path) -> dict[str, torch.Tensor]:
    from zipfile import ZipFile

    with ZipFile(run / "policy" / "model.zip") as archive, archive.open("policy.pth") as f:
        return torch.load(f, map_location="cpu", weights_only=True)


TRAIN_SETTINGS = {
    "ppo": ["--steps", "96", "--n-envs", "2", "--set", "ppo_n_steps=16", "--set", "checkpoint_every=32"],
    "dqn": [
        "--steps",
        "96",
        "--n-envs",
        "2",
        "--set",
        "dqn_learning_starts=8",
        "--set",
        "checkpoint_every=32",
        "--set",
        "target_update=8",
    ],
}


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["ppo", "dqn"])
def test_train_killed_mid_update_and_resumed_gives_the_uninterrupted_policy(data_root, tiny_model_dir, tmp_path, algo):
    args = [*base(data_root, tiny_model_dir), "--algo", algo, *TRAIN_SETTINGS[algo], "--set", "baselines=[random]"]
    whole = rl_select(["train", *args, "--out", str(tmp_path / "whole")])
    assert whole.returncode == 0, whole.stderr
    killed = rl_select(["train", *args, "--out", str(tmp_path / "killed")], kill_mid_update=algo)
    assert killed.returncode == -9, killed.stderr  # SIGKILL: no cleanup ran
    run = tmp_path / "killed"
    assert not (run / "policy" / "model.zip").exists()
    kept = sorted(p.name for p in (run / "checkpoints").glob(f"{algo}_*_steps.zip"))
    assert kept, "no checkpoint survived"
    resumed = rl_select(["train", "--resume", str(run)])
    assert resumed.returncode == 0, resumed.stderr
    expected, got = policy_state(tmp_path / "whole"), policy_state(run)
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), f"{name} differs after the resume"
    learned = [json.loads((r / "results.json").read_text())["reports"][0] for r in (tmp_path / "whole", run)]
    for a, b in zip(learned[0]["seeds"], learned[1]["seeds"], strict=True):
        assert (a["selection"], a["predictions_calibrated"]) == (b["selection"], b["predictions_calibrated"])


def test_interrupted_evaluate_keeps_finished_seeds_and_a_rerun_continues(
    data_root, tiny_model_dir, tmp_path, capsys, monkeypatch
):
    import rl_select.evaluation.core as evaluation

    out = tmp_path / "eval.json"
    args = ["evaluate", "--task", "tiny_sst", "--data-dir", str(data_root), "--model", str(tiny_model_dir)]
    args += ["--selector", "random,knn", "--k", "2", "--seeds", "2", "--n-test", "6", "--out", str(out)]
    original = evaluation.evaluate_seed
    calls = []

    def interrupted_third(selector, *rest, **options):
        calls.append(selector.name)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(selector, *rest, **options)

    monkeypatch.setattr(evaluation, "evaluate_seed", interrupted_third)
    code, _, err = run_cli(args, capsys)
    last = err.strip().splitlines()[-1]
    assert code == 130 and last.startswith("interrupted: 2 of 4") and "rerun" in last
    assert "Traceback" not in err
    partial = json.loads(out.read_text())
    assert partial["partial"] is True and [len(r["seeds"]) for r in partial["reports"]] == [2]
    assert "**Partial**" in out.with_suffix(".md").read_text()

    calls.clear()

    def counted(selector, *rest, **options):
        calls.append(selector.name)
        return original(selector, *rest, **options)

    monkeypatch.setattr(evaluation, "evaluate_seed", counted)
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    # the random seeds were kept, not recomputed; knn (seed-independent) is chosen once and its seed 1 repeats it
    assert "continuing" in err and calls == ["knn"]
    assert "about to spend ≈ 6 LLM queries" in err  # what is left: knn's 6 rows, not the 12 random ones kept
    complete = json.loads(out.read_text())
    assert complete["partial"] is False and [len(r["seeds"]) for r in complete["reports"]] == [2, 2]
    assert complete["reports"][0]["seeds"] == partial["reports"][0]["seeds"]
    # the file's provenance stays the run that started it; the continuing run is recorded beside it
    assert complete["provenance"] == partial["provenance"] and "resumed_by" not in partial
    assert len(complete["resumed_by"]) == 1 and complete["resumed_by"][0]["command"].startswith("rl-select evaluate")

    calls.clear()
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    # a third run finds everything done: it scores nothing and is not listed as a continuing run
    again = json.loads(out.read_text())
    assert calls == [] and again["reports"] == complete["reports"] and again["resumed_by"] == complete["resumed_by"]
    assert "about to spend ≈ 0 LLM queries" in err


def test_a_partial_evaluation_with_other_settings_is_not_overwritten(data_root, tiny_model_dir, tmp_path, capsys):
    out = tmp_path / "eval.json"
    out.write_text(json.dumps({"format": 2, "partial": True, "key": {"k": 3}, "finished": {}}))
    args = ["evaluate", "--task", "tiny_sst", "--data-dir", str(data_root), "--model", str(tiny_model_dir)]
    code, _, err = run_cli([*args, "--k", "2", "--seeds", "1", "--n-test", "4", "--out", str(out)], capsys)
    assert code == 2 and "partial evaluation with other settings" in err
    assert json.loads(out.read_text())["key"] == {"k": 3}


def test_unwritable_out_is_one_line(data_root, tiny_model_dir, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    args = ["evaluate", "--task", "tiny_sst", "--data-dir", str(data_root), "--model", str(tiny_model_dir)]
    code, _, err = run_cli(
        [*args, "--k", "2", "--seeds", "1", "--n-test", "4", "--out", str(blocker / "r.json")], capsys
    )
    assert code == 2 and err.strip().splitlines()[-1].startswith("error: cannot write") and "Traceback" not in err
    code, _, err = run_cli(["train", *base(data_root, tiny_model_dir), "--out", str(blocker / "run")], capsys)
    assert code == 2 and err.strip().startswith("error: cannot write") and len(err.strip().splitlines()) == 1


def test_full_disk_during_training_keeps_earlier_checkpoints(data_root, tiny_model_dir, tmp_path, capsys, monkeypatch):
    from rl_select.policies import checkpoints

    saved = []
    original = checkpoints.save_checkpoint

    def disk_fills_up(model, directory, algo, **kwargs):
        if saved:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(directory / "next.zip"))
        saved.append(original(model, directory, algo, **kwargs))
        return saved[-1]

    monkeypatch.setattr(checkpoints, "save_checkpoint", disk_fills_up)
    run = tmp_path / "run"
    args = ["train", *base(data_root, tiny_model_dir), "--steps", "64", "--n-envs", "2", "--set", "ppo_n_steps=16"]
    code, _, err = run_cli([*args, "--set", "checkpoint_every=32", "--out", str(run)], capsys)
    last = err.strip().splitlines()[-1]
    assert code == 2 and last.startswith("error: cannot write") and "No space left on device" in last
    assert "Traceback" not in err
    assert saved and saved[0].model.is_file() and saved[0].state.is_file()
    monkeypatch.setattr(checkpoints, "save_checkpoint", original)
    code, _, err = run_cli(["train", "--resume", str(run)], capsys)
    assert code == 0, err
