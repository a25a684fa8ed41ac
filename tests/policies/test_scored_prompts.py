"""Task mode's propose and verify with the learner's own scored prompts: found in its episodes, verified first."""

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
