"""``rl-select train`` and ``rl-select collect``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import typer
import yaml

from rl_select.cli.common import (
    DTYPE_HELP,
    DataDirOption,
    DeviceOption,
    DtypeOption,
    ModelOption,
    VerboseOption,
    announce_budget,
    console,
    err_console,
    progress_bars,
    setup_logging,
)
from rl_select.errors import ConfigError, DataError, Interrupted

TaskOption = typer.Option(None, "--task", help="Task to train on.")
TasksOption = typer.Option(None, "--tasks", help="Comma-separated tasks to train one policy on.")
ModeOption = typer.Option(None, "--mode", help="task (one prompt per task) or query (one prompt per query).")
KOption = typer.Option(None, "--k", help="Demonstrations per prompt (default 4).")
MOption = typer.Option(None, "--num-candidates", "-M", help="Candidates per episode (default 64).")
RewardRowsOption = typer.Option(None, "--reward-rows", help="Dev rows per task-mode reward (default 64; 8 on a CPU).")
ValueOption = typer.Option(None, "--value", help="Prompt value: accuracy (task-mode default on a GPU) or probability.")
PoolSizeOption = typer.Option(None, "--pool-size", help="Use a seeded subset of the pool (CPU-sized runs).")
SeedOption = typer.Option(None, "--seed", help="Seed (default 0).")
WorkersOption = typer.Option(None, "--workers", help="Ray rollout workers (0: in-process).")
AddressOption = typer.Option(None, "--address", help="Address of an existing Ray cluster.")
ConfigOption = typer.Option(None, "--config", help="YAML file of TrainConfig fields (options override it).")
SetOption = typer.Option([], "--set", help="Any TrainConfig field: key=value (dotted for env.*), repeatable.")


def parse_value(text: str) -> Any:
    """A ``--set`` value: YAML scalar/list syntax (``4``, ``0.1``, ``true``, ``[a, b]``, ``null``)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def gather_overrides(*, task: str | None, tasks: str | None, sets: list[str], **options: Any) -> dict[str, Any]:
    """Options the user gave (None means "not given"), as dotted TrainConfig keys."""
    if task and tasks:
        raise ConfigError("give --task or --tasks, not both")
    overrides: dict[str, Any] = {}
    if task or tasks:
        overrides["tasks"] = [t.strip() for t in (task or tasks or "").split(",") if t.strip()]
    names = {
        "mode": "env.mode",
        "k": "env.k",
        "num_candidates": "env.num_candidates",
        "reward_rows": "env.reward_rows",
        "value": "env.value",
        "calibrate": "env.calibrate",
        "embedder": "env.features.embedder",
        "step_features": "env.features.step_features",
    }
    for key, value in options.items():
        if value is not None:
            overrides[names.get(key, key)] = value
    for item in sets:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got '{item}'")
        key, value = item.split("=", 1)
        overrides[key.strip()] = parse_value(value)
    return overrides


def build_config(config_file: Path | None, overrides: dict[str, Any]):
    """TrainConfig from defaults fitted to the device and run length, then the YAML file, then the options."""
    from rl_select.runs.config import TrainConfig, chosen_keys, read_yaml_mapping, with_fitted_defaults
    from rl_select.scoring.model import resolve_device

    given = read_yaml_mapping(config_file, "training settings") if config_file else {}
    config = (TrainConfig.from_dict(given) if config_file else TrainConfig()).with_overrides(overrides)
    return with_fitted_defaults(config, chosen_keys(given) | chosen_keys(overrides), resolve_device(config.device).type)


