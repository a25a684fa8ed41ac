"""The learned-selector study end to end on tiny tasks: every step, the table, resume, the transfer policy."""

import json

import pytest
import yaml

from rl_select.errors import ConfigError
from rl_select.runs.dirs import rule_path
from rl_select.study.config import StudyConfig
from rl_select.study.state import OTHER_TASKS, OWN, POOLED, PolicyChoice, PooledChoice, StudyState
from tests.helpers import (
    announced_queries,
    assert_ends_with_results_and_next,
    experiment_module,
    run_cli,
    timing_queries,
)

FEATURES = {"embedder": "lm", "projection_dim": 0, "label_onehot": False}


EVALUATION = {"rows": 6, "seeds": 2, "best_of_n_sets": 2, "best_of_n_dev_rows": 3}
QUERY = {
    "num_candidates": 4,
    "training_queries": 4,
    "dev_rows": 3,
    "rounds": 2,
    "epochs": 2,
    "variants": [{"fqi_alpha": 0.0}, {"fqi_alpha": 0.1}],
    "features": {**FEATURES, "label_vote": True, "llm_features": False},
}
TASK = {"num_candidates": 4, "reward_rows": 3, "episodes": 2, "rounds": 2, "epochs": 2, "features": FEATURES}


def label_check_agreement():
    return experiment_module("label_check_agreement.py")


def tiny_study(tmp_path, data_root, tiny_model_dir, **changes):
    spec = {
        "name": "tiny",
        "tasks": ["tiny_sst", "tiny_trec"],
        "out": str(tmp_path / "results"),
        "data_dir": str(data_root),
        "model": str(tiny_model_dir),
        "device": "cpu",
        "dtype": "float32",
        "k": 2,
        "embedder": "lm",
        "evaluation": EVALUATION,
        "query": QUERY,
        "task": TASK,
        **changes,
    }
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.mark.slow
def test_study_builds_the_whole_table_and_resumes(tmp_path, data_root, tiny_model_dir, capsys):
    path = tiny_study(tmp_path, data_root, tiny_model_dir)
    exported = tmp_path / "transfer-query"
    code, out, err = run_cli(["study", str(path), "--export-transfer", str(exported)], capsys)
    assert code == 0, err
    assert_ends_with_results_and_next(err, tmp_path / "results" / "tiny")
    root = tmp_path / "results" / "tiny"
    summary = json.loads((root / "summary.json").read_text())
    for task in ("tiny_sst", "tiny_trec", "average"):
        rows = summary[task]["rows"]
        assert set(rows) == {
            "zero-shot",
            "random",
            "knn",
            "best-of-n",
            "best-of-n (equal budget)",
            "learned query mode",
            "learned task mode",
            "learned query mode, other tasks",
        }
        for key in ("delta_vs_knn", "delta_vs_best_of_n", "transfer_vs_knn"):
            delta = summary[task][key]
            assert delta["ci95"][0] <= delta["mean"] <= delta["ci95"][1]
    learned = summary["tiny_sst"]["rows"]["learned query mode"]
    assert learned["cost_to_learn"]["queries"] > 0 and learned["cost_to_choose_per_seed"]["queries"] == 0
    best = summary["tiny_sst"]["rows"]["best-of-n"]
    assert best["cost_to_choose_per_seed"]["queries"] == 2 * 3  # N sets × dev rows
    equal = summary["tiny_sst"]["rows"]["best-of-n (equal budget)"]["cost_to_choose_per_seed"]["queries"]
    task_cost = summary["tiny_sst"]["rows"]["learned task mode"]["cost_to_learn"]["queries"]
    assert equal >= task_cost and equal == 3 * summary["tiny_sst"]["equal_budget_sets"]
    assert (root / "results.md").read_text().startswith("# Learned selectors vs baselines")
    assert (root / "accuracy.png").is_file()
    assert (exported / "config.json").is_file() and (exported / "policy" / "fqi.pt").is_file()
    assert json.loads((root / "dev" / "choices.json").read_text())["tiny_sst"]["chosen"]

    # the committed-style transfer policy runs on a task it never saw (and needs no pool of its own)
    args = ["evaluate", "--task", "tiny_rte", "--data-dir", str(data_root), "--model", str(tiny_model_dir)]
    args += ["--policy", str(exported), "--selector", "knn", "--k", "2", "--seeds", "1", "--embedder", "lm"]
    code, out, err = run_cli([*args, "--out", str(tmp_path / "rte.json")], capsys)
    assert code == 0, err

    # a rerun keeps everything: nothing is trained or scored again
    stamps = {p: p.stat().st_mtime_ns for p in root.glob("runs/*/policy/fqi.pt")}
    first = json.loads((root / "evaluation" / "tiny_sst.json").read_text())
    before = first["reports"]
    code, _, err = run_cli(["study", str(path)], capsys)
    assert code == 0, err
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps
    assert json.loads((root / "evaluation" / "tiny_sst.json").read_text())["reports"] == before
    assert json.loads((root / "summary.json").read_text())["partial"] is False
    evaluation = json.loads((root / "evaluation" / "tiny_sst.json").read_text())
    assert evaluation["provenance"]["command"].startswith("rl-select study") and evaluation["provenance"]["commit"]
    assert evaluation["provenance"] == first["provenance"]  # the run that computed the rows, not the rerun

    # the table of the tasks finished so far, without new LLM work: here only the first task's
    (root / "evaluation" / "tiny_trec.json").unlink()
    code, _, err = run_cli(["study", str(path), "--table-only"], capsys)
    assert code == 0, err
    partial = json.loads((root / "summary.json").read_text())
    assert partial["partial"] is True and partial["tasks_finished"] == ["tiny_sst"] and "tiny_trec" not in partial
    assert "**Partial**: 1 of the study's 2 tasks" in (root / "results.md").read_text()
    (root / "evaluation" / "tiny_sst.json").unlink()
    code, _, err = run_cli(["study", str(path), "--table-only"], capsys)
    assert code == 2 and "no task of the study has a finished evaluation" in err


