"""Run directories: what a training run keeps where, and the checks around creating and resuming one.

A run directory holds::

    config.json          the TrainConfig, format version and provenance (checked on --resume)
    checkpoints/         resumable checkpoints (SB3 zips with RNG and env state; cql.pt for cql)
    episodes/            cql and fqi: the episodes they learn from (unless existing data were given)
    tb/                  TensorBoard logs
    curve.csv            learning curve (step, metric, value)
    rewards.sqlite       reward cache, so a resumed run does not score prompts twice
    policy/              the final policy (model.zip, cql.pt or fqi.pt), the pools it trained on and, once
                         verified on a task's dev rows (query mode), the rule it follows there (rules/<task>.json)
    evaluation/          the final evaluation, per task, written as it goes
    results.json/.md     final test-split comparison with baselines, with provenance
    learning_curve.png
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from rl_select.errors import ArtifactError, ConfigError
from rl_select.provenance import provenance, write_json
from rl_select.rules import ACCURACY, LABELS, MEASURES, RULES
from rl_select.runs.config import TrainConfig, config_differences, read_run_config, write_run_config
from rl_select.scoring import LLMCost
from rl_select.tasks import Task
from rl_select.types import JsonObject, Overrides

POLICY_DIR = "policy"
RULES_DIR = "rules"
LEGACY_RULE_FILE = "rule.json"
"""Before rules were kept per task, a run kept one choice here (read as its task's, or its own tasks' if unnamed)."""


def policy_files(run_dir: Path, algo: str) -> Path:
    """Where a run keeps its final policy."""
    return Path(run_dir) / POLICY_DIR / (f"{algo}.pt" if algo in ("cql", "fqi") else "model.zip")


def resumed_config(run_dir: Path, overrides: Overrides | None) -> TrainConfig:
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

    write_run_config(run_dir, config, provenance(seeds=[config.seed]))


def dense_stores(config: TrainConfig, run_dir: Path) -> list[Path]:
    """The episode stores a fitted-Q run learns from: its ``data.dense_data``, else its own ``episodes/``."""
    return [Path(p) for p in config.data.dense_data] or [Path(run_dir) / "episodes"]


def write_trained_on(run_dir: Path, tasks: list[Task]) -> dict[str, str]:
    """``policy/trained_on.json``: the pools the policy trained on (task mode then draws held-out candidates)."""
    trained_on = {t.name: t.fingerprint("train") for t in tasks}
    path = Path(run_dir) / POLICY_DIR / "trained_on.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(trained_on, indent=2) + "\n")
    return trained_on


def read_trained_on(run_dir: Path) -> dict[str, str]:
    """The pools a run's policy trained on (empty for a policy copied without them)."""
    path = Path(run_dir) / POLICY_DIR / "trained_on.json"
    return json.loads(path.read_text()) if path.is_file() else {}


@dataclass(frozen=True)
class DevMargin:
    """How far the kept rule is above the next best one on dev, paired over the same rows.

    Attributes:
        runner_up: The next best rule.
        mean: Kept − runner-up, in points of calibrated dev accuracy.
        ci95: Its 95% paired bootstrap interval over the dev rows, in points.
    """

    runner_up: str
    mean: float
    ci95: tuple[float, float]

    @property
    def decided(self) -> bool:
        """Whether dev tells the two apart: the interval's lower bound above 0."""
        return self.ci95[0] > 0

    def describe(self) -> str:
        """``+1.5 [-2.0, +5.0] over bm25``."""
        return f"{self.mean:+.1f} [{self.ci95[0]:+.1f}, {self.ci95[1]:+.1f}] over {self.runner_up}"

    def to_dict(self) -> JsonObject:
        """JSON form."""
        return {"runner_up": self.runner_up, "mean": round(self.mean, 2), "ci95": [round(x, 2) for x in self.ci95]}

    @classmethod
    def from_dict(cls, data: JsonObject) -> DevMargin:
        """Inverse of :meth:`to_dict`."""
        low, high = data["ci95"]
        return cls(str(data["runner_up"]), float(data["mean"]), (float(low), float(high)))


