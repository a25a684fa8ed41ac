"""Rules a query-mode policy can follow instead of its Q-function: chosen on dev, stored, exported, served."""

import json
import shutil

import numpy as np
import pytest

from rl_select import load_selector
from rl_select.errors import ArtifactError, ConfigError
from rl_select.export import manifest as fmt
from rl_select.observation import PROPOSER_COLUMNS, STOP_COLUMN
from rl_select.resources import Resources
from rl_select.rules import available_rules, check_rule, rule_action, rule_scores
from rl_select.runs.dirs import read_rule_choice, rule_path
from rl_select.runs.policy import PolicySelector
from rl_select.scoring import load_language_model
from rl_select.tasks import load_task
from rl_select.tasks.task import Example
from tests.helpers import assert_ends_with_results_and_next, run_cli
from tests.service.conftest import parity_queries

COLUMNS = ("length", *PROPOSER_COLUMNS, STOP_COLUMN)


def observation(offered: dict[str, list[int]], m: int = 6) -> np.ndarray:
    """Candidate rows (plus the stop row) where each proposer offered the listed candidates, best first."""
    rows = np.zeros((m + 1, len(COLUMNS)), np.float32)
    for name in ("embedding", "bm25", "balanced", "task"):
        rows[:m, COLUMNS.index(f"rank_{name}")] = 1.0
        for rank, candidate in enumerate(offered.get(name, [])):
            rows[candidate, COLUMNS.index(f"from_{name}")] = 1.0
            rows[candidate, COLUMNS.index(f"rank_{name}")] = rank / len(offered[name])
    rows[m, -1] = 1.0
    return rows


def episode(rows: np.ndarray, rule: str, order: str = "append", k: int = 4) -> list[int]:
    mask, picks = np.ones(len(rows), bool), []
    for _ in range(k):
        action = rule_action(rows, mask, COLUMNS, rule, order)
        if action == len(rows) - 1:
            break
        picks.append(action)
        mask[action] = False
    return picks


def test_a_ranked_proposer_is_followed_best_last_and_stops_when_its_list_is_used_up():
    rows = observation({"bm25": [3, 1, 5], "embedding": [0, 2, 4, 1]})
    assert episode(rows, "bm25") == [5, 1, 3]  # appended: its best (3) ends right before the query
    assert episode(rows, "embedding") == [1, 4, 2, 0]
    assert episode(rows, "bm25", order="prepend") == [3, 1, 5]  # prepended: best first, so it ends last too


def test_the_task_proposer_keeps_its_prompt_order_and_zero_shot_stops_at_once():
    rows = observation({"task": [4, 0, 2]})
    assert episode(rows, "task") == [4, 0, 2]
    assert episode(rows, "task", order="prepend") == [2, 0, 4]
    assert episode(rows, "zero-shot") == []
    assert rule_scores(rows, COLUMNS, "zero-shot", "append").argmax() == 6


def test_rules_a_policy_cannot_follow_are_refused():
    assert available_rules({"embedding": 4, "bm25": 0, "task": 2}, stop=True) == [
        "policy",
        "zero-shot",
        "embedding",
        "task",
    ]
    assert available_rules(None, stop=False) == ["policy"]
    with pytest.raises(ConfigError, match="'bm25' is not available"):
        check_rule("bm25", {"embedding": 4}, stop=True)
    with pytest.raises(ConfigError, match="'zero-shot' is not available"):
        check_rule("zero-shot", {"embedding": 4}, stop=False)
    with pytest.raises(ConfigError, match="needs the 'bm25' proposer's columns"):
        rule_scores(np.zeros((3, 2), np.float32), ("a", "b"), "bm25", "append")


@pytest.fixture
def verified_run(proposer_policy, tmp_path):
    """A copy of the proposer policy's run (verifying writes into it; the session's run stays as it is)."""
    return shutil.copytree(proposer_policy[0], tmp_path / "run")


def selector_with(run_dir, big_data, tiny_model_dir, **options):
    task = load_task("gen_sst", big_data)
    lm = load_language_model(str(tiny_model_dir), device="cpu", dtype="float32")
    return PolicySelector.from_run(run_dir, **options).build(Resources(task, lm=lm)), task


