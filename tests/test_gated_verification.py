"""experiments/gated_verification.py: the gate keeps the incumbent unless an alternative is clearly better on dev."""

import numpy as np

from tests.helpers import experiment_module

gated = experiment_module("gated_verification.py")


def rows(right: int, total: int = 200) -> np.ndarray:
    """``[1, total]`` correctness with the first ``right`` rows right."""
    return (np.arange(total) < right)[None, :]


def test_a_small_dev_margin_keeps_the_incumbent():
    correct = {"policy": rows(180), "balanced": rows(182)}  # +1 point on 200 rows: the interval spans 0
    assert gated.significant_switch("policy", correct) == "policy"


def test_a_clear_margin_switches_to_the_best_that_passes():
    correct = {"policy": rows(120), "bm25": rows(150), "task": rows(180), "zero-shot": rows(121)}
    assert gated.significant_switch("policy", correct) == "task"
    assert gated.significant_switch("task", correct) == "task"  # nothing beats the incumbent
