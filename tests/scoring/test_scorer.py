import numpy as np
import pytest
import torch

from rl_select.errors import ConfigError
from rl_select.scoring import RewardCache, Scorer, ScoreResult, ScoringConfig, naive_log_scores
from rl_select.tasks import load_task

TASKS = ["tiny_sst", "tiny_trec", "tiny_rte"]


@pytest.fixture
def scorer_for(tiny_lm, data_root):
    def make(name, **config):
        return Scorer(tiny_lm, load_task(name, data_root), ScoringConfig(**config))

    return make


@pytest.mark.parametrize("name", TASKS)
def test_prefix_cached_scores_equal_full_recomputation(scorer_for, tiny_lm, name):
    scorer = scorer_for(name)
    task = scorer.task
    demos = task.train[:3]
    result = scorer.score(demos, task.dev)
    reference = naive_log_scores(tiny_lm, scorer.encoder, demos, task.dev, max_tokens=scorer.max_tokens, batch_size=3)
    np.testing.assert_allclose(result.log_scores, reference, atol=1e-4)
    assert (result.log_scores.argmax(1) == reference.argmax(1)).all()


def test_tiny_tokenizer_exercises_bos_and_multi_token_answers(scorer_for):
    scorer = scorer_for("tiny_trec")
    assert scorer.encoder.special_prefix == (0,)
    assert max(len(t) for t in scorer.encoder.label_tokens) > 1


def test_small_packs_give_the_same_scores(scorer_for):
    big = scorer_for("tiny_trec")
    small = scorer_for("tiny_trec", batch_tokens=16)
    demos, queries = big.task.train[:2], big.task.dev
    np.testing.assert_allclose(big.score(demos, queries).log_scores, small.score(demos, queries).log_scores, atol=1e-4)
    assert small.stats.forwards > big.stats.forwards


def test_incremental_prefix_extension_matches_fresh_prefix(scorer_for):
    stepwise = scorer_for("tiny_trec", extend_prefixes=True, batch_tokens=32)  # too small for one forward
    task = stepwise.task
    for t in range(1, 4):
        extended = stepwise.score(task.train[:t], task.dev, use_cache=False)
    assert stepwise.stats.prefix_extensions >= 2
    fresh = scorer_for("tiny_trec").score(task.train[:3], task.dev, use_cache=False)
    np.testing.assert_allclose(extended.log_scores, fresh.log_scores, atol=1e-4)


def test_default_scores_do_not_depend_on_what_is_cached(scorer_for):
    """A prompt's scores are a function of the prompt alone (exact), so resumed and reordered runs agree."""
    warm = scorer_for("tiny_trec")
    task = warm.task
    for t in range(1, 4):
        after_history = warm.score(task.train[:t], task.dev, use_cache=False)
    assert warm.stats.prefix_extensions == 0
    fresh = scorer_for("tiny_trec").score(task.train[:3], task.dev, use_cache=False)
    np.testing.assert_array_equal(after_history.log_scores, fresh.log_scores)
    np.testing.assert_array_equal(after_history.content_free, fresh.content_free)


def test_multi_token_label_scores_sum_of_token_logprobs(scorer_for, tiny_lm):
    scorer = scorer_for("tiny_trec")
    task, encoder = scorer.task, scorer.encoder
    demos, query = task.train[:2], task.dev[0]
    label = max(range(task.num_labels), key=lambda c: len(encoder.label_tokens[c]))
    answer = encoder.label_tokens[label]
    assert len(answer) >= 2
    prompt = encoder.prefix(demos) + list(encoder.query(query))
    ids = torch.tensor([prompt + list(answer)])
    with torch.no_grad():
        logprobs = torch.log_softmax(tiny_lm.model(ids).logits[0].double(), -1)
    expected = sum(float(logprobs[len(prompt) - 1 + j, tok]) for j, tok in enumerate(answer))
    got = scorer.score(demos, [query]).log_scores[0, label]
    assert got == pytest.approx(expected, abs=1e-4)
    normalized = scorer_for("tiny_trec", length_normalize=True).score(demos, [query]).log_scores[0, label]
    assert normalized == pytest.approx(expected / len(answer), abs=1e-4)


def test_content_free_distribution_is_the_mean_over_content_free_inputs(scorer_for):
    scorer = scorer_for("tiny_sst")
    demos = scorer.task.train[:2]
    result = scorer.score(demos, scorer.task.dev[:3])
    free = scorer.score(demos, list(scorer.encoder.content_free)).probs_raw
    np.testing.assert_allclose(result.content_free[0], free.mean(0), atol=1e-6)


