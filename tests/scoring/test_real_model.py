"""The embedded SmolLM2-135M on a handful of real rows (converted once, then loads in about a second)."""

import numpy as np
import pytest

from rl_select.scoring import Scorer, ScoringConfig, naive_log_scores
from rl_select.tasks import load_task

pytestmark = pytest.mark.real_model


@pytest.mark.parametrize(("name", "rows"), [("sst2", 8), ("trec", 6), ("rte", 4)])
def test_smollm2_prefix_cached_scores_equal_full_recomputation(real_lm, shared_data, name, rows):
    task = load_task(name, shared_data)
    scorer = Scorer(real_lm, task, ScoringConfig())
    demos = task.train[:4]
    queries = task.dev[:rows]
    result = scorer.score(demos, queries)
    reference = naive_log_scores(real_lm, scorer.encoder, demos, queries, max_tokens=scorer.max_tokens)
    np.testing.assert_allclose(result.log_scores, reference, atol=2e-3)
    assert (result.log_scores.argmax(1) == reference.argmax(1)).all()


def test_smollm2_trec_has_multi_token_answers(real_lm, shared_data):
    scorer = Scorer(real_lm, load_task("trec", shared_data))
    lengths = {label: len(t) for label, t in zip(scorer.task.labels, scorer.encoder.label_tokens, strict=True)}
    assert lengths["abbreviation"] == 3 and lengths["human"] == 1
    assert scorer.encoder.special_prefix == ()


def test_smollm2_is_better_than_chance_on_sst2(real_lm, shared_data):
    task = load_task("sst2", shared_data)
    result = Scorer(real_lm, task).score(task.train[:4], task.dev[:32])
    assert result.accuracy_calibrated > 0.6


def test_smollm2_in_bf16_predicts_as_in_fp32(real_lm, shared_data):
    from rl_select.scoring import load_language_model

    low = load_language_model(None, device="cpu", dtype="bfloat16")
    task = load_task("sst2", shared_data)
    demos, queries = task.train[:4], task.dev[:96]
    got = Scorer(low, task, ScoringConfig(calibrate=False)).score(demos, queries, use_cache=False).log_scores
    expected = Scorer(real_lm, task, ScoringConfig(calibrate=False)).score(demos, queries, use_cache=False).log_scores
    assert np.abs(got - expected).max() < 0.5
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.97
