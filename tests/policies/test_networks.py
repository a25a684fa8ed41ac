import numpy as np
import pytest
import torch
from gymnasium import spaces

from rl_select.policies.cql import CQL, CQLConfig, Transitions
from rl_select.policies.dqn import CandidateDQNPolicy, random_valid_actions
from rl_select.policies.networks import candidate_input_dim
from rl_select.policies.ppo import CandidateActorCriticPolicy


def obs_space(m, f=6, s=4):
    return spaces.Dict(
        {
            "candidates": spaces.Box(-np.inf, np.inf, (m, f), np.float32),
            "chosen": spaces.Box(0, 1, (m,), np.float32),
            "step": spaces.Box(0, 4, (1,), np.float32),
            "state": spaces.Box(-np.inf, np.inf, (s,), np.float32),
        }
    )


def random_obs(m, batch=2, seed=0):
    rng = np.random.default_rng(seed)
    chosen = np.zeros((batch, m), np.float32)
    chosen[:, 1] = 1
    return {
        "candidates": torch.tensor(rng.normal(size=(batch, m, 6)), dtype=torch.float32),
        "chosen": torch.tensor(chosen),
        "step": torch.ones(batch, 1),
        "state": torch.randn(batch, 4),
    }


def ppo_policy(m):
    return CandidateActorCriticPolicy(
        obs_space(m),
        spaces.Discrete(m),
        lambda _: 3e-4,
        features_extractor_kwargs={"hidden": 16, "layers": 2},
        value_hidden=16,
    )


def test_ppo_policy_is_permutation_equivariant_and_pool_size_free():
    policy = ppo_policy(5)
    obs = random_obs(5)
    logits = policy.candidate_scores(obs)
    perm = torch.tensor([4, 2, 0, 1, 3])
    permuted = {**obs, "candidates": obs["candidates"][:, perm], "chosen": obs["chosen"][:, perm]}
    torch.testing.assert_close(policy.candidate_scores(permuted), logits[:, perm])
    values = policy.predict_values(obs)
    torch.testing.assert_close(policy.predict_values(permuted), values)
    # the same weights run on 8 candidates: only the shared per-candidate networks have parameters
    bigger = ppo_policy(8)
    bigger.load_state_dict(policy.state_dict())
    extended = random_obs(8)
    extended["candidates"][:, :5] = obs["candidates"]
    extended["state"], extended["step"] = obs["state"], obs["step"]
    torch.testing.assert_close(bigger.candidate_scores(extended)[:, :5], logits)


def test_ppo_masks_chosen_candidates():
    policy = ppo_policy(5)
    obs = random_obs(5)
    masks = (obs["chosen"] < 0.5).numpy()
    for _ in range(20):
        actions = policy.get_distribution(obs, action_masks=masks).get_actions(deterministic=False)
        assert (actions != 1).all()


def test_dqn_q_network_masks_chosen_and_explores_only_valid_actions():
    policy = CandidateDQNPolicy(
        obs_space(5), spaces.Discrete(5), lambda _: 1e-3, features_extractor_kwargs={"hidden": 16, "layers": 2}
    )
    obs = random_obs(5)
    q = policy.q_net(obs)
    assert (q[:, 1] < -1000).all() and (q[:, [0, 2, 3, 4]] > -1000).all()
    assert (policy.q_net._predict(obs) != 1).all()
    np.random.seed(0)
    batch = {"chosen": np.array([[1, 1, 0, 1, 1]] * 50, dtype=np.float32)}
    assert (random_valid_actions(batch) == 2).all()


def synthetic_episodes(num, m=6, seed=0):
    """One-step episodes whose reward is candidate feature 0: a learnable bandit."""
    rng = np.random.default_rng(seed)
    episodes = []
    for e in range(num):
        cands = rng.normal(size=(2, m, 6)).astype(np.float32)
        action = int(rng.integers(m))
        chosen = np.zeros((2, m), np.float32)
        chosen[1, action] = 1
        episodes.append(
            {
                "obs_candidates": cands,
                "obs_chosen": chosen,
                "obs_step": np.array([[0.0], [1.0]], np.float32),
                "obs_state": np.zeros((2, 4), np.float32),
                "actions": np.array([action]),
                "rewards": np.array([cands[0, action, 0]], np.float32),
                "episode_id": np.array(e),
            }
        )
    return episodes


def test_cql_learns_a_bandit_and_saves_loads(tmp_path):
    data = Transitions(synthetic_episodes(300))
    agent = CQL(
        candidate_input_dim(obs_space(6)),
        CQLConfig(learning_rate=3e-3, alpha=0.1, dropout=0.0, target_update=50),
        seed=0,
    )
    agent.learn(data, 1500)
    test = synthetic_episodes(100, seed=1)
    hits = 0
    for episode in test:
        obs = {
            "candidates": episode["obs_candidates"][0],
            "chosen": np.zeros(6, np.float32),
            "step": np.array([0.0], np.float32),
            "state": np.zeros(4, np.float32),
        }
        action, _ = agent.predict(obs)
        hits += action == int(np.argmax(episode["obs_candidates"][0, :, 0]))
    assert hits >= 60, hits  # chance is ~17
    agent.save(tmp_path / "cql.pt")
    again = CQL.load(tmp_path / "cql.pt")
    assert again.num_steps == 1500
    torch.testing.assert_close(
        again.candidate_scores({k: torch.as_tensor(v[None]) for k, v in obs.items()}),
        agent.candidate_scores({k: torch.as_tensor(v[None]) for k, v in obs.items()}),
    )


def test_cql_config_validation():
    with pytest.raises(ValueError, match="dropout"):
        CQLConfig(dropout=1.5)


def prior_policy(m, weight=4.0):
    return CandidateActorCriticPolicy(
        obs_space(m),
        spaces.Discrete(m),
        lambda _: 3e-4,
        features_extractor_kwargs={"hidden": 16, "layers": 2, "prior_column": 5},
        value_hidden=16,
        prior_weight=weight,
    )


def test_ppo_retrieval_prior_orders_candidates_by_rank_and_is_trained():
    policy = prior_policy(6)
    obs = random_obs(6)
    ranks = torch.tensor([0.4, 0.0, 1.0, 0.2, 0.8, 0.6])
    obs["candidates"][:, :, 5] = ranks
    logits = policy.candidate_scores(obs)
    # near-zero learned logits at initialisation: the prior decides the order (nearest first)
    assert (logits.argsort(dim=1, descending=True) == ranks.argsort()).all()
    torch.testing.assert_close(logits, -4.0 * ranks.expand(2, -1), atol=0.05, rtol=0)
    weight = policy.mlp_extractor.prior_weight
    assert any(p is weight for p in policy.parameters())
    logits.sum().backward()
    assert weight.grad is not None and weight.grad != 0
    # still permutation-equivariant, and the critic ignores the prior channel's presence
    perm = torch.tensor([5, 3, 0, 1, 4, 2])
    permuted = {**obs, "candidates": obs["candidates"][:, perm], "chosen": obs["chosen"][:, perm]}
    torch.testing.assert_close(policy.candidate_scores(permuted), logits[:, perm])


def test_ppo_prior_needs_its_column():
    with pytest.raises(ValueError, match="go together"):
        CandidateActorCriticPolicy(
            obs_space(4),
            spaces.Discrete(4),
            lambda _: 3e-4,
            features_extractor_kwargs={"hidden": 8},
            prior_weight=2.0,
        )
