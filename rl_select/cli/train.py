"""``rl-select train`` and ``rl-select collect``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from rl_select.cli.common import (
    VerboseOption,
    announce_budget,
    err_console,
    progress_bars,
    results_and_next,
    setup_logging,
    timed_model,
)
from rl_select.cli.help import first_screen
from rl_select.cli.options import parse_sets, with_options
from rl_select.errors import ConfigError, DataError, Interrupted
from rl_select.runs.config import (
    TrainConfig,
    chosen_keys,
    fit_training,
    read_run_config,
    read_yaml_mapping,
)
from rl_select.types import Overrides

if TYPE_CHECKING:
    from rl_select.tasks import Task

ConfigOption = typer.Option(None, "--config", help="YAML file of training settings (options override it).")
SetOption = typer.Option([], "--set", help="Any setting by its path: key=value (e.g. evaluation.rows=50), repeatable.")


def build_config(config_file: Path | None, overrides: Overrides) -> tuple[TrainConfig, Overrides]:
    """The config from defaults fitted to the device and run length, then the YAML file, then the options.

    Returns it with the settings fitted to this machine (path → value), for ``--dry-run`` to show.
    """
    from rl_select.scoring.model import resolve_device  # deferred: it imports torch

    given = read_yaml_mapping(config_file, "training settings") if config_file else {}
    config = TrainConfig.from_dict(given).with_overrides(overrides)
    chosen = chosen_keys(given) | chosen_keys(overrides)
    return fit_training(config, chosen, resolve_device(config.device).type)


def default_run_dir(config: Any) -> Path:
    """``runs/{tasks}__{algo}-{mode}__{seed}__{timestamp}`` (CleanRL's naming)."""
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    tasks = "+".join(Path(t).name.removeprefix("hub:") for t in config.tasks)
    return Path("runs") / f"{tasks}__{config.algo}-{config.env.mode}__{config.seed}__{stamp}"


def train_run(
    settings: Overrides,
    config_file: Path | None = ConfigOption,
    sets: list[str] = SetOption,
    out: Path | None = typer.Option(None, "--out", help="Run directory (default runs/<name>)."),
    resume: Path | None = typer.Option(None, "--resume", help="Continue an interrupted run directory."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the settings, projected LLM calls and time; stop."),
    verbose: bool = VerboseOption,
) -> None:
    """Train a demonstration selector (cql, dqn, ppo or fqi), then compare it with baselines on the test split."""
    setup_logging(verbose)
    from rl_select.train import train  # deferred: it imports stable-baselines3

    overrides = {**settings, **parse_sets(TrainConfig, sets)}
    config, run_dir, fitted = run_to_start(config_file, overrides, out, resume)
    if not dry_run and resume is None:
        run_dir.mkdir(parents=True, exist_ok=True)  # an unwritable --out fails now, before anything is spent
    announce_training_budget(config, table=dry_run, fitted=fitted)
    if dry_run:
        return
    with progress_bars() as factory:
        train(config, run_dir, resume=resume is not None, overrides=overrides, progress=factory)
    typer.echo((run_dir / "results.md").read_text())
    results_and_next(
        f"{run_dir} (results.md, results.json, learning_curve.png, policy/)",
        f"rl-select export {run_dir} --out policies/{run_dir.name}",
        f"rl-select serve policies/{run_dir.name}",
    )


def run_to_start(config_file: Path | None, overrides: Overrides, out: Path | None, resume: Path | None):
    """The config, run directory and device-fitted settings of a new run, or of the run ``--resume`` continues.

    A new run's settings come from the YAML file, then the options. The tasks are loaded and checked against the
    settings here, before anything is written.
    """
    from rl_select.runs.setup import load_tasks  # deferred: it imports the scorer (torch)

    fitted: Overrides = {}
    if resume is not None:
        if out is not None and out != resume:
            raise ConfigError("--resume continues a run in place; do not give --out")
        if config_file is not None:
            overrides.update({**read_yaml_mapping(config_file, "training settings"), **overrides})
        config, run_dir = read_run_config(resume), resume
    else:
        if "tasks" not in overrides and config_file is None:
            raise ConfigError("give --task or --tasks (or --config)")
        config, fitted = build_config(config_file, overrides)
        run_dir = out or default_run_dir(config)
    load_tasks(config)
    return config, run_dir, fitted


def announce_training_budget(config: TrainConfig, *, table: bool, fitted: Overrides | None = None) -> None:
    """Project a training run's LLM work on this machine and say it (the model loads once, for the run too).

    ``fitted``: the settings fitted to this machine (shown, so the user sees the values the run will use).
    """
    from rl_select.budget import profiles_for  # deferred: CLI start-up (loads torch)
    from rl_select.runs.setup import load_tasks  # deferred: CLI start-up (loads torch)
    from rl_select.train.projection import project_training  # deferred: CLI start-up (loads torch)
    from rl_select.train.results import transfer_tasks  # deferred: CLI start-up (loads torch)

    if fitted:
        values = ", ".join(f"{path}={value}" for path, value in fitted.items())
        err_console.print(f"fitted to this machine (give a value to override): {values}")
    tasks = load_tasks(config)
    asked = config.steps if config.steps is not None else config.total_steps
    if config.total_steps != asked:
        err_console.print(
            f"{config.algo.upper()} collects {config.steps_per_collection} × {config.parallel.n_envs} env steps "
            f"at a time: {asked} steps become {config.total_steps}"
        )
    lm, throughput = timed_model(config.model, config.device, config.dtype, tasks, config.env.k)
    evaluated = [*tasks, *transfer_tasks(config)]
    projection = project_training(config, tasks, evaluated, profiles_for(evaluated, lm.tokenizer))
    announce_budget(projection, throughput, table=table)


def announce_collection_budget(config: TrainConfig, tasks: Sequence[Task], episodes: int, out: Path) -> None:
    """Project the LLM work of the episodes ``out`` does not hold yet (as CQL's collection counts it) and say it."""
    from rl_select.budget import Projection, profiles_for  # deferred: CLI start-up (loads torch)
    from rl_select.runs.episode_store import EpisodeStore  # deferred: CLI start-up
    from rl_select.train.projection import learning_work  # deferred: CLI start-up (loads torch)

    stored = sum(1 for episode_id in EpisodeStore(out).ids() if episode_id < episodes)
    if stored == episodes:
        err_console.print(f"{out} holds all {episodes} episodes: nothing to spend")
        return
    lm, throughput = timed_model(config.model, config.device, config.dtype, tasks, config.env.k)
    left = config.with_overrides({"data.cql_episodes": episodes - stored})
    work = learning_work(left, tasks, profiles_for(tasks, lm.tokenizer))
    work.name = f"{episodes - stored} episodes" + (f" ({stored} stored)" if stored else "")
    announce_budget(Projection([work]), throughput, table=True)


def collect_run(
    settings: Overrides,
    episodes: int = typer.Option(..., "--episodes", help="Episodes the data set should hold.", min=1),
    out: Path = typer.Option(..., "--out", help="Data set directory (re-running continues it)."),
    config_file: Path | None = ConfigOption,
    sets: list[str] = SetOption,
    verbose: bool = VerboseOption,
) -> None:
    """Log random-policy episodes (with episode ids) for offline Q-learning."""
    setup_logging(verbose)
    from rl_select.rollouts.collect import collect_episodes  # deferred: imports torch and gymnasium
    from rl_select.rollouts.episodes import EpisodeStore  # deferred: CLI start-up (loads torch)
    from rl_select.runs.setup import load_tasks  # deferred: CLI start-up (loads torch)

    overrides = {"algo": "cql", **settings, **parse_sets(TrainConfig, sets)}
    if "tasks" not in overrides and config_file is None:
        raise ConfigError("give --task or --tasks (or --config)")
    config, _ = build_config(config_file, overrides)
    tasks = load_tasks(config)  # validate tasks and MDP settings before any work
    announce_collection_budget(config, tasks, episodes, out)
    try:
        with progress_bars() as factory:
            store = collect_episodes(out, episodes=episodes, config=config, progress=factory)
    except KeyboardInterrupt:
        kept = len(EpisodeStore(out).ids())
        raise Interrupted(
            f"{kept} of {episodes} episodes are stored in {out}; rerun the same command to continue"
        ) from None
    ids = store.ids()
    if len(ids) < episodes:
        raise DataError(f"only {len(ids)} of {episodes} episodes were stored")
    results_and_next(
        f"{out} ({len(ids)} episodes, ids {ids[0]}..{ids[-1]})",
        f"rl-select train --algo cql --cql-data {out} ... (the settings it was collected with)",
    )


train_command = with_options(TrainConfig, train_run)
"""``rl-select train``: one option per training setting (see :mod:`rl_select.settings`)."""
TRAIN_HELP = first_screen(
    "config_file", "tasks", "data_dir", "model", "algo", "env__mode", "env__k", "steps", "out", "dry_run", "resume"
)
"""What ``rl-select train --help`` shows first."""
collect_command = with_options(TrainConfig, collect_run)
"""``rl-select collect``: the same settings (the algorithm is cql's data collection)."""
COLLECT_HELP = first_screen(
    "tasks", "data_dir", "model", "episodes", "out", "env__mode", "env__k", "parallel__workers", "parallel__address"
)
"""What ``rl-select collect --help`` shows first."""


def announce_sweep_budget(spec) -> None:
    """Project the LLM work of the sweep's unfinished trials, each as its own training run, and print it per trial.

    Minutes are timed on the first unfinished trial's model; a finished trial (results.json written) costs nothing,
    an interrupted one is projected whole (an upper bound, as the counts are).
    """
    from rl_select.budget import Projection, Step, profiles_for  # deferred: CLI start-up (loads torch)
    from rl_select.runs.setup import load_tasks  # deferred: CLI start-up (loads torch)
    from rl_select.sweep import unfinished_trials  # deferred: CLI start-up
    from rl_select.train.projection import project_training  # deferred: CLI start-up (loads torch)
    from rl_select.train.results import transfer_tasks  # deferred: CLI start-up (loads torch)

    trials = unfinished_trials(spec)
    left = f"{len(trials)} of {len(spec.points())} trials left"
    if not trials:
        err_console.print(f"{left}: nothing to spend")
        return
    lm = throughput = None
    steps = []
    for name, config in trials.items():
        tasks = load_tasks(config)
        if lm is None:  # timed once, on the first unfinished trial's model and tasks
            lm, throughput = timed_model(config.model, config.device, config.dtype, tasks, config.env.k)
        evaluated = [*tasks, *transfer_tasks(config)]
        total = project_training(config, tasks, evaluated, profiles_for(evaluated, lm.tokenizer)).total
        steps.append(Step(name).add(total.queries, total.tokens, total.forwards))
    err_console.print(left)
    announce_budget(Projection(steps), throughput, table=True)


def sweep_command(
    sweep_file: Path = typer.Argument(..., help="Sweep YAML (see experiments/sweeps/)."),
    address: str | None = typer.Option(None, "--address", help="Address of an existing Ray cluster."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the projected LLM calls and time, then stop."),
    verbose: bool = VerboseOption,
) -> None:
    """Run (or resume) a grid of training runs with Ray Tune; write trials.csv, summary.md and plots."""
    setup_logging(verbose)
    from rl_select.rollouts.ray_runtime import ensure_ray  # deferred: CLI start-up (loads torch)
    from rl_select.sweep import load_sweep, run_sweep  # deferred: CLI start-up

    spec = load_sweep(sweep_file)  # every error surfaces here, before Ray starts
    err_console.print(f"sweep {spec.name}: {len(spec.points())} trials into {spec.root}")
    announce_sweep_budget(spec)
    if dry_run:
        return
    if address:
        ensure_ray(address)
    try:
        outcome = run_sweep(spec)
    except KeyboardInterrupt:
        raise Interrupted(
            f"finished trials are kept in {spec.root}; rerun the same command to finish the others"
        ) from None
    typer.echo((spec.root / "summary.md").read_text())
    results_and_next(
        f"{spec.root} (trials.csv, summary.md, accuracy.png, learning_curves.png)",
        "rl-select export RUN --out policies/NAME   (RUN: the best trial's run directory, listed in trials.csv)",
    )
    if outcome.failed:
        err_console.print(f"{outcome.failed} trial(s) failed or did not finish; rerun the same command to resume them")
        raise typer.Exit(1)
