"""experiments/compare_runs.py: two runs of one command compared row by row and query by query."""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "compare_runs.py"


def results(path: Path, cpu: str, selections: list[list[int]], predictions: list[str]) -> Path:
    seed = {"seed": 0, "queries": len(predictions), "selections": selections, "selection": None}
    seed |= {"predictions_calibrated": predictions, "predictions_raw": predictions}
    learned = {"selector": {"name": "fqi"}, "seeds": [seed], "accuracy_calibrated_mean": 0.5}
    learned["accuracy_raw_mean"] = 0.5
    task_level = {"selector": {"name": "random"}, "accuracy_calibrated_mean": 0.25, "accuracy_raw_mean": 0.25}
    task_level["seeds"] = [{**seed, "selections": None, "selection": [1, 2]}]
    provenance = {"command": "rl-select train", "commit": "abc", "hardware": {"cpu": cpu, "threads": 2}}
    path.write_text(json.dumps({"provenance": provenance, "config": {}, "reports": [learned, task_level]}))
    return path


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=60)


def test_counts_differing_prompts_and_predictions(tmp_path):
    a = results(tmp_path / "a.json", "Intel", [[1, 2], [3, 4], [5, 6]], ["x", "y", "x"])
    b = results(tmp_path / "b.json", "AMD", [[1, 2], [4, 3], [5, 6]], ["x", "x", "x"])
    done = run(str(a), str(b), "--out", str(tmp_path / "cmp"))
    assert done.returncode == 0, done.stderr
    rows = {r["selector"]: r for r in json.loads((tmp_path / "cmp.json").read_text())["rows"]}
    assert (rows["fqi"]["prompts_differing"], rows["fqi"]["predictions_differing_calibrated"]) == (1, 1)
    assert (rows["random"]["prompts_differing"], rows["random"]["queries"]) == (0, 3)
    assert "| fqi | 1 | 50.0 | 50.0 | 50.0 | – | 1 of 3 | 1 / 1 |" in (tmp_path / "cmp.md").read_text()  # no gold


def test_a_paired_difference_where_both_runs_scored_the_same_rows(tmp_path):
    a = results(tmp_path / "a.json", "AMD", [[1, 2]] * 4, ["x", "y", "x", "x"])
    b = results(tmp_path / "b.json", "AMD", [[1, 2]] * 4, ["x", "x", "x", "x"])
    for path in (a, b):
        payload = json.loads(path.read_text())
        payload["reports"][0]["gold"] = ["x", "x", "x", "y"]
        path.write_text(json.dumps(payload))
    done = run(str(a), str(b), "--out", str(tmp_path / "cmp"))
    assert done.returncode == 0, done.stderr
    fqi = next(r for r in json.loads((tmp_path / "cmp.json").read_text())["rows"] if r["selector"] == "fqi")
    assert fqi["delta_calibrated"] == 25.0  # 3 of 4 right against 2 of 4
    assert fqi["delta_ci95"][0] <= 25.0 <= fqi["delta_ci95"][1]


def test_bad_input_is_one_line(tmp_path):
    a = results(tmp_path / "a.json", "Intel", [[1, 2]], ["x"])
    (tmp_path / "broken.json").write_text("{")
    (tmp_path / "other.json").write_text(json.dumps({"reports": [{"selector": {"name": "fqi"}, "seeds": [{}]}]}))
    bad = ("broken.json", "missing.json", "other.json")
    for args in ([str(a)], *([str(a), str(tmp_path / name)] for name in bad)):
        done = run(*args, "--out", str(tmp_path / "cmp"))
        assert done.returncode != 0 and done.stderr.strip().startswith("error:") and "Traceback" not in done.stderr


def test_runs_with_the_same_seeds_are_paired_by_seed_too(tmp_path):
    paths = []
    for name in ("a", "b"):  # the same two seeds, predictions differing between seeds but not between runs
        path = results(tmp_path / f"{name}.json", "AMD", [[1, 2]] * 4, ["x", "y", "x", "x"])
        payload = json.loads(path.read_text())
        other_seed = {**payload["reports"][0]["seeds"][0], "seed": 1, "predictions_calibrated": ["y", "x", "y", "x"]}
        payload["reports"][0]["seeds"].append(other_seed)
        payload["reports"][0]["gold"] = ["x", "x", "x", "y"]
        path.write_text(json.dumps(payload))
        paths.append(str(path))
    done = run(*paths, "--out", str(tmp_path / "cmp"))
    assert done.returncode == 0, done.stderr
    fqi = next(r for r in json.loads((tmp_path / "cmp.json").read_text())["rows"] if r["selector"] == "fqi")
    assert fqi["delta_calibrated"] == 0.0 and fqi["delta_ci95"] == [0.0, 0.0]