def test_bad_study_files(tmp_path, data_root, tiny_model_dir, capsys):
    path = tiny_study(tmp_path, data_root, tiny_model_dir, query={"num_candidates": 4, "sizes": 3})
    code, _, err = run_cli(["study", str(path)], capsys)
    assert code == 2 and "unknown setting 'query.sizes'" in err
    with pytest.raises(ConfigError, match=r"unknown setting 'query\.proposers\.bogus'"):
        StudyConfig.from_dict({"tasks": ["a", "b"], "query": {"proposers": {"bogus": 1}}})  # before any LLM work
    with pytest.raises(ConfigError, match="distinct tasks"):
        StudyConfig(tasks=("a", "a"))
    with pytest.raises(ConfigError, match="at least two tasks"):
        StudyConfig(tasks=("a",))
    with pytest.raises(ConfigError, match="pooled rows need at least two tasks"):
        StudyConfig(tasks=("a",), transfer=False, pooled=True)
    StudyConfig(tasks=("a",), pooled=True, pooled_with=("studies/b",))  # transfer: fitted on the other study's tasks
    with pytest.raises(ConfigError, match="task_transfer_budgets need at least two tasks"):
        StudyConfig(tasks=("a",), pooled=True, pooled_with=("studies/b",), task_transfer_budgets=(1,))
    with pytest.raises(ConfigError, match=r"task\.pooled needs at least two tasks or pooled_with"):
        StudyConfig.from_dict({"tasks": ["a"], "transfer": False, "task": {"pooled": True}})
    with pytest.raises(ConfigError, match=r"task\.ranked_draws must be at least task\.proposals"):
        StudyConfig.from_dict({"tasks": ["a", "b"], "task": {"proposals": 8, "ranked_draws": 4}})
    with pytest.raises(ConfigError, match="ranked_draws must be at least each of task_transfer_budgets"):
        StudyConfig.from_dict({"tasks": ["a", "b"], "task": {"ranked_draws": 4}, "task_transfer_budgets": [1, 5]})
    verified = {"verify_rows": 3}
    for lacking in ({"pooled": False}, {"transfer": False}, {"query": {}}):
        settings = {"tasks": ("a", "b"), "pooled": True, "query": verified, **lacking, "every_policy": True}
        with pytest.raises(ConfigError, match="every_policy needs pooled, transfer and query"):
            StudyConfig.from_dict(settings)