def test_a_rule_in_the_env_takes_exactly_its_proposers_top_k(verified_run, big_data, tiny_model_dir):
    selector, task = selector_with(verified_run, big_data, tiny_model_dir, rule="bm25")
    env = selector._env
    for i, text in enumerate(parity_queries(10)):
        query = Example(split="query", id=i, text=text, label="positive")
        picks = selector.select(task, query, 3, np.random.default_rng(0))
        episode = env.episode
        columns = {name: i for i, name in enumerate(PROPOSER_COLUMNS)}
        offered = np.flatnonzero(episode.proposer_features[:, columns["from_bm25"]])
        by_rank = sorted(offered, key=lambda c: episode.proposer_features[c, columns["rank_bm25"]])
        assert len(by_rank) == 2  # the run's bm25 proposer offers 2: the rule stops after them
        assert picks == [int(episode.candidates[c]) for c in by_rank][::-1]  # its best last
    zero_shot, _ = selector_with(verified_run, big_data, tiny_model_dir, rule="zero-shot")
    assert zero_shot.select(task, Example(split="query", id=0, text="fine", label="positive"), 3, None) == []


def test_a_query_mode_policy_chooses_alike_at_every_seed_and_a_task_mode_one_does_not(
    proposer_policy, task_policies, big_data, tiny_model_dir
):
    query_mode, task = selector_with(proposer_policy[0], big_data, tiny_model_dir)
    assert not query_mode.seeded  # so evaluation chooses and scores it once, its other seeds repeating that
    for i, text in enumerate(parity_queries(6)):
        query = Example(split="query", id=i, text=text, label="positive")
        assert len({tuple(query_mode.select(task, query, 3, np.random.default_rng(s))) for s in range(4)}) == 1
    task_mode, _ = selector_with(task_policies["dqn"][0], big_data, tiny_model_dir)
    assert task_mode.seeded
    assert len({tuple(task_mode.select(task, None, 3, np.random.default_rng(s))) for s in range(6)}) > 1


def test_verify_keeps_the_best_rule_on_dev_and_everything_downstream_follows_it(
    verified_run, big_data, tiny_model_dir, tmp_path, capsys
):
    code, out, err = run_cli(["verify", str(verified_run), "--data-dir", str(big_data), "--rows", "6"], capsys)
    assert code == 0, err
    assert "about to spend ≈" in err and "rule" in out
    assert_ends_with_results_and_next(err, rule_path(verified_run, "gen_sst"))
    choice = read_rule_choice(verified_run, "gen_sst")
    assert set(choice.dev_scores) == {"policy", "zero-shot", "embedding", "bm25", "balanced", "task"}
    assert choice.dev_scores[choice.rule] == max(choice.dev_scores.values()) and choice.dev_rows == 6
    assert choice.cost.queries > 0 and choice.task == "gen_sst"
    first = next(r for r, a in choice.dev_scores.items() if a == max(choice.dev_scores.values()))
    assert choice.rule == first  # ties go to the earliest: the policy itself first
    # how far above the next best rule it is on the same dev rows, and whether dev can tell them apart
    margin = choice.margin
    runner_up = max((r for r in choice.dev_scores if r != choice.rule), key=choice.dev_scores.get)
    assert margin.runner_up == runner_up
    assert margin.mean == pytest.approx(100 * (choice.dev_scores[choice.rule] - choice.dev_scores[runner_up]), abs=0.01)
    assert margin.ci95[0] <= margin.mean <= margin.ci95[1] and margin.decided == (margin.ci95[0] > 0)
    assert ("dev cannot tell them apart" in err) == (not margin.decided)

    # verified again on as many rows: the stored choice, no LLM calls
    code, _, err = run_cli(["verify", str(verified_run), "--data-dir", str(big_data), "--rows", "6"], capsys)
    assert code == 0 and "about to spend" not in err

    # forced to a rule whose picks differ from the policy's, evaluation, export and the runtime all follow it
    rule_path(verified_run, "gen_sst").write_text(json.dumps({**choice.to_dict(), "rule": "bm25"}))
    from rl_select.export.exporter import export_policy

    manifest = export_policy(verified_run, tmp_path / "exported")
    assert manifest.rule == "bm25" and manifest.format_version == 3
    torch_side, task = selector_with(verified_run, big_data, tiny_model_dir)
    assert torch_side.following == "bm25"
    exported = load_selector(tmp_path / "exported")
    assert exported.info().rule == "bm25"
    for i, text in enumerate(parity_queries(10)):
        expected = torch_side.select(task, Example(split="query", id=i, text=text, label="positive"), 3, None)
        assert [d.id for d in exported.select(text, k=3)] == expected


