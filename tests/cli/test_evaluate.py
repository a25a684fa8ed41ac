import json

import pytest

from tests.helpers import run_cli


def test_evaluate_writes_results_with_provenance(tiny_model_dir, data_root, tmp_path, capsys):
    out = tmp_path / "res.json"
    code, stdout, err = run_cli(
        [
            "evaluate",
            "--task",
            "tiny_sst",
            "--data-dir",
            str(data_root),
            "--model",
            str(tiny_model_dir),
            "--selector",
            "random,knn",
            "--k",
            "2",
            "--seeds",
            "2",
            "--n-test",
            "6",
            "--out",
            str(out),
        ],
        capsys,
    )
    assert code == 0, err
    assert "random" in stdout and "knn" in stdout
    payload = json.loads(out.read_text())
    record = payload["provenance"]
    assert record["command"].startswith("rl-select evaluate")
    assert {"commit", "hardware", "time_utc", "versions"} <= set(record)
    assert record["seeds"] == [0, 1] and record["model"]["name"] == str(tiny_model_dir)
    reports = {r["selector"]["name"]: r for r in payload["reports"]}
    assert len(reports["random"]["seeds"]) == 2 and reports["random"]["seeds"][0]["queries"] == 6
    assert 0 <= reports["knn"]["accuracy_calibrated_mean"] <= 1
    assert out.with_suffix(".md").read_text().startswith("# tiny_sst")


def test_evaluate_order_ablation_reverses_each_selection(tiny_model_dir, data_root, tmp_path, capsys):
    out = tmp_path / "order.json"
    args = ["evaluate", "--task", "tiny_trec", "--data-dir", str(data_root), "--model", str(tiny_model_dir)]
    args += ["--selector", "random", "--k", "3", "--seeds", "2", "--n-test", "4", "--order", "both", "--out", str(out)]
    code, stdout, err = run_cli(args, capsys)
    assert code == 0, err
    reports = json.loads(out.read_text())["reports"]
    assert [r["selector"]["name"] for r in reports] == ["random", "random (reversed)"]
    assert reports[1]["selector"]["reversed"] is True
    for plain, flipped in zip(reports[0]["seeds"], reports[1]["seeds"], strict=True):
        assert flipped["selection"] == plain["selection"][::-1] and len(set(plain["selection"])) == 3


@pytest.mark.slow
def test_evaluate_all_selectors(tiny_model_dir, data_root, tmp_path, capsys):
    out = tmp_path / "all.json"
    code, _stdout, err = run_cli(
        [
            "evaluate",
            "--task",
            "tiny_trec",
            "--data-dir",
            str(data_root),
            "--model",
            str(tiny_model_dir),
            "--selector",
            "all",
            "--k",
            "2",
            "--seeds",
            "1",
            "--n-test",
            "4",
            "--num-sets",
            "2",
            "--dev-size",
            "3",
            "--num-candidates",
            "4",
            "--out",
            str(out),
        ],
        capsys,
    )
    assert code == 0, err
    names = [r["selector"]["name"] for r in json.loads(out.read_text())["reports"]]
    assert len(names) == 10 and "greedy-oracle" in names


def test_bench_scorer_reports_ratio_and_identical_predictions(tiny_model_dir, data_root, tmp_path, capsys):
    out = tmp_path / "bench.json"
    code, stdout, err = run_cli(
        [
            "bench",
            "scorer",
            "--device",
            "cpu",
            "--task",
            "tiny_trec",
            "--data-dir",
            str(data_root),
            "--model",
            str(tiny_model_dir),
            "--queries",
            "6",
            "--k",
            "2",
            "--env-steps",
            "2",
            "--out",
            str(out),
        ],
        capsys,
    )
    assert code == 0, err
    assert "ratio =" in stdout and "identical" in stdout
    result = json.loads(out.read_text())
    assert result["identical_predictions_same_dtype"] and result["ratio"] > 0
    assert result["runs"][0]["path"] == "naive HF"
    assert [run["batch_prefixes"] for run in result["env"]] == [False, True]
    assert all(run["rewards_per_s"] > 0 and run["forwards"] > 0 for run in result["env"])
    assert "rewards/s" in stdout and "TFLOP/s" in stdout
