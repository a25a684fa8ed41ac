"""Training runs: build envs, train (cql, dqn or ppo) with checkpoints, evaluate against baselines, write results.

A run directory holds::

    config.json          the TrainConfig, format version and provenance (checked on --resume)
    checkpoints/         resumable checkpoints (SB3 zips with replay buffer for dqn; cql.pt for cql)
    episodes/            cql: the random-policy episodes it learns from (unless --cql-data was given)
    tb/                  TensorBoard logs
    curve.csv            learning curve (step, metric, value)
    rewards.sqlite       reward cache, so a resumed run does not score prompts twice
    policy/              the final policy (model.zip or cql.pt) and the pools it trained on
    results.json/.md     final test-split comparison with baselines, with provenance
    learning_curve.png
"""

from __future__ import annotations

import csv
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rl_select.envs import DemoSelectionEnv, FeatureBank
from rl_select.errors import ArtifactError, ConfigError, Interrupted
from rl_select.observation import feature_layout
from rl_select.policies.config import TrainConfig, config_differences, read_run_config, write_run_config
from rl_select.policies.networks import candidate_input_dim
from rl_select.policies.selector import POLICY_DIR, LoadedPolicy, PolicySelector, policy_files, training_candidates
from rl_select.scoring import RewardCache, ScoringConfig
from rl_select.scoring.model import shared_language_model
from rl_select.selectors import Resources, make_selector
from rl_select.tasks import Task, load_task

logger = logging.getLogger(__name__)
ProgressFactory = Callable[[str, int], Callable[[int], None]]


@dataclass
class TrainingSetup:
    """Everything built from a config before training starts."""

    config: TrainConfig
    run_dir: Path
    tasks: list[Task]
    resources: dict[str, Resources]
    banks: dict[str, FeatureBank]


def resumed_config(run_dir: Path, overrides: dict[str, Any] | None) -> TrainConfig:
    """The stored config of a run to resume; any override that changes it is an error."""
    stored = read_run_config(run_dir)
    diffs = config_differences(stored, overrides or {})
    if diffs:
        raise ConfigError(
            f"--resume of a run with a different config ({'; '.join(diffs)}); drop those options or start a new run"
        )
    return stored