def default_run_dir(config: Any) -> Path:
    """``runs/{tasks}__{algo}-{mode}__{seed}__{timestamp}`` (CleanRL's naming)."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    tasks = "+".join(Path(t).name.removeprefix("hub:") for t in config.tasks)
    return Path("runs") / f"{tasks}__{config.algo}-{config.env.mode}__{config.seed}__{stamp}"


def train_command(
    task: str | None = TaskOption,
    tasks: str | None = TasksOption,
    algo: str | None = typer.Option(None, "--algo", help="cql, dqn or ppo (default ppo)."),
    mode: str | None = ModeOption,
    k: int | None = KOption,
    num_candidates: int | None = MOption,
    reward_rows: int | None = RewardRowsOption,
    value: str | None = ValueOption,
    steps: int | None = typer.Option(None, "--steps", help="Env steps (dqn, ppo) or gradient steps (cql)."),
    seed: int | None = SeedOption,
    n_envs: int | None = typer.Option(None, "--n-envs", help="Sub-envs stepped together (default 4)."),
    pool_size: int | None = PoolSizeOption,
    eval_rows: int | None = typer.Option(
        None, "--eval-rows", help="Test rows of the final evaluation (default all; 100 on a CPU)."
    ),
    eval_seeds: int | None = typer.Option(
        None, "--eval-seeds", help="Seeds of the final evaluation (default 3; 2 on a CPU)."
    ),
    cql_data: str | None = typer.Option(None, "--cql-data", help="Episode data set from `rl-select collect`."),
    cql_episodes: int | None = typer.Option(None, "--cql-episodes", help="Random episodes to collect for cql."),
    calibrate: bool | None = typer.Option(None, "--calibrate/--no-calibrate", help="Calibrated rewards (default)."),
    embedder: str | None = typer.Option(None, "--embedder", help="sentence-transformers model for features."),
    step_features: bool | None = typer.Option(
        None, "--step-features/--no-step-features", help="Zhang et al.'s per-step LLM features (slow, not exportable)."
    ),
    workers: int | None = WorkersOption,
    address: str | None = AddressOption,
    data_dir: str | None = DataDirOption,
    model: str | None = ModelOption,
    device: str | None = typer.Option(None, "--device", help="auto, cpu, cuda or cuda:N."),
    dtype: str | None = typer.Option(None, "--dtype", help=DTYPE_HELP),
    deterministic: bool | None = typer.Option(
        None, "--deterministic", help="One torch thread and deterministic kernels (slower; see README)."
    ),
    config_file: Path | None = ConfigOption,
    sets: list[str] = SetOption,
    out: Path | None = typer.Option(None, "--out", help="Run directory (default runs/<name>)."),
    resume: Path | None = typer.Option(None, "--resume", help="Continue an interrupted run directory."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the projected LLM calls and time, then stop."),
    verbose: bool = VerboseOption,
) -> None:
    """Train a demonstration selector (cql, dqn, ppo or fqi), then compare it with baselines on the test split."""
    setup_logging(verbose)
    from rl_select.train import train

    flags = {name: value for name, value in locals().items() if name in TRAIN_FLAGS}
    overrides = gather_overrides(task=task, tasks=tasks, sets=sets, **flags)
    config, run_dir = run_to_start(config_file, overrides, out, resume)
    if not dry_run and resume is None:
        run_dir.mkdir(parents=True, exist_ok=True)  # an unwritable --out fails now, before anything is spent
    announce_training_budget(config, table=dry_run)
    if dry_run:
        return
    with progress_bars() as factory:
        train(config, run_dir, resume=resume is not None, overrides=overrides, progress=factory)
    typer.echo((run_dir / "results.md").read_text())
    err_console.print(f"run directory {run_dir}: results.json, results.md, learning_curve.png, policy/")


TRAIN_FLAGS = (
    "algo",
    "mode",
    "k",
    "num_candidates",
    "reward_rows",
    "value",
    "steps",
    "seed",
    "n_envs",
    "pool_size",
    "eval_rows",
    "eval_seeds",
    "cql_data",
    "cql_episodes",
    "calibrate",
    "embedder",
    "step_features",
    "workers",
    "address",
    "data_dir",
    "model",
    "device",
    "dtype",
    "deterministic",
)
"""``rl-select train`` options that set a TrainConfig field (None: not given)."""


def run_to_start(config_file: Path | None, overrides: dict[str, Any], out: Path | None, resume: Path | None):
    """The config and run directory of a new run (file, then options) or of the run ``--resume`` continues.

    The tasks are loaded and checked against the settings here, before anything is written.
    """
    from rl_select.runs.config import read_run_config, read_yaml_mapping
    from rl_select.runs.setup import load_tasks

    if resume is not None:
        if out is not None and out != resume:
            raise ConfigError("--resume continues a run in place; do not give --out")
        if config_file is not None:
            overrides.update({**read_yaml_mapping(config_file, "training settings"), **overrides})
        config, run_dir = read_run_config(resume), resume
    else:
        if "tasks" not in overrides and config_file is None:
            raise ConfigError("give --task or --tasks (or --config)")
        config = build_config(config_file, overrides)
        run_dir = out or default_run_dir(config)
    load_tasks(config)
    return config, run_dir


def announce_training_budget(config: Any, *, table: bool) -> None:
    """Project a training run's LLM work on this machine and say it (the model loads once, for the run too)."""
    from rl_select.budget import measure_throughput, profiles_for, project_training
    from rl_select.runs.setup import load_tasks
    from rl_select.scoring.model import shared_language_model

    tasks = load_tasks(config)
    asked = config.steps if config.steps is not None else config.total_steps
    if config.total_steps != asked:
        err_console.print(
            f"PPO trains in whole rollouts of {config.ppo.n_steps} × {config.parallel.n_envs} env steps: "
            f"{asked} steps become {config.total_steps}"
        )
    with err_console.status("loading the model and timing it …"):
        lm = shared_language_model(config.model, config.device, config.dtype)
        throughput = measure_throughput(lm)
    rows = {t.name: min(config.evaluation.rows or len(t.test), len(t.test)) for t in tasks}
    announce_budget(project_training(config, profiles_for(tasks, lm.tokenizer), rows), throughput, table=table)


