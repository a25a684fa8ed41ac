"""PPO with action masking (sb3-contrib MaskablePPO) and a candidate-scoring actor-critic.

The actor scores each candidate with one shared network (its logits are the policy's action logits, so it is
permutation-equivariant over candidates and works for any M); the critic reads mean- and max-pooled candidate
embeddings. Optionally the logits get a retrieval prior, ``w · (−anchor_rank)`` with a trainable ``w``: the
policy then starts as a softened kNN (greedy: exactly the nearest candidates first) and learns from there
instead of from a uniform policy. Everything else is MaskablePPO unchanged.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from sb3_contrib import MaskablePPO
from sb3_contrib.common.maskable.policies import MaskableActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from rl_select.policies.networks import CandidateEncoder, candidate_input_dim, mlp
from rl_select.policies.settings import PPOConfig


class CandidateExtractor(BaseFeaturesExtractor):
    """Features extractor: per-candidate embeddings ``[B, M, hidden]`` (``[B, M, hidden + 1]`` with a prior).

    Args:
        observation_space: The env's Dict space.
        hidden: Embedding width.
        layers: Linear layers of the shared candidate MLP.
        prior_column: Column of ``candidates`` holding ``anchor_rank``; its negation is passed on as a last
            channel for the actor's retrieval prior (None: no prior).
    """

    def __init__(
        self, observation_space: spaces.Dict, hidden: int = 64, layers: int = 2, prior_column: int | None = None
    ) -> None:
        super().__init__(observation_space, features_dim=hidden + (prior_column is not None))
        self.encoder = CandidateEncoder(candidate_input_dim(observation_space), hidden, layers)
        self.prior_column = prior_column

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-candidate embeddings (and the prior channel)."""
        embedded = self.encoder(observations)
        if self.prior_column is None:
            return embedded
        column = self.prior_column
        return torch.cat([embedded, -observations["candidates"][..., column : column + 1]], dim=-1)


class CandidateHeads(nn.Module):
    """Actor and critic heads over candidate embeddings (SB3's ``mlp_extractor`` slot).

    ``latent_pi`` is already the ``[B, M]`` action logits (the policy's ``action_net`` is the identity);
    ``latent_vf`` is ``[mean pool ‖ max pool]`` through an MLP. With ``prior_weight`` the features' last
    channel is the retrieval prior, added to the logits times a trainable weight that starts at ``prior_weight``.
    """

    def __init__(
        self, features_dim: int, num_candidates: int, value_hidden: int = 64, prior_weight: float | None = None
    ) -> None:
        super().__init__()
        hidden = features_dim - (prior_weight is not None)
        self.hidden = hidden
        self.logit = nn.Linear(hidden, 1)
        self.value = mlp([2 * hidden, value_hidden, value_hidden], nn.Tanh)
        self.prior_weight = None if prior_weight is None else nn.Parameter(torch.tensor(float(prior_weight)))
        self.latent_dim_pi = num_candidates
        self.latent_dim_vf = value_hidden

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logits, value latent)``."""
        return self.forward_actor(features), self.forward_critic(features)

    def forward_actor(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, M]`` candidate logits."""
        logits = self.logit(features[..., : self.hidden]).squeeze(-1)
        if self.prior_weight is not None:
            logits = logits + self.prior_weight * features[..., -1]
        return logits

    def forward_critic(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, value_hidden]`` value latent from pooled candidates."""
        features = features[..., : self.hidden]
        pooled = torch.cat([features.mean(dim=1), features.max(dim=1).values], dim=-1)
        return torch.tanh(self.value(pooled))


class CandidateActorCriticPolicy(MaskableActorCriticPolicy):
    """MaskableActorCriticPolicy whose actor scores each candidate with shared weights.

    ``features_extractor_kwargs`` set the candidate encoder (``hidden``, ``layers``, ``prior_column``);
    ``net_arch`` is not used (the heads are fixed: a linear logit per candidate, and an MLP of width
    ``value_hidden`` for the critic). ``prior_weight`` turns on the retrieval prior (it needs ``prior_column``).
    """

    def __init__(self, *args: Any, value_hidden: int = 64, prior_weight: float | None = None, **kwargs: Any) -> None:
        self.value_hidden = value_hidden
        self.prior_weight = prior_weight
        kwargs.setdefault("features_extractor_class", CandidateExtractor)
        has_column = (kwargs.get("features_extractor_kwargs") or {}).get("prior_column") is not None
        if has_column != (prior_weight is not None):
            raise ValueError("prior_weight and features_extractor_kwargs['prior_column'] go together")
        kwargs["net_arch"] = []
        super().__init__(*args, **kwargs)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        data = super()._get_constructor_parameters()
        data["value_hidden"] = self.value_hidden
        data["prior_weight"] = self.prior_weight
        return data

    def _build_mlp_extractor(self) -> None:
        self.mlp_extractor = CandidateHeads(
            self.features_dim, int(self.action_space.n), self.value_hidden, self.prior_weight
        )

    def _build(self, lr_schedule: Any) -> None:
        # as MaskableActorCriticPolicy._build, with the identity as action_net (the heads emit the logits)
        self._build_mlp_extractor()
        self.action_net = nn.Identity()
        self.value_net = nn.Linear(self.mlp_extractor.latent_dim_vf, 1)
        if self.ortho_init:
            for module, gain in (
                (self.features_extractor, np.sqrt(2)),
                (self.mlp_extractor, np.sqrt(2)),
                (self.value_net, 1.0),
            ):
                module.apply(partial(self.init_weights, gain=gain))
            self.init_weights(self.mlp_extractor.logit, gain=0.01)  # near-uniform initial policy, as SB3 does
        self.optimizer = self.optimizer_class(self.parameters(), lr=lr_schedule(1), **self.optimizer_kwargs)

    def candidate_scores(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B, M]`` unmasked action logits (what the exported policy computes)."""
        features = self.extract_features(obs, self.pi_features_extractor)
        return self.mlp_extractor.forward_actor(features)


def make_ppo(
    env: Any,
    config: PPOConfig | None = None,
    *,
    seed: int,
    tensorboard_log: str | None = None,
    prior_column: int | None = None,
    prior_weight: float = 0.0,
) -> MaskablePPO:
    """A MaskablePPO with :class:`CandidateActorCriticPolicy` on ``env``, set up by ``config``.

    ``prior_weight`` > 0 (with ``prior_column``, the ``anchor_rank`` column) starts the actor at a retrieval prior.
    """
    config = config or PPOConfig()
    use_prior = prior_weight > 0
    if use_prior and prior_column is None:
        raise ValueError("a retrieval prior needs prior_column")
    extractor = {"hidden": config.hidden, "layers": config.layers, "prior_column": prior_column if use_prior else None}
    return MaskablePPO(
        CandidateActorCriticPolicy,
        env,
        learning_rate=config.learning_rate,
        n_steps=config.n_steps,
        batch_size=min(config.batch_size, config.n_steps * env.num_envs),  # a short run's rollout may be smaller
        n_epochs=config.epochs,
        gamma=config.gamma,
        ent_coef=config.ent_coef,
        seed=seed,
        tensorboard_log=tensorboard_log,
        policy_kwargs={
            "features_extractor_kwargs": extractor,
            "value_hidden": config.hidden,
            "prior_weight": prior_weight if use_prior else None,
        },
        verbose=0,
        device="cpu",
    )
