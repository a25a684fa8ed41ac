"""The training configuration: one typed schema, grouped by concern, every setting declared once.

A :class:`TrainConfig` holds the run (tasks, model, seed, pool), the MDP (:class:`EnvConfig`), one settings
object per learner (:mod:`rl_select.policies.settings`), where offline data come from, the final evaluation and
the parallelism. Each field is declared with :func:`rl_select.settings.setting` (type, default, bounds, help,
CPU value); the YAML and ``config.json`` form (nested), the ``--set`` paths (dotted: ``evaluation.rows``) and the
``rl-select train`` options are derived from those declarations. Files written in the flat format 1
(``eval_rows``, ``ppo_n_steps``) are migrated by :mod:`rl_select.runs.migrate`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path

from rl_select.envs.config import EnvConfig
from rl_select.errors import ArtifactError, ConfigError
from rl_select.policies.settings import CQLConfig, DQNConfig, FQIConfig, OfflineData, PPOConfig
from rl_select.provenance import Provenance, write_json
from rl_select.runs.migrate import FORMAT_1, migrate_format_1, migrate_keys
from rl_select.settings import (
    DataAndModel,
    build,
    check_fields,
    differences,
    fit_to_device,
    flatten,
    setting,
    to_mapping,
    with_values,
)
from rl_select.types import JsonObject, Overrides

ALGOS = ("cql", "dqn", "ppo", "fqi")
DEFAULT_STEPS = {"cql": 8000, "dqn": 20_000, "ppo": 20_000, "fqi": FQIConfig().rounds}
"""Env steps (dqn, ppo), gradient steps (cql) or fitting rounds (fqi) when ``steps`` is not given."""
BASELINES = ("zero-shot", "random", "best-of-n", "knn")
CONFIG_FORMAT = 2
"""``config.json``: 2 is the nested form of :class:`TrainConfig`; 1 (flat keys) is migrated when read."""
PLACEMENTS = ("worker", "central")


@dataclass(frozen=True)
class EvaluationSettings:
    """The final comparison on the test split, and the learning curve's evaluations."""

    tasks: tuple[str, ...] = setting((), help="Extra tasks evaluated on, never trained on (new-task transfer).")
    rows: int | None = setting(
        None,
        help="Test rows of the final evaluation (none: the whole split).",
        flags=("--eval-rows",),
        minimum=1,
        cpu=100,
    )
    seeds: int = setting(
        3, help="Seeds of every row of the final evaluation.", flags=("--eval-seeds",), minimum=1, cpu=2
    )
    episodes: int = setting(8, help="Greedy episodes per learning-curve point.", minimum=1)
    every: int = setting(0, help="Steps between learning-curve points (0: none).", minimum=0)
    baselines: tuple[str, ...] = setting(BASELINES, help="Baselines of the comparison (selector names).")
    best_of_n_sets: int = setting(20, help="best-of-N's N.", minimum=1)
    best_of_n_dev_rows: int = setting(200, help="Dev rows best-of-N picks on.", minimum=1, cpu=16)
    verify_rows: int = setting(
        0,
        help="Query mode, before the test comparison: the policy and every rule it can reproduce (a proposer's own "
        "top k, zero-shot) scored on this many dev rows of each training task, the best kept and followed on that "
        "task (policy/rules/<task>.json, learning cost); 0: the policy as trained.",
        minimum=0,
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(self.tasks))
        object.__setattr__(self, "baselines", tuple(self.baselines))
        check_fields(self)
        from rl_select.selectors import check_baselines  # deferred: the selectors import the scorer (torch)

        check_baselines(self.baselines)


@dataclass(frozen=True)
class ParallelSettings:
    """How rollouts are spread."""

    n_envs: int = setting(
        4, help="Sub-environments stepped together (their rewards scored in one batch).", flags=("--n-envs",), minimum=1
    )
    workers: int = setting(0, help="Ray rollout workers (0: in-process).", flags=("--workers",), minimum=0)
    address: str | None = setting(
        None, help="Address of an existing Ray cluster (none: a local one).", flags=("--address",)
    )
    scorer_placement: str = setting(
        "worker",
        help="With workers: each loads the model (worker) or one scorer actor serves them all (central).",
        choices=PLACEMENTS,
    )
    worker_gpus: float | None = setting(
        None,
        help="GPU fraction per worker with worker placement (none: 1 / workers when GPUs exist).",
        above=0.0,
        maximum=1.0,
    )

    def __post_init__(self) -> None:
        check_fields(self)