def test_the_pooled_policy_is_kept_only_where_better_on_dev():
    assert PooledChoice("bm25", own_accuracy=0.6, pooled_accuracy=0.61).kept == "the pooled policy"
    tie = PooledChoice("bm25", own_accuracy=0.6, pooled_accuracy=0.6)
    assert not tie.pooled and tie.kept == "its own bm25"


def test_every_policy_keeps_the_first_best_on_dev():
    scores = {OWN: 0.6, POOLED: 0.6, OTHER_TASKS: 0.6}
    assert PolicyChoice("bm25", scores).kept_in_words == "own bm25"
    assert PolicyChoice("bm25", {**scores, OTHER_TASKS: 0.61}).kept == OTHER_TASKS
    assert PolicyChoice("policy", {**scores, POOLED: 0.62, OTHER_TASKS: 0.61}).to_dict()["kept"] == "pooled"


@pytest.mark.slow
def test_study_against_every_baseline_with_proposers_stop_and_curve(
    tmp_path, data_root, tiny_model_dir, capsys, requested_queries
):
    proposers = {"embedding": 2, "bm25": 1, "balanced": 1, "task": 1, "task_sets": 2, "task_dev_rows": 2}
    path = tiny_study(
        tmp_path,
        data_root,
        tiny_model_dir,
        name="strongest",
        evaluation={
            **EVALUATION,
            "baselines": ["zero-shot", "random", "balanced", "knn", "bm25", "mmr", "votek", "mdl", "cone", "best-of-n"],
        },
        task_transfer_budgets=[1, 2],
        transfer_check_rows=3,
        pooled=True,
        every_policy=True,
        learning_curve={"tasks": ["tiny_sst"], "queries": [2, 4]},
        query={
            "num_candidates": 5,
            "training_queries": 4,
            "dev_rows": 3,
            "rounds": 2,
            "epochs": 2,
            "variants": [{"fqi_alpha": 0.0}],
            "features": {**FEATURES, "label_vote": True, "llm_features": False},
            "proposers": proposers,
            "stop": True,
            "verify_rows": 3,
        },
        task={
            "num_candidates": 4,
            "reward_rows": 3,
            "episodes": 2,
            "rounds": 2,
            "epochs": 2,
            "features": {**FEATURES, "llm_features": False},
            "proposals": 2,
            "verify_rows": 2,
            "scored_prompts": 1,
            "ranked_draws": 3,
            "pooled": True,
        },
    )
    code, out, err = run_cli(["study", str(path)], capsys)
    assert code == 0, err
    projected = announced_queries(err)  # the stop action can end episodes early: at most that
    assert timing_queries(data_root) > 0
    run = requested_queries() - timing_queries(data_root)  # timing the scorer came before the announcement
    assert run <= projected <= 1.05 * run
    root = tmp_path / "results" / "strongest"
    summary = json.loads((root / "summary.json").read_text())
    sst = summary["tiny_sst"]
    assert {"balanced", "bm25", "mmr", "votek", "mdl", "cone", "task policy, other tasks (N=2)"} <= set(sst["rows"])
    assert {"best-of-n (N=1)", "best-of-n (N=2)", "learned query mode, other tasks"} <= set(sst["rows"])
    best = sst["best_baseline"]
    assert sst["rows"][best]["calibrated"] == max(
        row["calibrated"] for name, row in sst["rows"].items() if not name.startswith(("learned", "task policy"))
    )
    assert sst["best_zero_cost"] in ("zero-shot", "random", "balanced", "knn", "bm25", "mmr", "votek")
    for key in ("delta_vs_best_baseline", "transfer_vs_best_baseline", "task_transfer_vs_best_of_n_2"):
        assert sst[key]["ci95"][0] <= sst[key]["mean"] <= sst[key]["ci95"][1]
    average = summary["average"]
    assert {"delta_vs_best_single_baseline", "delta_vs_best_baseline", "transfer_vs_best_baseline"} <= set(average)
    # propose and verify: 2 prompts × 2 dev rows to choose, and the equal budget counts them
    assert sst["rows"]["learned task mode"]["cost_to_choose_per_seed"]["queries"] == 2 * 2
    assert sst["rows"]["task policy, other tasks (N=1)"]["cost_to_choose_per_seed"]["queries"] == 0
    # with its scored prompts: the same verification budget, its learning cost the task learner's own
    scored, task_row = sst["rows"]["learned task mode, with its scored prompts"], sst["rows"]["learned task mode"]
    assert scored["cost_to_choose_per_seed"]["queries"] == 2 * 2
    assert scored["cost_to_learn"] == task_row["cost_to_learn"]
    assert "scored_vs_best_of_n" in sst and "scored_vs_best_of_n" in average
    # Q-ranked proposals: the same verification budget and learning cost; the transfer task policy ranked too,
    # its N = 1 prompt chosen with no LLM calls
    ranked = sst["rows"]["learned task mode, Q-ranked proposals"]
    assert ranked["cost_to_choose_per_seed"]["queries"] == 2 * 2
    assert ranked["cost_to_learn"] == task_row["cost_to_learn"]
    assert "ranked_task_vs_best_of_n" in sst and "ranked_task_vs_best_of_n" in average
    assert sst["rows"]["task policy, other tasks, Q-ranked (N=1)"]["cost_to_choose_per_seed"]["queries"] == 0
    ranked_transfer, transfer_task = (sst["rows"][f"task policy, other tasks{r} (N=2)"] for r in (", Q-ranked", ""))
    assert ranked_transfer["cost_to_choose_per_seed"]["queries"] == transfer_task["cost_to_choose_per_seed"]["queries"]
    assert "ranked_task_transfer_vs_best_of_n_2" in sst and "ranked_task_transfer_vs_best_of_n_1" in average
    # task mode, all tasks' rows: fitted on both tasks' task-mode rows, verified as the task's own learner is
    pooled_task = sst["rows"]["learned task mode, all tasks' rows"]
    assert pooled_task["cost_to_choose_per_seed"]["queries"] == 2 * 2
    assert pooled_task["cost_to_learn"] == task_row["cost_to_learn"]
    assert "pooled_task_vs_best_of_n" in sst and "pooled_task_vs_best_of_n" in average
    pooled_fit = json.loads((root / "runs" / "transfer-task-all" / "config.json").read_text())["config"]
    assert pooled_fit["tasks"] == ["tiny_sst", "tiny_trec"]
    assert str(root / "runs" / "tiny_trec-task" / "episodes") in pooled_fit["data"]["dense_data"]
    assert sst["rows"]["learned query mode, other tasks"]["cost_to_choose_per_seed"]["queries"] == 0
    # dev-verified: the policy or a rule it can reproduce, whichever was best on 3 dev rows (learning cost)
    verified = sst["verified_rule"]
    assert set(verified["dev_scores"]) == {"policy", "zero-shot", "embedding", "bm25", "balanced", "task"}
    assert verified["dev_scores"][verified["rule"]] == max(verified["dev_scores"].values())
    assert verified["margin"]["runner_up"] in set(verified["dev_scores"]) - {verified["rule"]}
    learned_cost = sst["rows"]["learned query mode"]["cost_to_learn"]["queries"]
    assert sst["rows"]["learned query mode, dev-verified"]["cost_to_learn"]["queries"] == (
        learned_cost + verified["cost"]["queries"]
    )
    assert "verified_vs_best_baseline" in sst and "verified_vs_best_single_baseline" in average
    # label-checked transfer: the transfer policy or a zero-cost rule, by gold-label share on 3 dev rows, no LLM calls
    checked = sst["transfer_rule"]
    assert checked["measure"] == "labels" and checked["cost"]["queries"] == 0 and checked["task"] == "tiny_sst"
    assert set(checked["dev_scores"]) == {"policy", "embedding", "bm25", "balanced"}
    assert checked["dev_scores"][checked["rule"]] == max(checked["dev_scores"].values()) and checked["margin"] is None
    row = sst["rows"]["learned query mode, other tasks, label-checked"]
    assert row["cost_to_learn"]["queries"] == 0 and row["cost_to_choose_per_seed"]["queries"] == 0
    assert "checked_transfer_vs_best_baseline" in sst and "checked_transfer_vs_best_single_zero_cost" in average
    # pooled: the policy fitted on every task's rows; dev-verified, it or the task's own dev choice, whichever is
    # better on the same dev rows (the own choice on ties), its dev scoring counted as learning cost
    pooled = sst["pooled_choice"]
    assert pooled["own_rule"] == verified["rule"] and pooled["own_accuracy"] == verified["dev_scores"][verified["rule"]]
    assert pooled["pooled"] == (pooled["pooled_accuracy"] > pooled["own_accuracy"])
    pooled_dev = json.loads((root / "dev" / "transfer-all-on-tiny_sst.json").read_text())
    assert pooled_dev["accuracy_calibrated"] == pytest.approx(pooled["pooled_accuracy"], abs=1e-6)
    rows = sst["rows"]
    assert rows["learned query mode, all tasks' rows"]["cost_to_learn"] == rows["learned query mode"]["cost_to_learn"]
    assert rows["learned query mode, all tasks' rows, dev-verified"]["cost_to_learn"]["queries"] == (
        rows["learned query mode, dev-verified"]["cost_to_learn"]["queries"] + pooled_dev["cost"]["queries"]
    )
    kept = "learned query mode, all tasks' rows" if pooled["pooled"] else "learned query mode, dev-verified"
    for measure in ("calibrated", "raw"):
        assert rows["learned query mode, all tasks' rows, dev-verified"][measure] == rows[kept][measure]
    assert {"pooled_vs_best_baseline", "verified_pooled_vs_best_baseline"} <= set(sst)
    assert {"pooled_vs_best_single_baseline", "verified_pooled_vs_best_single_baseline"} <= set(average)
    # every policy: the own choice, the pooled policy and the other tasks' policy on the same dev rows, the first
    # best kept; the other tasks' policy's dev scoring is learning cost too
    every = sst["every_policy_choice"]
    assert list(every["scores"]) == [OWN, POOLED, OTHER_TASKS]
    assert every["scores"][OWN] == pooled["own_accuracy"] and every["scores"][POOLED] == pooled["pooled_accuracy"]
    other_dev = json.loads((root / "dev" / "transfer-tiny_sst-on-tiny_sst.json").read_text())
    assert other_dev["accuracy_calibrated"] == pytest.approx(every["scores"][OTHER_TASKS], abs=1e-6)
    first_best = max(every["scores"], key=every["scores"].get)
    assert every["kept"] == (f"own {verified['rule']}" if first_best == OWN else first_best)
    kept = {
        OWN: "learned query mode, dev-verified",
        POOLED: "learned query mode, all tasks' rows",
        OTHER_TASKS: "learned query mode, other tasks",
    }[first_best]
    every_row = rows["learned query mode, every policy, dev-verified"]
    for measure in ("calibrated", "raw"):
        assert every_row[measure] == rows[kept][measure]
    assert every_row["cost_to_learn"]["queries"] == (
        rows["learned query mode, dev-verified"]["cost_to_learn"]["queries"]
        + pooled_dev["cost"]["queries"]
        + other_dev["cost"]["queries"]
    )
    assert "verified_every_vs_best_baseline" in sst and "verified_every_vs_best_single_baseline" in average
    text = (root / "results.md").read_text()
    assert f"Every policy, dev-verified: dev kept **{every['kept']}**" in text
    assert "learned query mode, every policy, dev-verified ≥ each task's best baseline − 1" in text
    assert f"All tasks' rows, dev-verified: dev kept **{pooled['kept']}**" in text
    assert "learned query mode, all tasks' rows, dev-verified ≥ each task's best baseline − 1" in text
    assert "Targets (calibrated" in text and "best single baseline" in text
    assert f"Dev-verified: dev chose **{verified['rule']}**" in text
    assert f"; kept {verified['margin']['mean']:+.1f} [" in text and f"over {verified['margin']['runner_up']}" in text
    assert f"Transfer, label-checked: dev chose **{checked['rule']}**" in text
    curve = json.loads((root / "curve" / "tiny_sst.json").read_text())
    assert sorted(curve["points"]) == ["2", "4"] and (root / "curve.png").is_file()

    # experiments/label_check_agreement.py: the label check beside each task's accuracy choice, study untouched
    rules_before = {t: rule_path(root / "runs" / f"{t}-query-data", t).read_text() for t in ("tiny_sst", "tiny_trec")}
    agreement = label_check_agreement()
    assert agreement.main([str(root), "--out", str(tmp_path / "agreement")]) == 0
    found = json.loads((tmp_path / "agreement.json").read_text())
    assert [t["task"] for t in found["tasks"]] == ["tiny_sst", "tiny_trec"]
    for row in found["tasks"]:
        assert set(row["gold_label_share"]) == {"policy", "embedding", "bm25", "balanced"}
        assert row["by_labels"] == max(row["gold_label_share"], key=row["gold_label_share"].get)
        assert row["agree"] == (row["by_accuracy"] == row["by_labels"])
    assert found["agree"] == sum(row["agree"] for row in found["tasks"])
    assert rules_before == {
        t: rule_path(root / "runs" / f"{t}-query-data", t).read_text() for t in ("tiny_sst", "tiny_trec")
    }
    assert agreement.main([str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]) == 2
    assert all("delta_vs_knn" in point for point in curve["points"].values())


