"""experiments/q_ranking_check.py: rank correlation with ties, and the summaries of a set of prompts."""

import numpy as np
import pytest

from tests.helpers import experiment_module

ranking = experiment_module("q_ranking_check.py")


def test_ties_share_their_mean_rank():
    assert ranking.average_ranks(np.array([3.0, 1.0, 3.0, 2.0])).tolist() == [2.5, 0.0, 2.5, 1.0]


def test_spearman_is_the_rank_correlation():
    values = np.array([0.1, 0.5, 0.2, 0.9])
    assert ranking.spearman(values, values**3) == pytest.approx(1.0)
    assert ranking.spearman(values, -values) == pytest.approx(-1.0)
    assert ranking.spearman(values, np.array([50.0, 50.0, 50.0, 50.0])) == 0.0  # constant accuracy: no ranking
    low, high = ranking.spearman_interval(values, values)
    assert low == high == pytest.approx(1.0)


def test_a_prompt_set_counts_its_distinct_demonstrations():
    prompts = ranking.PromptSet.of([50.0, 60.0], [[1, 2, 3], [3, 4, 5]])
    assert (prompts.mean, prompts.best, prompts.distinct_demonstrations) == (55.0, 60.0, 5)