@dataclass(frozen=True)
class TrainConfig(DataAndModel):
    """Everything that defines a training run (and so must match on ``--resume``)."""

    tasks: tuple[str, ...] = setting(
        ("sst2",),
        help="Tasks trained on (names, hub:<name> or task folders; a,b for several).",
        flags=("--tasks", "--task"),
    )
    algo: str = setting(
        "ppo",
        help="cql (offline, Zhang et al. 2022), dqn (SB3), ppo (MaskablePPO) or fqi (fitted Q on dense action rows).",
        flags=("--algo",),
        choices=ALGOS,
    )
    env: EnvConfig = setting(factory=EnvConfig, help="The MDP.")
    steps: int | None = setting(
        None,
        help="Env steps (dqn, ppo), gradient steps (cql) or fitting rounds (fqi); none: the algorithm's default.",
        flags=("--steps",),
        minimum=1,
    )
    seed: int = setting(0, help="Seed of the policy, the env episodes and the evaluation.", flags=("--seed",))
    pool_size: int | None = setting(
        None,
        help="Use a seeded subset of each task's pool (CPU-sized runs); none: the whole pool.",
        flags=("--pool-size",),
        minimum=1,
    )
    holdout_fraction: float = setting(
        0.5,
        help="Task mode: share of the pool the policy never trains on; the learned prompt is its greedy episode over "
        "these new examples (Zhang et al.).",
        minimum=0.0,
        below=1.0,
    )
    checkpoint_every: int = setting(1000, help="Steps between checkpoints.", minimum=1)
    deterministic: bool = setting(
        False,
        help="One torch thread and deterministic kernels: slower, identical across thread counts.",
        flags=("--deterministic",),
    )
    ppo: PPOConfig = setting(factory=PPOConfig, help="PPO.")
    dqn: DQNConfig = setting(factory=DQNConfig, help="DQN.")
    cql: CQLConfig = setting(factory=CQLConfig, help="CQL.")
    fqi: FQIConfig = setting(factory=FQIConfig, help="Fitted Q (rounds follow steps).")
    data: OfflineData = setting(factory=OfflineData, help="Offline learners' data.")
    evaluation: EvaluationSettings = setting(factory=EvaluationSettings, help="The final comparison.")
    parallel: ParallelSettings = setting(factory=ParallelSettings, help="How rollouts are spread.")

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(self.tasks))
        check_fields(self)
        if not self.tasks:
            raise ConfigError("give at least one task (--task or --tasks)")
        overlap = sorted(set(self.tasks) & set(self.evaluation.tasks))
        if overlap:
            raise ConfigError(f"evaluation.tasks must be tasks the policy does not train on, got {overlap}")
        if self.algo == "fqi" and self.steps is not None:  # fqi's rounds are its steps
            object.__setattr__(self, "fqi", replace(self.fqi, rounds=self.steps))

    @property
    def total_steps(self) -> int:
        """``steps`` or the algorithm's default, rounded up to what the algorithm collects at a time.

        PPO collects a full rollout (``n_steps × n_envs``) before each update, DQN ``train_freq`` steps of every
        env; so that is how many env steps they take (what their progress bars count to, and the projection).
        """
        steps = self.steps if self.steps is not None else DEFAULT_STEPS[self.algo]
        if self.steps_per_collection is not None:
            rollout = self.steps_per_collection * self.parallel.n_envs
            steps = -(-steps // rollout) * rollout
        return steps

    @property
    def steps_per_collection(self) -> int | None:
        """Online learners: the steps of every env collected at a time (PPO ``n_steps``, DQN ``train_freq``)."""
        return {"ppo": self.ppo.n_steps, "dqn": self.dqn.train_freq}.get(self.algo)

    @property
    def ppo_prior_weight(self) -> float:
        """PPO's retrieval-prior weight: ``ppo.prior``, or the mode's default (4 in query mode, 0 in task mode).

        Left unresolved in the settings on purpose: a sweep that changes the mode gets that mode's default.
        """
        if self.ppo.prior is not None:
            return float(self.ppo.prior)
        return 4.0 if self.env.mode == "query" else 0.0

    @property
    def learner(self) -> PPOConfig | DQNConfig | CQLConfig | FQIConfig:
        """The settings of the algorithm this run trains."""
        return getattr(self, self.algo)

    # ------------------------------------------------------------------ mapping form

    def to_dict(self) -> JsonObject:
        """The nested mapping form (``config.json``, YAML)."""
        return to_mapping(self)

    @classmethod
    def from_dict(cls, data: JsonObject) -> TrainConfig:
        """Build from the mapping form (nested or dotted keys; format-1 flat keys are migrated)."""
        return build(cls, migrate_keys(data))

    def with_overrides(self, overrides: Overrides) -> TrainConfig:
        """A copy with settings (dotted paths, nested mappings, or format-1 flat keys) applied."""
        return with_values(self, migrate_keys(overrides))


def chosen_keys(settings: Overrides) -> set[str]:
    """The dotted paths of the settings a mapping sets (``evaluation.rows``, ``env.reward_rows``)."""
    return set(flatten(migrate_keys(settings), TrainConfig))


def fit_training(config: TrainConfig, chosen: set[str], device_type: str) -> tuple[TrainConfig, Overrides]:
    """``config`` with its open settings fitted to the device and the run's length, and what was fitted.

    Open: paths not in ``chosen`` (see :func:`chosen_keys`). On a CPU, each setting's declared CPU value (see
    :func:`rl_select.settings.cpu_values`: cheaper rewards and evaluation, MiniLM features). For PPO, a run shorter
    than one rollout (``ppo.n_steps × n_envs``) gets a rollout of its own length instead of a whole default one.
    """
    config, fitted = fit_to_device(config, chosen, device_type)
    n_envs = config.parallel.n_envs
    short = config.steps is not None and config.steps < config.ppo.n_steps * n_envs
    if config.algo == "ppo" and short and "ppo.n_steps" not in chosen:
        fitted["ppo.n_steps"] = max(2, -(-config.steps // n_envs))
        config = with_values(config, {"ppo.n_steps": fitted["ppo.n_steps"]})
    return config, fitted


def read_yaml_mapping(path: str | Path, what: str) -> JsonObject:
    """The mapping a YAML file holds (``what`` names it in errors: "training settings", "a sweep", ...)."""
    import yaml  # deferred: loads PyYAML

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} {'is not a regular file' if path.exists() else 'does not exist'}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of {what}")
    return data


def config_differences(old: TrainConfig, new: JsonObject) -> list[str]:
    """Human-readable ``path: old → new`` for every override that changes ``old``."""
    return differences(old, old.with_overrides(new))


def read_run_config(run_dir: Path) -> TrainConfig:
    """The ``config.json`` of a run directory (format 1, flat, is migrated)."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise ArtifactError(f"{run_dir} is not a training run (no config.json)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path} is corrupt ({exc.msg})") from None
    settings = data.get("config") if isinstance(data, dict) else None
    if not isinstance(settings, dict) or data.get("format") not in (FORMAT_1, CONFIG_FORMAT):
        found = data.get("format") if isinstance(data, dict) else None
        raise ArtifactError(f"{path} has format {found!r}; this rl-select reads formats {FORMAT_1} and {CONFIG_FORMAT}")
    if data["format"] == FORMAT_1:
        settings = migrate_format_1(settings)
    try:
        return TrainConfig.from_dict(settings)
    except ConfigError as exc:
        raise ArtifactError(f"{path}: {exc}") from None


def write_run_config(run_dir: Path, config: TrainConfig, record: Provenance) -> None:
    """Write ``config.json`` (format, config, provenance)."""
    write_json(
        Path(run_dir) / "config.json", {"format": CONFIG_FORMAT, "config": config.to_dict(), "provenance": record}
    )


__all__ = [
    "ALGOS",
    "BASELINES",
    "CONFIG_FORMAT",
    "DEFAULT_STEPS",
    "EvaluationSettings",
    "ParallelSettings",
    "TrainConfig",
    "chosen_keys",
    "config_differences",
    "fit_training",
    "read_run_config",
    "read_yaml_mapping",
    "write_run_config",
]
