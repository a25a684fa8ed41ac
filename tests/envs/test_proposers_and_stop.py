"""DemoSelection-v1: candidates from several proposers, proposer features, and the stop action."""

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from rl_select.envs import DemoSelectionEnv, task_proposals
from rl_select.errors import ConfigError
from rl_select.observation import PROPOSER_COLUMNS, PROPOSERS, STOP_COLUMN
from rl_select.proposals import ProposerConfig, balanced_ranking, merge_proposals
from rl_select.resources import Resources
from rl_select.tasks import load_task


@pytest.fixture
def resources(tiny_lm, data_root):
    return Resources(load_task("tiny_trec", data_root), lm=tiny_lm)


def make(resources, **overrides):
    config = {"mode": "query", "k": 2, "num_candidates": 6, "query_source": "pool", **overrides}
    return DemoSelectionEnv(resources.task, resources=resources, **config)


# ---------------------------------------------------------------- merging proposals (plain numpy)


def test_merge_takes_each_proposer_in_order_without_repeats_and_tops_up_from_embedding():
    ranked = {
        "embedding": np.array([10, 11, 12, 13, 14, 15, 16]),
        "bm25": np.array([11, 20, 21]),
        "balanced": np.array([10, 30]),
        "task": np.array([40, 20]),
    }
    counts = {"embedding": 2, "bm25": 2, "balanced": 2, "task": 1}
    proposal = merge_proposals(ranked, counts, num_candidates=7)
    # embedding 10, 11; bm25 (11 repeated) 20; balanced (10 repeated) 30; task 40; then 12, 13 to fill M = 7
    assert proposal.candidates.tolist() == [10, 11, 20, 30, 40, 12, 13]
    columns = {name: i for i, name in enumerate(PROPOSER_COLUMNS)}
    features = proposal.features
    assert features.shape == (7, len(PROPOSER_COLUMNS))
    assert features[1, columns["from_bm25"]] == 1 and features[1, columns["rank_bm25"]] == 0  # 11 is bm25's first
    assert features[2, columns["rank_bm25"]] == pytest.approx(1 / 2)
    assert features[3, columns["from_embedding"]] == 0 and features[3, columns["rank_embedding"]] == 1
    assert features[5, columns["from_embedding"]] == 1  # topped-up neighbours are embedding's too
    assert features[4, columns["from_task"]] == 1 and features[0, columns["from_task"]] == 0


def test_merge_refuses_a_pool_too_small_for_m():
    with pytest.raises(ConfigError, match="distinct candidates"):
        merge_proposals({"embedding": np.array([1, 2])}, {"embedding": 2}, num_candidates=3)


def test_balanced_ranking_goes_round_robin_over_labels_nearest_first():
    similarity = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    labels = np.array([0, 0, 0, 1, 1, 2])
    assert balanced_ranking(similarity, labels, 5).tolist() == [0, 3, 5, 1, 4]
    assert balanced_ranking(similarity, labels, 3, exclude=0).tolist() == [1, 3, 5]


def test_proposer_counts_are_checked():
    with pytest.raises(ConfigError, match="more than num_candidates"):
        ProposerConfig(embedding=4, bm25=4).check(6)
    with pytest.raises(ConfigError, match="bm25 must be >= 0"):
        ProposerConfig(bm25=-1)
    with pytest.raises(ConfigError, match="mode 'query'"):
        from rl_select.envs import EnvConfig

        EnvConfig(mode="task", proposers=ProposerConfig())


def test_at_no_llm_cost_the_task_proposer_is_left_out_and_nothing_else_changes():
    from rl_select.envs import EnvConfig

    env = EnvConfig(mode="query", num_candidates=8, stop=True, proposers=ProposerConfig(embedding=2, bm25=2, task=3))
    free = env.for_cost(True)
    assert free.proposers == ProposerConfig(embedding=2, bm25=2, task=0) and free.stop and free.num_candidates == 8
    assert env.for_cost(False) is env and EnvConfig(mode="query").for_cost(True).proposers is None


