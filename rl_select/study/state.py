"""A study's own records between its steps, each file written and read here only (but ``study.json``).

``dev/<run>.json`` holds a query-mode variant's dev score (:class:`DevScore`), ``dev/choices.json`` which
variant dev chose per task (:class:`DevChoice`), and ``curve/<task>.json`` a task's learning curve
(:class:`LearningCurve`). ``study.json``, the settings the study ran with, is written by the study when it starts
and read here (:meth:`StudyState.config`). The evaluations live in ``evaluation/``
(:class:`~rl_select.evaluation.EvaluationLog`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from rl_select.errors import ArtifactError, ConfigError
from rl_select.evaluation import PairedDelta
from rl_select.provenance import write_json
from rl_select.scoring import LLMCost
from rl_select.study.config import StudyConfig
from rl_select.types import JsonObject


@dataclass(frozen=True)
class DevScore:
    """A query-mode variant's calibrated dev accuracy, and the LLM work of measuring it."""

    run: str
    accuracy_calibrated: float
    cost: LLMCost

    def to_dict(self) -> JsonObject:
        """JSON form."""
        return {"run": self.run, "accuracy_calibrated": self.accuracy_calibrated, "cost": self.cost.to_dict()}


@dataclass
class LearnerCost:
    """LLM work a learner spent before choosing anything: collecting its rows, and comparing variants on dev."""

    data: LLMCost
    selection: LLMCost

    @property
    def total(self) -> LLMCost:
        """Everything it spent."""
        return self.data + self.selection

    def to_dict(self) -> JsonObject:
        """JSON form."""
        return {"data": self.data.to_dict(), "selection": self.selection.to_dict(), "total": self.total.to_dict()}


@dataclass(frozen=True)
class DevChoice:
    """The variants of a task's query-mode learner (run names, in the config's order) and the one dev chose."""

    chosen: str
    variants: list[str]

    @property
    def index(self) -> int:
        """The chosen variant's position in the config's ``query.variants``."""
        return self.variants.index(self.chosen)


@dataclass(frozen=True)
class PooledChoice:
    """What dev kept for a task's pooled row: the policy fitted on every task's rows, or the task's own choice.

    Both are scored on the same dev rows: the task's own dev-verified choice (its policy or a rule) and the pooled
    policy; the pooled policy is kept only if strictly better.
    """

    own_rule: str
    own_accuracy: float
    pooled_accuracy: float

    @property
    def pooled(self) -> bool:
        """Whether the pooled policy was kept."""
        return self.pooled_accuracy > self.own_accuracy

    @property
    def kept(self) -> str:
        """What was kept, in words."""
        return "the pooled policy" if self.pooled else f"its own {self.own_rule}"

    def to_dict(self) -> JsonObject:
        """JSON form, with what was kept."""
        return {**asdict(self), "pooled": self.pooled, "kept": self.kept}


OWN, POOLED, OTHER_TASKS = "own", "pooled", "other tasks"
"""The candidates of the every-policy row: the task's own dev-verified choice, the policy fitted on every task's
rows, the policy fitted on the other tasks' rows."""


@dataclass(frozen=True)
class PolicyChoice:
    """What dev kept for a task's every-policy row, among policies scored on the same dev rows.

    ``scores``: calibrated dev accuracy per candidate (:data:`OWN`, :data:`POOLED`, :data:`OTHER_TASKS`, in that
    order); the first best is kept, so a later candidate must be strictly better than every earlier one.
    ``own_rule``: what the task's own dev-verified choice follows (its policy or a rule).
    """

    own_rule: str
    scores: dict[str, float]

    @property
    def kept(self) -> str:
        """The candidate kept (a key of ``scores``)."""
        return max(self.scores, key=self.scores.__getitem__)  # the first on ties

    @property
    def kept_in_words(self) -> str:
        """The candidate kept, the own choice with its rule."""
        return f"own {self.own_rule}" if self.kept == OWN else self.kept

    def to_dict(self) -> JsonObject:
        """JSON form, with what was kept."""
        return {"own_rule": self.own_rule, "scores": dict(self.scores), "kept": self.kept_in_words}


@dataclass(frozen=True)
class CurvePoint:
    """A learning-curve point: the policy fitted on the first ``training_queries`` rows, on the test rows."""

    training_queries: int
    calibrated: float
    raw: float
    delta_vs_knn: PairedDelta | None

    def to_dict(self) -> JsonObject:
        """JSON form."""
        delta = None if self.delta_vs_knn is None else self.delta_vs_knn.to_dict()
        return {**asdict(self), "delta_vs_knn": delta}


@dataclass
class LearningCurve:
    """A task's learning curve: its points by training-query count."""

    task: str
    points: dict[int, CurvePoint] = field(default_factory=dict)

    def to_dict(self) -> JsonObject:
        """JSON form (points keyed by their count as text)."""
        return {"task": self.task, "points": {str(n): p.to_dict() for n, p in sorted(self.points.items())}}


