"""experiments/wide_verification.py: which candidates race on pool rows, and which one is kept."""

from tests.helpers import experiment_module

wide = experiment_module("wide_verification.py")


def test_contenders_are_within_the_margin_of_the_best_dev_score():
    dev = {"policy": 74.5, "zero-shot": 13.5, "bm25": 70.0, "balanced": 73.5, "pooled": 69.0}
    assert wide.contenders(dev, 5.0) == ["policy", "bm25", "balanced"]
    assert wide.contenders(dev, 0.0) == ["policy"]


def test_the_kept_candidate_is_best_over_dev_and_pool_rows_together():
    candidates = [
        wide.Candidate("policy", dev=56.0, pool=50.0),  # (200 * 56 + 400 * 50) / 600 = 52.0
        wide.Candidate("bm25", dev=50.0, pool=53.0),  # 52.0: a tie, the earlier is kept
        wide.Candidate("balanced", dev=60.0),  # no pool rows: not a contender
    ]
    assert wide.kept_candidate(candidates, 200, 400) == "policy"
    candidates[1].pool = 53.5
    assert wide.kept_candidate(candidates, 200, 400) == "bm25"
    assert wide.kept_candidate([wide.Candidate("policy", 50.0), wide.Candidate("task", 51.0)], 200, 0) == "task"
