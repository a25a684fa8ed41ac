import json

import pytest

from tests.helpers import assert_ends_with_results_and_next, run_cli


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
    assert_ends_with_results_and_next(err, out)
    payload = json.loads(out.read_text())
    record = payload["provenance"]
    assert record["command"].startswith("rl-select evaluate")
    assert {"commit", "hardware", "time_utc", "versions"} <= set(record)
    assert record["seeds"] == [0, 1] and record["model"]["name"] == str(tiny_model_dir)
    assert payload["request"]["selectors"] == ["random", "knn"] and payload["request"]["seeds"] == 2
    reports = {r["selector"]["name"]: r for r in payload["reports"]}
    assert len(reports["random"]["seeds"]) == 2 and reports["random"]["seeds"][0]["queries"] == 6
    assert 0 <= reports["knn"]["accuracy_calibrated_mean"] <= 1
    assert out.with_suffix(".md").read_text().startswith("# tiny_sst")

    # a rerun of one of the selectors into the same file keeps the other's finished results
    args = ["evaluate", "--task", "tiny_sst", "--data-dir", str(data_root), "--model", str(tiny_model_dir)]
    args += ["--selector", "knn", "--k", "2", "--seeds", "2", "--n-test", "6", "--out", str(out)]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    kept = json.loads(out.read_text())["reports"]
    assert [r["selector"]["name"] for r in kept] == ["random", "knn"] and kept[0] == payload["reports"][0]


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
    assert len(names) == 13 and {"greedy-oracle", "mdl", "cone", "votek"} <= set(names)


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
            "--repeats",
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
    ours = [run for run in result["runs"] if run["path"] == "rl-select"]
    assert {run["dtype"] for run in ours} == {"float32", "bfloat16"} and sum(run["default"] for run in ours) == 1
    assert all(run["share_of_gemm_peak"] > 0 and len(run["seconds_each"]) == 2 for run in ours)
    assert set(result["gemm_peak_tflops"]) == {"float32", "bfloat16"} and result["cpu"]
    assert result["dtype_reason"].startswith("auto:") and result["model"]["dtype_reason"] == result["dtype_reason"]


def test_evaluate_dump_has_every_query_of_every_selector_and_seed(tiny_model_dir, data_root, tmp_path, capsys):
    out, dump = tmp_path / "res.json", tmp_path / "dump.jsonl"
    args = ["evaluate", "--task", "tiny_sst", "--data-dir", str(data_root), "--model", str(tiny_model_dir)]
    args += ["--selector", "random,knn", "--k", "2", "--seeds", "2", "--n-test", "5", "--out", str(out)]
    code, _, err = run_cli([*args, "--dump", str(dump)], capsys)
    assert code == 0, err
    lines = [json.loads(line) for line in dump.read_text().splitlines()]
    assert len(lines) == 2 * 2 * 5
    reports = {r["selector"]["name"]: r for r in json.loads(out.read_text())["reports"]}
    for line in lines:
        seed = reports[line["selector"]]["seeds"][line["seed"]]
        assert len(line["demonstrations"]) == 2 and all(d["text"] for d in line["demonstrations"])
        assert abs(sum(line["probs_calibrated"].values()) - 1) < 1e-3
        assert line["prediction_calibrated"] == max(line["probs_calibrated"], key=line["probs_calibrated"].get)
        if line["selector"] == "random":  # one prompt for every query of a seed, as in the result file
            assert [d["id"] for d in line["demonstrations"]] == seed["selection"]
    knn_prompts = {tuple(d["id"] for d in x["demonstrations"]) for x in lines if x["selector"] == "knn"}
    assert len(knn_prompts) > 1  # per query
    accuracy = sum(x["prediction"] == x["gold"] for x in lines if x["selector"] == "knn" and x["seed"] == 0) / 5
    assert accuracy == pytest.approx(reports["knn"]["seeds"][0]["accuracy"])
    # a rerun resumes from the result file and dumps the same lines
    code, _, err = run_cli([*args, "--dump", str(tmp_path / "again.jsonl")], capsys)
    assert code == 0, err
    assert (tmp_path / "again.jsonl").read_text() == dump.read_text()