def pooled_key(task: str) -> str:
    """The name of the pooled policy's dev score on ``task`` (``dev/<key>.json``)."""
    return f"transfer-all-on-{task}"


def other_tasks_key(task: str) -> str:
    """The name of the score of the policy fitted on the other tasks' rows, on ``task``'s dev rows."""
    return f"transfer-{task}-on-{task}"


class StudyState:
    """The records of the study under ``root``, and where its learners' runs live.

    Args:
        root: The study's directory.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def run(self, name: str) -> Path:
        """The directory of the study's learner run ``name`` (``runs/<name>``)."""
        return self.root / "runs" / name

    def data_run(self, task: str) -> Path:
        """The task's first query-mode run: it collects the rows every query-mode variant is fitted on."""
        return self.run(f"{task}-query-data")

    def query_runs(self, task: str, variants: int) -> list[Path]:
        """The task's query-mode runs: the data run (the first variant's), then one per further variant."""
        return [self.data_run(task), *(self.run(f"{task}-query-v{i}") for i in range(1, variants))]

    def task_run(self, task: str) -> Path:
        """The task's task-mode learner run (its rows and fitted Q)."""
        return self.run(f"{task}-task")

    def config(self) -> StudyConfig:
        """The settings the study ran with (``study.json``); a one-line error if the folder holds no study."""
        data = self._read(self.root / "study.json")
        if data is None:
            raise ConfigError(f"{self.root} is not a study's directory (no study.json)")
        return StudyConfig.from_dict(data)

    def dev_score(self, run: str) -> DevScore | None:
        """The stored dev score of run ``run`` (None before it is measured)."""
        data = self._read(self.root / "dev" / f"{run}.json")
        if data is None:
            return None
        try:
            return DevScore(data["run"], float(data["accuracy_calibrated"]), LLMCost.from_dict(data["cost"]))
        except (KeyError, TypeError, ValueError):
            raise ArtifactError(f"{self.root / 'dev' / f'{run}.json'} is damaged; delete it to measure again") from None

    def write_dev_score(self, score: DevScore) -> None:
        """Store a variant's dev score."""
        write_json(self.root / "dev" / f"{score.run}.json", score)

    def choices(self) -> dict[str, DevChoice]:
        """Every task's dev choice so far."""
        data = self._read(self.root / "dev" / "choices.json") or {}
        try:
            return {task: DevChoice(str(c["chosen"]), [str(v) for v in c["variants"]]) for task, c in data.items()}
        except (KeyError, TypeError):
            raise ArtifactError(f"{self.root / 'dev' / 'choices.json'} is damaged; delete it to choose again") from None

    def choice(self, task: str) -> DevChoice:
        """A task's dev choice (its query-mode learner must have run)."""
        found = self.choices().get(task)
        if found is None:
            raise ArtifactError(f"the study in {self.root} has no dev choice for {task} yet; run the study")
        return found

    def write_choice(self, task: str, choice: DevChoice) -> None:
        """Store a task's dev choice (the other tasks' are kept)."""
        choices = {**self.choices(), task: choice}
        write_json(self.root / "dev" / "choices.json", {name: asdict(c) for name, c in choices.items()})

    def curve(self, task: str) -> LearningCurve:
        """A task's learning curve so far (empty before its first point)."""
        data = self._read(self.curve_path(task))
        if data is None:
            return LearningCurve(task)
        try:
            points = {int(n): _point(p) for n, p in data["points"].items()}
        except (KeyError, TypeError, ValueError):
            raise ArtifactError(f"{self.curve_path(task)} is damaged; delete it to fit the curve again") from None
        return LearningCurve(task, points)

    def curves(self) -> list[LearningCurve]:
        """Every task's learning curve, by task name."""
        return [self.curve(path.stem) for path in sorted((self.root / "curve").glob("*.json"))]

    def write_curve(self, curve: LearningCurve) -> None:
        """Store a task's learning curve."""
        write_json(self.curve_path(curve.task), curve)

    def curve_path(self, task: str) -> Path:
        """Where a task's learning curve is stored."""
        return self.root / "curve" / f"{task}.json"

    @staticmethod
    def _read(path: Path) -> JsonObject | None:
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ArtifactError(f"{path} is not readable JSON; move it away and rerun the study") from None
        if not isinstance(data, dict):
            raise ArtifactError(f"{path} is not a study record; move it away and rerun the study")
        return data


def _point(data: JsonObject) -> CurvePoint:
    delta = data.get("delta_vs_knn")
    return CurvePoint(
        training_queries=int(data["training_queries"]),
        calibrated=float(data["calibrated"]),
        raw=float(data["raw"]),
        delta_vs_knn=None if delta is None else PairedDelta(float(delta["mean"]), tuple(delta["ci95"])),
    )


__all__ = [
    "CurvePoint",
    "DevChoice",
    "DevScore",
    "LearnerCost",
    "LearningCurve",
    "PolicyChoice",
    "PooledChoice",
    "StudyState",
    "other_tasks_key",
    "pooled_key",
]