def test_bad_rules_in_run_dirs_and_manifests_are_one_line_errors(verified_run, proposer_policy, tmp_path, capsys):
    rule_path(verified_run, "gen_sst").parent.mkdir(parents=True, exist_ok=True)
    rule_path(verified_run, "gen_sst").write_text("{not json")
    with pytest.raises(ArtifactError, match=r"gen_sst\.json is damaged"):
        read_rule_choice(verified_run, "gen_sst")
    path = shutil.copytree(proposer_policy[1], tmp_path / "policy")
    manifest = json.loads((path / fmt.MANIFEST).read_text())
    assert manifest.get("rule", "policy") == "policy"  # exported before any verification: the policy
    manifest["rule"] = "no-such-rule"
    manifest["manifest_sha256"] = fmt.manifest_digest(manifest)
    (path / fmt.MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="'no-such-rule' is not available"):
        load_selector(path)
    code, _, err = run_cli(["verify", str(tmp_path / "nowhere")], capsys)
    assert code == 2 and err.count("\n") == 1 and err.startswith("error:")


def test_a_policy_with_nothing_to_compare_with_is_refused_before_any_work():
    from rl_select.envs import EnvConfig
    from rl_select.evaluation.verify import verifiable_rules

    with pytest.raises(ConfigError, match="no rule to compare it with"):
        verifiable_rules(EnvConfig(mode="query"), "run")
    with pytest.raises(ConfigError, match="task-mode policy"):
        verifiable_rules(EnvConfig(mode="task", stop=True), "run")
    assert verifiable_rules(EnvConfig(mode="query", stop=True), "run") == ["policy", "zero-shot"]
    from rl_select.observation import FeatureConfig

    free = FeatureConfig(llm_features=False)
    with pytest.raises(
        ConfigError, match="no proposer whose choices labels can judge"
    ):  # labels judge neither zero-shot nor task
        verifiable_rules(EnvConfig(mode="query", stop=True, features=free), "run", "labels")
    with pytest.raises(ConfigError, match="features that need the LLM"):  # not free: compare by accuracy
        verifiable_rules(EnvConfig.from_dict({"mode": "query", "proposers": {"bm25": 2}}), "run", "labels")
    with pytest.raises(ConfigError, match="unknown measure 'vibes'"):
        verifiable_rules(EnvConfig(mode="query", stop=True), "run", "vibes")


@pytest.fixture(scope="module")
def label_run(tmp_path_factory, big_data, tiny_model_dir):
    """A query policy over proposers whose features need no LLM: what a label check can judge for free."""
    from tests.service.conftest import train_and_export

    proposers = {"embedding": 3, "bm25": 2, "balanced": 2, "task": 1, "task_sets": 3, "task_dev_rows": 4}
    features = {"llm_features": False, "label_onehot": False, "label_vote": True, "projection_dim": 0}
    env = {"query_source": "pool", "value": "probability", "stop": True, "proposers": proposers, "features": features}
    run, _ = train_and_export(
        tmp_path_factory, big_data, tiny_model_dir, "fqi", "query", steps=2, dense_episodes=6, fqi_epochs=3, env=env
    )
    return run


class FixedPicks:
    """A stand-in selector: for every row, two pool rows with its label and one with another (or nothing)."""

    def __init__(self, task, empty=False):
        self.by_label = {label: [i for i, e in enumerate(task.train) if e.label == label] for label in task.labels}
        self.empty = empty

    def build(self, resources):
        return self

    def select(self, task, query, k, rng):
        other = next(label for label in task.labels if label != query.label)
        return [] if self.empty else [*self.by_label[query.label][:2], self.by_label[other][0]]


def test_gold_label_share_is_the_mean_share_of_demonstrations_with_the_rows_label(big_data, tiny_model_dir):
    from rl_select.evaluation.verify import gold_label_share

    task = load_task("gen_sst", big_data)
    resources = Resources(task, lm=load_language_model(str(tiny_model_dir), device="cpu", dtype="float32"))
    assert gold_label_share(FixedPicks(task), resources, 5, 3) == pytest.approx(2 / 3)
    assert gold_label_share(FixedPicks(task, empty=True), resources, 5, 3) == 0.0  # zero-shot shows no label


