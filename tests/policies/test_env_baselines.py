import numpy as np
import pytest

from rl_select.envs import DemoSelectionEnv
from rl_select.errors import ConfigError
from rl_select.policies.baselines import ENV_BASELINES, EnvBaseline, run_env_baseline
from rl_select.selectors import Resources
from rl_select.tasks import load_task


@pytest.fixture
def env(tiny_lm, data_root):
    task = load_task("tiny_trec", data_root)
    return DemoSelectionEnv(task, resources=Resources(task, lm=tiny_lm), k=2, num_candidates=5, reward_rows=4)


@pytest.mark.parametrize("name", ENV_BASELINES)
def test_env_baselines_play_valid_episodes(env, name):
    results = run_env_baseline(env, EnvBaseline(name, np.random.default_rng(0), num_sets=3), seeds=[0, 1])
    for result in results:
        assert len(result["selection"]) == 2 == len(set(result["selection"]))
        assert 0.0 <= result["value"] <= 1.0


def test_greedy_oracle_takes_the_best_first_step(env):
    env.reset(seed=4)
    baseline = EnvBaseline("greedy-oracle", np.random.default_rng(0))
    baseline.plan(env)
    action = baseline.act(env, env.action_masks())
    values = []
    for i in range(5):
        demo = env.task.train[int(env._episode["candidates"][i])]
        values.append(env._value(env.resources.scorer.score([demo], env._episode["rows"])))
    assert values[action] == max(values)


def test_knn_puts_the_most_similar_candidate_last(env):
    env.reset(seed=2)
    baseline = EnvBaseline("knn", np.random.default_rng(0))
    baseline.plan(env)
    episode = env._episode
    sims = episode["vectors"] @ episode["anchor"]
    first, second = baseline.act(env, env.action_masks()), None
    env.step(first)
    second = baseline.act(env, env.action_masks())
    top2 = list(np.argsort(-sims, kind="stable")[:2])
    assert {first, second} == set(top2) and sims[second] >= sims[first]


def test_unknown_env_baseline():
    with pytest.raises(ConfigError, match="unknown env baseline"):
        EnvBaseline("oracle", np.random.default_rng(0))
