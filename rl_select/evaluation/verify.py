"""Verify a trained query-mode policy on dev: its Q-function against every rule it can reproduce.

A policy that chooses among candidates from several proposers can also do exactly what one proposer does alone
(kNN, BM25, best-of-N's prompt) or, with the stop action, nothing at all (zero-shot); see :mod:`rl_select.rules`.
Which is best depends on the task and the LLM, and a learned Q-function can lose to its own proposers where its
training signal is weak. So after training, every rule is scored on the same dev rows and the best is kept (the
policy itself on ties): the learner proposes, dev verifies. The choice is stored with the policy, per task
(``policy/rules/<task>.json``), and followed on that task by evaluation, export, the runtime and the service
(elsewhere the policy follows its Q-function); its LLM work is learning cost. Test rows are never read.

Rules are compared by the LLM's accuracy on dev or, at no LLM cost, by the gold-label share of their
demonstrations (:data:`~rl_select.rules.LABELS`): the check for a policy on a task it never trained on, where
spending LLM calls would defeat the point of transferring it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from rl_select.budget import Projection, Throughput, TokenProfile, measure_throughput, query_level
from rl_select.envs import EnvConfig
from rl_select.errors import ConfigError
from rl_select.evaluation.core import ProgressFactory, evaluate_selector, evaluation_rows
from rl_select.evaluation.stats import paired_bootstrap
from rl_select.resources import Resources
from rl_select.rules import ACCURACY, LABELS, MEASURES, POLICY_RULE, VERIFY_ROWS, available_rules
from rl_select.runs.config import TrainConfig, read_run_config
from rl_select.runs.dirs import DevMargin, RuleChoice, read_rule_choice, write_rule_choice
from rl_select.runs.policy import PolicySelector
from rl_select.runs.setup import build_setup, load_tasks
from rl_select.selectors.base import Selector
from rl_select.tasks import Task


def verify_rules(
    run_dir: str | Path,
    resources: Resources,
    *,
    rows: int,
    by: str = ACCURACY,
    progress: ProgressFactory | None = None,
) -> RuleChoice:
    """Score the policy of ``run_dir`` and each rule it can follow on ``rows`` dev rows; keep and store the best.

    Already verified on as many rows of the same task by the same measure: the stored choice is returned without
    LLM calls.

    Args:
        run_dir: A finished query-mode training run.
        resources: The task's resources (its scorer does the scoring).
        rows: Dev rows (all where the split is smaller), the same for every rule.
        by: :data:`~rl_select.rules.ACCURACY` (the LLM scores every rule) or :data:`~rl_select.rules.LABELS` (the
            gold-label share of each rule's demonstrations: no LLM calls, and no task-level proposer).
        progress: Progress factory of the front end.
    """
    run_dir = Path(run_dir)
    rows = min(rows, len(resources.task.dev))
    stored = stored_choice(run_dir, resources.task, rows, by)
    if stored is not None:
        return stored
    base = PolicySelector.from_run(run_dir, rule=POLICY_RULE)
    env = base.policy.config.env
    before = resources.scorer.cost()
    scores: dict[str, float] = {}
    correct: dict[str, np.ndarray] = {}
    for rule in verifiable_rules(env, str(run_dir), by):
        selector = PolicySelector(
            base.policy, name=f"rule {rule}", trained_on=base.trained_on, rule=rule, zero_cost=by == LABELS
        )
        if by == LABELS:
            scores[rule] = round(gold_label_share(selector, resources, rows, env.k), 6)
            continue
        report = evaluate_selector(selector, resources, k=env.k, seeds=[0], n_rows=rows, split="dev", progress=progress)
        scores[rule] = round(float(report.calibrated[0]), 6)
        correct[rule] = report.correct(calibrated=True)
    best = max(scores, key=lambda rule: scores[rule])  # first best: the policy on ties
    cost = resources.scorer.cost() - before
    margin = dev_margin(best, scores, correct) if correct else None
    choice = RuleChoice(best, scores, rows, cost, task=resources.task.name, measure=by, margin=margin)
    write_rule_choice(run_dir, choice)
    return choice


def dev_margin(kept: str, scores: dict[str, float], correct: dict[str, np.ndarray]) -> DevMargin:
    """The kept rule − the next best (first best among the others) on the same dev rows, paired bootstrap."""
    runner_up = max((rule for rule in scores if rule != kept), key=lambda rule: scores[rule])
    delta = paired_bootstrap(correct[kept], correct[runner_up])
    return DevMargin(runner_up, delta.mean, delta.ci95)


def stored_choice(run_dir: Path, task: Task, rows: int, by: str) -> RuleChoice | None:
    """The run's stored choice for ``task`` if it was made on ``rows`` dev rows by ``by`` (then nothing is redone)."""
    stored = read_rule_choice(run_dir, task.name)
    return stored if stored is not None and (stored.dev_rows, stored.measure) == (rows, by) else None


def gold_label_share(selector: Selector, resources: Resources, rows: int, k: int) -> float:
    """The mean, over ``rows`` dev rows, of the share of the row's demonstrations that carry its gold label.

    Only the selector's choices are read (no LLM calls); a row given no demonstrations counts 0. For a small LLM,
    which leans on the labels it sees, prompts that show the query's own label more often tend to be answered
    right more often: a zero-cost proxy of accuracy for comparing prompts of the same length.
    """
    task = resources.task
    selector.build(resources)
    shares = []
    for row in evaluation_rows(resources, "dev", rows):
        picks = selector.select(task, row, k, None)
        shares.append(sum(task.train[i].label == row.label for i in picks) / len(picks) if picks else 0.0)
    return float(sum(shares) / len(shares)) if shares else 0.0


def verifiable_rules(env: EnvConfig, what: str, by: str = ACCURACY) -> list[str]:
    """The rules a policy trained in ``env`` can follow and ``by`` can judge; a one-line error if none but itself."""
    if by not in MEASURES:
        raise ConfigError(f"unknown measure {by!r}; choose from {', '.join(MEASURES)}")
    if env.mode != "query":
        raise ConfigError(f"{what} is a task-mode policy; rules are verified for query-mode policies")
    if by == LABELS and (env.features.llm_features or env.features.step_features):
        raise ConfigError(f"{what} has features that need the LLM (env.features); compare its rules by {ACCURACY}")
    proposers = env.for_cost(by == LABELS).proposers  # labels judge demonstrations built without LLM calls
    rules = available_rules(None if proposers is None else proposers.counts(), env.stop and by == ACCURACY)
    if len(rules) == 1 and by == LABELS:
        raise ConfigError(
            f"{what} has no proposer whose choices labels can judge (embedding, bm25, balanced in env.proposers): "
            "no rule to compare it with by labels"
        )
    if len(rules) == 1:
        raise ConfigError(
            f"{what} has no proposers and no stop action (env.proposers, env.stop): no rule to compare it with"
        )
    return rules


@dataclass(frozen=True)
class Verification:
    """A finished run and the task it is verified on, with what is read once for it.

    Attributes:
        run_dir: The run.
        config: Its configuration (``config.json``).
        task: The task whose dev rows decide.
        rules: The rules compared (:func:`verifiable_rules`).
        by: The measure (:data:`~rl_select.rules.MEASURES`).
    """

    run_dir: Path
    config: TrainConfig
    task: Task
    rules: list[str]
    by: str


def plan_verification(
    run_dir: str | Path, task: str | None = None, data_dir: str | None = None, by: str = ACCURACY
) -> Verification:
    """What verifying ``run_dir`` on ``task`` takes, its config read once.

    Its rules are checked first (a task-mode run or an unknown measure fails here, before any data or model
    loads); then ``task`` (default: the run's first) is loaded from ``data_dir`` (default: the run's own).
    """
    run_dir = Path(run_dir)
    config = read_run_config(run_dir)
    rules = verifiable_rules(config.env, str(run_dir), by)
    overrides = {"tasks": [task or config.tasks[0]], **({"data_dir": data_dir} if data_dir else {})}
    return Verification(run_dir, config, load_tasks(config.with_overrides(overrides))[0], rules, by)


def verify_run(
    plan: Verification,
    *,
    rows: int = VERIFY_ROWS,
    progress: ProgressFactory | None = None,
    on_budget: Callable[[Projection, Throughput], None] | None = None,
) -> RuleChoice:
    """:func:`verify_rules` for a planned verification (:func:`plan_verification`), with the run's own model.

    Its scoring settings and reward cache are the run's, so prompts it already scored cost nothing.

    ``on_budget`` is told the projected LLM work (every rule on the dev rows, one query-level prompt each) and
    this machine's measured throughput before anything is scored (by accuracy; by labels nothing is scored).
    """
    run_dir, config, task = plan.run_dir, plan.config, plan.task
    resources = build_setup(config, run_dir, [task]).resources[task.name]
    rows_used = min(rows, len(task.dev))
    if on_budget is not None and plan.by == ACCURACY and stored_choice(run_dir, task, rows_used, plan.by) is None:
        profile = TokenProfile.of(task, resources.lm.tokenizer)
        work = query_level(profile, config.env.k, len(plan.rules) * rows_used)
        throughput = measure_throughput(resources.lm, [task], config.env.k)
        on_budget(Projection([replace(work, name="rules on dev")]), throughput)
    return verify_rules(run_dir, resources, rows=rows, by=plan.by, progress=progress)


__all__ = [
    "VERIFY_ROWS",
    "Verification",
    "dev_margin",
    "gold_label_share",
    "plan_verification",
    "verify_rules",
    "verify_run",
]