@dataclass(frozen=True)
class RuleChoice:
    """The rule a query-mode policy follows (:mod:`rl_select.rules`), chosen on dev rows after training.

    Attributes:
        rule: The chosen rule (the best dev score; the policy itself on ties).
        dev_scores: Every rule tried → its dev score under ``measure``.
        dev_rows: How many dev rows.
        cost: The LLM work of scoring them (learning cost: it is spent once, before any test row is seen).
        task: The task whose dev rows decided.
        measure: How rules were compared (:data:`~rl_select.rules.MEASURES`): the LLM's calibrated accuracy, or
            the gold-label share of their demonstrations (no LLM calls; the policy then leaves out the task-level
            proposer, which costs LLM calls to build).
        margin: By accuracy: the kept rule − the next best on the same dev rows, with its paired interval (None
            by labels, and in choices stored before margins were kept).
    """

    rule: str
    dev_scores: dict[str, float]
    dev_rows: int
    cost: LLMCost
    task: str | None = None
    measure: str = ACCURACY
    margin: DevMargin | None = None

    @property
    def zero_cost(self) -> bool:
        """Whether the choice was made, and is followed, without LLM calls on the task."""
        return self.measure == LABELS

    def to_dict(self) -> JsonObject:
        """JSON form."""
        return {
            "rule": self.rule,
            "measure": self.measure,
            "dev_scores": dict(self.dev_scores),
            "dev_rows": self.dev_rows,
            "cost": self.cost.to_dict(),
            "task": self.task,
            "margin": None if self.margin is None else self.margin.to_dict(),
        }


def rule_path(run_dir: Path, task: str) -> Path:
    """Where a run keeps the rule verified on ``task``: ``policy/rules/<task>.json`` (odd characters made safe)."""
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in task)
    return Path(run_dir) / POLICY_DIR / RULES_DIR / f"{safe}.json"


def write_rule_choice(run_dir: Path, choice: RuleChoice) -> Path:
    """Store the rule the run's policy follows from now on on ``choice.task`` (evaluation, export)."""
    if choice.task is None:
        raise ConfigError("a rule choice names the task whose dev rows decided")
    path = rule_path(run_dir, choice.task)
    write_json(path, choice)
    return path


def read_rule_choices(run_dir: Path) -> dict[str, RuleChoice]:
    """Every rule the run's policy was verified to follow: task name → choice (empty before any verification).

    A choice from before rules were kept per task (``policy/rule.json``) counts for the task it names, or, naming
    none, for the run's own tasks (verification then ran on them); a per-task file wins over it.
    """
    choices: dict[str, RuleChoice] = {}
    legacy = Path(run_dir) / POLICY_DIR / LEGACY_RULE_FILE
    if legacy.is_file():
        choice = _read_choice(legacy)
        tasks = [choice.task] if choice.task is not None else list(read_run_config(Path(run_dir)).tasks)
        choices.update(dict.fromkeys(tasks, choice))
    folder = Path(run_dir) / POLICY_DIR / RULES_DIR
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
        choice = _read_choice(path)
        if choice.task is None:
            raise ArtifactError(f"{path} names no task; delete it to verify the policy again")
        choices[choice.task] = choice
    return choices


def read_rule_choice(run_dir: Path, task: str) -> RuleChoice | None:
    """The rule the run's policy was verified to follow on ``task`` (None if it never was)."""
    return read_rule_choices(run_dir).get(task)


def _read_choice(path: Path) -> RuleChoice:
    """One stored choice; a damaged file or an unknown rule or measure is a one-line error."""
    try:
        data = json.loads(path.read_text())
        scores = data["dev_scores"] if "dev_scores" in data else data["dev_accuracy"]  # dev_accuracy: before labels
        choice = RuleChoice(
            rule=str(data["rule"]),
            dev_scores={str(rule): float(value) for rule, value in scores.items()},
            dev_rows=int(data["dev_rows"]),
            cost=LLMCost.from_dict(data["cost"]),
            task=None if data.get("task") is None else str(data["task"]),
            measure=str(data.get("measure", ACCURACY)),
            margin=None if data.get("margin") is None else DevMargin.from_dict(data["margin"]),
        )
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError, AttributeError):
        raise ArtifactError(f"{path} is damaged; delete it to verify the policy again") from None
    if choice.measure not in MEASURES:
        raise ArtifactError(f"{path} names an unknown measure {choice.measure!r}; delete it to verify the policy again")
    if choice.rule not in RULES:
        raise ArtifactError(f"{path} names an unknown rule {choice.rule!r}; delete it to verify the policy again")
    return choice
