"""DQN (stable-baselines3) with a candidate-scoring Q-network and masked actions.

SB3's DQN has no action masks, so masking lives in two small places: the Q-network gives chosen candidates a
score below any reachable value (so greedy actions and the TD target's max skip them), and exploration draws
random actions among the unchosen candidates only.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import DQN
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from stable_baselines3.dqn.policies import DQNPolicy
from torch import nn

from rl_select.policies.networks import MASKED_SCORE
from rl_select.policies.ppo import CandidateExtractor
from rl_select.policies.settings import DQNConfig


class CandidateQNetwork(BasePolicy):
    """``Q(s, candidate)`` for every candidate from shared weights; chosen candidates get :data:`MASKED_SCORE`."""

    def __init__(
        self,
        observation_space: spaces.Dict,
        action_space: spaces.Discrete,
        features_extractor: BaseFeaturesExtractor,
        features_dim: int,
        normalize_images: bool = True,
        **_unused_mlp_args: Any,  # SB3 passes net_arch/activation_fn; the head here is fixed (see module doc)
    ) -> None:
        super().__init__(
            observation_space, action_space, features_extractor=features_extractor, normalize_images=normalize_images
        )
        self.features_dim = features_dim
        self.head = nn.Linear(features_dim, 1)

    def candidate_scores(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B, M]`` unmasked Q-values."""
        return self.head(self.extract_features(obs, self.features_extractor)).squeeze(-1)

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B, M]`` Q-values with chosen candidates masked."""
        return self.candidate_scores(obs).masked_fill(obs["chosen"] > 0.5, MASKED_SCORE)

    def _predict(self, observation: dict[str, torch.Tensor], deterministic: bool = True) -> torch.Tensor:
        return self(observation).argmax(dim=1).reshape(-1)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data.update(features_dim=self.features_dim, features_extractor=self.features_extractor)
        return data


class CandidateDQNPolicy(DQNPolicy):
    """DQNPolicy building :class:`CandidateQNetwork`; set the encoder through ``features_extractor_kwargs``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("features_extractor_class", CandidateExtractor)
        super().__init__(*args, **kwargs)

    def make_q_net(self) -> CandidateQNetwork:
        """A fresh candidate Q-network (with its own features extractor)."""
        net_args = self._update_features_extractor(self.net_args, features_extractor=None)
        return CandidateQNetwork(**net_args).to(self.device)


def random_valid_actions(observation: dict[str, np.ndarray]) -> np.ndarray:
    """A uniformly random unchosen candidate per row of a (batched) observation."""
    chosen = np.atleast_2d(observation["chosen"])
    actions = [np.random.choice(np.flatnonzero(row < 0.5)) for row in chosen]
    return np.asarray(actions) if observation["chosen"].ndim > 1 else np.asarray(actions[0])


class MaskedDQN(DQN):
    """SB3 DQN whose ε-greedy exploration (and warm-up) only draws unchosen candidates."""

    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """ε-greedy over valid actions (greedy when ``deterministic``)."""
        if not deterministic and np.random.rand() < self.exploration_rate:
            return random_valid_actions(observation), state  # type: ignore[arg-type]
        return self.policy.predict(observation, state, episode_start, deterministic)

    def _sample_action(
        self, learning_starts: int, action_noise: Any = None, n_envs: int = 1
    ) -> tuple[np.ndarray, np.ndarray]:
        if self.num_timesteps < learning_starts:
            action = random_valid_actions(self._last_obs)  # type: ignore[arg-type]
            return action, action
        return super()._sample_action(learning_starts, action_noise, n_envs)


def make_dqn(env: Any, config: DQNConfig | None = None, *, seed: int, tensorboard_log: str | None = None) -> MaskedDQN:
    """A :class:`MaskedDQN` with :class:`CandidateDQNPolicy` on ``env``, set up by ``config``."""
    config = config or DQNConfig()
    return MaskedDQN(
        CandidateDQNPolicy,
        env,
        learning_rate=config.learning_rate,
        buffer_size=config.buffer_size,
        learning_starts=config.learning_starts,
        batch_size=config.batch_size,
        gamma=config.gamma,
        target_update_interval=config.target_update,
        exploration_fraction=config.exploration_fraction,
        exploration_final_eps=config.exploration_final_eps,
        train_freq=config.train_freq,
        seed=seed,
        tensorboard_log=tensorboard_log,
        policy_kwargs={"features_extractor_kwargs": {"hidden": config.hidden, "layers": config.layers}},
        verbose=0,
        device="cpu",
    )