# ---------------------------------------------------------------- the environment


def test_v1_env_passes_gymnasium_checks_with_proposers_and_stop(resources):
    proposers = ProposerConfig(embedding=2, bm25=2, balanced=2)
    env = make(resources, proposers=proposers, stop=True)
    check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert env.action_space.n == 7 and obs["candidates"].shape == (7, len(env.layout.candidate))
    assert env.layout.candidate[-1] == STOP_COLUMN and set(PROPOSER_COLUMNS) <= set(env.layout.candidate)
    assert obs["candidates"][-1, -1] == 1 and not obs["candidates"][:-1, -1].any()


def test_query_candidates_contain_each_proposers_list(resources):
    env = make(resources, proposers=ProposerConfig(embedding=2, bm25=2, balanced=2))
    env.reset(seed=1)
    episode = env.episode
    query = episode.query
    candidates = set(episode.candidates.tolist())
    assert query.id not in candidates and len(candidates) == 6
    _, bm25 = resources.bm25.search(query.input_text, 3)
    assert len({int(i) for i in bm25 if int(i) != query.id}) >= 2
    assert all(int(i) in candidates for i in [i for i in bm25 if int(i) != query.id][:2])
    labels = {env.task.train[i].label for i in candidates}
    assert len(labels) >= 2  # the balanced proposer brings more than one label
    from_bm25 = episode.proposer_features[:, PROPOSER_COLUMNS.index("from_bm25")]
    assert from_bm25.sum() >= 2


def test_task_proposer_offers_the_best_dev_prompts_once_per_task(resources):
    config = ProposerConfig(embedding=2, task=3, task_prompts=2, task_sets=4, task_dev_rows=3)
    found = task_proposals(resources, config, k=2, seed=0)
    assert len(found.prompts) == 2 and found.scores[0] >= found.scores[1] and found.cost.queries == 4 * 3
    assert found.ids[:2] == found.prompts[0]
    again = task_proposals(resources, config, k=2, seed=0)  # read from the cache: no new LLM work
    assert again.ids == found.ids and again.cost == found.cost
    env = make(resources, proposers=config)
    env.reset(seed=2)
    offered = env.episode.candidates.tolist()
    expected = [i for i in found.ids if i != env.episode.query.id][:3]
    assert all(i in offered for i in expected)


def test_stop_at_the_first_step_is_the_zero_shot_prompt(resources):
    env = make(resources, stop=True)
    obs, info = env.reset(seed=0)
    assert env.action_masks().tolist() == [True] * 7
    obs, reward, terminated, truncated, info = env.step(6)
    assert terminated and not truncated and reward == 0.0
    assert info["selection"] == [] and info["episode_value"] == info["zero_shot_value"]
    with pytest.raises(ValueError, match="over"):
        env.step(0)


def test_stop_after_one_demonstration_and_the_action_row_values_stopping(resources):
    env = make(resources, k=3, stop=True)
    env.reset(seed=0)
    _, first_reward, terminated, _, _ = env.step(0)
    assert not terminated
    row = env.action_row()
    assert len(row) == 7 and np.isnan(row[0]) and row[6] == env.episode.values[-1]
    _, reward, terminated, _, info = env.step(6)
    assert terminated and reward == 0 and len(info["selection"]) == 1


def test_greedy_run_may_choose_fewer_than_k(resources):
    env = make(resources, k=3, stop=True)
    calls = []

    def choose(obs, mask):
        calls.append(mask.copy())
        return 6 if len(calls) == 2 else int(np.flatnonzero(mask[:6])[0])

    assert len(env.run_greedy(choose, {"query": env.task.dev[0]})) == 1 and len(calls) == 2


def test_proposer_columns_name_every_proposer():
    assert {c.split("_", 1)[1] for c in PROPOSER_COLUMNS} == set(PROPOSERS)
