"""The MDP's settings."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from rl_select.errors import ConfigError, reject_unknown_keys
from rl_select.observation import MODES, ORDERS, FeatureConfig
from rl_select.proposals import ProposerConfig

VALUES = ("accuracy", "probability")
QUERY_SOURCES = ("dev", "pool")


@dataclass(frozen=True)
class EnvConfig:
    """How episodes are built and rewarded.

    Attributes:
        mode: ``task`` (one prompt for the task, Zhang et al. 2022) or ``query`` (one prompt per query).
        k: Demonstrations per prompt: episodes end after k steps.
        num_candidates: Candidates offered per episode (M): sampled from the pool (task mode) or the query's
            nearest pool neighbours (query mode).
        reward_rows: Task mode: dev rows the reward is measured on (a fixed seeded subsample).
        value: What a prompt is worth on its rows: ``accuracy`` (share predicted right; in query mode the query's
            correctness) or ``probability`` (mean probability of the gold label: less noisy on few rows).
            Default: accuracy in task mode (Zhang et al.), probability in query mode.
        neighbour_rows: Query mode: also average the value over the query's nearest dev neighbours.
        order: Where each new demonstration goes in the prompt: ``append`` (right before the query, after the
            earlier ones; Zhang et al.) or ``prepend`` (at the top, so the first choice sits right before the
            query). Default: append in task mode, prepend in query mode, where the policy's first pick (the
            nearest neighbour, for a kNN-like policy) then lands where KATE puts the most similar example.
        query_source: Query mode: where training episodes draw their query: ``dev`` rows, or ``pool`` rows
            (thousands of training queries; the query is never among its own candidates). Dev stays for model
            selection either way, and the test split is never drawn.
        calibrate: Measure rewards with contextual calibration (the evaluation default, too).
        data_seed: Seed of the reward-row subsample.
        features: Observation features.
        proposers: Query mode: where the M candidates come from (:class:`~rl_select.proposals.ProposerConfig`:
            embedding and BM25 neighbours, a label-balanced set, the best task-level prompts' demonstrations),
            with proposer features per candidate. None: the M nearest embedding neighbours (v0).
        stop: Add a stop action (action M): the episode may end with fewer than k demonstrations, zero
            included, so zero-shot is one of its choices and k is "at most k" (v1).
    """

    mode: str = "task"
    k: int = 4
    num_candidates: int = 64
    reward_rows: int = 64
    value: str | None = None
    neighbour_rows: int = 0
    order: str | None = None
    query_source: str = "dev"
    calibrate: bool = True
    data_seed: int = 0
    features: FeatureConfig = field(default_factory=FeatureConfig)
    proposers: ProposerConfig | None = None
    stop: bool = False

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"unknown mode '{self.mode}' (choose from: {', '.join(MODES)})")
        if self.k < 1:
            raise ConfigError(f"k must be a positive number of demonstrations, got {self.k}")
        if self.num_candidates < 2:
            raise ConfigError(f"num_candidates (M) must be at least 2, got {self.num_candidates}")
        if self.k > self.num_candidates:
            raise ConfigError(f"k={self.k} is larger than the candidates per episode M={self.num_candidates}")
        if self.reward_rows < 1:
            raise ConfigError(f"reward_rows must be positive, got {self.reward_rows}")
        if self.value is not None and self.value not in VALUES:
            raise ConfigError(f"unknown value '{self.value}' (choose from: {', '.join(VALUES)})")
        if self.order is not None and self.order not in ORDERS:
            raise ConfigError(f"unknown order '{self.order}' (choose from: {', '.join(ORDERS)})")
        if self.query_source not in QUERY_SOURCES:
            raise ConfigError(f"unknown query_source '{self.query_source}' (choose from: {', '.join(QUERY_SOURCES)})")
        if self.neighbour_rows < 0:
            raise ConfigError(f"neighbour_rows must be >= 0, got {self.neighbour_rows}")
        if isinstance(self.features, dict):
            object.__setattr__(self, "features", FeatureConfig(**self.features))
        if isinstance(self.proposers, dict):
            reject_unknown_keys(self.proposers, (f.name for f in fields(ProposerConfig)), "proposers")
            object.__setattr__(self, "proposers", ProposerConfig(**self.proposers))
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

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EnvConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        reject_unknown_keys(data, (f.name for f in fields(cls)), "env")
        values = dict(data)
        if isinstance(values.get("features"), dict):
            reject_unknown_keys(values["features"], (f.name for f in fields(FeatureConfig)), "feature")
            values["features"] = FeatureConfig(**values["features"])
        return cls(**values)

    def check_pool(self, pool_size: int) -> None:
        """Reject an M larger than the candidate pool."""
        if self.num_candidates > pool_size:
            raise ConfigError(
                f"num_candidates (M={self.num_candidates}) is larger than the candidate pool ({pool_size} examples)"
            )
