"""Every learner's hyperparameters and their defaults, in one place (and light: no torch, no SB3).

The algorithm files take these dataclasses; the training configuration holds one of each, so a default is
written once. The behaviour policies of offline data collection are validated here too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rl_select.errors import ConfigError

BEHAVIOURS = ("knn", "random", "greedy", "policy")
"""Behaviour policies of dense-row collection (see :mod:`rl_select.rollouts.behaviour`)."""


def _positive(**values: float) -> None:
    for name, value in values.items():
        if value <= 0:
            raise ConfigError(f"{name} must be positive, got {value}")


def _learning_rate(value: float) -> None:
    if value <= 0:
        raise ConfigError(f"learning_rate must be > 0, got {value}")


@dataclass(frozen=True)
class PPOConfig:
    """MaskablePPO with the candidate-scoring actor-critic.

    Attributes:
        learning_rate: Adam learning rate.
        n_steps: Rollout length per sub-env.
        batch_size: Minibatch size.
        epochs: Epochs per rollout.
        gamma: Discount (1: rewards telescope to the final value).
        ent_coef: Entropy bonus.
        hidden: Width of the candidate encoder.
        layers: Linear layers of the candidate encoder.
        prior: Starting weight of the retrieval prior ``w · (−anchor_rank)``, trained along; 0 turns it off;
            None: 4 in query mode, 0 in task mode.
    """

    learning_rate: float = 3e-4
    n_steps: int = 64
    batch_size: int = 64
    epochs: int = 4
    gamma: float = 1.0
    ent_coef: float = 0.01
    hidden: int = 64
    layers: int = 2
    prior: float | None = None

    def __post_init__(self) -> None:
        _learning_rate(self.learning_rate)
        _positive(n_steps=self.n_steps, batch_size=self.batch_size)
        _positive(epochs=self.epochs, hidden=self.hidden, layers=self.layers)
        if not 0 < self.gamma <= 1:
            raise ConfigError(f"gamma must be in (0, 1], got {self.gamma}")
        if self.prior is not None and self.prior < 0:
            raise ConfigError(f"ppo_prior must be >= 0 (0 turns the prior off), got {self.prior}")


@dataclass(frozen=True)
class DQNConfig:
    """SB3 DQN with masked exploration.

    Attributes:
        learning_rate: Adam learning rate.
        buffer_size: Replay buffer size.
        learning_starts: Random steps before learning.
        batch_size: Minibatch size.
        gamma: Discount.
        target_update: Steps between target-network updates.
        exploration_fraction: Share of training over which ε decays to ``exploration_final_eps``.
        exploration_final_eps: Final ε.
        train_freq: Env steps between gradient steps.
        hidden: Width of the candidate encoder.
        layers: Linear layers of the candidate encoder.
    """

    learning_rate: float = 3e-4
    buffer_size: int = 20_000
    learning_starts: int = 200
    batch_size: int = 32
    gamma: float = 1.0
    target_update: int = 200
    exploration_fraction: float = 0.3
    exploration_final_eps: float = 0.05
    train_freq: int = 4
    hidden: int = 64
    layers: int = 2

    def __post_init__(self) -> None:
        _learning_rate(self.learning_rate)
        _positive(dqn_buffer_size=self.buffer_size, batch_size=self.batch_size)
        _positive(target_update=self.target_update, train_freq=self.train_freq, hidden=self.hidden, layers=self.layers)
        if self.learning_starts < 0:
            raise ConfigError(f"dqn_learning_starts must be >= 0, got {self.learning_starts}")
        if not 0 < self.gamma <= 1:
            raise ConfigError(f"gamma must be in (0, 1], got {self.gamma}")


@dataclass(frozen=True)
class CQLConfig:
    """Offline CQL as in Zhang et al. (2022).

    Their grid: lr {1e-4, 3e-4, 5e-4}, α {0, 0.1, 0.2}, target update {100, 200, 400}, dropout {0, 0.25},
    batch 16, hidden 16, 8000 steps.

    Attributes:
        learning_rate: AdamW learning rate.
        alpha: Weight of the CQL regulariser (0: plain offline DQN).
        target_update: Gradient steps between target-network copies.
        dropout: Dropout on the input and hidden layer.
        batch_size: Transitions per gradient step.
        hidden: Hidden units.
        weight_decay: AdamW weight decay.
        max_grad_norm: Gradient clipping.
    """

    learning_rate: float = 3e-4
    alpha: float = 0.1
    target_update: int = 200
    dropout: float = 0.25
    batch_size: int = 16
    hidden: int = 16
    weight_decay: float = 1e-3
    max_grad_norm: float = 1.0

    def __post_init__(self) -> None:
        if self.learning_rate <= 0 or self.batch_size < 1 or self.hidden < 1 or self.target_update < 1:
            raise ConfigError("CQL needs learning_rate > 0, batch_size >= 1, hidden >= 1 and target_update >= 1")
        if not 0 <= self.dropout < 1 or self.alpha < 0:
            raise ConfigError("CQL needs 0 <= dropout < 1 and alpha >= 0")


@dataclass(frozen=True)
class FQIConfig:
    """Fitted Q-iteration on dense action rows (``alpha`` > 0: its conservative, CQL variant).

    Attributes:
        alpha: Weight of the conservative (CQL) term; 0 for plain fitted Q.
        rounds: Target recomputations (k or more: values travel back one step per round).
        epochs: Passes over the data per round.
        learning_rate: AdamW learning rate.
        batch_size: States per gradient step (each carries M labelled actions).
        hidden: Hidden units of the Q-network.
        dropout: Dropout of the Q-network.
        weight_decay: AdamW weight decay.
        huber_delta: Huber loss threshold (values are probabilities or accuracies, so differences are < 1).
    """

    alpha: float = 0.0
    rounds: int = 4
    epochs: int = 20
    learning_rate: float = 3e-4
    batch_size: int = 64
    hidden: int = 64
    dropout: float = 0.0
    weight_decay: float = 1e-4
    huber_delta: float = 0.1

    def __post_init__(self) -> None:
        if self.alpha < 0 or self.rounds < 1 or self.epochs < 1 or self.batch_size < 1 or self.hidden < 1:
            raise ConfigError("FQI needs fqi_alpha >= 0 and positive rounds, fqi_epochs, batch_size and hidden")
        if self.learning_rate <= 0 or not 0 <= self.dropout < 1:
            raise ConfigError("FQI needs learning_rate > 0 and 0 <= dropout < 1")


@dataclass(frozen=True)
class OfflineData:
    """Where offline learners' data come from.

    Attributes:
        cql_episodes: cql: random-policy episodes collected when no ``cql_data`` is given.
        cql_data: cql: an episode data set from ``rl-select collect``.
        dense_episodes: fqi: episodes collected with an action row at every visited state.
        dense_data: fqi: existing action-row data sets (earlier runs' ``episodes/``; several train one
            multi-task policy) instead of collecting.
        dense_limit: fqi: learn from the first n episodes (by id) of each data set only (None: all of them);
            for learning curves over one data set.
        behaviour: fqi: behaviour policies of the collection and their shares.
        behaviour_epsilon: fqi: probability of a random candidate at each collection step.
    """

    cql_episodes: int = 500
    cql_data: str | None = None
    dense_episodes: int = 200
    dense_data: tuple[str, ...] = ()
    dense_limit: int | None = None
    behaviour: dict[str, float] = field(default_factory=lambda: {"knn": 1.0, "random": 1.0, "greedy": 1.0})
    behaviour_epsilon: float = 0.1

    def __post_init__(self) -> None:
        dense = (self.dense_data,) if isinstance(self.dense_data, str) else tuple(self.dense_data or ())
        object.__setattr__(self, "dense_data", dense)
        _positive(cql_episodes=self.cql_episodes, dense_episodes=self.dense_episodes)
        if self.dense_limit is not None:
            _positive(dense_limit=self.dense_limit)
        check_behaviour(self.behaviour, self.behaviour_epsilon)


def check_behaviour(weights: dict[str, float], epsilon: float) -> None:
    """Reject unknown behaviour names, negative or all-zero shares, and ε outside [0, 1]."""
    unknown = sorted(set(weights) - set(BEHAVIOURS))
    if unknown:
        raise ConfigError(f"unknown behaviour(s) {unknown} (choose from: {', '.join(BEHAVIOURS)})")
    if not weights or any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise ConfigError("behaviour weights must be non-negative and not all zero")
    if not 0.0 <= epsilon <= 1.0:
        raise ConfigError(f"behaviour epsilon must be in [0, 1], got {epsilon}")
