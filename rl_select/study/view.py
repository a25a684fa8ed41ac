"""What the study's table and learning curve read of a running study (``Study`` provides it).

A protocol, so the modules that render a study need not import the module that runs it (which imports them).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from rl_select.evaluation import SelectorReport
from rl_select.resources import Resources
from rl_select.runs.config import TrainConfig
from rl_select.runs.dirs import RuleChoice
from rl_select.scoring import LLMCost
from rl_select.study.config import StudyConfig
from rl_select.study.state import LearnerCost, PolicyChoice, PooledChoice
from rl_select.tasks import Task
from rl_select.types import JsonValue


class StudyView(Protocol):
    """A study's settings, directory, tasks, evaluations, learners' costs and the means to fit and evaluate."""

    config: StudyConfig
    root: Path
    tasks: dict[str, Task]
    progress: Callable[[str, int], Callable[[int], None]] | None

    def reports(self, name: str) -> list[SelectorReport]:
        """The finished evaluation of a task."""

    def query_cost(self, name: str) -> LearnerCost:
        """The query-mode learner's LLM cost (``.total``)."""

    def task_cost(self, name: str) -> LearnerCost:
        """The task-mode learner's LLM cost (``.total``)."""

    def stored_rule(self, name: str) -> RuleChoice | None:
        """The rule dev chose for the task's query-mode policy (None before it was verified)."""

    def stored_transfer_rule(self, name: str) -> RuleChoice | None:
        """The rule the label check chose for the task's transfer policy (None before it was checked)."""

    def stored_pooled_choice(self, name: str) -> tuple[PooledChoice, LLMCost] | None:
        """What dev kept for the task's pooled row, and its LLM cost (None before the pooled policy was scored)."""

    def stored_every_policy_choice(self, name: str) -> tuple[PolicyChoice, LLMCost] | None:
        """What dev kept for the task's every-policy row, and the LLM cost it adds (None before it was scored)."""

    def equal_budget_sets(self, name: str) -> int:
        """best-of-N's N at the task-mode learner's budget."""

    def resources(self, name: str) -> Resources:
        """A task's evaluation resources."""

    def train_config(self, tasks: list[str], mode: str, **overrides: JsonValue) -> TrainConfig:
        """A learner's TrainConfig."""

    def fit(self, train_config: TrainConfig, run_dir: Path) -> Path:
        """Train (or finish training) a learner."""
