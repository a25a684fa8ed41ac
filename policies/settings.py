"""Every learner's hyperparameters and their defaults, in one place (and light: no torch, no SB3).

The algorithm files take these dataclasses; the training configuration holds one of each, so a default is
written once. The behaviour policies of offline data collection are validated here too.
"""

from __future__ import annotations

from dataclasses import dataclass

from rl_select.errors import ConfigError
from rl_select.settings import check_fields, setting

BEHAVIOURS = ("knn", "random", "greedy", "policy")
"""Behaviour policies of dense-row collection (see :mod:`rl_select.rollouts.behaviour`)."""


LR = {"above": 0.0}
POSITIVE = {"minimum": 1}
GAMMA = {"above": 0.0, "maximum": 1.0, "help": "Discount (1: rewards telescope to the final value)."}


@dataclass(frozen=True)
class PPOConfig:
    """MaskablePPO with the candidate-scoring actor-critic."""

    learning_rate: float = setting(3e-4, help="Adam learning rate.", **LR)
    n_steps: int = setting(64, help="Rollout length per sub-env.", **POSITIVE)
    batch_size: int = setting(64, help="Minibatch size.", **POSITIVE)
    epochs: int = setting(4, help="Epochs per rollout.", **POSITIVE)
    gamma: float = setting(1.0, **GAMMA)
    ent_coef: float = setting(0.01, help="Entropy bonus.", minimum=0.0)
    hidden: int = setting(64, help="Width of the candidate encoder.", **POSITIVE)
    layers: int = setting(2, help="Linear layers of the candidate encoder.", **POSITIVE)
    prior: float | None = setting(
        None,
        help="Starting weight of the retrieval prior w·(−anchor_rank), trained along; 0 turns it off; none: 4 in "
        "query mode, 0 in task mode.",
        minimum=0.0,
    )

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class DQNConfig:
    """SB3 DQN with masked exploration."""

    learning_rate: float = setting(3e-4, help="Adam learning rate.", **LR)
    buffer_size: int = setting(20_000, help="Replay buffer size.", **POSITIVE)
    learning_starts: int = setting(200, help="Random steps before learning.", minimum=0)
    batch_size: int = setting(32, help="Minibatch size.", **POSITIVE)
    gamma: float = setting(1.0, **GAMMA)
    target_update: int = setting(200, help="Steps between target-network updates.", **POSITIVE)
    exploration_fraction: float = setting(
        0.3, help="Share of training over which ε decays to exploration_final_eps.", minimum=0.0, maximum=1.0
    )
    exploration_final_eps: float = setting(0.05, help="Final ε.", minimum=0.0, maximum=1.0)
    train_freq: int = setting(4, help="Env steps between gradient steps.", **POSITIVE)
    hidden: int = setting(64, help="Width of the candidate encoder.", **POSITIVE)
    layers: int = setting(2, help="Linear layers of the candidate encoder.", **POSITIVE)

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class CQLConfig:
    """Offline CQL as in Zhang et al. (2022).

    Their grid: lr {1e-4, 3e-4, 5e-4}, α {0, 0.1, 0.2}, target update {100, 200, 400}, dropout {0, 0.25},
    batch 16, hidden 16, 8000 steps.
    """

    learning_rate: float = setting(3e-4, help="AdamW learning rate.", **LR)
    alpha: float = setting(0.1, help="Weight of the CQL regulariser (0: plain offline DQN).", minimum=0.0)
    target_update: int = setting(200, help="Gradient steps between target-network copies.", **POSITIVE)
    dropout: float = setting(0.25, help="Dropout on the input and hidden layer.", minimum=0.0, below=1.0)
    batch_size: int = setting(16, help="Transitions per gradient step.", **POSITIVE)
    hidden: int = setting(16, help="Hidden units.", **POSITIVE)
    weight_decay: float = setting(1e-3, help="AdamW weight decay.", minimum=0.0)
    max_grad_norm: float = setting(1.0, help="Gradient clipping.", above=0.0)

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class FQIConfig:
    """Fitted Q-iteration on dense action rows (``alpha`` > 0: its conservative, CQL variant)."""

    alpha: float = setting(0.0, help="Weight of the conservative (CQL) term; 0 for plain fitted Q.", minimum=0.0)
    rounds: int = setting(
        4, help="Target recomputations (k or more: values travel back one step per round).", **POSITIVE
    )
    epochs: int = setting(20, help="Passes over the data per round.", **POSITIVE)
    learning_rate: float = setting(3e-4, help="AdamW learning rate.", **LR)
    batch_size: int = setting(64, help="States per gradient step (each carries M labelled actions).", **POSITIVE)
    hidden: int = setting(64, help="Hidden units of the Q-network.", **POSITIVE)
    dropout: float = setting(0.0, help="Dropout of the Q-network.", minimum=0.0, below=1.0)
    weight_decay: float = setting(1e-4, help="AdamW weight decay.", minimum=0.0)
    huber_delta: float = setting(
        0.1, help="Huber loss threshold (values are probabilities or accuracies: differences < 1).", above=0.0
    )

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class OfflineData:
    """Where offline learners' data come from."""

    cql_episodes: int = setting(
        500,
        help="cql: random-policy episodes collected when no cql_data is given.",
        flags=("--cql-episodes",),
        **POSITIVE,
    )
    cql_data: str | None = setting(
        None, help="cql: an episode data set from `rl-select collect`.", flags=("--cql-data",)
    )
    dense_episodes: int = setting(
        200, help="fqi: episodes collected with an action row at every visited state.", **POSITIVE
    )
    dense_data: tuple[str, ...] = setting(
        (),
        help="fqi: existing action-row data sets (earlier runs' episodes/; several train one multi-task policy) "
        "instead of collecting.",
    )
    dense_limit: int | None = setting(
        None, help="fqi: learn from the first n episodes (by id) of each data set only (none: all).", **POSITIVE
    )
    behaviour: dict[str, float] = setting(
        factory=lambda: {"knn": 1.0, "random": 1.0, "greedy": 1.0},
        help=f"fqi: behaviour policies of the collection and their shares ({', '.join(BEHAVIOURS)}).",
    )
    behaviour_epsilon: float = setting(
        0.1, help="fqi: probability of a random candidate at each collection step.", minimum=0.0, maximum=1.0
    )

    def __post_init__(self) -> None:
        dense = (self.dense_data,) if isinstance(self.dense_data, str) else tuple(self.dense_data or ())
        object.__setattr__(self, "dense_data", dense)
        check_fields(self)
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
