"""The settings of the learned-selector study (``rl-select study``), read from one YAML file."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from rl_select.errors import ConfigError, reject_unknown_keys

QUERY_FEATURES = {
    "embedder": "minilm",
    "projection_dim": 0,
    "label_onehot": False,
    "label_vote": True,
    "llm_features": False,
}
"""Query-mode features: relational and label-relative only, so one policy means the same on every task."""

TASK_FEATURES = {"embedder": "minilm", "projection_dim": 0, "label_onehot": False, "llm_features": True}
"""Task-mode features: the candidates' own zero-shot statistics carry most of what makes a prompt good."""


@dataclass(frozen=True)
class QueryLearner:
    """The learned query-mode selector: dense rows on pool queries, fitted Q, variants picked on dev.

    Attributes:
        num_candidates: Nearest neighbours offered per query (M).
        training_queries: Pool queries whose episodes record an action row at every state.
        behaviour: Behaviour policies of the collection and their shares.
        epsilon: Random-candidate probability of the behaviours.
        variants: fqi settings tried (TrainConfig fields); the best on ``dev_rows`` dev queries is kept.
        dev_rows: Dev queries the variants are compared on (their LLM cost is charged to the learner).
        rounds: Fitting rounds (k or more).
        epochs: Passes per round.
        features: Observation features (see :data:`QUERY_FEATURES`).
        proposers: Where the M candidates come from (:class:`~rl_select.proposals.ProposerConfig` fields; None:
            the M nearest neighbours). The transfer row leaves the task-level proposer out (it costs LLM calls).
        stop: The stop action: at most k demonstrations, zero-shot included.
    """

    num_candidates: int = 8
    training_queries: int = 150
    behaviour: dict[str, float] = field(default_factory=lambda: {"knn": 1.0, "random": 1.0, "greedy": 1.0})
    epsilon: float = 0.1
    variants: tuple[dict[str, Any], ...] = ({"fqi_alpha": 0.0}, {"fqi_alpha": 0.05})
    dev_rows: int = 100
    rounds: int = 4
    epochs: int = 20
    features: dict[str, Any] = field(default_factory=lambda: dict(QUERY_FEATURES))
    proposers: dict[str, int] | None = None
    stop: bool = False


@dataclass(frozen=True)
class TaskLearner:
    """The learned task-mode selector: dense rows of task-level prompts on a few dev rows, fitted Q.

    Attributes:
        num_candidates: Candidates per episode (M), sampled from the training half of the pool.
        reward_rows: Dev rows a prompt's value (mean calibrated gold-label probability) is measured on.
        episodes: Episodes with an action row at every state.
        behaviour: Behaviour policies and their shares.
        epsilon: Random-candidate probability of the behaviours.
        alpha: Conservative weight of fitted Q.
        rounds: Fitting rounds.
        epochs: Passes per round.
        features: Observation features (see :data:`TASK_FEATURES`).
        proposals: Propose and verify: the policy's greedy prompts over this many candidate draws, each scored on
            ``verify_rows`` dev rows, the best kept (its LLM cost to choose). 0 or 1: its one greedy prompt.
        verify_rows: Dev rows each proposed prompt is scored on.
    """

    num_candidates: int = 8
    reward_rows: int = 16
    episodes: int = 6
    behaviour: dict[str, float] = field(default_factory=lambda: {"greedy": 2.0, "random": 1.0})
    epsilon: float = 0.2
    alpha: float = 0.0
    rounds: int = 4
    epochs: int = 30
    features: dict[str, Any] = field(default_factory=lambda: dict(TASK_FEATURES))
    proposals: int = 0
    verify_rows: int = 64


@dataclass(frozen=True)
class LearningCurve:
    """Test accuracy of the query-mode learner against the number of training queries.

    Attributes:
        tasks: Tasks the curve is measured on (their data runs collect up to the largest count).
        queries: Training-query counts (pool queries with dense rows), each fitted from the first that many.
    """

    tasks: tuple[str, ...] = ()
    queries: tuple[int, ...] = (50, 150, 500)


