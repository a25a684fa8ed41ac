"""Verify a trained query-mode policy on dev: its Q-function against every rule it can reproduce.

A policy that chooses among candidates from several proposers can also do exactly what one proposer does alone
(kNN, BM25, best-of-N's prompt) or, with the stop action, nothing at all (zero-shot); see :mod:`rl_select.rules`.
Which is best depends on the task and the LLM, and a learned Q-function can lose to its own proposers where its
training signal is weak. So after training, every rule is scored on the same dev rows and the best is kept (the
policy itself on ties): the learner proposes, dev verifies. The choice is stored with the policy
(``policy/rule.json``) and followed by evaluation, export, the runtime and the service; its LLM work is learning
cost. Test rows are never read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from rl_select.budget import Projection, Throughput, TokenProfile, measure_throughput, query_level
from rl_select.envs import EnvConfig
from rl_select.errors import ConfigError
from rl_select.evaluation.core import ProgressFactory, evaluate_selector
from rl_select.resources import Resources
from rl_select.rules import POLICY_RULE, VERIFY_ROWS, available_rules
from rl_select.runs.config import read_run_config
from rl_select.runs.dirs import RuleChoice, read_rule_choice, write_rule_choice
from rl_select.runs.policy import PolicySelector
from rl_select.runs.setup import build_setup, load_tasks
from rl_select.tasks import Task


def verify_rules(
    run_dir: str | Path, resources: Resources, *, rows: int, progress: ProgressFactory | None = None
) -> RuleChoice:
    """Score the policy of ``run_dir`` and each rule it can follow on ``rows`` dev rows; keep and store the best.

    Already verified on as many rows: the stored choice is returned without LLM calls.

    Args:
        run_dir: A finished query-mode training run.
        resources: The task's resources (its scorer does the scoring).
        rows: Dev rows (all where the split is smaller), the same for every rule.
        progress: Progress factory of the front end.
    """
    run_dir = Path(run_dir)
    rows = min(rows, len(resources.task.dev))
    stored = read_rule_choice(run_dir)
    if stored is not None and stored.dev_rows == rows:
        return stored
    base = PolicySelector.from_run(run_dir, rule=POLICY_RULE)
    env = base.policy.config.env
    before = resources.scorer.cost()
    accuracy: dict[str, float] = {}
    for rule in verifiable_rules(env, str(run_dir)):
        selector = PolicySelector(base.policy, name=f"rule {rule}", trained_on=base.trained_on, rule=rule)
        report = evaluate_selector(selector, resources, k=env.k, seeds=[0], n_rows=rows, split="dev", progress=progress)
        accuracy[rule] = round(float(report.calibrated[0]), 6)
    best = max(accuracy, key=lambda rule: accuracy[rule])  # first best: the policy on ties
    choice = RuleChoice(best, accuracy, rows, resources.scorer.cost() - before, task=resources.task.name)
    write_rule_choice(run_dir, choice)
    return choice


def rules_to_verify(run_dir: str | Path) -> list[str]:
    """The rules the policy of ``run_dir`` can follow (what :func:`verify_rules` scores); task mode is refused."""
    return verifiable_rules(read_run_config(Path(run_dir)).env, str(run_dir))


def verifiable_rules(env: EnvConfig, what: str) -> list[str]:
    """The rules a policy trained in ``env`` can follow; a one-line error where there is nothing to verify."""
    if env.mode != "query":
        raise ConfigError(f"{what} is a task-mode policy; rules are verified for query-mode policies")
    rules = available_rules(None if env.proposers is None else env.proposers.counts(), env.stop)
    if len(rules) == 1:
        raise ConfigError(
            f"{what} has no proposers and no stop action (env.proposers, env.stop): no rule to compare it with"
        )
    return rules


def verify_task(run_dir: str | Path, task: str | None = None, data_dir: str | None = None) -> Task:
    """The task a run is verified on: ``task`` (default: its first) from ``data_dir`` (default: its own)."""
    config = read_run_config(Path(run_dir))
    overrides = {"tasks": [task or config.tasks[0]], **({"data_dir": data_dir} if data_dir else {})}
    return load_tasks(config.with_overrides(overrides))[0]


def verify_run(
    run_dir: str | Path,
    task: Task,
    *,
    rows: int = VERIFY_ROWS,
    progress: ProgressFactory | None = None,
    on_budget: Callable[[Projection, Throughput], None] | None = None,
) -> RuleChoice:
    """:func:`verify_rules` for a finished run on ``task`` (:func:`verify_task`), with the run's own model.

    Its scoring settings and reward cache are the run's, so prompts it already scored cost nothing.

    ``on_budget`` is told the projected LLM work (every rule on the dev rows, one query-level prompt each) and
    this machine's measured throughput before anything is scored.
    """
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    rules = verifiable_rules(config.env, str(run_dir))
    resources = build_setup(config, run_dir, [task]).resources[task.name]
    if on_budget is not None and read_rule_choice(run_dir) is None:
        profile = TokenProfile.of(task, resources.lm.tokenizer)
        work = query_level(profile, config.env.k, len(rules) * min(rows, len(task.dev)))
        on_budget(Projection([replace(work, name="rules on dev")]), measure_throughput(resources.lm))
    return verify_rules(run_dir, resources, rows=rows, progress=progress)


__all__ = ["VERIFY_ROWS", "rules_to_verify", "verify_rules", "verify_run", "verify_task"]