def test_help_lists_every_selector_name():
    from rl_select.evaluation.request import SELECTOR_NAMES
    from rl_select.selectors import SELECTORS

    assert list(SELECTOR_NAMES) == list(SELECTORS)


def test_result_files_keep_label_distributions_only_for_a_dump(tiny_model_dir, data_root, tmp_path, capsys):
    out = tmp_path / "plain.json"
    args = ["evaluate", "--task", "tiny_sst", "--data-dir", str(data_root), "--model", str(tiny_model_dir)]
    args += ["--selector", "knn", "--k", "2", "--seeds", "1", "--n-test", "4", "--out", str(out)]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    seed = json.loads(out.read_text())["reports"][0]["seeds"][0]
    assert seed["probs_calibrated"] == [] and len(seed["selections"]) == 4
    code, _, err = run_cli([*args, "--dump", str(tmp_path / "d.jsonl")], capsys)  # that seed is evaluated again
    assert code == 0, err
    assert len((tmp_path / "d.jsonl").read_text().splitlines()) == 4


def test_evaluate_says_what_it_will_spend_and_uses_cpu_defaults(tiny_model_dir, data_root, tmp_path, capsys):
    out = tmp_path / "res.json"
    args = ["evaluate", "--task", "tiny_sst", "--data-dir", str(data_root), "--model", str(tiny_model_dir)]
    args += ["--selector", "best-of-n,knn", "--num-sets", "2", "--k", "2", "--n-test", "6"]
    code, stdout, err = run_cli([*args, "--out", str(out)], capsys)
    assert code == 0, err
    lines = {line.split()[0]: line.split() for line in err.splitlines() if line.split()}
    # best-of-n: 3 seeds (the CPU default) × (2 sets × its dev rows + 1 prompt × 6 rows); knn: 6 query-level
    # prompts once (it does not read the seed: its other seeds repeat the first)
    payload = json.loads(out.read_text())
    reports = {r["selector"]["name"]: r for r in payload["reports"]}
    assert payload["provenance"]["seeds"] == [0, 1, 2] and "3 seed(s)" in stdout
    dev_rows = reports["best-of-n"]["selector"]["dev_size"]
    assert dev_rows == 16  # the CPU default, not the GPU's 200
    from rl_select.tasks import load_task

    used = min(dev_rows, len(load_task("tiny_sst", str(data_root)).dev))
    assert lines["best-of-n"][1] == f"{3 * (2 * used + 6):,}" and lines["knn"][1] == "6"
    assert "about to spend" in err
    assert json.loads(out.read_text())["key"]["embedder"] == "minilm"  # the CPU default, on record


def test_evaluate_fits_the_settings_left_open_to_the_cpu_and_says_so(tiny_model_dir, data_root, tmp_path, capsys):
    out = tmp_path / "fitted.json"
    args = ["evaluate", "--task", "tiny_sst", "--data-dir", str(data_root), "--model", str(tiny_model_dir)]
    code, _, err = run_cli([*args, "--selector", "zero-shot", "--n-test", "2", "--out", str(out)], capsys)
    assert code == 0, err
    assert "fitted to this machine (give a value to override): seeds=3" in err
    request = json.loads(out.read_text())["request"]
    assert request["seeds"] == 3 and request["device"] == "auto" and request["rows"] == 2


def test_evaluate_dry_run_shows_the_fitted_settings_and_the_projection_and_writes_nothing(
    tiny_model_dir, data_root, tmp_path, capsys
):
    out = tmp_path / "res.json"
    args = ["evaluate", "--task", "tiny_sst", "--data-dir", str(data_root), "--model", str(tiny_model_dir)]
    code, stdout, err = run_cli(
        [*args, "--selector", "random,knn", "--n-test", "6", "--out", str(out), "--dry-run"], capsys
    )
    assert code == 0, err
    assert "fitted to this machine" in err and "seeds=3" in err  # the CPU profile, from the request's fields
    assert "about to spend" in err and "random" in err and "dry run: nothing was scored" in err
    assert not out.exists() and not out.with_suffix(".md").exists() and stdout == ""