def create_run_dir(config: TrainConfig, run_dir: Path) -> None:
    """Create a new run directory with its ``config.json``; an existing non-empty one is refused."""
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(f"run directory {run_dir} already exists; use --resume {run_dir} or a new --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    from rl_select.provenance import provenance

    write_run_config(run_dir, config, provenance(seeds=[config.seed]))


def load_tasks(config: TrainConfig) -> list[Task]:
    """The run's tasks (pool subsets when ``pool_size`` is set), each checked against the MDP settings."""
    tasks = [load_task(name, config.data_dir).subset_pool(config.pool_size, seed=config.seed) for name in config.tasks]
    names = [t.name for t in tasks]
    if len(set(names)) != len(names):
        raise ConfigError(f"tasks must be distinct, got {names}")
    for task in tasks:
        train_ids, _ = training_candidates(task, config)
        try:
            config.env.check_pool(len(train_ids))
        except ConfigError as exc:
            raise ConfigError(f"{task.name}: {exc} after holding out {config.holdout_fraction:.0%}") from None
        if config.env.features.label_onehot and task.num_labels > config.env.features.max_labels:
            raise ConfigError(
                f"task '{task.name}' has {task.num_labels} labels > max_labels {config.env.features.max_labels}"
            )
    return tasks


def build_setup(config: TrainConfig, run_dir: Path, tasks: list[Task]) -> TrainingSetup:
    """Resources (one shared LM, a persistent reward cache) and feature banks for every task."""
    scoring = ScoringConfig(calibrate=config.env.calibrate, prefix_perplexity=config.env.features.step_features)
    cache = RewardCache(path=run_dir / "rewards.sqlite")
    resources, banks = {}, {}
    for task in tasks:
        resources[task.name] = Resources(
            task,
            lm=lambda: shared_language_model(config.model, config.device, config.dtype),
            scoring=scoring,
            embedder=config.env.features.embedder,
            reward_cache=cache,
            data_seed=config.env.data_seed,
        )
        banks[task.name] = FeatureBank(resources[task.name], config.env.features)
    return TrainingSetup(config, run_dir, tasks, resources, banks)


def make_env(setup: TrainingSetup, task: Task, *, held_out: bool = False) -> DemoSelectionEnv:
    """A sub-env on ``task``'s training candidates (or its held-out ones)."""
    train_ids, held_ids = training_candidates(task, setup.config)
    return DemoSelectionEnv(
        task,
        config=setup.config.env,
        resources=setup.resources[task.name],
        features=setup.banks[task.name],
        candidate_ids=held_ids if held_out else train_ids,
    )


def make_vec_env(setup: TrainingSetup):
    """``n_envs`` sub-envs, tasks assigned round-robin, in-process or in Ray workers."""
    config = setup.config
    if config.workers:
        from rl_select.rollouts.ray_vec_env import RayVecEnv

        return RayVecEnv(config, setup.run_dir)
    from rl_select.envs.vector import DemoSelectionVecEnv

    envs = [make_env(setup, setup.tasks[i % len(setup.tasks)]) for i in range(config.n_envs)]
    return DemoSelectionVecEnv(envs, seed=config.seed)


class Curve:
    """Appends learning-curve points to ``curve.csv`` (and TensorBoard, when a writer is given)."""

    def __init__(self, path: Path, writer: Any = None) -> None:
        self.path = path
        self.writer = writer
        if not path.is_file():
            path.write_text("step,metric,value\n")

    def add(self, step: int, metric: str, value: float) -> None:
        """Record one point."""
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([step, metric, f"{value:.6f}"])
        if self.writer is not None:
            self.writer.add_scalar(metric, value, step)

    def truncate(self, step: int) -> None:
        """Drop the points after ``step`` (a run resumed from a checkpoint at ``step`` logs them again)."""
        with open(self.path, newline="") as f:
            rows = list(csv.reader(f))
        kept = [rows[0], *(row for row in rows[1:] if int(row[0]) <= step)]
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "w", newline="") as f:
            csv.writer(f).writerows(kept)
        tmp.replace(self.path)

    def read(self) -> dict[str, list[tuple[int, float]]]:
        """Points by metric."""
        series: dict[str, list[tuple[int, float]]] = {}
        with open(self.path) as f:
            for row in csv.DictReader(f):
                series.setdefault(row["metric"], []).append((int(row["step"]), float(row["value"])))
        return series


def tensorboard_available() -> bool:
    """Whether TensorBoard logging can be written (the package is optional on minimal GPU images)."""
    import importlib.util

    return importlib.util.find_spec("tensorboard") is not None


