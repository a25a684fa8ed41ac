"""The committed transfer policy (``experiments/policies/transfer-query``) runs on a task it never saw."""

import json
from pathlib import Path

import pytest

from tests.helpers import assert_ends_with_results_and_next, run_cli

POLICY = Path(__file__).resolve().parents[2] / "experiments" / "policies" / "transfer-query"


@pytest.mark.skipif(not POLICY.is_dir(), reason="no committed transfer policy")
def test_the_committed_transfer_policy_evaluates_on_a_new_task_folder(big_data, tiny_model_dir, tmp_path, capsys):
    size = sum(p.stat().st_size for p in POLICY.rglob("*") if p.is_file())
    assert size < 5 * 2**20, f"the committed policy is {size / 2**20:.1f} MB"
    assert not any(p.suffix in (".jsonl", ".npz") for p in POLICY.rglob("*")), "a committed policy holds no data"
    out = tmp_path / "transfer.json"
    args = ["evaluate", "--policy", str(POLICY), "--task", str(big_data / "gen_sst"), "--model", str(tiny_model_dir)]
    code, _, err = run_cli([*args, "--selector", "knn", "--n-test", "6", "--seeds", "1", "--out", str(out)], capsys)
    assert code == 0, err
    assert_ends_with_results_and_next(err, out)
    reports = {r["selector"]["name"]: r for r in json.loads(out.read_text())["reports"]}
    assert len(reports) == 2 and all(r["seeds"][0]["queries"] == 6 for r in reports.values())
