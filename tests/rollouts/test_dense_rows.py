"""Dense action rows: every visited state's row of candidate values, and fitted Q-iteration learning from them."""

import numpy as np
import pytest
import torch

from rl_select.envs import DemoSelectionEnv
from rl_select.errors import ConfigError
from rl_select.policies.fqi import FQI, DenseRows, FQIConfig
from rl_select.resources import Resources
from rl_select.rollouts.behaviour import BehaviourMix, knn_picks, run_dense_episode
from rl_select.tasks import load_task


@pytest.fixture
def env(tiny_lm, data_root):
    resources = Resources(load_task("tiny_sst", data_root), lm=tiny_lm)
    config = {"mode": "query", "k": 2, "num_candidates": 4, "order": "append", "query_source": "pool"}
    return DemoSelectionEnv(resources.task, resources=resources, **config)


def test_action_rows_hold_the_value_of_every_extension(env):
    record = run_dense_episode(env, 0, 100, BehaviourMix({"random": 1.0}))
    rows, actions, values = record["action_values"], record["actions"], record["values"]
    assert rows.shape == (2, 4)
    assert np.isnan(rows[1, actions[0]]) and np.isfinite(rows[0]).all()
    np.testing.assert_allclose(values[1:], rows[np.arange(2), actions], atol=1e-6)
    np.testing.assert_allclose(record["rewards"], np.diff(values), atol=1e-6)
    # each entry is the value of that extended prompt, scored on its own
    query = env.task.train[int(record["query_key"][1])]
    assert query.id not in record["candidate_ids"]  # a pool query is never its own candidate
    demos = [env.task.train[int(record["candidate_ids"][a])] for a in range(4)]
    for a in range(4):
        alone = env.resources.scorer.score([demos[a]], [query], use_cache=False)
        assert rows[0, a] == pytest.approx(env.value_of(alone), abs=1e-4)


def test_knn_behaviour_builds_kates_prompt(env):
    record = run_dense_episode(env, 1, 100, BehaviourMix({"knn": 1.0}, epsilon=0.0))
    env.reset(seed=101)
    nearest = [int(i) for i in env.episode.nearest_first[:2]]
    assert knn_picks(env) == nearest[::-1]  # append order: farthest of the two first, nearest last
    assert list(record["actions"]) == nearest[::-1]


def test_fitted_q_learns_from_dense_rows(env, tmp_path):
    episodes = [run_dense_episode(env, i, 100, BehaviourMix({"random": 1.0, "greedy": 1.0})) for i in range(12)]
    data = DenseRows.from_episodes(episodes, k=2, label_vote=False)
    assert len(data) == 24 and data.labelled.sum() == 12 * (4 + 3)
    assert set(data.next_obs) == set(data.obs) and len(data.next_obs["chosen"]) == 12
    logged = []
    agent = FQI.for_space(env.observation_space, FQIConfig(rounds=2, epochs=5, batch_size=8), seed=0)
    agent.learn(data, log=lambda step, metrics: logged.append(metrics))
    assert agent.rounds_done == 2 and all(np.isfinite(m["train/td_loss"]) for m in logged)
    obs, _ = env.reset(seed=5)
    action, _ = agent.predict(obs)
    assert 0 <= int(action) < 4
    agent.save(tmp_path / "fqi.pt")
    again = FQI.load(tmp_path / "fqi.pt")
    assert again.predict(obs)[0] == action and again.rounds_done == 2


def test_bad_behaviour_mixes():
    with pytest.raises(ConfigError, match="unknown behaviour"):
        BehaviourMix({"oracle": 1.0})
    with pytest.raises(ConfigError, match="not all zero"):
        BehaviourMix({"random": 0.0})


@pytest.fixture
def stop_env(tiny_lm, data_root):
    resources = Resources(load_task("tiny_sst", data_root), lm=tiny_lm)
    config = {"mode": "query", "k": 3, "num_candidates": 4, "order": "append", "query_source": "pool", "stop": True}
    return DemoSelectionEnv(resources.task, resources=resources, **config)


