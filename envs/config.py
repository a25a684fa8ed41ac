"""The MDP's settings."""

from __future__ import annotations

from dataclasses import dataclass, replace

from rl_select.errors import ConfigError
from rl_select.observation import MODES, ORDERS, FeatureConfig
from rl_select.proposals import ProposerConfig
from rl_select.settings import build, check_fields, setting, to_mapping
from rl_select.types import JsonObject

VALUES = ("accuracy", "probability")
QUERY_SOURCES = ("dev", "pool")


@dataclass(frozen=True)
class EnvConfig:
    """How episodes are built and rewarded (each field's help says how)."""

    mode: str = setting(
        "task",
        help="task (one prompt for the task, Zhang et al. 2022) or query (one prompt per query).",
        flags=("--mode",),
        choices=MODES,
    )
    k: int = setting(4, help="Demonstrations per prompt (at most k with the stop action).", flags=("--k",), minimum=1)
    num_candidates: int = setting(
        64,
        help="Candidates per episode (M): sampled from the pool (task mode) or proposed for the query (query mode).",
        flags=("--num-candidates", "-M"),
        minimum=2,
    )
    reward_rows: int = setting(
        64, help="Task mode: dev rows a prompt's reward is measured on.", flags=("--reward-rows",), minimum=1, cpu=8
    )
    value: str | None = setting(
        None,
        help="What a prompt is worth: accuracy, or the mean gold-label probability (less noisy on few rows); "
        "none: accuracy in task mode, probability in query mode.",
        flags=("--value",),
        choices=VALUES,
        cpu="probability",
    )
    neighbour_rows: int = setting(
        0, help="Query mode: also average the value over the query's nearest dev neighbours.", minimum=0
    )
    order: str | None = setting(
        None,
        help="Where each new demonstration goes: append (before the query, Zhang et al.) or prepend (at the top); "
        "none: append in task mode, prepend in query mode.",
        choices=ORDERS,
    )
    query_source: str = setting(
        "dev",
        help="Query mode: training queries from dev rows, or pool rows (never among their own candidates).",
        choices=QUERY_SOURCES,
    )
    calibrate: bool = setting(
        True, help="Rewards under contextual calibration (the evaluation default too).", flags=("--calibrate",)
    )
    data_seed: int = setting(0, help="Seed of the reward-row subsample.")
    features: FeatureConfig = setting(factory=FeatureConfig, help="Observation features.")
    proposers: ProposerConfig | None = setting(
        None,
        help="Query mode: candidates per proposer ({embedding: 4, bm25: 4, balanced: 4, task: 4}); none: the M "
        "nearest embedding neighbours (v0).",
    )
    stop: bool = setting(
        False, help="A stop action: episodes may end with fewer than k demonstrations, zero included (v1)."
    )

    def __post_init__(self) -> None:
        check_fields(self)
        if self.k > self.num_candidates:
            raise ConfigError(f"k={self.k} is larger than the candidates per episode M={self.num_candidates}")
        if isinstance(self.features, dict):
            object.__setattr__(self, "features", build(FeatureConfig, self.features, "features."))
        if isinstance(self.proposers, dict):
            object.__setattr__(self, "proposers", build(ProposerConfig, self.proposers, "proposers."))
        if self.proposers is not None:
            if self.mode != "query":
                raise ConfigError("proposers choose a query's candidates: they need mode 'query'")
            self.proposers.check(self.num_candidates)

    @property
    def value_kind(self) -> str:
        """``value`` or the mode's default."""
        return self.value or ("accuracy" if self.mode == "task" else "probability")

    @property
    def num_actions(self) -> int:
        """M candidates, plus the stop action with ``stop``."""
        return self.num_candidates + int(self.stop)

    @property
    def prompt_order(self) -> str:
        """``order`` or the mode's default."""
        return self.order or ("append" if self.mode == "task" else "prepend")

    def for_cost(self, zero_cost: bool) -> EnvConfig:
        """The MDP a policy follows where it must choose at no LLM cost (``zero_cost``), else this one.

        At no LLM cost: without the task-level proposer, which costs LLM calls on a new task (its slots go to
        embedding neighbours).
        """
        if not zero_cost or self.proposers is None:
            return self
        return replace(self, proposers=self.proposers.without_task())

    def to_dict(self) -> JsonObject:
        """The mapping form."""
        return to_mapping(self)

    @classmethod
    def from_dict(cls, data: JsonObject) -> EnvConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        return build(cls, data, "env.")

    def check_pool(self, pool_size: int) -> None:
        """Reject an M larger than the candidate pool."""
        if self.num_candidates > pool_size:
            raise ConfigError(
                f"num_candidates (M={self.num_candidates}) is larger than the candidate pool ({pool_size} examples)"
            )
