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
