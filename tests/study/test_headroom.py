"""``rl-select headroom``: kNN's prompt against greedy choices among the same candidates, resumable."""

import json

import numpy as np
import pytest

from rl_select.budget import TokenProfile, project_headroom
from rl_select.observation import nearest_first
from rl_select.resources import Resources
from rl_select.study.headroom import headroom
from rl_select.tasks import load_task
from tests.helpers import assert_ends_with_results_and_next, run_cli

K, M, D = 2, 4, 2


def cli_args(data_root, tiny_model_dir, out, n_test=4):
    args = ["headroom", "--task", "tiny_trec", "--data-dir", str(data_root), "--model", str(tiny_model_dir)]
    args += ["--k", str(K), "-M", str(M), "--dev-neighbours", str(D), "--embedder", "lm"]
    return [*args, "--n-test", str(n_test), "--out", str(out)]


def test_prompts_are_knn_and_greedy_choices_among_the_nearest(data_root, tiny_lm):
    task = load_task("tiny_trec", data_root)
    resources = Resources(task, lm=tiny_lm, embedder="lm")
    queries = task.sample("test", 3, seed=0)
    result = headroom(resources, queries, k=K, num_candidates=M, dev_neighbours=D)
    scorer = resources.scorer
    by_id = {e.id: e for e in task.train}
    for query, record in zip(queries, result.records, strict=True):
        vector = resources.query_vectors([query])[0]
        nearest = [task.train[int(i)].id for i in nearest_first(resources.index.vectors, vector)[:M]]
        assert record.outcomes["knn"].prompt == nearest[:K][::-1]  # most similar last
        for name in ("oracle", "transferable"):
            assert len(set(record.outcomes[name].prompt)) == K and set(record.outcomes[name].prompt) <= set(nearest)
        # the oracle's first pick is the candidate that alone gives the query's gold label the most probability
        alone = [scorer.score([by_id[i]], [query]).gold_probs[0] for i in nearest]
        assert record.outcomes["oracle"].prompt[0] == nearest[int(np.argmax(alone))]
        for name in ("knn", "oracle", "transferable"):
            scored = scorer.score([by_id[i] for i in record.outcomes[name].prompt], [query])
            assert record.outcomes[name].gold_probability == pytest.approx(float(scored.gold_probs[0]), abs=1e-5)
    per_query = (M * K - K * (K - 1) // 2) * (1 + D) + 3
    assert result.cost.queries == per_query * len(queries)
    projected = project_headroom(TokenProfile.of(task, tiny_lm.tokenizer), K, M, D, len(queries)).total
    assert projected.queries == result.cost.queries  # what the command announces is what it spends
    delta = result.summary().minus_knn["oracle"]
    assert delta.ci95[0] <= delta.mean <= delta.ci95[1]


def test_headroom_cli_writes_its_table_and_an_interrupted_run_continues(
    data_root, tiny_model_dir, tmp_path, capsys, monkeypatch
):
    import rl_select.study.headroom as module

    out = tmp_path / "headroom.json"
    original, calls = module._record, []

    def interrupted_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(module, "_record", interrupted_third)
    code, _, err = run_cli(cli_args(data_root, tiny_model_dir, out), capsys)
    last = err.strip().splitlines()[-1]
    assert code == 130 and last.startswith("interrupted: 2 of 4 queries saved") and "rerun" in last
    assert "about to spend" in err and "Traceback" not in err
    partial = json.loads(out.read_text())
    assert partial["partial"] is True and len(partial["records"]) == 2
    damaged = tmp_path / "damaged.json"
    damaged.write_text(json.dumps({**partial, "records": [{"id": partial["records"][0]["id"]}]}))
    code, _, err = run_cli(cli_args(data_root, tiny_model_dir, damaged), capsys)
    assert code == 2 and "damaged headroom records" in err

    calls.clear()
    monkeypatch.setattr(module, "_record", lambda *a, **kw: calls.append(1) or original(*a, **kw))
    code, _, err = run_cli(cli_args(data_root, tiny_model_dir, out), capsys)
    assert code == 0, err
    assert "2 done" in err and len(calls) == 2  # only the missing queries were scored
    complete = json.loads(out.read_text())
    assert complete["partial"] is False and complete["records"][:2] == partial["records"]
    assert complete["provenance"]["commit"] == partial["provenance"]["commit"] and len(complete["resumed_by"]) == 1
    assert complete["summary"]["queries"] == 4 and complete["summary"]["cost"]["queries"] > 0
    assert complete["provenance"]["llm_cost"] == complete["summary"]["cost"]
    assert out.with_suffix(".md").read_text().startswith("# Headroom: tiny_trec, k=2, M=4")

    calls.clear()
    code, _, err = run_cli(cli_args(data_root, tiny_model_dir, out), capsys)
    assert code == 0 and calls == [] and json.loads(out.read_text())["resumed_by"] == complete["resumed_by"]
    assert_ends_with_results_and_next(err, out)


def test_headroom_refuses_a_partial_file_of_other_settings_and_bad_arguments(
    data_root, tiny_model_dir, tmp_path, capsys
):
    out = tmp_path / "headroom.json"
    out.write_text(json.dumps({"format": 1, "partial": True, "key": {"k": 3}, "records": []}))
    code, _, err = run_cli(cli_args(data_root, tiny_model_dir, out), capsys)
    assert code == 2 and "partial headroom analysis with other settings" in err
    assert json.loads(out.read_text())["key"] == {"k": 3}

    out.write_text("{not json")
    code, _, err = run_cli(cli_args(data_root, tiny_model_dir, out), capsys)
    assert code == 2 and err.startswith("error:") and "not a readable result file" in err

    code, _, err = run_cli([*cli_args(data_root, tiny_model_dir, tmp_path / "x.json"), "-M", "1"], capsys)
    assert code == 2 and "--num-candidates" in err and "Traceback" not in err