def test_calibration_divides_out_the_prompt_bias():
    # the prompt favours label 0: raw predictions are all 0; p_cf = (0.9, 0.1) reveals the bias
    raw = np.log(np.array([[0.8, 0.2], [0.6, 0.4], [0.95, 0.05]]))
    cf = np.tile([0.9, 0.1], (3, 1))
    result = ScoreResult(
        raw,
        cf,
        gold=np.array([0, 1, 1]),
        calibrate=True,
        prefix_tokens=np.zeros(3),
        prefix_nll=np.full(3, np.nan),
    )
    assert result.probs_raw.argmax(1).tolist() == [0, 0, 0]
    # p ∝ p_raw / p_cf: (0.8/0.9, 0.2/0.1) → label 1; (0.6/0.9, 0.4/0.1) → 1; (0.95/0.9, 0.05/0.1) → 0
    assert result.predictions.tolist() == [1, 1, 0]
    np.testing.assert_allclose(result.probs.sum(1), 1.0)
    assert result.accuracy_raw == pytest.approx(1 / 3) and result.accuracy_calibrated == pytest.approx(1 / 3)
    uncalibrated = ScoreResult(raw, cf, np.array([0, 1, 1]), False, np.zeros(3), np.full(3, np.nan))
    assert uncalibrated.predictions.tolist() == [0, 0, 0]


def test_calibration_changes_real_predictions_in_the_documented_direction(scorer_for):
    scorer = scorer_for("tiny_trec")
    task = scorer.task
    result = scorer.score(task.train[:3], task.dev + task.test)
    ratio = result.probs_raw / result.content_free
    assert (result.predictions == ratio.argmax(1)).all()
    flipped = np.flatnonzero(result.probs_raw.argmax(1) != result.predictions)
    assert flipped.size > 0, "the random tiny model should have a prompt bias that calibration corrects"
    for q in flipped:
        raw_label, calibrated_label = result.probs_raw[q].argmax(), result.predictions[q]
        # a label loses its lead only because the prompt alone already favoured it more
        assert result.content_free[q, raw_label] > result.content_free[q, calibrated_label]


def test_over_long_prompts_drop_oldest_demos_then_truncate_query(scorer_for, tiny_lm):
    loose = scorer_for("tiny_sst")
    task, encoder = loose.task, loose.encoder
    demos = task.train[:4]
    lengths = [len(encoder.block(d)) for d in demos]
    longest_query = max(len(encoder.query(q)) for q in task.dev)
    limit = 1 + sum(lengths[2:]) + longest_query + encoder.max_label_length
    tight = scorer_for("tiny_sst", max_prompt_tokens=limit)
    result = tight.score(demos, task.dev)
    assert result.truncation.queries_with_dropped_demos == len(task.dev)
    assert result.truncation.demos_dropped >= 2 * len(task.dev)
    assert result.truncation.queries_truncated == 0
    reference = naive_log_scores(tiny_lm, encoder, demos, task.dev, max_tokens=limit)
    np.testing.assert_allclose(result.log_scores, reference, atol=1e-4)

    tiny = scorer_for("tiny_sst", max_prompt_tokens=10)
    squeezed = tiny.score(demos, task.dev)
    assert squeezed.truncation.demos_dropped == 4 * len(task.dev)
    assert squeezed.truncation.queries_truncated > 0
    assert (squeezed.prefix_tokens == len(encoder.special_prefix)).all()
    assert np.isfinite(squeezed.log_scores).all()


def test_reward_cache_hits_and_persists(scorer_for, tiny_lm, tmp_path):
    path = tmp_path / "rewards.sqlite"
    scorer = scorer_for("tiny_sst", reward_cache_path=str(path))
    task = scorer.task
    first = scorer.score(task.train[:2], task.dev)
    second = scorer.score(task.train[:2], task.dev)
    assert scorer.rewards.hits == 1 and scorer.rewards.misses == 1
    assert scorer.rewards.hit_rate == pytest.approx(0.5)
    np.testing.assert_array_equal(first.log_scores, second.log_scores)
    other_order = scorer.score(task.train[:2][::-1], task.dev)
    assert scorer.rewards.misses == 2 and not np.allclose(other_order.log_scores, first.log_scores)
    reopened = Scorer(tiny_lm, task, ScoringConfig(), RewardCache(path=path))
    np.testing.assert_array_equal(reopened.score(task.train[:2], task.dev).log_scores, first.log_scores)
    assert reopened.rewards.hits == 1 and reopened.stats.forwards == 0


def test_prefix_perplexity_matches_a_plain_forward(scorer_for, tiny_lm):
    scorer = scorer_for("tiny_sst", prefix_perplexity=True, extend_prefixes=True)
    demos = scorer.task.train[:2]
    scorer.score(demos[:1], scorer.task.dev[:1])  # builds the 1-demo prefix, then the 2-demo one extends it
    result = scorer.score(demos, scorer.task.dev[:2])
    tokens = scorer.encoder.prefix(demos)
    with torch.no_grad():
        logprobs = torch.log_softmax(tiny_lm.model(torch.tensor([tokens])).logits[0].double(), -1)
    nll = -float(sum(logprobs[i, tokens[i + 1]] for i in range(len(tokens) - 1))) / (len(tokens) - 1)
    assert result.prefix_perplexity == pytest.approx(np.exp(nll), rel=1e-4)


def test_bad_scoring_config():
    with pytest.raises(ConfigError, match="max_prompt_tokens"):
        ScoringConfig(max_prompt_tokens=2)
    with pytest.raises(ConfigError, match="batch_tokens"):
        ScoringConfig(batch_tokens=1)


