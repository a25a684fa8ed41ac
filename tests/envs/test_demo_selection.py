import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from rl_select.envs import ENV_ID, ENV_ID_V1, DemoSelectionEnv, EnvConfig
from rl_select.envs.vector import DemoSelectionVecEnv
from rl_select.errors import ConfigError
from rl_select.observation import FeatureConfig, feature_layout
from rl_select.resources import Resources
from rl_select.scoring import ScoringConfig
from rl_select.tasks import load_task


@pytest.fixture
def resources(tiny_lm, data_root):
    return Resources(load_task("tiny_trec", data_root), lm=tiny_lm)


def make(resources, **overrides):
    config = {"k": 2, "num_candidates": 4, "reward_rows": 4, **overrides}
    return DemoSelectionEnv(resources.task, resources=resources, **config)


def rollout(env, seed, actions=None):
    obs, info = env.reset(seed=seed)
    trace = [obs]
    rewards = []
    for t in range(env.config.k):
        action = actions[t] if actions else int(np.flatnonzero(env.action_masks())[-1])
        obs, reward, terminated, truncated, info = env.step(action)
        trace.append(obs)
        rewards.append(reward)
        assert terminated == (t == env.config.k - 1) and not truncated
    return trace, rewards, info


@pytest.mark.parametrize("mode", ["task", "query"])
def test_check_env_passes(resources, mode):
    env = make(resources, mode=mode, neighbour_rows=1)
    check_env(env, skip_render_check=True)


@pytest.mark.parametrize("mode", ["task", "query"])
def test_rewards_telescope_to_final_minus_zero_shot(resources, mode):
    env = make(resources, mode=mode, k=3)
    _, rewards, info = rollout(env, seed=3)
    assert sum(rewards) == pytest.approx(info["episode_value"] - info["zero_shot_value"], abs=1e-9)
    # the final value is the prompt's value scored from scratch
    result = resources.scorer.score(env.demonstrations(), env.episode.rows, use_cache=False)
    assert info["episode_value"] == pytest.approx(env.value_of(result), abs=1e-6)
    zero = resources.scorer.score([], env.episode.rows, use_cache=False)
    assert info["zero_shot_value"] == pytest.approx(env.value_of(zero), abs=1e-6)


def test_task_mode_reward_is_dev_accuracy_change(resources):
    env = make(resources, k=2)
    obs, info = env.reset(seed=0)
    rows = env.episode.rows
    assert all(r.split == "dev" for r in rows) and len(rows) == 4
    _, reward, *_ = env.step(0)
    demos = env.demonstrations()
    expected = resources.scorer.score(demos, rows).accuracy - resources.scorer.score([], rows).accuracy
    assert reward == pytest.approx(expected)


@pytest.mark.parametrize("mode", ["task", "query"])
def test_prepend_puts_each_new_demonstration_first(resources, mode):
    assert EnvConfig(mode=mode).prompt_order == {"task": "append", "query": "prepend"}[mode]
    env = make(resources, mode=mode, k=3, order="prepend")
    env.reset(seed=1)
    candidates = env.episode.candidates
    for action in (2, 0):
        _, reward, *_ = env.step(action)
    demos = env.demonstrations()
    assert [d.id for d in demos] == [int(candidates[0]), int(candidates[2])] == env.selection()
    assert [d.id for d in env.demonstrations(extra=1)] == [int(candidates[i]) for i in (1, 0, 2)]
    _, reward, *_ = env.step(1)
    expected = env.value_of(resources.scorer.score(env.demonstrations(), env.episode.rows))
    before = env.value_of(resources.scorer.score(demos, env.episode.rows))
    assert env.demonstrations()[0].id == int(candidates[1])
    assert reward == pytest.approx(expected - before, abs=1e-6)


