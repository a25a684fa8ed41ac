"""experiments/example_values_check.py: per-demonstration values from dense rows, and the prompts they propose."""

import numpy as np
import pytest

from rl_select.errors import RLSelectError
from tests.helpers import experiment_module

check = experiment_module("example_values_check.py")


def episode(candidates: list[int], values: list[float], rows: list[list[float]]) -> dict[str, np.ndarray]:
    """A dense task-mode record: the state values and every state's action row (NaN: already chosen)."""
    return {
        "candidate_ids": np.array(candidates),
        "values": np.array(values, dtype=np.float32),
        "action_values": np.array(rows, dtype=np.float32),
    }


def test_a_demonstration_is_valued_by_its_mean_marginal_gain_across_episodes():
    first = episode([7, 8, 9], [0.5, 0.7, 0.6], [[0.7, 0.4, 0.5], [np.nan, 0.6, 0.9]])
    second = episode([9, 3, 7], [0.4], [[0.6, 0.3, 0.5]])
    values = check.ExampleValues.from_episodes([first, second])
    assert values.ids.tolist() == [3, 7, 8, 9]
    # 3: -0.1; 7: (0.2 + 0.1) / 2; 8: (-0.1 - 0.1) / 2; 9: (0.0 + 0.2 + 0.2) / 3
    assert values.mean == pytest.approx([-0.1, 0.15, -0.1, 0.4 / 3])
    assert values.stderr[0] > values.stderr[3] > 0  # one gain against three


def test_proposals_start_with_the_best_valued_and_are_distinct():
    values = check.ExampleValues(np.arange(10), np.linspace(0.0, 0.9, 10), np.full(10, 0.3))
    proposals = values.proposals(3, 4, np.random.default_rng(0))
    assert proposals[0] == [9, 8, 7]
    assert len(proposals) == 4 and len({tuple(p) for p in proposals}) == 4
    exact = check.ExampleValues(np.arange(4), np.linspace(0.0, 0.3, 4), np.zeros(4))
    assert exact.proposals(4, 3, np.random.default_rng(0)) == [[3, 2, 1, 0]]  # no spread: one prompt to offer


def test_no_rows_is_a_clear_error():
    with pytest.raises(RLSelectError, match="no dense action rows"):
        check.ExampleValues.from_episodes([episode([1, 2], [0.5], [[np.nan, np.nan]])])
