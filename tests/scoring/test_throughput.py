"""The cost model projections use: timed on the scorer's own prompts, at the two shapes runs score most."""

from __future__ import annotations

import math
from dataclasses import replace

from rl_select.budget import calibration_prompts, measure_throughput
from rl_select.tasks import load_task


def test_calibration_prompts_are_query_level_and_task_level_at_k(data_root):
    task = load_task("tiny_sst", data_root)
    prompts = calibration_prompts(task, k=3)
    assert [len(queries) for _, queries in prompts] == [1, 1, 1, 1, min(16, len(task.test))]
    assert all(len(demos) == 3 and set(demos) <= set(task.train) for demos, _ in prompts)
    assert all(set(queries) <= set(task.test) for _, queries in prompts)
    assert calibration_prompts(task, k=3) == prompts  # seeded: the same shapes on every call


def test_calibration_prompts_cap_k_at_the_pool_and_fall_back_to_dev(data_root):
    task = load_task("tiny_sst", data_root)
    small = replace(task, splits={**task.splits, "train": task.train[:2], "test": []})
    prompts = calibration_prompts(small, k=4)
    assert all(len(demos) == 2 for demos, _ in prompts)
    assert all(set(queries) <= set(small.dev) for _, queries in prompts)


def test_measure_throughput_scores_the_calibration_prompts_twice(tiny_lm, data_root, requested_queries):
    tasks = [load_task(name, data_root) for name in ("tiny_sst", "tiny_trec")]
    throughput = measure_throughput(tiny_lm, tasks, k=2)
    asked = sum(2 * len(queries) for task in tasks for _, queries in calibration_prompts(task, 2))
    assert requested_queries() == asked
    assert math.isfinite(throughput.per_token) and throughput.per_token > 0
    assert throughput.overhead >= 0 and math.isfinite(throughput.overhead)


def test_projected_tokens_are_the_tokens_the_scorer_computes(tiny_lm, data_root):
    """tiny_trec's labels take several tokens: their answer branches are scored tokens too."""
    from rl_select.budget import TokenProfile, prompt_work
    from rl_select.scoring import Scorer

    task = load_task("tiny_trec", data_root)
    assert max(len(tokens) for tokens in Scorer(tiny_lm, task).encoder.label_tokens) > 1
    profile = TokenProfile.of(task, tiny_lm.tokenizer)
    for k, queries in ((2, task.test), (0, task.test[:1])):
        scorer = Scorer(tiny_lm, task)
        scorer.score(task.train[:k], queries, use_cache=False)
        projected = prompt_work(profile, 1, k, len(queries)).tokens
        assert 0.9 * scorer.stats.tokens <= projected <= 1.1 * scorer.stats.tokens