def collect_command(
    task: str | None = TaskOption,
    tasks: str | None = TasksOption,
    episodes: int = typer.Option(..., "--episodes", help="Episodes the data set should hold."),
    out: Path = typer.Option(..., "--out", help="Data set directory (re-running continues it)."),
    mode: str | None = ModeOption,
    k: int | None = KOption,
    num_candidates: int | None = MOption,
    reward_rows: int | None = RewardRowsOption,
    value: str | None = ValueOption,
    pool_size: int | None = PoolSizeOption,
    seed: int | None = SeedOption,
    workers: int | None = WorkersOption,
    address: str | None = AddressOption,
    data_dir: str | None = DataDirOption,
    model: str | None = ModelOption,
    device: str = DeviceOption,
    dtype: str = DtypeOption,
    config_file: Path | None = ConfigOption,
    sets: list[str] = SetOption,
    verbose: bool = VerboseOption,
) -> None:
    """Log random-policy episodes (with episode ids) for offline Q-learning."""
    setup_logging(verbose)
    from rl_select.rollouts.collect import collect_episodes
    from rl_select.rollouts.episodes import EpisodeStore

    if episodes < 1:
        raise ConfigError(f"--episodes must be positive, got {episodes}")
    overrides = gather_overrides(
        task=task,
        tasks=tasks,
        sets=sets,
        algo="cql",
        mode=mode,
        k=k,
        num_candidates=num_candidates,
        reward_rows=reward_rows,
        value=value,
        pool_size=pool_size,
        seed=seed,
        workers=workers,
        address=address,
        data_dir=data_dir,
        model=model,
        device=device,
        dtype=dtype,
    )
    if "tasks" not in overrides and config_file is None:
        raise ConfigError("give --task or --tasks (or --config)")
    config = build_config(config_file, overrides)
    from rl_select.runs.setup import load_tasks

    load_tasks(config)  # validate tasks and MDP settings before any work
    try:
        with progress_bars() as factory:
            store = collect_episodes(out, episodes=episodes, config=config, progress=factory)
    except KeyboardInterrupt:
        kept = len(EpisodeStore(out).ids())
        raise Interrupted(
            f"{kept} of {episodes} episodes are stored in {out}; rerun the same command to continue"
        ) from None
    ids = store.ids()
    console.print(f"{len(ids)} episodes in {out} (ids {ids[0]}..{ids[-1]})" if ids else f"no episodes in {out}")
    if len(ids) < episodes:
        raise DataError(f"only {len(ids)} of {episodes} episodes were stored")


def sweep_command(
    sweep_file: Path = typer.Argument(..., help="Sweep YAML (see experiments/sweeps/)."),
    address: str | None = AddressOption,
    verbose: bool = VerboseOption,
) -> None:
    """Run (or resume) a grid of training runs with Ray Tune; write trials.csv, summary.md and plots."""
    setup_logging(verbose)
    from rl_select.rollouts.ray_runtime import ensure_ray
    from rl_select.sweep import load_sweep, run_sweep

    spec = load_sweep(sweep_file)  # every error surfaces here, before Ray starts
    err_console.print(f"sweep {spec.name}: {len(spec.points())} trials into {spec.root}")
    if address:
        ensure_ray(address)
    try:
        outcome = run_sweep(spec)
    except KeyboardInterrupt:
        raise Interrupted(
            f"finished trials are kept in {spec.root}; rerun the same command to finish the others"
        ) from None
    typer.echo((spec.root / "summary.md").read_text())
    err_console.print(f"wrote {spec.root}/trials.csv, summary.md, accuracy.png, learning_curves.png")
    if outcome["failed"]:
        err_console.print(
            f"{outcome['failed']} trial(s) failed or did not finish; rerun the same command to resume them"
        )
        raise typer.Exit(1)
