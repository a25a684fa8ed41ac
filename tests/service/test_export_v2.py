"""Format 2 artifacts: proposers and the stop action survive export; version 1 artifacts keep loading."""

import json

import numpy as np
import pytest

from rl_select import load_selector
from rl_select.errors import ArtifactError
from rl_select.export import manifest as fmt
from rl_select.observation import PROPOSER_COLUMNS, STOP_COLUMN
from rl_select.tasks.task import Example
from tests.helpers import run_cli
from tests.service.conftest import copy_policy, parity_queries
from tests.service.test_export import torch_selector


def test_proposer_policy_exports_its_proposers_and_stop(proposer_policy):
    manifest = json.loads((proposer_policy[1] / fmt.MANIFEST).read_text())
    assert manifest["format_version"] == fmt.FORMAT_VERSION and manifest["stop_action"] is True
    assert manifest["proposers"]["bm25"] == 2 and len(manifest["task_proposals"]) >= 1
    assert manifest["layout"]["candidate"][-1] == STOP_COLUMN
    assert set(PROPOSER_COLUMNS) <= set(manifest["layout"]["candidate"])
    info = load_selector(proposer_policy[1]).info()
    assert info.stop_action is True and info.proposers["balanced"] == 2


def test_exported_proposer_policy_chooses_like_the_torch_policy(proposer_policy, big_data, tiny_model_dir):
    run_dir, policy_dir = proposer_policy
    selector, task = torch_selector(run_dir, big_data, tiny_model_dir)
    exported = load_selector(policy_dir)
    rng = np.random.default_rng(0)
    lengths = set()
    for i, text in enumerate(parity_queries(40)):
        expected = selector.select(task, Example(split="query", id=i, text=text, label="positive"), 3, rng)
        got = [d.id for d in exported.select(text, k=3)]
        assert got == expected, text
        lengths.add(len(got))
    assert lengths <= {0, 1, 2, 3}


def test_a_policy_that_stops_at_once_returns_no_demonstrations(proposer_policy, tmp_path, monkeypatch):
    exported = load_selector(proposer_policy[1])
    real = exported.session.run

    def prefer_stop(names, feeds):  # the stop row scores highest: the zero-shot prompt
        scores = real(names, feeds)[0]
        scores[:, -1] = 1e6
        return [scores]

    monkeypatch.setattr(exported.session, "run", prefer_stop)
    assert exported.select(parity_queries(1)[0], k=3) == []
    assert exported.prompt("an odd little film", k=3) == "Review: an odd little film\nSentiment:"


def test_version_one_artifacts_still_load(query_policy, tmp_path):
    path = copy_policy(query_policy[1], tmp_path / "policy")
    manifest = json.loads((path / fmt.MANIFEST).read_text())
    picks = [d.id for d in load_selector(path).select(parity_queries(1)[0], k=3)]
    old = {k: v for k, v in manifest.items() if k not in ("stop_action", "proposers", "task_proposals")}
    fmt.write_manifest(path, old)
    written = json.loads((path / fmt.MANIFEST).read_text())
    written["format_version"] = 1  # as the version-1 exporter wrote it
    written["manifest_sha256"] = fmt.manifest_digest(written)
    (path / fmt.MANIFEST).write_text(json.dumps(written))
    assert [d.id for d in load_selector(path).select(parity_queries(1)[0], k=3)] == picks
    written["format_version"] = 4
    written["manifest_sha256"] = fmt.manifest_digest(written)
    (path / fmt.MANIFEST).write_text(json.dumps(written))
    with pytest.raises(ArtifactError, match="reads versions 1, 2, 3"):
        load_selector(path)


def test_the_service_and_adapters_pass_on_fewer_than_k(proposer_policy, monkeypatch):
    pytest.importorskip("langchain_core")
    from fastapi.testclient import TestClient

    from rl_select.integrations.langchain import RLExampleSelector
    from rl_select.service import create_app

    exported = load_selector(proposer_policy[1])
    real = exported.session.run

    def stop_second(names, feeds):  # one demonstration, then the stop action
        scores = real(names, feeds)[0]
        scores[:, -1] = 1e6 if feeds["step"][0, 0] >= 1 else -1e6
        return [scores]

    monkeypatch.setattr(exported.session, "run", stop_second)
    with TestClient(create_app(exported)) as client:
        reply = client.post("/v1/select", json={"query": "a warm film", "k": 3}).json()
    assert reply["k"] == 1 and len(reply["demonstrations"]) == 1
    assert reply["prompt"].count("Sentiment:") == 2
    chooser = RLExampleSelector(selector=exported)
    assert len(chooser.select_examples({"input": "a warm film"})) == 1


def test_export_shows_the_task_proposers_search(proposer_policy, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RL_SELECT_CACHE", str(tmp_path / "cold-cache"))  # the search is not cached yet
    code, _, err = run_cli(["export", str(proposer_policy[0]), "--out", str(tmp_path / "again")], capsys)
    assert code == 0, err
    assert "gen_sst · task proposer: 3 prompts × 4 dev rows (once per task)" in err