def train_sb3(setup: TrainingSetup, progress: bool) -> None:
    """Online training with SB3 (dqn) or sb3-contrib (ppo), with exact checkpoints and resume."""
    from stable_baselines3.common.callbacks import BaseCallback, CallbackList
    from stable_baselines3.common.logger import configure

    from rl_select.policies.checkpoints import ResumableCheckpoint, latest_checkpoint, load_checkpoint
    from rl_select.policies.dqn import MaskedDQN, make_dqn
    from rl_select.policies.ppo import make_ppo

    config, run_dir = setup.config, setup.run_dir
    vec_env = make_vec_env(setup)
    curve = Curve(run_dir / "curve.csv")

    class CurveCallback(BaseCallback):
        """Logs each finished episode's value and return (value gain over zero-shot)."""

        def __init__(self) -> None:
            super().__init__()
            self.started = time.perf_counter()
            self.first_step = 0

        def _on_training_start(self) -> None:
            self.started, self.first_step = time.perf_counter(), self.num_timesteps

        def _on_step(self) -> bool:
            for info, done in zip(self.locals["infos"], self.locals["dones"], strict=True):
                if done and "episode_value" in info:
                    curve.add(self.num_timesteps, "rollout/episode_value", info["episode_value"])
                    self.logger.record_mean("rollout/episode_value", info["episode_value"])
                    self.logger.record_mean("selection/value_gain", info["episode_value"] - info["zero_shot_value"])
            elapsed = time.perf_counter() - self.started
            if elapsed > 0:
                self.logger.record("time/steps_per_second", (self.num_timesteps - self.first_step) / elapsed)
            return True

    checkpoint_dir = run_dir / "checkpoints"
    latest = latest_checkpoint(checkpoint_dir, config.algo)
    common = {"seed": config.seed, "tensorboard_log": None, "hidden": config.hidden_units, "layers": config.layers}
    if latest is not None:
        logger.info("resuming from %s (%d steps)", latest.model.name, latest.steps)
        if config.algo == "ppo":
            from sb3_contrib import MaskablePPO

            model = load_checkpoint(MaskablePPO, latest, vec_env)
        else:
            model = load_checkpoint(MaskedDQN, latest, vec_env)
        curve.truncate(latest.steps)  # points logged after the checkpoint are logged again
    elif config.algo == "ppo":
        model = make_ppo(
            vec_env,
            learning_rate=config.learning_rate,
            n_steps=config.ppo_n_steps,
            batch_size=config.minibatch,
            n_epochs=config.ppo_epochs,
            gamma=config.gamma,
            ent_coef=config.ppo_ent_coef,
            prior_column=feature_layout(config.env.features, config.env.mode).candidate.index("anchor_rank"),
            prior_weight=config.ppo_prior_weight,
            **common,
        )
    else:
        model = make_dqn(
            vec_env,
            learning_rate=config.learning_rate,
            buffer_size=config.dqn_buffer_size,
            learning_starts=config.dqn_learning_starts,
            batch_size=config.minibatch,
            gamma=config.gamma,
            target_update_interval=config.target_update,
            exploration_fraction=config.dqn_exploration_fraction,
            exploration_final_eps=0.05,
            train_freq=4,
            **common,
        )
    formats = ["csv", "tensorboard"] if tensorboard_available() else ["csv"]
    model.set_logger(configure(str(run_dir / "tb"), formats))
    checkpoints = ResumableCheckpoint(
        checkpoint_dir, config.algo, config.checkpoint_every, replay_buffer=config.algo == "dqn"
    )
    remaining = config.total_steps - model.num_timesteps
    if remaining > 0:
        model.learn(
            total_timesteps=remaining,
            callback=CallbackList([checkpoints, CurveCallback()]),
            progress_bar=progress,
            reset_num_timesteps=latest is None,
        )
    policy_path = policy_files(run_dir, config.algo)
    policy_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = policy_path.with_name(f".{policy_path.stem}.tmp{policy_path.suffix}")
    model.save(tmp)
    tmp.replace(policy_path)
    vec_env.close()


def collect_for_cql(setup: TrainingSetup, progress: ProgressFactory | None) -> Path:
    """The episode data set CQL learns from: ``cql_data`` if given, else random episodes collected here."""
    from rl_select.rollouts.collect import collect_episodes

    config = setup.config
    if config.cql_data:
        return Path(config.cql_data)
    out = setup.run_dir / "episodes"
    collect_episodes(
        out,
        episodes=config.cql_episodes,
        config=config,
        setup=setup,
        progress=progress,
    )
    return out


