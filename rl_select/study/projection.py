"""What a study will ask of the LLM, projected step by step from the same settings and rows the study runs.

Counted as the scorer counts requests (a reward-cache hit counts, a feature read from its cache file does not):
on an empty cache the projection is the study's work; on a warm one, an upper bound. A resumed study's finished
work (its records in :class:`~rl_select.study.state.StudyState`) is left out.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rl_select.budget import (
    Projection,
    Step,
    TokenProfile,
    dense_episode,
    equal_budget_sets,
    project_evaluation,
    query_level,
    task_mode_choosing,
    task_proposer_search,
    zero_shot_features,
)
from rl_select.rules import available_rules
from rl_select.runs.dirs import read_rule_choice
from rl_select.runs.episode_store import EpisodeStore
from rl_select.runs.policy import PlannedPolicy
from rl_select.study.config import StudyConfig
from rl_select.study.rows import Row, row_selectors, study_rows
from rl_select.study.state import StudyState, other_tasks_key, pooled_key
from rl_select.tasks import Task


def project_study(
    config: StudyConfig,
    tasks: Sequence[Task],
    profiles: dict[str, TokenProfile],
    device_type: str = "cpu",
    state: StudyState | None = None,
) -> Projection:
    """The :class:`~rl_select.study.config.StudyConfig` protocol's work, per step over every task.

    ``device_type`` of the scoring model decides the LLM-heavy baselines' settings (smaller on a CPU). ``state``:
    the study's records, if it ran before; its finished episodes, dev scores, evaluated seeds and curve points are
    left out (None: a new study).

    Upper bounds where a choice decides: every query-mode episode is counted at k steps (the stop action can end
    it sooner), and every seeded row at every seed.
    """
    query, task, k = config.query, config.task, config.k
    names = ("query-mode rows", "query-mode dev comparison", "task-mode rows", "evaluation", "learning curve")
    steps = {name: Step(name) for name in names}
    for loaded in tasks:
        name, profile = loaded.name, profiles[loaded.name]
        collected = _episodes(state.data_run(name)) if state else 0
        episode = dense_episode(profile, k, query.num_candidates, 1)  # stop: its state's prompt, scored
        left = max(config.query_episodes(name) - collected, 0)
        steps["query-mode rows"].add(*(left * x for x in (episode.queries, episode.tokens, episode.forwards)))
        if not collected:  # the task-level proposer's best-of-N on dev, once per task
            found = task_proposer_search(profile, k, query.proposer_config)
            steps["query-mode rows"].add(found.queries, found.tokens, found.forwards)
        dev = query_level(profile, k, dev_rows_left(config, loaded, state))
        steps["query-mode dev comparison"].add(dev.queries, dev.tokens, dev.forwards)
        task_episode = dense_episode(profile, k, task.num_candidates, task.reward_rows)
        learner = Step("task-mode rows")
        learner.add(*(x * task.episodes for x in (task_episode.queries, task_episode.tokens, task_episode.forwards)))
        if task.features.get("llm_features", True):
            features = zero_shot_features(profile, len(loaded.train), task.episodes * task.num_candidates)
            learner.add(features.queries, features.tokens, features.forwards)
        left_share = max(task.episodes - (_episodes(state.task_run(name)) if state else 0), 0) / task.episodes
        steps["task-mode rows"].add(*(left_share * x for x in (learner.queries, learner.tokens, learner.forwards)))
        rows = min(config.evaluation.rows, len(loaded.test))
        finished = evaluated_seeds(config, state, name, rows) if state else None
        for part in evaluation_work(config, loaded, profile, rows, learner.queries, device_type, finished):
            steps["evaluation"].add(part.queries, part.tokens, part.forwards)
        if name in config.learning_curve.tasks:
            points = state.curve(name).points if state else {}
            missing = [n for n in config.learning_curve.queries if n not in points]
            curve = query_level(profile, k, len(missing) * rows)
            steps["learning curve"].add(curve.queries, curve.tokens, curve.forwards)
    return Projection([step for step in steps.values() if step.queries])


def _episodes(run: Path) -> int:
    """Episodes a learner's run has stored (0 before it starts)."""
    return len(EpisodeStore(run / "episodes").ids())


def dev_rows_left(config: StudyConfig, task: Task, state: StudyState | None) -> int:
    """Query-level dev rows the task's dev comparison has yet to score: variants, rules, pooled, other tasks'."""
    query, name = config.query, task.name
    variants = state.query_runs(name, len(query.variants)) if state else []
    rows = query.dev_rows * (len(query.variants) - sum(state.dev_score(run.name) is not None for run in variants))
    if not query.verify_rows:
        return rows
    per_policy = min(query.verify_rows, len(task.dev))
    choice = state.choices().get(name) if state else None
    if choice is None or read_rule_choice(state.run(choice.chosen), name) is None:
        rows += len(available_rules(query.proposers, query.stop)) * per_policy  # the chosen policy and its rules
    keys = [pooled_key(name)] * config.pooled + [other_tasks_key(name)] * config.every_policy
    return rows + per_policy * sum(state is None or state.dev_score(key) is None for key in keys)


def evaluated_seeds(config: StudyConfig, state: StudyState, task: str, rows: int) -> Callable[[Any], int] | None:
    """How many seeds of a row the task's evaluation file holds (None: no file of this evaluation's rows and seeds)."""
    path = state.root / "evaluation" / f"{task}.json"
    try:
        stored = json.loads(path.read_text())
        key = stored["key"]
        if (key["n_rows"], key["seeds"], key["k"]) != (rows, list(range(config.evaluation.seeds)), config.k):
            return None
        done = {report["selector"]["name"]: len(report["seeds"]) for report in stored["reports"]}
    except (OSError, ValueError, KeyError, TypeError):  # none yet, or damaged: the study itself says which
        return None
    return lambda selector: done.get(selector.name, 0)


def evaluation_work(
    config: StudyConfig,
    task: Task,
    profile: TokenProfile,
    rows: int,
    learner_queries: float,
    device_type: str,
    finished: Callable[[Any], int] | None = None,
) -> list[Step]:
    """One task's evaluation: the rows :meth:`~rl_select.study.learned.Study.selectors` evaluates, each by its work.

    The same rows (:func:`~rl_select.study.rows.study_rows`) as the same selectors, best-of-N at equal budget at
    the task-mode learner's projected budget; the learned rows are the policies to come
    (:class:`~rl_select.runs.policy.PlannedPolicy`, with the same propose-and-verify settings). ``finished``:
    seeds of a row already evaluated (as :func:`~rl_select.budget.project_evaluation` reads it).
    """
    dev_rows = config.evaluation.best_of_n_dev_rows
    equal_sets = equal_budget_sets(learner_queries + task_mode_choosing(config.task, len(task.dev)), dev_rows)

    def planned(row: Row) -> PlannedPolicy:
        return PlannedPolicy(
            row.name, query_level=row.query_level, proposals=row.proposals, verify_rows=row.verify_rows
        )

    selectors = row_selectors(config, study_rows(config), device_type, equal_sets, planned)
    seeds = config.evaluation.seeds
    return list(project_evaluation(selectors, task, profile, config.k, rows, seeds, finished).steps)


__all__ = ["dev_rows_left", "evaluated_seeds", "evaluation_work", "project_study"]