def test_seeded_episodes_are_deterministic(resources):
    first = rollout(make(resources, mode="query"), seed=11)
    second = rollout(make(resources, mode="query"), seed=11)
    for a, b in zip(first[0], second[0], strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    assert first[1] == second[1] and first[2]["selection"] == second[2]["selection"]
    _, first_info = make(resources).reset(seed=11)
    _, other_info = make(resources).reset(seed=12)
    assert first_info["candidate_ids"] != other_info["candidate_ids"]


def test_masks_are_respected(resources):
    env = make(resources, k=3)
    env.reset(seed=0)
    assert env.action_masks().all()
    env.step(2)
    mask = env.action_masks()
    assert not mask[2] and mask.sum() == 3
    with pytest.raises(ValueError, match="masked"):
        env.step(2)
    with pytest.raises(ValueError, match="outside"):
        env.step(9)
    obs, *_ = env.step(0)
    assert obs["chosen"].tolist() == [1.0, 0.0, 1.0, 0.0]


def test_observation_layout_matches_spaces(resources):
    env = make(resources, mode="query")
    layout = feature_layout(env.config.features, "query")
    obs, _ = env.reset(seed=0)
    assert obs["candidates"].shape == (4, len(layout.candidate))
    assert obs["query"].shape == (len(layout.query),) and obs["state"].shape == (len(layout.state),)
    label_block = obs["candidates"][:, 16:32]
    assert (label_block.sum(axis=1) == 1).all()


def test_step_features(tiny_lm, data_root):
    task = load_task("tiny_trec", data_root)
    resources = Resources(task, lm=tiny_lm, scoring=ScoringConfig(prefix_perplexity=True))
    env = DemoSelectionEnv(
        task,
        resources=resources,
        k=2,
        num_candidates=4,
        reward_rows=4,
        features=None,
        config=EnvConfig(features=FeatureConfig(step_features=True)),
    )
    obs, _ = env.reset(seed=0)
    assert obs["candidates"].shape[1] == len(feature_layout(env.config.features, "task").candidate)
    obs, *_ = env.step(1)
    assert obs["state"][-1] > 0  # the prompt's log-perplexity
    assert np.isfinite(obs["candidates"]).all()
    check_env(env, skip_render_check=True)
    without_scorer_config = Resources(task, lm=tiny_lm)
    with pytest.raises(ConfigError, match="prefix_perplexity"):
        DemoSelectionEnv(
            task,
            resources=without_scorer_config,
            config=EnvConfig(k=2, num_candidates=4, features=FeatureConfig(step_features=True)),
        )


@pytest.mark.parametrize(("env_id", "actions"), [(ENV_ID, 4), (ENV_ID_V1, 5)])  # v1: the stop action
def test_registered_env_via_gym_make(tiny_model_dir, data_root, env_id, actions):
    env = gym.make(
        env_id,
        task="tiny_sst",
        data_dir=str(data_root),
        model=str(tiny_model_dir),
        device="cpu",
        dtype="float32",
        k=2,
        num_candidates=4,
        reward_rows=4,
    )
    obs, info = env.reset(seed=0)
    assert obs["candidates"].shape[0] == actions == env.action_space.n and info["selection"] == []
    env.close()


def test_vector_env_batches_and_matches_single_envs(resources, monkeypatch):
    calls = []
    original = type(resources.scorer).score_many

    def spy(self, requests, **kwargs):
        calls.append(len(requests))
        return original(self, requests, **kwargs)

    monkeypatch.setattr(type(resources.scorer), "score_many", spy)
    from stable_baselines3.common.vec_env import VecMonitor

    envs = [make(resources) for _ in range(3)]
    vec = VecMonitor(DemoSelectionVecEnv(envs, seed=5))  # episode statistics are SB3's monitor's job
    obs = vec.reset()
    assert calls == [3] and obs["candidates"].shape[0] == 3
    calls.clear()
    obs, rewards, dones, infos = vec.step(np.array([0, 1, 2]))
    assert calls == [3]
    singles = [make(resources) for _ in range(3)]
    for i, env in enumerate(singles):
        env.reset(seed=5 + i)
        _, reward, *_ = env.step(i)
        assert reward == pytest.approx(rewards[i])
    obs, rewards, dones, infos = vec.step(np.array([3, 3, 3]))
    assert dones.all() and "terminal_observation" in infos[0] and infos[0]["episode"]["l"] == 2
    assert obs["chosen"].sum() == 0  # auto-reset
    assert vec.env_method("action_masks")[0].all()


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"k": 5, "num_candidates": 4}, "larger than the candidates per episode"),
        ({"num_candidates": 50}, "larger than the candidate pool"),
        ({"mode": "batch"}, "mode must be one of task, query"),
        ({"value": "f1"}, "value must be one of accuracy, probability"),
        ({"order": "shuffle"}, "order must be one of append, prepend"),
    ],
)
def test_bad_env_settings(resources, overrides, message):
    with pytest.raises(ConfigError, match=message):
        make(resources, **overrides)
