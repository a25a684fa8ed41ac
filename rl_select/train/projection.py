"""What a training run will ask of the LLM, projected from the same settings and selector list the run uses.

The learning part follows the algorithm's data collection; the final evaluation is the run's own list of
selectors (:func:`~rl_select.train.results.baseline_selectors`, best-of-N at the projected learning budget
included) on its own tasks, each counted by the work it declares (:func:`~rl_select.budget.project_evaluation`).
Queries are counted as the scorer counts requests: a query answered by the reward cache counts, a candidate's
zero-shot feature read from the feature cache does not (so on a warm cache the projection is an upper bound).
"""

from __future__ import annotations

from collections.abc import Sequence

from rl_select.budget import (
    Projection,
    Step,
    TokenProfile,
    dense_episode,
    project_evaluation,
    query_level,
    task_level,
    task_proposer_search,
    zero_shot_features,
)
from rl_select.evaluation.verify import verifiable_rules
from rl_select.runs.config import TrainConfig
from rl_select.runs.policy import PlannedPolicy
from rl_select.scoring import LLMCost
from rl_select.tasks import Task
from rl_select.train.results import baseline_selectors, learned_row


def learning_work(config: TrainConfig, tasks: Sequence[Task], profiles: dict[str, TokenProfile]) -> Step:
    """Training's LLM work over ``tasks`` (shared equally): episodes, rewards and candidates' zero-shot features."""
    env, k = config.env, config.env.k
    rows = 1 if env.mode == "query" else env.reward_rows
    learning = Step(f"{config.algo} learning")
    for task in tasks:
        profile, share = profiles[task.name], 1.0 / len(tasks)
        search = task_proposer_search(profile, k, env.proposers)
        learning.add(search.queries, search.tokens, search.forwards)
        if config.algo == "fqi":  # the stop action's value is its state's prompt, already scored: no extra row
            episodes = share * config.data.dense_episodes
            episode = dense_episode(profile, k, env.num_candidates, rows)
            part = Step("episodes").add(*(episodes * x for x in (episode.queries, episode.tokens, episode.forwards)))
        else:
            if config.algo == "cql":
                episodes = share * config.data.cql_episodes
                prompts = episodes * (k + 1)  # every step's prompt, and every reset's zero-shot prompt
            else:  # online: every env resets once, then again after each finished episode
                episodes = share * config.total_steps / k
                prompts = share * config.total_steps + episodes + share * config.parallel.n_envs
            part = query_level(profile, k, prompts) if env.mode == "query" else task_level(profile, k, prompts, rows)
        learning.add(part.queries, part.tokens, part.forwards)
        if env.features.llm_features:
            features = zero_shot_features(profile, len(task.train), episodes * env.num_candidates)
            learning.add(features.queries, features.tokens, features.forwards)
    return learning


def training_rules(config: TrainConfig) -> list[str]:
    """The rules ``evaluation.verify_rows`` scores on dev; a one-line error where the policy has none to follow."""
    return verifiable_rules(config.env, "with evaluation.verify_rows, the policy")


def project_training(
    config: TrainConfig, tasks: Sequence[Task], evaluated: Sequence[Task], profiles: dict[str, TokenProfile]
) -> Projection:
    """A run's work: learning on ``tasks``, then the final evaluation on ``evaluated`` (training + transfer tasks).

    ``profiles``: the token profile of every task by name.
    """
    learning = learning_work(config, tasks, profiles)
    for task in tasks if config.evaluation.verify_rows else []:  # every rule on each training task's dev rows
        prompts = len(training_rules(config)) * min(config.evaluation.verify_rows, len(task.dev))
        verify = query_level(profiles[task.name], config.env.k, prompts)
        learning.add(verify.queries, verify.tokens, verify.forwards)
    learned = PlannedPolicy(learned_row(config), config.env.mode == "query")
    selectors = [learned, *baseline_selectors(config, LLMCost(queries=round(learning.queries)))]
    evaluation = Step("final evaluation")
    settings = config.evaluation
    for task in evaluated:
        rows = min(settings.rows or len(task.test), len(task.test))
        for part in project_evaluation(selectors, task, profiles[task.name], config.env.k, rows, settings.seeds).steps:
            evaluation.add(part.queries, part.tokens, part.forwards)
    return Projection([learning, evaluation])


__all__ = ["learning_work", "project_training", "training_rules"]