@pytest.mark.slow
def test_a_held_out_study_pools_another_studys_rows(tmp_path, data_root, tiny_model_dir, capsys):
    first = tiny_study(tmp_path, data_root, tiny_model_dir, query={**QUERY, "stop": True, "verify_rows": 3})
    code, _, err = run_cli(["study", str(first)], capsys)
    assert code == 0, err
    source = tmp_path / "results" / "tiny"
    changes = {
        "name": "held",
        "tasks": ["tiny_rte"],
        "pooled": True,
        "pooled_with": [str(source)],
        "every_policy": True,
        "task": {**TASK, "pooled": True},
    }
    path = tiny_study(tmp_path, data_root, tiny_model_dir, query={**QUERY, "stop": True, "verify_rows": 3}, **changes)
    code, _, err = run_cli(["study", str(path)], capsys)
    assert code == 0, err
    pooled = json.loads((tmp_path / "results" / "held" / "runs" / "transfer-all" / "config.json").read_text())
    assert pooled["config"]["tasks"] == ["tiny_rte", "tiny_sst", "tiny_trec"]
    assert str(source / "runs" / "tiny_sst-query-data" / "episodes") in pooled["config"]["data"]["dense_data"]
    other_tasks = json.loads((tmp_path / "results" / "held" / "runs" / "transfer-tiny_rte" / "config.json").read_text())
    assert other_tasks["config"]["tasks"] == ["tiny_sst", "tiny_trec"]  # the other study's tasks only
    pooled_task = json.loads((tmp_path / "results" / "held" / "runs" / "transfer-task-all" / "config.json").read_text())
    assert pooled_task["config"]["tasks"] == ["tiny_rte", "tiny_sst", "tiny_trec"]
    assert str(source / "runs" / "tiny_sst-task" / "episodes") in pooled_task["config"]["data"]["dense_data"]
    summary = json.loads((tmp_path / "results" / "held" / "summary.json").read_text())
    assert {
        "learned query mode, all tasks' rows",
        "learned query mode, all tasks' rows, dev-verified",
        "learned query mode, other tasks",
        "learned query mode, every policy, dev-verified",
        "learned task mode, all tasks' rows",
    } <= set(summary["tiny_rte"]["rows"])

    # experiments/gated_verification.py: the gate's choices beside the argmax's, each read from a test row
    held = tmp_path / "results" / "held"
    gated = experiment_module("gated_verification.py")
    assert gated.main([str(held), "--data-dir", str(data_root), "--out", str(tmp_path / "gated")]) == 0
    (check,) = json.loads((tmp_path / "gated.json").read_text())["tasks"]
    stored_rule = json.loads(
        rule_path(held / "runs" / StudyState(held).choice("tiny_rte").chosen, "tiny_rte").read_text()
    )
    assert check["own"]["argmax"] == stored_rule["rule"] and check["own"]["incumbent"] == "policy"
    assert summary["tiny_rte"]["every_policy_choice"]["kept"].startswith(check["every"]["argmax"])
    every_row = summary["tiny_rte"]["rows"]["learned query mode, every policy, dev-verified"]
    assert check["every"]["test_argmax"] == pytest.approx(every_row["calibrated"], abs=0.051)
    assert check["best_baseline"] == summary["tiny_rte"]["best_baseline"]
    for level in ("own", "every"):
        assert (
            check[level]["gated"] == check[level]["incumbent"]
            or min(check[level]["gate_intervals"][check[level]["gated"]]) > 0
        )
    assert (
        gated.main([str(source), "--data-dir", str(data_root), "--out", str(tmp_path / "x")]) == 2
    )  # no every-policy row

    # experiments/wide_verification.py: without pool rows it keeps what the every-policy row kept; with them, the
    # contender best over dev and pool rows, each scored on pool queries its learner never trained on
    wide = experiment_module("wide_verification.py")

    def wide_check(out: str, *options: str) -> dict:
        assert wide.main([str(held), "--data-dir", str(data_root), "--out", str(tmp_path / out), *options]) == 0
        (found,) = json.loads((tmp_path / f"{out}.json").read_text())["tasks"]
        return found

    same = wide_check("wide0", "--pool-rows", "0")
    assert same["kept"] == same["every_argmax"] and same["kept_test"] == same["every_test"]
    assert same["every_test"] == pytest.approx(every_row["calibrated"], abs=0.051)
    check = wide_check("wide", "--pool-rows", "3", "--margin", "100")
    assert check["pool_rows"] == 3 and all(c["pool"] is not None for c in check["candidates"])
    combined = {
        c["name"]: (check["dev_rows"] * c["dev"] + 3 * c["pool"]) / (check["dev_rows"] + 3) for c in check["candidates"]
    }
    assert combined[check["kept"]] == max(combined.values())
    assert wide.main([str(source), "--data-dir", str(data_root), "--out", str(tmp_path / "x")]) == 2
    assert wide.main([str(held), "--data-dir", str(data_root), "--out", str(tmp_path / "x"), "--pool-rows", "-1"]) == 2
    assert wide.main([str(held), "--data-dir", str(data_root), "--out", str(tmp_path / "x"), "--tasks", "imdb"]) == 2
    assert wide.main([str(tmp_path), "--data-dir", str(data_root), "--out", str(tmp_path / "x")]) == 2  # no study.json
    assert wide_check("wide_rte", "--pool-rows", "0", "--tasks", "tiny_rte,imdb")["task"] == "tiny_rte"

    # experiments/q_ranking_check.py: the task-mode learner's valued draws, each scored on the verification dev rows
    ranking = experiment_module("q_ranking_check.py")
    options = ["--data-dir", str(data_root), "--draws", "5"]
    assert ranking.main([str(held), *options, "--out", str(tmp_path / "ranking")]) == 0
    report = json.loads((tmp_path / "ranking.json").read_text())
    (check,) = report["tasks"]
    assert check["task"] == "tiny_rte" and check["draws"] == 5 and -1 <= check["spearman"] <= 1
    assert check["spearman_ci95"][0] <= check["spearman_ci95"][1]
    assert check["top_valued"]["best"] <= check["all_draws"]["best"] and check["first_drawn"]["mean"] >= 0
    assert 0 < report["cost"]["queries"] <= 5 * check["dev_rows"]
    assert ranking.main([str(held), "--data-dir", str(data_root), "--out", str(tmp_path / "x"), "--draws", "1"]) == 2
    assert ranking.main([str(tmp_path), "--data-dir", str(data_root), "--out", str(tmp_path / "x")]) == 2

    # experiments/example_values_check.py: proposals from the learner's rows' per-demonstration values
    values = experiment_module("example_values_check.py")
    assert values.main([str(held), *options, "--out", str(tmp_path / "values")]) == 0
    (check,) = json.loads((tmp_path / "values.json").read_text())["tasks"]
    assert check["task"] == "tiny_rte" and check["valued_demonstrations"] > 0 and check["dev_rows"] > 0
    assert check["first_drawn"]["best"] <= check["all_draws"]["best"]
    assert values.main([str(held), "--data-dir", str(data_root), "--out", str(tmp_path / "x"), "--draws", "0"]) == 2

    other = tiny_study(
        tmp_path, data_root, tiny_model_dir, k=3, query={**QUERY, "stop": True, "verify_rows": 3}, **changes
    )
    code, _, err = run_cli(["study", str(other)], capsys)
    assert code == 2 and "has other k, embedder or query settings than this one" in err
    other = tiny_study(
        tmp_path,
        data_root,
        tiny_model_dir,
        query={**QUERY, "stop": True, "verify_rows": 3},
        **{**changes, "task": {**TASK, "num_candidates": 5, "pooled": True}},
    )
    code, _, err = run_cli(["study", str(other)], capsys)
    assert code == 2 and "has other task-mode row settings than this one" in err
    missing = tiny_study(
        tmp_path,
        data_root,
        tiny_model_dir,
        query={**QUERY, "verify_rows": 3},
        **{**changes, "pooled_with": [str(tmp_path)]},
    )
    code, _, err = run_cli(["study", str(missing)], capsys)
    assert code == 2 and "is not a study's directory (no study.json)" in err