def test_a_label_check_chooses_without_llm_calls_and_is_followed_without_the_task_proposer(
    label_run, big_data, tiny_model_dir, tmp_path, capsys
):
    from rl_select.export.exporter import export_policy

    run = shutil.copytree(label_run, tmp_path / "run")
    code, out, err = run_cli(["verify", str(run), "--data-dir", str(big_data), "--rows", "6", "--by", "labels"], capsys)
    assert code == 0, err
    assert "about to spend" not in err and "gold-label share" in out
    given = f"--task gen_sst --data-dir {big_data}"  # the next commands find the task as it was given
    assert f"evaluate {given} --policy {run}" in err and f"export {run} {given} --out" in err
    choice = read_rule_choice(run, "gen_sst")
    assert choice.measure == "labels" and choice.zero_cost and choice.cost.queries == 0 and choice.dev_rows == 6
    assert list(choice.dev_scores) == ["policy", "embedding", "bm25", "balanced"]  # no zero-shot, no task proposer
    assert choice.dev_scores[choice.rule] == max(choice.dev_scores.values())
    assert all(0.0 <= share <= 1.0 for share in choice.dev_scores.values())
    assert choice.margin is None  # margins are kept for LLM accuracy only

    selector, task = selector_with(run, big_data, tiny_model_dir)
    assert selector.following == choice.rule and selector._env.config.proposers.task == 0
    manifest = export_policy(run, tmp_path / "exported")
    assert manifest.rule == choice.rule and manifest.proposers["task"] == 0 and not manifest.task_proposals

    # by accuracy afterwards: a different measure, so the rules are scored again (LLM calls), the task proposer in
    code, _, err = run_cli(["verify", str(run), "--data-dir", str(big_data), "--rows", "6"], capsys)
    assert code == 0 and "about to spend" in err and read_rule_choice(run, "gen_sst").measure == "accuracy"


def test_rule_files_from_before_measures_read_as_accuracy(verified_run, big_data, capsys):
    legacy = {
        "rule": "bm25",
        "dev_accuracy": {"policy": 0.5, "bm25": 0.75},
        "dev_rows": 4,
        "cost": {"queries": 9, "tokens": 90},
        "task": "t",
    }
    (verified_run / "policy" / "rule.json").write_text(json.dumps(legacy))  # before rules were kept per task
    assert read_rule_choice(verified_run, "gen_sst") is None  # it names another task
    choice = read_rule_choice(verified_run, "t")
    assert (choice.rule, choice.measure, choice.dev_scores["bm25"]) == ("bm25", "accuracy", 0.75)
    assert not choice.zero_cost and choice.margin is None  # stored before margins were kept
    # one stored before choices named their task was made on the run's own task: kept, no LLM calls
    untasked = {**legacy, "task": None, "dev_rows": 6}
    (verified_run / "policy" / "rule.json").write_text(json.dumps(untasked))
    code, _, err = run_cli(["verify", str(verified_run), "--data-dir", str(big_data), "--rows", "6"], capsys)
    assert code == 0 and "about to spend" not in err and read_rule_choice(verified_run, "gen_sst").cost.tokens == 90
    (verified_run / "policy" / "rule.json").write_text(json.dumps({**choice.to_dict(), "measure": "vibes"}))
    with pytest.raises(ArtifactError, match="unknown measure 'vibes'"):
        read_rule_choice(verified_run, "t")


def test_a_rule_is_followed_only_on_the_task_it_was_verified_on(verified_run, big_data, tiny_model_dir, capsys):
    other = big_data.parent / "other-data"
    shutil.copytree(big_data / "gen_sst", other / "other_sst")  # the same rows under another task's name
    chosen = {
        "rule": "bm25",
        "dev_scores": {"policy": 0.5, "bm25": 0.75},
        "dev_rows": 6,
        "cost": {"queries": 9, "tokens": 90},
    }
    rule_path(verified_run, "gen_sst").parent.mkdir(parents=True, exist_ok=True)
    rule_path(verified_run, "gen_sst").write_text(json.dumps({**chosen, "task": "gen_sst"}))
    lm = load_language_model(str(tiny_model_dir), device="cpu", dtype="float32")
    elsewhere = PolicySelector.from_run(verified_run).build(Resources(load_task("other_sst", other), lm=lm))
    assert elsewhere.following == "policy"  # gen_sst's rule is not other_sst's
    assert selector_with(verified_run, big_data, tiny_model_dir)[0].following == "bm25"
    args = ["verify", str(verified_run), "--task", "other_sst", "--data-dir", str(other), "--rows", "6"]
    code, _, err = run_cli(args, capsys)
    assert code == 0, err
    assert read_rule_choice(verified_run, "gen_sst").rule == "bm25"  # verifying on another task keeps this one
    assert read_rule_choice(verified_run, "other_sst").task == "other_sst"
