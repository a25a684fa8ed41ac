"""What a query-mode policy does with its candidates: follow its Q-function, or one of the rules it can reproduce.

A policy whose candidates come from named proposers (:mod:`rl_select.proposals`) can always do what one proposer
alone would: take that proposer's top k (kNN with ``embedding``, BM25 with ``bm25``, best-of-N's prompt with
``task``), or, with the stop action, stop at once (zero-shot). Which of these beats the learned Q-function
depends on the task and the LLM, so it is decided on dev rows after training, the way model selection picks a
variant (:func:`rl_select.evaluation.verify.verify_rules`); the exported artifact carries the choice. Every rule reads
only the observation's proposer and stop columns, so the environment (training, evaluation) and the exported
runtime (no torch) follow it with the same function.

Rules order a proposer's picks as its baseline does: a ranked list (embedding, BM25, balanced) with its best
demonstration last, right before the query; the task proposer's list in its prompt's own order.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from rl_select.errors import ConfigError
from rl_select.observation import PROPOSERS, STOP_COLUMN

POLICY_RULE = "policy"
"""Follow the learned Q-function (the default, and the only choice of a policy without proposers)."""
ZERO_SHOT_RULE = "zero-shot"
"""Stop at once: no demonstrations (needs the stop action)."""
RULES = (POLICY_RULE, ZERO_SHOT_RULE, *PROPOSERS)
"""Every rule: the policy, zero-shot, and one per proposer (its own top k)."""
VERIFY_ROWS = 200
"""Dev rows every rule is scored on by default when a policy is verified (all where the dev split is smaller)."""
ACCURACY = "accuracy"
"""Rules compared by the LLM's calibrated accuracy on the dev rows (LLM calls, counted as learning cost)."""
LABELS = "labels"
"""Rules compared by gold-label share: the mean share of each dev row's demonstrations that carry the row's gold
label. No LLM calls, so it also checks a policy on a task it never trained on; it cannot judge zero-shot (no
demonstrations) or the task-level proposer (LLM calls to build)."""
MEASURES = (ACCURACY, LABELS)
"""How rules are compared on dev."""
IN_PROMPT_ORDER = ("task",)
"""Proposers whose list is already a prompt, kept in its order (the others' best goes last)."""


def available_rules(proposers: dict[str, int] | None, stop: bool) -> list[str]:
    """The rules a policy with these proposer counts (None: no proposers) and stop action can follow."""
    found = [POLICY_RULE]
    if stop:
        found.append(ZERO_SHOT_RULE)
    found += [name for name in PROPOSERS if proposers and proposers.get(name, 0) > 0]
    return found


def check_rule(rule: str, proposers: dict[str, int] | None, stop: bool) -> None:
    """Raise a one-line :class:`ConfigError` unless a policy with these settings can follow ``rule``."""
    allowed = available_rules(proposers, stop)
    if rule not in allowed:
        raise ConfigError(f"rule {rule!r} is not available to this policy; choose from {', '.join(allowed)}")


def rule_scores(candidates: np.ndarray, columns: Sequence[str], rule: str, prompt_order: str) -> np.ndarray:
    """Scores of an observation's candidate rows under ``rule`` (higher is taken first; the caller masks).

    Args:
        candidates: The observation's ``candidates`` block, ``[M, F]`` or, with the stop action, ``[M + 1, F]``.
        columns: Its column names (:attr:`~rl_select.observation.FeatureLayout.candidate`).
        rule: A proposer's name or :data:`ZERO_SHOT_RULE` (:data:`POLICY_RULE` has no rule scores).
        prompt_order: ``append`` (each pick goes after the previous ones) or ``prepend``.

    A proposer's rule scores its offered candidates by rank, the stop row (if any) below them and every other
    candidate below that, so the episode stops once the proposer's list is used up.
    """
    index = {name: i for i, name in enumerate(columns)}
    stop = candidates[:, index[STOP_COLUMN]] if STOP_COLUMN in index else np.zeros(len(candidates), np.float32)
    if rule == ZERO_SHOT_RULE:
        return stop.astype(np.float64)
    if rule not in PROPOSERS or f"from_{rule}" not in index:
        raise ConfigError(f"rule {rule!r} needs the '{rule}' proposer's columns in the observation")
    offered = candidates[:, index[f"from_{rule}"]] > 0
    rank = candidates[:, index[f"rank_{rule}"]].astype(np.float64)  # 0 = the proposer's best
    best_first = (rule in IN_PROMPT_ORDER) == (prompt_order == "append")
    by_rank = 2.0 - rank if best_first else 1.0 + rank
    return np.where(offered, by_rank, np.where(stop > 0, 0.0, -1.0))


def rule_action(candidates: np.ndarray, mask: np.ndarray, columns: Sequence[str], rule: str, order: str) -> int:
    """The action ``rule`` takes: the best unmasked row by :func:`rule_scores`."""
    scores = rule_scores(candidates, columns, rule, order)
    return int(np.argmax(np.where(np.asarray(mask, dtype=bool), scores, -np.inf)))


__all__ = [
    "ACCURACY",
    "IN_PROMPT_ORDER",
    "LABELS",
    "MEASURES",
    "POLICY_RULE",
    "RULES",
    "VERIFY_ROWS",
    "ZERO_SHOT_RULE",
    "available_rules",
    "check_rule",
    "rule_action",
    "rule_scores",
]