@pytest.mark.parametrize("logit_reads", ["rows", "head", "full"])
@pytest.mark.parametrize("name", TASKS)
def test_batched_prefixes_equal_one_prefix_at_a_time(scorer_for, name, logit_reads):
    sequential = scorer_for(name, batch_prefixes=False)
    batched = scorer_for(name, batch_prefixes=True)
    if logit_reads == "rows" and batched.backend.logit_reads != "rows":
        pytest.skip("this transformers does not gather per-row positions")
    batched.backend.logit_reads = logit_reads  # "head" and "full": the paths taken on releases that do not
    task = sequential.task
    requests = [
        ([], task.dev),
        (task.train[:1], task.dev),
        (task.train[:3], task.dev[:3]),
        (task.train[2:4][::-1], task.test),
        (task.train[:2], task.dev),
    ]
    expected = sequential.score_many(requests)
    got = batched.score_many(requests)
    for a, b in zip(expected, got, strict=True):
        np.testing.assert_allclose(a.log_scores, b.log_scores, atol=1e-4)
        np.testing.assert_allclose(a.content_free, b.content_free, atol=1e-5)
        np.testing.assert_array_equal(a.prefix_tokens, b.prefix_tokens)
    assert batched.stats.forwards < sequential.stats.forwards


def old_slicing(hidden, keep):
    """What transformers before per-row gathering (the GPU image's 5.17 among them) does with a 2D logits_to_keep."""
    return hidden[:, keep, :] if isinstance(keep, torch.Tensor) else hidden[:, -keep:, :]


def test_probe_detects_models_that_slice_positions_for_every_row(scorer_for, monkeypatch):
    from transformers.models.llama import modeling_llama

    monkeypatch.setattr(modeling_llama, "slice_logits_to_keep", old_slicing, raising=False)  # older ones inline it
    assert scorer_for("tiny_sst", batch_prefixes=True).backend.logit_reads == "head"


def test_probe_keeps_full_logits_where_the_model_changes_them_after_its_head(scorer_for, monkeypatch):
    from transformers.models.llama import modeling_llama

    forward = modeling_llama.LlamaForCausalLM.forward

    def capped(self, *args, **kwargs):  # like Gemma's soft-capping: logits are not head(hidden) alone
        output = forward(self, *args, **kwargs)
        output.logits = 30.0 * torch.tanh(output.logits / 30.0)
        return output

    monkeypatch.setattr(modeling_llama, "slice_logits_to_keep", old_slicing, raising=False)  # older ones inline it
    monkeypatch.setattr(modeling_llama.LlamaForCausalLM, "forward", capped)
    assert scorer_for("tiny_sst", batch_prefixes=True).backend.logit_reads == "full"


def test_batched_prefixes_handle_truncation_and_cache(scorer_for, tiny_lm):
    tight = scorer_for("tiny_sst", batch_prefixes=True, max_prompt_tokens=40)
    task = tight.task
    requests = [(task.train[:4], task.dev), (task.train[4:8], task.dev)]
    got = tight.score_many(requests)
    reference = [naive_log_scores(tiny_lm, tight.encoder, demos, rows, max_tokens=40) for demos, rows in requests]
    for result, expected in zip(got, reference, strict=True):
        assert result.truncation.demos_dropped > 0
        np.testing.assert_allclose(result.log_scores, expected, atol=1e-4)
    forwards = tight.stats.forwards
    again = tight.score_many(requests)
    assert tight.stats.forwards == forwards and tight.rewards.hits == 2
    np.testing.assert_array_equal(again[0].log_scores, got[0].log_scores)


@pytest.mark.parametrize("name", TASKS)
def test_extensions_score_every_candidate_like_its_own_prompt(scorer_for, name):
    scorer = scorer_for(name, batch_tokens=64)  # small forwards: candidates and items get split across rows
    task = scorer.task
    demos, candidates = task.train[:2], task.train[2:7]
    before = scorer.stats.requested
    row = scorer.score_extensions(demos, candidates, task.dev[:3])
    assert scorer.stats.requested - before == len(candidates) * 3
    for candidate, result in zip(candidates, row, strict=True):
        alone = scorer.score([*demos, candidate], task.dev[:3], use_cache=False)
        np.testing.assert_allclose(result.log_scores, alone.log_scores, atol=1e-4)
        np.testing.assert_allclose(result.content_free, alone.content_free, atol=1e-5)
        np.testing.assert_allclose(result.probs, alone.probs, atol=1e-4)
        assert (result.prefix_tokens == alone.prefix_tokens).all()


def test_extensions_that_would_be_too_long_fall_back_to_the_length_policy(scorer_for):
    scorer = scorer_for("tiny_sst", max_prompt_tokens=40)
    task = scorer.task
    row = scorer.score_extensions(task.train[:2], task.train[2:4], task.dev[:2])
    for candidate, result in zip(task.train[2:4], row, strict=True):
        alone = scorer.score([*task.train[:2], candidate], task.dev[:2], use_cache=False)
        np.testing.assert_allclose(result.log_scores, alone.log_scores, atol=1e-4)
        assert result.truncation.queries_with_dropped_demos == alone.truncation.queries_with_dropped_demos > 0
