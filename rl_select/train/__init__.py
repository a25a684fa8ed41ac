"""Training runs: build the run, train (cql, dqn, ppo or fqi) resumably, compare with the baselines, write results.

``train(config, run_dir)`` is the one entry point (the CLI's ``rl-select train``, sweeps and studies call it):
it creates or resumes the run directory (:mod:`rl_select.runs.dirs`), builds tasks, resources and envs
(:mod:`rl_select.runs.setup`), trains online (:mod:`.online`) or offline (:mod:`.offline`), then evaluates on
the test split and writes the result files (:mod:`.results`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from rl_select.errors import Interrupted, WorkerLost
from rl_select.evaluation.verify import verify_rules
from rl_select.reproducibility import pin_determinism
from rl_select.rollouts.episodes import EpisodeStore
from rl_select.runs.config import TrainConfig
from rl_select.runs.dirs import (
    create_run_dir,
    dense_stores,
    policy_files,
    read_rule_choices,
    resumed_config,
    write_trained_on,
)
from rl_select.runs.setup import RunSetup, build_setup, load_tasks
from rl_select.scoring import LLMCost
from rl_select.train.cost import add_learning_cost, read_learning_cost
from rl_select.train.offline import train_cql, train_fqi
from rl_select.train.online import train_sb3
from rl_select.train.projection import training_rules
from rl_select.train.results import TrainResult, final_evaluation, read_results, write_results
from rl_select.types import Overrides

ProgressFactory = Callable[[str, int], Callable[[int], None]]


def train(
    config: TrainConfig,
    run_dir: str | Path,
    *,
    resume: bool = False,
    overrides: Overrides | None = None,
    progress: ProgressFactory | None = None,
    progress_bar: bool = True,
    evaluate: bool = True,
) -> TrainResult | None:
    """Run (or resume) training, then the final evaluation; writes the result files and returns the result.

    With ``evaluate=False`` the run stops once its policy is trained (for callers that compare policies on dev
    before any test evaluation); it returns None, and running it again returns at once. Resuming a finished
    run returns its stored result.
    """
    run_dir = Path(run_dir)
    if resume:
        config = resumed_config(run_dir, overrides)
        if (run_dir / "results.json").is_file():  # the run had finished: nothing to continue
            return read_results(run_dir)
        if not evaluate and policy_files(run_dir, config.algo).is_file():
            return None
    pin_determinism(config.deterministic)
    if config.evaluation.verify_rows:
        training_rules(config)  # a policy with nothing to be compared with fails before anything is trained
    tasks = load_tasks(config)  # validates tasks and MDP settings before anything is written
    if not resume:
        create_run_dir(config, run_dir)
    setup = build_setup(config, run_dir, tasks)
    started = time.perf_counter()
    try:
        if not policy_files(run_dir, config.algo).is_file():
            train_policy(setup, progress, progress_bar)
            write_trained_on(run_dir, setup.tasks)
        if not evaluate:
            return None
        if config.evaluation.verify_rows:  # on each training task's dev rows: a rule is followed where it was chosen
            for task in setup.tasks:
                verify_rules(run_dir, setup.resources[task.name], rows=config.evaluation.verify_rows, progress=progress)
        result = final_evaluation(setup, learning_cost(setup), progress)
    except (KeyboardInterrupt, WorkerLost) as stopped:
        cause = f"{stopped}: " if isinstance(stopped, WorkerLost) else ""
        state = interrupted_state(run_dir, config.algo)
        raise Interrupted(f"{cause}{state}; continue with rl-select train --resume {run_dir}") from None
    write_results(setup, result, time.perf_counter() - started)
    return result


def train_policy(setup: RunSetup, progress: ProgressFactory | None, progress_bar: bool) -> None:
    """Train the run's algorithm; the LLM work it spends (here or in Ray workers) goes to ``learning_cost.json``."""
    before = _spent(setup)
    try:
        if setup.config.algo == "cql":
            train_cql(setup, progress)
        elif setup.config.algo == "fqi":
            train_fqi(setup, progress)
        else:
            train_sb3(setup, progress_bar)
    finally:
        add_learning_cost(setup.run_dir, _spent(setup) - before)


def _spent(setup: RunSetup) -> LLMCost:
    return sum((resources.llm_cost() for resources in setup.resources.values()), LLMCost())


def learning_cost(setup: RunSetup) -> LLMCost:
    """What training spent, and the verification of its rules on dev (if any).

    For offline learners: the cost stored with every episode they learned from (exact, however often collection
    was interrupted). Otherwise: what the training processes counted (``learning_cost.json``).
    """
    verified = read_rule_choices(setup.run_dir)
    return sum((verified[t.name].cost for t in setup.tasks if t.name in verified), training_cost(setup))


def training_cost(setup: RunSetup) -> LLMCost:
    """What training itself spent (see :func:`learning_cost`)."""
    config = setup.config
    if config.algo in ("cql", "fqi"):
        if config.algo == "fqi":
            paths = dense_stores(config, setup.run_dir)
        else:
            paths = [Path(config.data.cql_data) if config.data.cql_data else setup.run_dir / "episodes"]
        stores = [EpisodeStore(p) for p in paths]
        limit = config.data.dense_limit if config.algo == "fqi" else None
        if all(store.has_costs() for store in stores):
            return sum((store.cost(limit) for store in stores), LLMCost())
    return read_learning_cost(setup.run_dir)


def interrupted_state(run_dir: Path, algo: str) -> str:
    """What an interrupted run kept, in words."""
    if policy_files(run_dir, algo).is_file():
        where = policy_files(run_dir, algo).parent
        return f"training had finished (policy in {where}); finished evaluation results are kept"
    if algo in ("fqi", "cql"):
        kept = len(EpisodeStore(run_dir / "episodes").ids())
        checkpoint = run_dir / "checkpoints" / "cql.pt"
        extra = f"; checkpoint {checkpoint} kept" if algo == "cql" and checkpoint.is_file() else ""
        return f"{kept} episodes kept in {run_dir / 'episodes'}{extra}"
    from rl_select.policies.checkpoints import latest_checkpoint  # deferred: loads stable-baselines3 and rich

    latest = latest_checkpoint(run_dir / "checkpoints", algo)
    return f"checkpoint at step {latest.steps} kept" if latest else "no checkpoint was written yet"


__all__ = ["TrainResult", "train"]
