"""The training configuration: one dataclass, filled from the CLI, a YAML file or a sweep."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from rl_select.envs.config import EnvConfig
from rl_select.errors import ArtifactError, ConfigError, reject_unknown_keys, unknown_name

ALGOS = ("cql", "dqn", "ppo", "fqi")
DEFAULT_STEPS = {"cql": 8000, "dqn": 20_000, "ppo": 20_000, "fqi": 4}
DEFAULT_BEHAVIOUR = {"knn": 1.0, "random": 1.0, "greedy": 1.0}
BASELINES = ("zero-shot", "random", "best-of-n", "knn")
CONFIG_FORMAT = 1


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


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run (and so must match on ``--resume``).

    Attributes:
        tasks: Tasks trained on (names, hub:<name> or task paths).
        algo: ``cql`` (offline, Zhang et al. 2022), ``dqn`` (SB3), ``ppo`` (sb3-contrib MaskablePPO) or ``fqi``
            (fitted Q-iteration on dense action rows; with ``fqi_alpha`` > 0 its conservative, CQL variant).
        env: The MDP (mode, k, M, reward rows, features).
        steps: Env steps (dqn, ppo), gradient steps (cql) or fitting rounds (fqi); default 20000 / 8000 / 4.
        seed: Seed of the policy, the env episodes and the evaluation.
        data_dir: Task data directory.
        model: Scoring LLM (default: the embedded SmolLM2-135M).
        device: Scoring device.
        dtype: Scoring dtype.
        pool_size: Use a seeded subset of each task's pool (sizes a run for a CPU); None: the whole pool.
        holdout_fraction: Task mode: share of the pool the policy never trains on; the learned prompt is the
            greedy episode over these "new examples" (Zhang et al.).
        n_envs: Sub-environments stepped together (their rewards are scored in one batch).
        learning_rate: Optimiser learning rate (default: 3e-4).
        hidden: Hidden width of the candidate networks (cql: 16, as in the paper).
        layers: Linear layers of the PPO/DQN candidate encoder.
        batch_size: Minibatch size (default: ppo 64, dqn 32, cql 16).
        gamma: Discount (1: rewards telescope to the final value).
        ppo_n_steps: PPO rollout length per sub-env.
        ppo_epochs: PPO epochs per rollout.
        ppo_ent_coef: PPO entropy bonus.
        ppo_prior: PPO: starting weight of the retrieval prior added to the candidate logits,
            ``w · (−anchor_rank)`` with ``w`` trained along (the policy starts as a softened kNN, greedy exactly
            the nearest candidates first); 0 turns it off. Default: 4 in query mode, 0 in task mode.
        dqn_buffer_size: DQN replay buffer size.
        dqn_learning_starts: DQN random steps before learning.
        dqn_exploration_fraction: DQN share of training over which ε decays to 0.05.
        target_update: Steps between target-network updates (dqn, cql).
        cql_alpha: Weight of the CQL regulariser.
        cql_dropout: Dropout of the CQL Q-network.
        cql_episodes: Random episodes collected for CQL when no ``cql_data`` is given.
        cql_data: An episode data set from ``rl-select collect`` to train CQL on.
        dense_episodes: fqi: episodes collected with an action row at every visited state.
        dense_data: fqi: existing action-row data sets to learn from (earlier runs' ``episodes/`` directories),
            instead of collecting one; several (one per task) train a multi-task policy.
        behaviour: fqi: behaviour policies of the collection and their shares (knn, random, greedy, policy).
        behaviour_epsilon: fqi: probability of a random candidate at each collection step.
        fqi_alpha: fqi: weight of the conservative (CQL) term; 0 for plain fitted Q.
        fqi_epochs: fqi: passes over the data per fitting round.
        checkpoint_every: Steps between checkpoints.
        eval_tasks: Extra tasks the final evaluation runs on, never trained on (new-task transfer).
        eval_rows: Test rows of the final evaluation (None: the whole test split).
        eval_seeds: Seeds of the final evaluation.
        eval_episodes: Greedy episodes per evaluation point of the learning curve.
        eval_every: Steps between learning-curve evaluations (0: none).
        baselines: Baselines of the final comparison.
        best_of_n_sets: Random prompts tried by the best-of-n baseline.
        best_of_n_dev_rows: Dev rows best-of-n picks on.
        workers: Ray rollout workers (0: in-process).
        address: Ray cluster address (None: a local cluster).
        scorer_placement: With workers, ``worker`` (each worker loads the model) or ``central`` (one scorer actor
            serves every worker); see ``rl_select.rollouts.workers``.
        worker_gpus: GPU fraction per worker with ``worker`` placement (default 1 / workers when GPUs exist).
        deterministic: Pin what can be pinned (one torch thread, deterministic kernels; see
            :mod:`rl_select.reproducibility`): slower, and identical across thread counts.
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
    n_envs: int = 4
    learning_rate: float = 3e-4
    hidden: int | None = None
    layers: int = 2
    batch_size: int | None = None
    gamma: float = 1.0
    ppo_n_steps: int = 64
    ppo_epochs: int = 4
    ppo_ent_coef: float = 0.01
    ppo_prior: float | None = None
    dqn_buffer_size: int = 20_000
    dqn_learning_starts: int = 200
    dqn_exploration_fraction: float = 0.3
    target_update: int = 200
    cql_alpha: float = 0.1
    cql_dropout: float = 0.25
    cql_episodes: int = 500
    cql_data: str | None = None
    dense_episodes: int = 200
    dense_data: tuple[str, ...] = ()
    behaviour: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_BEHAVIOUR))
    behaviour_epsilon: float = 0.1
    fqi_alpha: float = 0.0
    fqi_epochs: int = 20
    checkpoint_every: int = 1000
    eval_tasks: tuple[str, ...] = ()
    eval_rows: int | None = None
    eval_seeds: int = 3
    eval_episodes: int = 8
    eval_every: int = 0
    baselines: tuple[str, ...] = BASELINES
    best_of_n_sets: int = 20
    best_of_n_dev_rows: int = 200
    workers: int = 0
    address: str | None = None
    scorer_placement: str = "worker"
    worker_gpus: float | None = None
    deterministic: bool = False

    def __post_init__(self) -> None:
        if isinstance(self.env, dict):
            object.__setattr__(self, "env", EnvConfig.from_dict(self.env))
        object.__setattr__(self, "tasks", tuple(self.tasks))
        object.__setattr__(self, "baselines", tuple(self.baselines))
        object.__setattr__(self, "eval_tasks", tuple(self.eval_tasks))
        dense = (self.dense_data,) if isinstance(self.dense_data, str) else tuple(self.dense_data or ())
        object.__setattr__(self, "dense_data", dense)
        if self.algo not in ALGOS:
            raise unknown_name("algo", self.algo, ALGOS)
        if not self.tasks:
            raise ConfigError("give at least one task (--task or --tasks)")
        overlap = sorted(set(self.tasks) & set(self.eval_tasks))
        if overlap:
            raise ConfigError(f"eval_tasks must be tasks the policy does not train on, got {overlap}")
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"--steps must be positive, got {self.steps}")
        if not 0.0 <= self.holdout_fraction < 1.0:
            raise ConfigError(f"holdout_fraction must be in [0, 1), got {self.holdout_fraction}")
        positive = {
            "n_envs": self.n_envs,
            "layers": self.layers,
            "ppo_n_steps": self.ppo_n_steps,
            "ppo_epochs": self.ppo_epochs,
            "target_update": self.target_update,
            "cql_episodes": self.cql_episodes,
            "dense_episodes": self.dense_episodes,
            "fqi_epochs": self.fqi_epochs,
            "checkpoint_every": self.checkpoint_every,
            "eval_seeds": self.eval_seeds,
            "eval_episodes": self.eval_episodes,
            "best_of_n_sets": self.best_of_n_sets,
            "best_of_n_dev_rows": self.best_of_n_dev_rows,
            "dqn_buffer_size": self.dqn_buffer_size,
        }
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"{name} must be positive, got {value}")
        for name in ("hidden", "batch_size", "pool_size", "eval_rows"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be positive, got {value}")
        if self.fqi_alpha < 0 or not 0.0 <= self.behaviour_epsilon <= 1.0:
            raise ConfigError("fqi_alpha must be >= 0 and behaviour_epsilon in [0, 1]")
        from rl_select.rollouts.behaviour import BehaviourMix

        BehaviourMix(dict(self.behaviour), self.behaviour_epsilon)  # validates the names and shares
        if self.ppo_prior is not None and self.ppo_prior < 0:
            raise ConfigError(f"ppo_prior must be >= 0 (0 turns the prior off), got {self.ppo_prior}")
        if self.learning_rate <= 0 or not 0 < self.gamma <= 1:
            raise ConfigError("learning_rate must be > 0 and gamma in (0, 1]")
        if self.scorer_placement not in ("worker", "central"):
            raise unknown_name("scorer placement", self.scorer_placement, ("worker", "central"))
        if self.worker_gpus is not None and not 0 < self.worker_gpus <= 1:
            raise ConfigError(f"worker_gpus must be in (0, 1], got {self.worker_gpus}")
        if self.workers < 0 or self.eval_every < 0 or self.dqn_learning_starts < 0:
            raise ConfigError("workers, eval_every and dqn_learning_starts must be >= 0")
        from rl_select.selectors import SELECTORS

        unknown = [b for b in self.baselines if b not in SELECTORS]
        if unknown:
            raise ConfigError(f"unknown baseline(s) {unknown} (choose from: {', '.join(sorted(SELECTORS))})")

    @property
    def total_steps(self) -> int:
        """``steps`` or the algorithm's default."""
        return self.steps if self.steps is not None else DEFAULT_STEPS[self.algo]

    @property
    def hidden_units(self) -> int:
        """``hidden`` or the algorithm's default (16 for cql, as in the paper; 64 otherwise)."""
        return self.hidden if self.hidden is not None else (16 if self.algo == "cql" else 64)

    @property
    def ppo_prior_weight(self) -> float:
        """``ppo_prior`` or the mode's default (4 in query mode, off in task mode)."""
        if self.ppo_prior is not None:
            return self.ppo_prior
        return 4.0 if self.env.mode == "query" else 0.0

    @property
    def minibatch(self) -> int:
        """``batch_size`` or the algorithm's default."""
        return (
            self.batch_size if self.batch_size is not None else {"cql": 16, "dqn": 32, "ppo": 64, "fqi": 64}[self.algo]
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON form (tuples become lists)."""
        data = asdict(self)
        data["tasks"] = list(self.tasks)
        data["baselines"] = list(self.baselines)
        data["eval_tasks"] = list(self.eval_tasks)
        data["dense_data"] = list(self.dense_data)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Build from a dict (a YAML file, a sweep trial, a run's config.json); unknown keys are errors."""
        reject_unknown_keys(data, (f.name for f in fields(cls)), "training")
        values = dict(data)
        if isinstance(values.get("env"), dict):
            values["env"] = EnvConfig.from_dict(values["env"])
        try:
            return cls(**values)
        except TypeError as exc:
            raise ConfigError(f"bad training settings: {exc}") from None

    def with_overrides(self, overrides: dict[str, Any]) -> TrainConfig:
        """A copy with top-level and ``env.``/``env.features.`` dotted overrides applied."""
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
    """The ``config.json`` of a run directory."""
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
    path.write_text(
        json.dumps(
            {"format": CONFIG_FORMAT, "config": config.to_dict(), "provenance": provenance}, indent=2, default=str
        )
        + "\n"
    )
