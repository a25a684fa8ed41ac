"""The settings of the learned-selector study (``rl-select study``), read from one YAML file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rl_select.errors import ConfigError
from rl_select.proposals import ProposerConfig
from rl_select.settings import (
    DataAndModel,
    build,
    check_fields,
    setting,
    to_mapping,
    with_values,
)
from rl_select.types import JsonObject, Overrides

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
    """The learned query-mode selector: dense rows on pool queries, fitted Q, variants picked on dev."""

    num_candidates: int = setting(8, help="Candidates offered per query (M).", minimum=2)
    training_queries: int = setting(
        150, help="Pool queries whose episodes record an action row at every state.", minimum=1
    )
    behaviour: dict[str, float] = setting(
        factory=lambda: {"knn": 1.0, "random": 1.0, "greedy": 1.0},
        help="Behaviour policies of the collection and their shares.",
    )
    epsilon: float = setting(0.1, help="Random-candidate probability of the behaviours.", minimum=0.0, maximum=1.0)
    variants: tuple[Overrides, ...] = setting(
        ({"fqi.alpha": 0.0}, {"fqi.alpha": 0.05}),
        help="fqi settings tried (training settings by path); the best on dev_rows dev queries is kept.",
    )
    dev_rows: int = setting(
        100, help="Dev queries the variants are compared on (their LLM cost is charged to the learner).", minimum=1
    )
    rounds: int = setting(4, help="Fitting rounds (k or more).", minimum=1)
    epochs: int = setting(20, help="Passes per round.", minimum=1)
    features: Overrides = setting(
        factory=lambda: dict(QUERY_FEATURES), help="Observation features (FeatureConfig fields)."
    )
    proposers: dict[str, int] | None = setting(
        None,
        help="Where the M candidates come from (ProposerConfig fields; none: the M nearest neighbours). The "
        "transfer row leaves the task-level proposer out (it costs LLM calls).",
    )
    stop: bool = setting(False, help="The stop action: at most k demonstrations, zero-shot included.")
    verify_rows: int = setting(
        0,
        help="Dev rows on which the chosen policy is compared with every rule it can reproduce (a proposer's own "
        "top k, zero-shot), the best kept: the 'dev-verified' row (learning cost); 0: no such row.",
        minimum=0,
    )

    def __post_init__(self) -> None:
        check_fields(self)
        if not self.variants:
            raise ConfigError("query.variants needs at least one fqi setting")
        _ = self.proposer_config  # a bad proposer setting is refused here, before any LLM work

    @property
    def proposer_config(self) -> ProposerConfig | None:
        """``proposers`` as the env reads them (None: the M nearest neighbours)."""
        return None if self.proposers is None else build(ProposerConfig, self.proposers, "query.proposers.")


@dataclass(frozen=True)
class TaskLearner:
    """The learned task-mode selector: dense rows of task-level prompts on a few dev rows, fitted Q."""

    num_candidates: int = setting(8, help="Candidates per episode (M), from the training half of the pool.", minimum=2)
    reward_rows: int = setting(
        16, help="Dev rows a prompt's value (mean calibrated gold-label probability) is measured on.", minimum=1
    )
    episodes: int = setting(6, help="Episodes with an action row at every state.", minimum=1)
    behaviour: dict[str, float] = setting(
        factory=lambda: {"greedy": 2.0, "random": 1.0}, help="Behaviour policies and their shares."
    )
    epsilon: float = setting(0.2, help="Random-candidate probability of the behaviours.", minimum=0.0, maximum=1.0)
    alpha: float = setting(0.0, help="Conservative weight of fitted Q.", minimum=0.0)
    rounds: int = setting(4, help="Fitting rounds.", minimum=1)
    epochs: int = setting(30, help="Passes per round.", minimum=1)
    features: Overrides = setting(
        factory=lambda: dict(TASK_FEATURES), help="Observation features (FeatureConfig fields)."
    )
    proposals: int = setting(
        0,
        help="Propose and verify: the policy's greedy prompts over this many candidate draws, each scored on "
        "verify_rows dev rows, the best kept (its LLM cost to choose); 0 or 1: its one greedy prompt.",
        minimum=0,
    )
    verify_rows: int = setting(64, help="Dev rows each proposed prompt is scored on.", minimum=1)
    scored_prompts: int = setting(
        0,
        help="With proposals: a second task-mode row whose verified prompts begin with this many of the best the "
        "learner scored while learning (each episode's best, on its reward rows; no new LLM calls), the rest "
        "greedy proposals, so it verifies as many as the first; 0: no such row.",
        minimum=0,
    )
    ranked_draws: int = setting(
        0,
        help="+ a task-mode row whose greedy proposals are those of this many candidate draws that the Q-function "
        "values highest (its predicted return after the first choice; no LLM calls to rank), verifying as many as "
        "the first row; with task_transfer_budgets, the task policy fitted on the other tasks ranked the same way at "
        "each budget too; 0: no such rows.",
        minimum=0,
    )
    pooled: bool = setting(
        False,
        help="+ a task-mode row whose Q-function is fitted on every task's task-mode rows (the study's tasks, the "
        "task's own included, and with pooled_with the other studies'; no new LLM calls to fit), proposing and "
        "verifying as the task's own learner does.",
    )

    def row_settings(self) -> tuple[object, ...]:
        """The settings that shape a task-mode row (candidates, reward rows, features): rows pool only if equal."""
        return (self.num_candidates, self.reward_rows, self.features)

    def __post_init__(self) -> None:
        check_fields(self)
        if self.scored_prompts > max(self.proposals, 1):
            raise ConfigError("task.scored_prompts must be at most task.proposals")
        if self.ranked_draws and self.ranked_draws < max(self.proposals, 1):
            raise ConfigError("task.ranked_draws must be at least task.proposals")


@dataclass(frozen=True)
class LearningCurve:
    """Test accuracy of the query-mode learner against the number of training queries."""

    tasks: tuple[str, ...] = setting((), help="Tasks the curve is measured on (their data runs collect the most).")
    queries: tuple[int, ...] = setting(
        (50, 150, 500), help="Training-query counts, each fitted from the first that many pool queries."
    )


@dataclass(frozen=True)
class StudyEvaluation:
    """The test-split comparison: its rows, seeds and baselines (the names of training's ``evaluation`` group)."""

    rows: int = setting(500, help="Test rows per task (all where the split is smaller).", minimum=1)
    seeds: int = setting(3, help="Seeds of every row.", minimum=1)
    baselines: tuple[str, ...] = setting(
        ("zero-shot", "random", "knn", "best-of-n"),
        help="The non-learned rows (selector names); best-of-N at the task learner's budget is added to them.",
    )
    best_of_n_sets: int = setting(20, help="best-of-N's usual N.", minimum=1)
    best_of_n_dev_rows: int = setting(64, help="Dev rows best-of-N picks on.", minimum=1)

    def __post_init__(self) -> None:
        object.__setattr__(self, "baselines", tuple(self.baselines))
        check_fields(self)


@dataclass(frozen=True)
class StudyConfig(DataAndModel):
    """One learned-vs-baselines table: every task, every row, one command, resumable."""

    name: str = setting("learned_cpu", help="Name of the study (its result directory under out).")
    tasks: tuple[str, ...] = setting(("trec", "sst2", "agnews", "subj"), help="Tasks of the table.")
    out: str = setting("experiments/results", help="Result directory (data, policies, evaluations, the table).")
    k: int = setting(4, help="Demonstrations per prompt (at most k with the stop action).", minimum=1)
    embedder: str = setting("minilm", help="Embedder of kNN and of the learners' features.")
    seed: int = setting(0, help="Seed of the learners and their data.")
    query: QueryLearner = setting(factory=QueryLearner, help="The query-mode learner.")
    task: TaskLearner = setting(factory=TaskLearner, help="The task-mode learner.")
    transfer: bool = setting(
        True, help="The leave-one-task-out row: a query-mode policy fitted on the other tasks' rows."
    )
    transfer_check_rows: int = setting(
        0,
        help="With transfer: + the transfer policy label-checked on this many of the task's dev rows (0: not): it, "
        "or the embedding, BM25 or balanced rule, whichever prompts carry the dev row's gold label most often "
        "(no LLM calls on the task).",
        minimum=0,
    )
    task_transfer_budgets: tuple[int, ...] = setting(
        (),
        help="For each N, a task-mode policy fitted on the other tasks proposing N prompts (verified on dev when "
        "N > 1), against best-of-N at the same N.",
    )
    pooled: bool = setting(
        False,
        help="+ the query-mode policy fitted on every task's rows, the task's own included (no new LLM calls to "
        "fit); with query.verify_rows, + that policy scored on the same dev rows as the task's own dev-verified "
        "choice, the better kept.",
    )
    pooled_with: tuple[str, ...] = setting(
        (),
        help="With pooled: other studies' directories (the same k, embedder and query settings) whose tasks' "
        "query-mode rows join the fits on other tasks' rows (the pooled policy's and, with transfer, each task's "
        "transfer policy's), and with task.pooled their task-mode rows the pooled task-mode fit; their tasks must "
        "be in data_dir too.",
    )
    every_policy: bool = setting(
        False,
        help="With pooled, transfer and query.verify_rows: + a row where dev keeps the best of the task's "
        "query-mode policies, scored on the same dev rows: its own dev-verified choice, the policy fitted on every "
        "task's rows, the policy fitted on the other tasks' rows (the first best kept).",
    )
    evaluation: StudyEvaluation = setting(factory=StudyEvaluation, help="The test-split comparison of every row.")
    learning_curve: LearningCurve = setting(factory=LearningCurve, help="Accuracy against training queries.")

    def __post_init__(self) -> None:
        object.__setattr__(self, "tasks", tuple(self.tasks))
        object.__setattr__(self, "task_transfer_budgets", tuple(self.task_transfer_budgets))
        object.__setattr__(self, "pooled_with", tuple(self.pooled_with))
        check_fields(self)
        from rl_select.selectors import check_baselines  # deferred: the selectors import the scorer (torch)

        check_baselines(self.evaluation.baselines)
        if any(n < 1 for n in self.task_transfer_budgets) or (self.task_transfer_budgets and not self.transfer):
            raise ConfigError("task_transfer_budgets need transfer and positive budgets")
        if self.transfer_check_rows and not self.transfer:
            raise ConfigError("transfer_check_rows needs transfer (it checks the transfer policy)")
        curve = self.learning_curve
        if any(t not in self.tasks for t in curve.tasks) or any(n < 1 for n in curve.queries):
            raise ConfigError("learning_curve tasks must be the study's, with positive query counts")
        if not self.tasks or len(set(self.tasks)) != len(self.tasks):
            raise ConfigError("a study needs distinct tasks")
        if self.transfer and len(self.tasks) < 2 and not (self.pooled and self.pooled_with):
            raise ConfigError("the transfer row needs at least two tasks (train on the others) or pooled_with")
        if self.task_transfer_budgets and len(self.tasks) < 2:
            raise ConfigError("task_transfer_budgets need at least two tasks (task-mode rows of the others)")
        if self.task.ranked_draws and any(n > self.task.ranked_draws for n in self.task_transfer_budgets):
            raise ConfigError("task.ranked_draws must be at least each of task_transfer_budgets (it ranks them too)")
        if self.every_policy and not (self.pooled and self.transfer and self.query.verify_rows):
            raise ConfigError("every_policy needs pooled, transfer and query.verify_rows (the policies it compares)")
        if self.task.pooled and len(self.tasks) < 2 and not (self.pooled and self.pooled_with):
            raise ConfigError("task.pooled needs at least two tasks or pooled_with (it is fitted on every task's rows)")
        if self.pooled and len(self.tasks) < 2 and not self.pooled_with:
            raise ConfigError("the pooled rows need at least two tasks (train on every task's rows) or pooled_with")

    @property
    def root(self) -> Path:
        """``<out>/<name>``."""
        return Path(self.out) / self.name

    def to_dict(self) -> JsonObject:
        """The mapping form (JSON, YAML)."""
        return to_mapping(self)

    def query_episodes(self, task: str) -> int:
        """Episodes a task's query-mode data run collects: the training queries, or the curve's largest count."""
        curve = self.learning_curve
        return max(self.query.training_queries, *curve.queries) if task in curve.tasks else self.query.training_queries

    @classmethod
    def from_dict(cls, data: JsonObject) -> StudyConfig:
        """From a YAML mapping (or a ``study.json``); unknown keys and bad values anywhere are errors.

        The flat names of format 1 (``eval_rows``, ``baselines``, …) read as their paths (``evaluation.rows``).
        """
        return build(cls, migrate_study(data))


STUDY_FORMAT_1_KEYS = ("eval_rows", "eval_seeds", "baselines", "best_of_n_sets", "best_of_n_dev_rows")
"""The study's settings that format 1 spelled flat; each reads as training's path of the same key."""


def migrate_study(data: JsonObject) -> JsonObject:
    """A study mapping with format 1's flat keys moved to their paths (``eval_rows`` → ``evaluation.rows``)."""
    from rl_select.runs.migrate import migrate_keys  # deferred: keeps this module light

    old = {key: data[key] for key in STUDY_FORMAT_1_KEYS if key in data}
    if not old:
        return data
    return {**{key: value for key, value in data.items() if key not in old}, **migrate_keys(old)}


def read_study(path: str | Path, overrides: Overrides | None = None) -> StudyConfig:
    """A study from its YAML file, then overrides by dotted path (``data_dir``, ``query.rounds``; None: not given)."""
    from rl_select.runs.config import read_yaml_mapping  # deferred: loads gymnasium and numpy

    config = StudyConfig.from_dict(read_yaml_mapping(path, "study settings"))
    return with_values(config, {k: v for k, v in (overrides or {}).items() if v is not None})