@dataclass(frozen=True)
class StudyConfig:
    """One learned-vs-baselines table: every task, every row, one command, resumable.

    Attributes:
        name: Name of the study (its result directory under ``out``).
        tasks: Tasks of the table.
        out: Result directory (data, policies, evaluations, the table).
        data_dir: Task data directory (``--data-dir`` or ``$RL_SELECT_DATA`` when None).
        model: Scoring LLM (None: the embedded SmolLM2-135M).
        device: Scoring device.
        dtype: Scoring dtype.
        k: Demonstrations per prompt.
        embedder: Embedder of kNN and of the learners' features.
        eval_rows: Test rows per task (all where the split is smaller).
        eval_seeds: Seeds of every row.
        best_of_n_sets: best-of-N's usual N.
        best_of_n_dev_rows: Dev rows best-of-N picks on.
        seed: Seed of the learners and their data.
        query: The query-mode learner.
        task: The task-mode learner.
        transfer: Add the leave-one-task-out row (a query-mode policy fitted on the other tasks' rows).
        baselines: The non-learned rows (selector names), each with the study's settings; best-of-N at the
            task-mode learner's budget is added to them.
        task_transfer_budgets: For each N, a task-mode policy fitted on the other tasks proposing N prompts
            (verified on dev when N > 1), against best-of-N at the same N.
        learning_curve: Accuracy against training queries on a few tasks.
    """

    name: str = "learned_cpu"
    tasks: tuple[str, ...] = ("trec", "sst2", "agnews", "subj")
    out: str = "experiments/results"
    data_dir: str | None = None
    model: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    k: int = 4
    embedder: str = "minilm"
    eval_rows: int = 500
    eval_seeds: int = 3
    best_of_n_sets: int = 20
    best_of_n_dev_rows: int = 64
    seed: int = 0
    query: QueryLearner = field(default_factory=QueryLearner)
    task: TaskLearner = field(default_factory=TaskLearner)
    transfer: bool = True
    baselines: tuple[str, ...] = ("zero-shot", "random", "knn", "best-of-n")
    task_transfer_budgets: tuple[int, ...] = ()
    learning_curve: LearningCurve = field(default_factory=LearningCurve)

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(self.tasks))
        object.__setattr__(self, "baselines", tuple(self.baselines))
        object.__setattr__(self, "task_transfer_budgets", tuple(self.task_transfer_budgets))
        from rl_select.selectors import SELECTORS

        unknown = [b for b in self.baselines if b not in SELECTORS]
        if unknown:
            raise ConfigError(f"unknown baseline(s) {unknown} (choose from: {', '.join(sorted(SELECTORS))})")
        if any(n < 1 for n in self.task_transfer_budgets) or (self.task_transfer_budgets and not self.transfer):
            raise ConfigError("task_transfer_budgets need transfer and positive budgets")
        curve = self.learning_curve
        if any(t not in self.tasks for t in curve.tasks) or any(n < 1 for n in curve.queries):
            raise ConfigError("learning_curve tasks must be the study's, with positive query counts")
        if not self.tasks or len(set(self.tasks)) != len(self.tasks):
            raise ConfigError("a study needs distinct tasks")
        if self.transfer and len(self.tasks) < 2:
            raise ConfigError("the transfer row needs at least two tasks (train on the others)")
        positive = {
            "k": self.k,
            "eval_rows": self.eval_rows,
            "eval_seeds": self.eval_seeds,
            "best_of_n_sets": self.best_of_n_sets,
            "best_of_n_dev_rows": self.best_of_n_dev_rows,
            "query.training_queries": self.query.training_queries,
            "query.dev_rows": self.query.dev_rows,
            "task.episodes": self.task.episodes,
            "task.reward_rows": self.task.reward_rows,
        }
        for name, value in positive.items():
            if value < 1:
                raise ConfigError(f"{name} must be positive, got {value}")
        if not self.query.variants:
            raise ConfigError("query.variants needs at least one fqi setting")

    @property
    def root(self) -> Path:
        """``<out>/<name>``."""
        return Path(self.out) / self.name

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        data = asdict(self)
        data["tasks"] = list(self.tasks)
        data["query"]["variants"] = [dict(v) for v in self.query.variants]
        data["baselines"] = list(self.baselines)
        data["task_transfer_budgets"] = list(self.task_transfer_budgets)
        curve = self.learning_curve
        data["learning_curve"] = {"tasks": list(curve.tasks), "queries": list(curve.queries)}
        return data

    def query_episodes(self, task: str) -> int:
        """Episodes a task's query-mode data run collects: the training queries, or the curve's largest count."""
        curve = self.learning_curve
        return max(self.query.training_queries, *curve.queries) if task in curve.tasks else self.query.training_queries

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudyConfig:
        """From a YAML mapping; unknown keys anywhere are errors."""
        reject_unknown_keys(data, (f.name for f in fields(cls)), "study")
        values = dict(data)
        for key, kind in (("query", QueryLearner), ("task", TaskLearner), ("learning_curve", LearningCurve)):
            if key in values:
                part = values[key] or {}
                if not isinstance(part, dict):
                    raise ConfigError(f"study '{key}' must be a mapping")
                reject_unknown_keys(part, (f.name for f in fields(kind)), f"study {key}")
                part = dict(part)
                if "variants" in part:
                    part["variants"] = tuple(dict(v) for v in part["variants"])
                for name in ("tasks", "queries"):
                    if key == "learning_curve" and name in part:
                        part[name] = tuple(part[name])
                values[key] = kind(**part)
        try:
            return cls(**values)
        except TypeError as exc:
            raise ConfigError(f"bad study settings: {exc}") from None


def read_study(path: str | Path, overrides: dict[str, Any] | None = None) -> StudyConfig:
    """A study from its YAML file, with top-level overrides (``data_dir``, ``out``, ...)."""
    from rl_select.runs.config import read_yaml_mapping

    data = read_yaml_mapping(path, "study settings")
    data.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return StudyConfig.from_dict(data)