def test_dense_rows_with_the_stop_action(stop_env):
    episodes = [run_dense_episode(stop_env, i, 300, BehaviourMix({"random": 1.0})) for i in range(16)]
    lengths = [len(e["actions"]) for e in episodes]
    assert min(lengths) < 3 and all(1 <= n <= 3 for n in lengths)  # random behaviour stops early sometimes
    for e in episodes:
        rows = e["action_values"]
        assert rows.shape[1] == 5 and bool(e["stop"])
        np.testing.assert_allclose(rows[:, 4], e["values"][:-1], atol=1e-6)  # stopping keeps the value
    data = DenseRows.from_episodes(episodes, k=3, label_vote=False)
    assert len(data) == sum(lengths) and data.final[:, 4].all()
    steps = np.concatenate([np.arange(n) for n in lengths])
    assert data.final[steps == 2].all() and not data.final[steps < 2][:, :4].any()
    assert (data.next_index[torch.from_numpy(steps < 2)] >= 0).all()
    assert (data.rewards[:, 4] == 0).all()
    agent = FQI.for_space(stop_env.observation_space, FQIConfig(rounds=3, epochs=5, batch_size=8), seed=0)
    agent.learn(data)
    obs, _ = stop_env.reset(seed=7)
    assert 0 <= int(agent.predict(obs)[0]) <= 4


def test_fitted_q_learns_to_stop_where_every_demonstration_hurts(stop_env, monkeypatch):
    """With rewards that make every addition cost value, the fitted Q-function prefers stopping at once."""
    episodes = [run_dense_episode(stop_env, i, 400, BehaviourMix({"random": 1.0})) for i in range(12)]
    for e in episodes:  # relabel: every added demonstration loses 0.1, stopping keeps the value
        rows = e["action_values"]
        added = np.isfinite(rows[:, :4])
        rows[:, :4] = np.where(added, e["values"][:-1, None] - 0.1, np.nan)
    data = DenseRows.from_episodes(episodes, k=3, label_vote=False)
    agent = FQI.for_space(stop_env.observation_space, FQIConfig(rounds=3, epochs=30, batch_size=8), seed=0)
    agent.learn(data)
    stops = [int(agent.predict(stop_env.reset(seed=s)[0])[0]) == 4 for s in range(6)]
    assert all(stops)


def test_episodes_keep_similarities_in_the_candidates_span_not_the_embeddings():
    from rl_select.observation import build_observation, span_coordinates

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(6, 48)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    anchor = rng.normal(size=48).astype(np.float32)
    reduced, reduced_anchor = span_coordinates(vectors, anchor)
    assert reduced.shape == (6, 6) and reduced_anchor.shape == (6,)
    np.testing.assert_allclose(reduced @ reduced.T, vectors @ vectors.T, atol=1e-5)
    np.testing.assert_allclose(reduced @ reduced_anchor, vectors @ anchor, atol=1e-5)
    common = {"static": np.zeros((6, 2), np.float32), "label_ids": np.array([0, 1, 0, 1, 1, 0]), "num_labels": 2}
    full = build_observation(**common, vectors=vectors, anchor=anchor, chosen=[2, 4], k=3)
    small = build_observation(**common, vectors=reduced, anchor=reduced_anchor, chosen=[2, 4], k=3)
    for key in full:
        np.testing.assert_allclose(full[key], small[key], atol=1e-5)


def test_a_stored_episode_is_small(env, tmp_path):
    from rl_select.rollouts.episodes import EpisodeStore

    record = run_dense_episode(env, 0, 100, BehaviourMix({"random": 1.0}))
    assert record["vectors"].shape == (4, 4)  # M × M, not M × the embedding's width
    store = EpisodeStore(tmp_path / "data")
    store.create({"settings": {}})
    path = store.write(record)
    assert path.stat().st_size < 8192  # compressed; about 6 KB of zip headers and small arrays