def train_cql(setup: TrainingSetup, progress: ProgressFactory | None) -> None:
    """Offline CQL on logged random-policy episodes, with checkpoints and resume."""
    from torch.utils.tensorboard import SummaryWriter

    from rl_select.policies.cql import CQL, CQLConfig, Transitions
    from rl_select.rollouts.episodes import EpisodeStore

    config, run_dir = setup.config, setup.run_dir
    store = EpisodeStore(collect_for_cql(setup, progress))
    meta = store.meta()
    if meta.get("settings", {}).get("env") != config.env.to_dict():
        raise ConfigError(f"the episodes in {store.path} were collected with other MDP settings than this run's")
    data = Transitions(store.load())
    probe = make_env(setup, setup.tasks[0])
    input_dim = candidate_input_dim(probe.observation_space)
    checkpoint = run_dir / "checkpoints" / "cql.pt"
    if checkpoint.is_file():
        agent = CQL.load(checkpoint)
    else:
        cql_config = CQLConfig(
            learning_rate=config.learning_rate,
            alpha=config.cql_alpha,
            target_update=config.target_update,
            dropout=config.cql_dropout,
            batch_size=config.minibatch,
            hidden=config.hidden_units,
        )
        agent = CQL(input_dim, cql_config, seed=config.seed)
    writer = None
    if tensorboard_available():
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "tb"))
    curve = Curve(run_dir / "curve.csv", writer)
    eval_env = make_env(setup, setup.tasks[0], held_out=True)
    advance = progress("cql gradient steps", config.total_steps) if progress else None
    if advance is not None and agent.num_steps:
        advance(agent.num_steps)

    def log(step: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            curve.add(step, key, value)

    def on_step(step: int) -> bool:
        if advance is not None:
            advance(1)
        if step % config.checkpoint_every == 0 or step == config.total_steps:
            agent.save(checkpoint)
        if config.eval_every and step % config.eval_every == 0:
            values = greedy_values(eval_env, LoadedPolicy("cql", agent.q, config), config.eval_episodes)
            curve.add(step, "eval/episode_value", float(np.mean(values)))
            agent.q.train()
        return True

    agent.learn(data, config.total_steps, log=log, on_step=on_step)
    if writer is not None:
        writer.close()
    agent.save(policy_files(run_dir, "cql"))


def collect_dense(setup: TrainingSetup, progress: ProgressFactory | None) -> list[Path]:
    """The action-row data sets fqi learns from: ``dense_data`` if given, else one collected here (resumable)."""
    from rl_select.rollouts.behaviour import BehaviourMix, run_dense_episode
    from rl_select.rollouts.collect import dataset_settings, episode_base_seed
    from rl_select.rollouts.episodes import EpisodeStore

    config = setup.config
    if config.dense_data:
        return [Path(path) for path in config.dense_data]
    store = EpisodeStore(setup.run_dir / "episodes")
    settings = {**dataset_settings(config), "dense": True, "behaviour": dict(config.behaviour)}
    settings["behaviour_epsilon"] = config.behaviour_epsilon
    store.create({"settings": settings, "fingerprints": data_fingerprints(setup)})
    todo = [e for e in range(config.dense_episodes) if e not in set(store.ids())]
    advance = progress("dense action rows (episodes)", config.dense_episodes) if progress else None
    if advance is not None:
        advance(config.dense_episodes - len(todo))
    mix = BehaviourMix(dict(config.behaviour), config.behaviour_epsilon)
    envs = {t.name: make_env(setup, t) for t in setup.tasks}
    names = [t.name for t in setup.tasks]
    scorer_costs = {name: setup.resources[name].scorer for name in names}
    for episode_id in todo:
        name = names[episode_id % len(names)]
        before = scorer_costs[name].cost()
        record = run_dense_episode(envs[name], episode_id, episode_base_seed(config.seed), mix)
        spent = scorer_costs[name].cost() - before  # stored with the episode, so a resumed data set's cost adds up
        record.update(cost_queries=np.asarray(spent.queries), cost_tokens=np.asarray(spent.tokens))
        store.write(record)
        if advance is not None:
            advance(1)
    return [store.path]


def data_fingerprints(setup: TrainingSetup) -> dict[str, Any]:
    """What scored a data set: the tasks' pools and splits, the LLM, the scoring settings."""
    first = next(iter(setup.resources.values()))
    return {
        "tasks": {t.name: {s: t.fingerprint(s) for s in ("train", "dev", "test")} for t in setup.tasks},
        "model": first.lm_fingerprint,
        "scoring": first.scoring.score_key(),
        "calibrate": first.scoring.calibrate,
    }


def train_fqi(setup: TrainingSetup, progress: ProgressFactory | None) -> None:
    """Fitted Q-iteration (or its conservative variant) on dense action rows."""
    from rl_select.policies.fqi import FQI, DenseRows, FQIConfig
    from rl_select.rollouts.episodes import EpisodeStore

    config, run_dir = setup.config, setup.run_dir
    episodes = []
    for path in collect_dense(setup, progress):
        store = EpisodeStore(path)
        if store.meta().get("settings", {}).get("env") != config.env.to_dict():
            raise ConfigError(f"the episodes in {store.path} were collected with other MDP settings than this run's")
        episodes += store.load()
    data = DenseRows.from_episodes(episodes, k=config.env.k, label_vote=config.env.features.label_vote)
    probe = make_env(setup, setup.tasks[0])
    fqi_config = FQIConfig(
        alpha=config.fqi_alpha,
        rounds=config.total_steps,
        epochs=config.fqi_epochs,
        learning_rate=config.learning_rate,
        batch_size=config.minibatch,
        hidden=config.hidden_units,
    )
    agent = FQI.for_space(probe.observation_space, fqi_config, seed=config.seed)
    curve = Curve(run_dir / "curve.csv")
    advance = progress("fitted Q rounds", fqi_config.rounds) if progress else None

    def log(round_: int, metrics: dict[str, float]) -> None:
        for key, value in metrics.items():
            curve.add(round_, key, value)
        if advance is not None:
            advance(1)

    agent.learn(data, log=log)
    agent.save(policy_files(run_dir, "fqi"))


def greedy_values(env: DemoSelectionEnv, policy: LoadedPolicy, episodes: int, seed: int = 10_000) -> list[float]:
    """Final values of greedy episodes of ``policy`` on ``env`` (fixed seeds, so points are comparable)."""
    values = []
    for e in range(episodes):
        obs, info = env.reset(seed=seed + e)
        terminated = False
        while not terminated:
            obs, _, terminated, _, info = env.step(policy.choose(obs, env.action_masks()))
        values.append(info["episode_value"])
    return values


def final_evaluation(setup: TrainingSetup, progress: ProgressFactory | None) -> dict[str, Any]:
    """The learned policy against the baselines on each training task's test split.

    Every finished (selector, seed) result is written to ``evaluation/<task>.json`` at once, so an interrupted
    evaluation continues where it stopped on ``--resume``.
    """
    from rl_select.evaluation import EvaluationLog, evaluation_key, evaluation_rows, run_evaluation
    from rl_select.policies.selector import load_policy

    config = setup.config
    policy = load_policy(setup.run_dir)
    trained_on = write_trained_on(setup)
    seeds = list(range(config.eval_seeds))
    reports = []
    versus_knn: dict[str, dict[str, Any]] = {}
    transfer = [
        load_task(name, config.data_dir).subset_pool(config.pool_size, seed=config.seed) for name in config.eval_tasks
    ]
    for task in [*setup.tasks, *transfer]:
        if task.name not in setup.resources:  # a transfer task: same model, scoring and reward cache
            template = next(iter(setup.resources.values()))
            setup.resources[task.name] = Resources(
                task,
                lm=template.lm,
                scoring=template.scoring,
                embedder=template.embedder_spec,
                reward_cache=template.reward_cache,
                data_seed=template.data_seed,
            )
        resources = setup.resources[task.name]
        resources.progress_factory = progress
        learned = PolicySelector(policy, name=f"{config.algo} ({config.env.mode} mode)", trained_on=trained_on)
        selectors = [learned] + [
            make_selector(name, strict=False, num_sets=config.best_of_n_sets, dev_size=config.best_of_n_dev_rows)
            for name in config.baselines
        ]
        key = evaluation_key(resources, k=config.env.k, split="test", n_rows=config.eval_rows, seeds=seeds)
        log = EvaluationLog(setup.run_dir / "evaluation" / f"{task.name}.json", key, {})
        reports += run_evaluation(
            selectors, resources, log, k=config.env.k, seeds=seeds, n_rows=config.eval_rows, progress=progress
        )
        if learned.query_level:
            rows = evaluation_rows(resources, "test", config.eval_rows)
            versus_knn[task.name] = learned.compare_with_knn(task, rows)
    return {
        "reports": [r.to_dict() for r in reports],
        "objects": reports,
        "transfer": [t.name for t in transfer],
        "versus_knn": versus_knn,
    }


def plot_curve(curve: Curve, path: Path, title: str) -> None:
    """Learning curve PNG: episode values (moving average) or CQL losses and evaluation values."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = curve.read()
    keys = [
        k for k in ("rollout/episode_value", "eval/episode_value", "train/td_loss", "train/cql_loss") if k in series
    ]
    fig, axes = plt.subplots(1, max(len(keys), 1), figsize=(5 * max(len(keys), 1), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=False):
        steps, values = zip(*series[key], strict=True)
        ax.plot(steps, values, ".", alpha=0.3, label=key)
        if len(values) >= 5:
            window = max(len(values) // 20, 5)
            smooth = np.convolve(values, np.ones(window) / window, mode="valid")
            ax.plot(steps[window - 1 :], smooth, "-", label=f"moving mean ({window})")
        ax.set_xlabel("step")
        ax.set_title(key)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_results(setup: TrainingSetup, evaluation: dict[str, Any], seconds: float) -> Path:
    """results.json, results.md and learning_curve.png."""
    from rl_select.provenance import markdown_table, provenance, provenance_markdown, write_json

    config, run_dir = setup.config, setup.run_dir
    lm = next(iter(setup.resources.values())).lm
    record = provenance(seeds=list(range(config.eval_seeds)), model=lm.info(), train_seed=config.seed)
    caches = {name: r.scorer.cache_stats() for name, r in setup.resources.items()}
    payload = {
        "provenance": record,
        "config": config.to_dict(),
        "train_seconds": round(seconds, 1),
        "reports": evaluation["reports"],
        "transfer": evaluation["transfer"],
        "versus_knn": evaluation.get("versus_knn", {}),
        "scorer": caches,
    }
    write_json(run_dir / "results.json", payload)
    rows = []
    for report in evaluation["objects"]:
        raw, cal = report.raw, report.calibrated
        rows.append(
            [
                report.task + (" (new task)" if report.task in evaluation["transfer"] else ""),
                report.name,
                f"{100 * report.mean_sd[0]:.1f} ± {100 * report.mean_sd[1]:.1f}",
                f"{100 * raw[0]:.1f} ± {100 * raw[1]:.1f}",
                f"{100 * cal[0]:.1f} ± {100 * cal[1]:.1f}",
            ]
        )
    primary = "calibrated" if config.env.calibrate else "raw"
    n_rows = evaluation["objects"][0].seeds[0].queries
    text = (
        f"# {config.algo} ({config.env.mode} mode) on {', '.join(config.tasks)}: k={config.env.k}, "
        f"M={config.env.num_candidates}, {config.total_steps} steps\n\n"
        f"Test split, {n_rows} rows, {config.eval_seeds} seeds (mean ± sd); primary metric {primary}.\n\n"
        + markdown_table(["task", "method", f"accuracy ({primary})", "raw", "calibrated"], rows)
        + "\n"
        + "".join(
            f"{task}: the greedy prompt equals kNN's over the same candidates on {100 * v['same_as_knn']:.0f}% of "
            f"{v['queries']} test queries; mean neighbour rank by prompt position (0 = nearest): "
            f"{v['mean_rank_by_position']}.\n"
            for task, v in evaluation.get("versus_knn", {}).items()
        )
        + "\n"
        + provenance_markdown(record)
    )
    (run_dir / "results.md").write_text(text)
    curve_path = run_dir / "curve.csv"
    if curve_path.is_file():
        plot_curve(
            Curve(curve_path),
            run_dir / "learning_curve.png",
            f"{config.algo} · {config.env.mode} mode · {', '.join(config.tasks)} · seed {config.seed}",
        )
    return run_dir / "results.json"


def train(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    overrides: dict[str, Any] | None = None,
    progress: ProgressFactory | None = None,
    progress_bar: bool = True,
    evaluate: bool = True,
) -> dict[str, Any] | None:
    """Run (or resume) training, then the final evaluation; returns the evaluation and writes result files.

    With ``evaluate=False`` the run stops once its policy is trained (for callers that select among policies
    on dev before any test evaluation); it returns None, and running it again returns at once.
    """
    run_dir = Path(run_dir)
    if resume:
        config = resumed_config(run_dir, overrides)
        if (run_dir / "results.json").is_file():  # the run had finished: nothing to continue
            return read_results(run_dir)
        if not evaluate and policy_files(run_dir, config.algo).is_file():
            return None
    from rl_select.reproducibility import pin_determinism

    pin_determinism(config.deterministic)
    tasks = load_tasks(config)  # validates tasks and MDP settings before anything is written
    if not resume:
        create_run_dir(config, run_dir)
    setup = build_setup(config, run_dir, tasks)
    started = time.perf_counter()
    try:
        if not policy_files(run_dir, config.algo).is_file():
            if config.algo == "cql":
                train_cql(setup, progress)
            elif config.algo == "fqi":
                train_fqi(setup, progress)
            else:
                train_sb3(setup, progress_bar)
            write_trained_on(setup)
        if not evaluate:
            return None
        evaluation = final_evaluation(setup, progress)
    except KeyboardInterrupt:
        state = interrupted_state(run_dir, config.algo)
        raise Interrupted(f"{state}; continue with rl-select train --resume {run_dir}") from None
    write_results(setup, evaluation, time.perf_counter() - started)
    return evaluation


def write_trained_on(setup: TrainingSetup) -> dict[str, str]:
    """``policy/trained_on.json``: the pools the policy trained on (task mode then draws held-out candidates)."""
    trained_on = {t.name: t.fingerprint("train") for t in setup.tasks}
    (setup.run_dir / POLICY_DIR / "trained_on.json").write_text(json.dumps(trained_on, indent=2) + "\n")
    return trained_on


def read_results(run_dir: Path) -> dict[str, Any]:
    """The evaluation of a finished run, as :func:`train` returns it, from its ``results.json``."""
    from rl_select.evaluation import SelectorReport

    try:
        payload = json.loads((run_dir / "results.json").read_text())
        reports = [SelectorReport.from_dict(r) for r in payload["reports"]]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{run_dir / 'results.json'} is corrupt ({exc}); delete it to evaluate again") from None
    return {
        "reports": payload["reports"],
        "objects": reports,
        "transfer": payload.get("transfer", []),
        "versus_knn": payload.get("versus_knn", {}),
    }


def interrupted_state(run_dir: Path, algo: str) -> str:
    """What an interrupted run kept, in words."""
    if policy_files(run_dir, algo).is_file():
        return f"training had finished (policy in {run_dir / POLICY_DIR}); finished evaluation results are kept"
    if algo == "fqi":
        from rl_select.rollouts.episodes import EpisodeStore

        kept = len(EpisodeStore(run_dir / "episodes").ids())
        return f"{kept} dense-row episodes kept in {run_dir / 'episodes'}"
    if algo == "cql":
        checkpoint = run_dir / "checkpoints" / "cql.pt"
        return f"checkpoint {checkpoint} kept" if checkpoint.is_file() else "no checkpoint was written yet"
    from rl_select.policies.checkpoints import latest_checkpoint

    latest = latest_checkpoint(run_dir / "checkpoints", algo)
    return f"checkpoint at step {latest.steps} kept" if latest else "no checkpoint was written yet"
