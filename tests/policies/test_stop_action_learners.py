"""Every learner trains on DemoSelection-v1's stop action (Discrete(M + 1)) and its policy may stop early."""

import numpy as np
import pytest

from rl_select.resources import Resources
from rl_select.runs.config import TrainConfig
from rl_select.runs.policy import PolicySelector
from rl_select.scoring import load_language_model
from rl_select.tasks import load_task
from rl_select.train import train


@pytest.mark.parametrize("algo", ["ppo", "dqn", "cql"])
def test_learners_train_and_choose_with_the_stop_action(algo, tmp_path, data_root, tiny_model_dir):
    config = TrainConfig.from_dict(
        {
            "tasks": ["tiny_sst"],
            "algo": algo,
            "data_dir": str(data_root),
            "model": str(tiny_model_dir),
            "device": "cpu",
            "dtype": "float32",
            "steps": 32,
            "n_envs": 2,
            "ppo_n_steps": 8,
            "dqn_learning_starts": 4,
            "cql_episodes": 6,
            "eval_seeds": 1,
            "eval_rows": 3,
            "baselines": [],
            "env": {"mode": "query", "k": 2, "num_candidates": 4, "query_source": "pool", "stop": True},
        }
    )
    train(config, tmp_path / "run", progress_bar=False)
    selector = PolicySelector.from_run(tmp_path / "run")
    task = load_task("tiny_sst", data_root)
    built = selector.build(Resources(task, lm=load_language_model(str(tiny_model_dir), device="cpu", dtype="float32")))
    rng = np.random.default_rng(0)
    for query in task.test[:4]:
        picks = built.select(task, query, 2, rng)
        assert len(picks) <= 2 and len(set(picks)) == len(picks)


def test_training_verifies_the_policy_on_dev_before_the_test_comparison(tmp_path, data_root, tiny_model_dir):
    import json

    from rl_select.budget import profiles_for
    from rl_select.runs.dirs import read_rule_choice
    from rl_select.train.projection import learning_work, project_training

    settings = {
        "tasks": ["tiny_sst"],
        "algo": "ppo",
        "data_dir": str(data_root),
        "model": str(tiny_model_dir),
        "device": "cpu",
        "dtype": "float32",
        "steps": 16,
        "n_envs": 2,
        "ppo_n_steps": 8,
        "evaluation": {"seeds": 1, "rows": 3, "baselines": [], "verify_rows": 4},
        "env": {
            "mode": "query",
            "k": 2,
            "num_candidates": 4,
            "query_source": "pool",
            "stop": True,
            "proposers": {"embedding": 2, "bm25": 2},
        },
    }
    config = TrainConfig.from_dict(settings)
    result = train(config, tmp_path / "run", progress_bar=False)
    choice = read_rule_choice(tmp_path / "run", "tiny_sst")
    assert list(choice.dev_scores) == ["policy", "zero-shot", "embedding", "bm25"] and choice.dev_rows == 4
    assert choice.dev_scores[choice.rule] == max(choice.dev_scores.values())
    learned = result.reports[0]
    expected = "ppo (query mode)" if choice.rule == "policy" else f"ppo (query mode, dev chose {choice.rule})"
    assert learned.name == expected
    stored = json.loads((tmp_path / "run" / "learning_cost.json").read_text())
    assert result.learning_cost.queries == stored["queries"] + choice.cost.queries  # verification is learning cost
    # the dry run counts the 4 rules × 4 dev rows as learning
    task = load_task("tiny_sst", data_root)
    lm = load_language_model(str(tiny_model_dir), device="cpu", dtype="float32")
    profiles = profiles_for([task], lm.tokenizer)
    without = TrainConfig.from_dict({**settings, "evaluation": {**settings["evaluation"], "verify_rows": 0}})
    projected = project_training(config, [task], [task], profiles).steps[0].queries
    assert projected == pytest.approx(learning_work(without, [task], profiles).queries + 4 * 4)
