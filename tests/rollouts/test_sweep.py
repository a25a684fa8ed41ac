"""Sweeps with Ray Tune: a tiny grid end to end, resume, and errors caught before Ray starts."""

import csv
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from rl_select.errors import ConfigError
from rl_select.sweep import load_sweep, trial_key
from tests.helpers import announced_queries, run_cli

REPO = Path(__file__).resolve().parents[2]


def tiny_sweep(tmp_path, data_root, tiny_model_dir, **changes):
    spec = {
        "name": "tiny",
        "storage": str(tmp_path / "sweeps"),
        "metric": "accuracy",
        "resources_per_trial": {"cpu": 1},
        "max_concurrent": 2,
        "base": {
            "tasks": ["tiny_sst"],
            "data_dir": str(data_root),
            "model": str(tiny_model_dir),
            "device": "cpu",
            "dtype": "float32",
            "algo": "ppo",
            "steps": 16,
            "n_envs": 2,
            "ppo_n_steps": 8,
            "eval_seeds": 1,
            "baselines": ["random"],
            "env": {"k": 2, "num_candidates": 4, "reward_rows": 4},
        },
        "grid": {"tasks": [["tiny_sst"], ["tiny_trec"]], "seed": [0, 1]},
    }
    spec.update(changes)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.ray
@pytest.mark.slow  # tens of seconds on two cores: run once, in CI's in-order pass
def test_tiny_sweep_runs_summarises_and_resumes(ray_cluster, data_root, tiny_model_dir, tmp_path, capsys):
    path = tiny_sweep(tmp_path, data_root, tiny_model_dir)
    code, out, err = run_cli(["sweep", str(path)], capsys)
    assert code == 0, err
    root = tmp_path / "sweeps" / "tiny"
    with open(root / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and {r["status"] for r in rows} == {"ok"}
    assert all(0 <= float(r["learned/accuracy"]) <= 1 and r["random/accuracy"] for r in rows)
    summary = (root / "summary.md").read_text()
    assert "## Best configuration per task" in summary and "| tiny_sst |" in summary and "| tiny_trec |" in summary
    assert "(n=2)" in summary
    assert (root / "accuracy.png").is_file() and (root / "learning_curves.png").is_file()
    results = sorted((root / "runs").glob("*/results.json"))
    assert len(results) == 4
    stamps = [p.stat().st_mtime_ns for p in results]
    # running the sweep again resumes it: finished trials are not trained again
    code, out, err = run_cli(["sweep", str(path)], capsys)
    assert code == 0, err
    assert [p.stat().st_mtime_ns for p in results] == stamps


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"gird": {}}, "unknown sweep setting(s) ['gird']"),
        ({"grid": {"learning_rate": [-1.0]}}, "learning_rate must be > 0"),
        ({"grid": {"env.k": [2, 9]}}, "larger than the candidates per episode"),
        ({"grid": {"seed": 3}}, "must be a non-empty list"),
        ({"grid": {"nonsense": [1]}}, "unknown setting 'nonsense'"),
        ({"grid": {"tasks": [["tiny_sst"], ["tiny_sts"]]}}, "did you mean 'tiny_sst'"),
        ({"metric": "f1"}, "unknown metric"),
        ({"resources_per_trial": {"tpu": 1}}, "resources_per_trial takes only"),
    ],
)
def test_bad_sweep_files_fail_before_ray(tmp_path, data_root, tiny_model_dir, capsys, changes, message):
    path = tiny_sweep(tmp_path, data_root, tiny_model_dir, **changes)
    with pytest.raises(ConfigError) as info:
        load_sweep(path)
    assert message in str(info.value)
    code, _, err = run_cli(["sweep", str(path)], capsys)
    assert code == 2 and message in err and "Traceback" not in err


def test_dry_run_projects_each_unfinished_trial_and_starts_nothing(tmp_path, data_root, tiny_model_dir, capsys):
    path = tiny_sweep(tmp_path, data_root, tiny_model_dir)
    code, _, err = run_cli(["sweep", str(path), "--dry-run"], capsys)
    assert code == 0, err
    spec = load_sweep(path)
    names = [trial_key(point) for point in spec.points()]
    assert "4 of 4 trials left" in err and all(f"\n{name} " in err for name in names)
    assert not (tmp_path / "sweeps").exists()  # no Ray, no files
    every = announced_queries(err)

    finished = spec.root / "runs" / names[0]  # a finished trial (its results.json written) costs nothing more
    finished.mkdir(parents=True)
    (finished / "results.json").write_text("{}")
    code, _, err = run_cli(["sweep", str(path), "--dry-run"], capsys)
    assert code == 0 and "3 of 4 trials left" in err and f"\n{names[0]} " not in err
    assert 0 < announced_queries(err) < every

    for name in names[1:]:
        (spec.root / "runs" / name).mkdir()
        (spec.root / "runs" / name / "results.json").write_text("{}")
    code, _, err = run_cli(["sweep", str(path), "--dry-run"], capsys)
    assert code == 0 and "0 of 4 trials left: nothing to spend" in err and "about to spend" not in err


def test_missing_sweep_file(tmp_path, capsys):
    code, _, err = run_cli(["sweep", str(tmp_path / "nope.yaml")], capsys)
    assert code == 2 and "does not exist" in err


@pytest.mark.ray
@pytest.mark.slow
def test_sweep_killed_mid_way_keeps_finished_trials_and_finishes_the_others(
    ray_cluster, data_root, tiny_model_dir, tmp_path, capsys
):
    grid = {"tasks": [["tiny_sst"]], "seed": [0, 1, 2]}
    path = tiny_sweep(tmp_path, data_root, tiny_model_dir, grid=grid, max_concurrent=1)
    root = tmp_path / "sweeps" / "tiny"
    command = [sys.executable, "-m", "rl_select.cli", "sweep", str(path)]
    sweep = subprocess.Popen(
        command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    deadline = time.monotonic() + 300
    while not list(root.glob("runs/*/results.json")):
        assert sweep.poll() is None, "the sweep ended before it could be killed"
        assert time.monotonic() < deadline, "no trial finished in time"
        time.sleep(0.5)
    os.killpg(sweep.pid, signal.SIGKILL)  # the driver, its Ray cluster and the running trial, all at once
    sweep.wait(timeout=60)
    finished = {p: p.stat().st_mtime_ns for p in root.glob("runs/*/results.json")}
    assert 1 <= len(finished) < 3

    code, out, err = run_cli(["sweep", str(path)], capsys)
    assert code == 0, err
    with open(root / "trials.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and {r["status"] for r in rows} == {"ok"}
    assert all(p.stat().st_mtime_ns == stamp for p, stamp in finished.items())  # kept, not run again
