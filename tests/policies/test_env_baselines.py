from dataclasses import asdict

import numpy as np
import pytest
import torch

from rl_select.envs import DemoSelectionEnv
from rl_select.errors import ConfigError
from rl_select.observation import arrange_prompt
from rl_select.policies.baselines import ENV_BASELINES, EnvBaseline, run_env_baseline
from rl_select.resources import Resources
from rl_select.tasks import load_task


@pytest.fixture
def env(tiny_lm, data_root):
    task = load_task("tiny_trec", data_root)
    return DemoSelectionEnv(task, resources=Resources(task, lm=tiny_lm), k=2, num_candidates=5, reward_rows=4)


@pytest.mark.parametrize("name", ENV_BASELINES)
def test_env_baselines_play_valid_episodes(env, name):
    results = run_env_baseline(env, EnvBaseline(name, np.random.default_rng(0), num_sets=3), seeds=[0, 1])
    for result in results:
        assert len(result.selection) == 2 == len(set(result.selection))
        assert 0.0 <= result.value <= 1.0 and 0.0 <= result.zero_shot <= 1.0


def test_greedy_oracle_takes_the_best_first_step(env):
    env.reset(seed=4)
    baseline = EnvBaseline("greedy-oracle", np.random.default_rng(0))
    baseline.plan(env)
    action = baseline.act(env, env.action_masks())
    values = []
    for i in range(5):
        demo = env.task.train[int(env.episode.candidates[i])]
        values.append(env.value_of(env.resources.scorer.score([demo], env.episode.rows)))
    assert values[action] == max(values)


@pytest.mark.parametrize("order", ["append", "prepend"])
@pytest.mark.parametrize("name", ["knn", "best-of-n"])
def test_planned_baselines_build_their_prompt_in_either_order(tiny_lm, data_root, order, name):
    task = load_task("tiny_trec", data_root)
    resources = Resources(task, lm=tiny_lm)
    env = DemoSelectionEnv(
        task, resources=resources, k=3, num_candidates=5, reward_rows=4, order=order, value="probability"
    )
    env.reset(seed=2)
    baseline = EnvBaseline(name, np.random.default_rng(0), num_sets=4)
    baseline.plan(env)
    wanted = arrange_prompt(baseline.picks, order)  # the prompt the baseline decided on
    for _ in range(3):
        *_, info = env.step(baseline.act(env, env.action_masks()))
    episode = env.episode
    assert env.selection() == [int(episode.candidates[i]) for i in wanted]
    if name == "knn":  # KATE: the most similar candidate sits last, right before the query
        sims = episode.vectors @ episode.anchor
        assert list(wanted) == list(np.argsort(-sims, kind="stable")[:3][::-1])
    else:  # the prompt built is the best of the subsets tried, each scored in the order it was tried
        rng = np.random.default_rng(0)
        tried = [rng.choice(5, size=3, replace=False) for _ in range(4)]
        values = [
            env.value_of(resources.scorer.score([task.train[int(episode.candidates[i])] for i in s], episode.rows))
            for s in tried
        ]
        assert info["episode_value"] == pytest.approx(max(values), abs=1e-6)


def test_unknown_env_baseline():
    with pytest.raises(ConfigError, match="unknown env baseline"):
        EnvBaseline("oracle", np.random.default_rng(0))


class RandomScores(torch.nn.Module):
    def forward(self, obs):
        return torch.rand(obs["chosen"].shape)


def test_untrained_ppo_with_the_retrieval_prior_builds_the_knn_prompt(tiny_lm, data_root):
    from stable_baselines3.common.vec_env import DummyVecEnv

    from rl_select.observation import feature_layout
    from rl_select.policies.ppo import make_ppo
    from rl_select.runs.config import TrainConfig
    from rl_select.runs.policy import CandidateScores, LoadedPolicy, PolicySelector

    task = load_task("tiny_trec", data_root)
    env = DemoSelectionEnv(task, resources=Resources(task, lm=tiny_lm), mode="query", k=3, num_candidates=6)
    column = feature_layout(env.config.features, "query").candidate.index("anchor_rank")
    model = make_ppo(DummyVecEnv([lambda: env]), seed=0, tensorboard_log=None, prior_column=column, prior_weight=4.0)
    policy = LoadedPolicy("ppo", CandidateScores(model.policy, "candidate_scores"), config=None)  # type: ignore[arg-type]
    for query in task.dev[:4]:
        learned = env.run_greedy(policy.choose, {"query": query})
        baseline = EnvBaseline("knn", np.random.default_rng(0))
        env.begin_episode({"query": query})
        baseline.plan(env)
        for _ in range(3):
            env.episode.chosen.append(baseline.act(env, env.action_masks()))
        assert learned == env.selection()
    # the same check as the training run's report
    config = TrainConfig(tasks=("tiny_trec",), env=env.config)
    selector = PolicySelector(LoadedPolicy("ppo", policy.module, config)).build(env.resources)
    report = selector.compare_with_knn(task, task.dev[:4])
    expected = {"queries": 4, "same_as_knn": 1.0, "mean_rank_by_position": [2.0, 1.0, 0.0]}
    assert asdict(report) == {**expected, "mean_prompt_length": 3.0, "zero_shot_share": 0.0}
    random_policy = LoadedPolicy("ppo", RandomScores(), config)
    torch.manual_seed(0)
    report = PolicySelector(random_policy).build(env.resources).compare_with_knn(task, task.dev[:8])
    assert report.same_as_knn < 0.5 and len(report.mean_rank_by_position) == 3