@pytest.mark.slow
def test_the_projection_is_the_work_the_study_requests(tmp_path, data_root, tiny_model_dir, requested_queries):
    from rl_select.budget import profiles_for
    from rl_select.scoring import load_language_model
    from rl_select.study.config import read_study
    from rl_select.study.learned import Study
    from rl_select.study.projection import project_study
    from rl_select.tasks import load_task

    config = read_study(tiny_study(tmp_path, data_root, tiny_model_dir))
    tasks = [load_task(name, config.data_dir) for name in config.tasks]
    lm = load_language_model(str(tiny_model_dir), device="cpu", dtype="float32")
    profiles = profiles_for(tasks, lm.tokenizer)
    state = StudyState(config.root)
    projected = project_study(config, tasks, profiles, "cpu", state)  # nothing done yet: all of it
    assert projected.total.queries == project_study(config, tasks, profiles, "cpu").total.queries
    Study(config).run()
    requested = requested_queries()
    print(f"study: projected {projected.total.queries:.0f}, requested {requested}")
    assert abs(projected.total.queries - requested) <= 0.05 * requested

    # resumed: finished work is left out; what a rerun would redo is projected again
    assert project_study(config, tasks, profiles, "cpu", state).total.queries == 0
    steps = {step.name: step.queries for step in projected.steps}
    (config.root / "evaluation" / "tiny_trec.json").unlink()
    for episode in (state.task_run("tiny_sst") / "episodes" / "episodes").iterdir():
        episode.unlink()
    (config.root / "dev" / "tiny_sst-query-data.json").unlink()
    again = {step.name: step.queries for step in project_study(config, tasks, profiles, "cpu", state).steps}
    assert 0 < again["evaluation"] < steps["evaluation"] and 0 < again["task-mode rows"] < steps["task-mode rows"]
    assert 0 < again["query-mode dev comparison"] < steps["query-mode dev comparison"]
    assert "query-mode rows" not in again
