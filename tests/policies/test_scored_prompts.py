"""Task mode's propose and verify: the learner's own scored prompts, found in its episodes, verified first; or its
greedy prompts of many candidate draws ranked by the Q-function's value, the best-valued verified."""

import numpy as np
import pytest

from rl_select.errors import ConfigError
from rl_select.resources import Resources
from rl_select.rollouts.episodes import best_scored_prompts
from rl_select.runs.policy import PolicySelector
from rl_select.tasks import load_task


@pytest.fixture(scope="module")
def task_run(data_root, tiny_model_dir, tmp_path_factory):
    from rl_select.cli.train import build_config
    from rl_select.train import train

    values = {
        "tasks": ["tiny_sst"],
        "data_dir": str(data_root),
        "model": str(tiny_model_dir),
        "device": "cpu",
        "dtype": "float32",
        "algo": "fqi",
        "env.mode": "task",
        "env.k": 2,
        "env.num_candidates": 4,
        "env.reward_rows": 4,
        "data.dense_episodes": 3,
        "steps": 2,
    }
    config, _ = build_config(None, values)
    run = tmp_path_factory.mktemp("task-run") / "run"
    train(config, run, progress_bar=False, evaluate=False)
    return run


def test_the_best_on_dev_of_the_learners_scored_prompts_is_chosen(task_run, tiny_lm, data_root):
    resources = Resources(load_task("tiny_sst", data_root), lm=tiny_lm)
    selector = PolicySelector.from_run(task_run, proposals=2, verify_rows=3, scored_prompts=2).build(resources)
    scored = best_scored_prompts([task_run / "episodes"], "tiny_sst", 2, "append", 2)
    assert len(scored) == 2  # three episodes, each offering its best prompt: the two best of those
    dev = resources.dev_sample(3)
    accuracy = [resources.scorer.score([resources.task.train[i] for i in p], dev).accuracy for p in scored]
    chosen = selector.select(resources.task, None, 2, np.random.default_rng(0))
    assert chosen == scored[int(np.argmax(accuracy))]
    assert selector.options()["scored_prompts"] == 2
    assert selector.choice_work(resources.task, 2, 6)[0].prompts == 2  # the verification budget is unchanged


def test_on_a_task_it_never_trained_on_every_proposal_is_greedy(task_run, tiny_lm, data_root):
    resources = Resources(load_task("tiny_trec", data_root), lm=tiny_lm)
    plain = PolicySelector.from_run(task_run, proposals=2, verify_rows=3).build(resources)
    scored = PolicySelector.from_run(task_run, proposals=2, verify_rows=3, scored_prompts=1).build(resources)
    task, seed = resources.task, np.random.default_rng
    assert scored.select(task, None, 2, seed(1)) == plain.select(task, None, 2, seed(1))


def test_scored_prompts_are_checked(task_run):
    with pytest.raises(ConfigError, match="at most proposals"):
        PolicySelector.from_run(task_run, proposals=2, scored_prompts=3)


def test_ranked_proposals_are_the_best_valued_draws_greedy_prompts(task_run, tiny_lm, data_root):
    resources = Resources(load_task("tiny_sst", data_root), lm=tiny_lm)
    ranked = PolicySelector.from_run(task_run, ranked_draws=5).build(resources)
    env, policy = ranked._env, ranked.policy
    rng = np.random.default_rng(3)
    valued = []
    for _ in range(5):  # the same draws, valued by hand: the best masked score at the empty prompt
        draw = rng.choice(env.candidate_pool, size=env.config.num_candidates, replace=False)
        seen: list[float] = []

        def choose(obs, mask, seen=seen):
            seen.append(float(np.max(np.where(mask, policy.scores(obs), -np.inf))))
            return policy.choose(obs, mask)

        valued.append((seen, env.run_greedy(choose, {"candidate_ids": draw})))
    assert len({first[0] for first, _ in valued}) > 1  # the draws are valued differently: the ranking matters
    best = max(valued, key=lambda pair: pair[0][0])[1]
    calls = resources.scorer.stats.requested
    assert ranked.select(resources.task, None, 2, np.random.default_rng(3)) == best
    assert resources.scorer.stats.requested == calls  # one proposal: kept unscored
    assert ranked.options()["ranked_draws"] == 5 and ranked.choice_work(resources.task, 2, 6) == []


def test_ranked_proposals_are_verified_on_dev(task_run, tiny_lm, data_root):
    resources = Resources(load_task("tiny_sst", data_root), lm=tiny_lm)
    ranked = PolicySelector.from_run(task_run, proposals=2, verify_rows=3, ranked_draws=4).build(resources)
    calls = resources.scorer.stats.requested
    chosen = ranked.select(resources.task, None, 2, np.random.default_rng(0))
    assert len(chosen) <= 2 and resources.scorer.stats.requested - calls == 2 * 3
    with pytest.raises(ConfigError, match="at least its greedy proposals"):
        PolicySelector.from_run(task_run, proposals=3, ranked_draws=2)
