"""The learned-selector study: learned selectors against the cheap baselines, at a counted LLM budget.

One command (``rl-select study experiments/configs/learned-cpu.yaml``) builds the whole table, every step
resumable (run it again after an interruption and finished work is kept). Tasks go one after another in the
config's order (steps 1, 2 and 4 for one task, then the next), so a task's cells are finished before the next task
begins; the transfer and pooled rows come last:

1. **query-mode learner**, per task: episodes on pool queries (never dev or test), each recording an action row
   at every state it visits; fitted Q-iteration variants fitted on those rows; the variant with the best
   calibrated accuracy on ``dev_rows`` dev queries is kept. The rows and the dev comparison are its LLM cost.
2. **task-mode learner**, per task: dense-row episodes of task-level prompts valued on a few dev rows; fitted Q;
   its prompt is the greedy episode over candidates from the half of the pool it never trained on.
3. **transfer**, per task: the query-mode learner fitted on the *other* tasks' rows (no new LLM calls), with
   ``transfer_check_rows`` also label-checked on the task's dev rows (no LLM calls), and once on every task's
   rows: the committed multi-task policy. With ``pooled``, that policy is also a row of every task (the task's own
   rows are among its rows), and, dev-verified, it is scored on the dev rows the task's own policy was verified on
   and kept only where better than the task's own dev choice.
4. **evaluation**, per task, on the same test rows and seeds for every row: zero-shot, random, kNN, best-of-N at
   its usual N and at the task-mode learner's budget, and the three learned selectors.
5. **the table**: ``results.md``, ``summary.json`` (per task and averaged: calibrated and raw accuracy, LLM cost,
   and paired bootstrap intervals of learned query mode − kNN and learned task mode − best-of-N at equal
   budget) and ``accuracy.png``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from rl_select.budget import equal_budget_sets, task_mode_choosing
from rl_select.errors import ArtifactError, ConfigError, Interrupted
from rl_select.evaluation import EvaluationLog, SelectorReport, evaluate_selector, evaluation_key, run_evaluation
from rl_select.evaluation.verify import verify_rules
from rl_select.provenance import provenance
from rl_select.resources import Resources
from rl_select.rollouts.episodes import EpisodeStore
from rl_select.rules import LABELS, POLICY_RULE
from rl_select.runs.config import TrainConfig
from rl_select.runs.dirs import RuleChoice, read_rule_choice
from rl_select.runs.policy import PolicySelector
from rl_select.scoring import LLMCost, RewardCache, ScoringConfig
from rl_select.scoring.model import shared_language_model
from rl_select.settings import with_values
from rl_select.study.config import StudyConfig
from rl_select.study.curve import learning_curve
from rl_select.study.rows import (
    CHECKED_TRANSFER,
    LEARNED_QUERY,
    LEARNED_TASK,
    POOLED_QUERY,
    POOLED_TASK,
    RANKED_TASK,
    RANKED_TRANSFER_TASK,
    SCORED_TASK,
    TRANSFER_QUERY,
    TRANSFER_TASK,
    VERIFIED_EVERY,
    VERIFIED_POOLED,
    VERIFIED_QUERY,
    Row,
    row_selectors,
    study_rows,
)
from rl_select.study.state import (
    OTHER_TASKS,
    OWN,
    POOLED,
    DevChoice,
    DevScore,
    LearnerCost,
    PolicyChoice,
    PooledChoice,
    StudyState,
    other_tasks_key,
    pooled_key,
)
from rl_select.study.table import StudyTable, write_table
from rl_select.tasks import Task, load_task
from rl_select.types import JsonObject, JsonValue

ProgressFactory = Callable[[str, int], Callable[[int], None]]


def compare_pooled(own: RuleChoice, pooled: DevScore) -> PooledChoice:
    """The task's own dev-verified choice beside the pooled policy's score on the same dev rows."""
    return PooledChoice(own.rule, own.dev_scores[own.rule], round(pooled.accuracy_calibrated, 6))


def compare_every(own: RuleChoice, pooled: DevScore, other_tasks: DevScore) -> PolicyChoice:
    """The task's own dev-verified choice, the pooled policy and the other tasks' policy on the same dev rows."""
    scores = {
        OWN: own.dev_scores[own.rule],
        POOLED: pooled.accuracy_calibrated,
        OTHER_TASKS: other_tasks.accuracy_calibrated,
    }
    return PolicyChoice(own.rule, {name: round(score, 6) for name, score in scores.items()})


def data_cost(run_dir: Path, limit: int | None = None) -> LLMCost:
    """What collecting a run's dense rows cost: the sum of the cost stored with each (of the first ``limit``)."""
    return EpisodeStore(run_dir / "episodes").cost(limit)


class Study:
    """Runs one :class:`StudyConfig` (see the module docstring); every step writes its results as it goes.

    Args:
        config: The study.
        progress: Progress factory of the front end.
    """

    def __init__(self, config: StudyConfig, progress: ProgressFactory | None = None) -> None:
        self.config = config
        self.progress = progress
        self.root = config.root
        self.state = StudyState(config.root)
        self.tasks: dict[str, Task] = {}
        self._resources: dict[str, Resources] = {}

    @classmethod
    def from_dir(
        cls,
        root: str | Path,
        data_dir: str | Path,
        tasks: Sequence[str] | None = None,
        progress: ProgressFactory | None = None,
    ) -> Study:
        """A study read back from its directory (``study.json``), ``tasks`` (default all) loaded from ``data_dir``."""
        root = Path(root)
        config = with_values(StudyState(root).config(), {"data_dir": str(data_dir), "out": str(root.parent)})
        study = cls(config, progress=progress)
        study.tasks = {name: load_task(name, config.data_dir) for name in tasks or config.tasks}
        return study

    # ------------------------------------------------------------------ the whole study

    def run(self) -> StudyTable:
        """Every step, in order; returns the summary. Ctrl-C keeps what is done (rerun to continue)."""
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "study.json").write_text(json.dumps(self.config.to_dict(), indent=2) + "\n")

        try:
            self.tasks = {name: load_task(name, self.config.data_dir) for name in self.config.tasks}
            self.pooled_sources()  # a pooled_with study that cannot join fails before any work
            for i, name in enumerate(self.config.tasks):  # one task's cells complete before the next task begins
                self.query_learner(name)
                if self.config.query.verify_rows:
                    self.verified_rule(name)
                self.task_learner(name)
                self.evaluate(name, transfer=False)
                if i + 1 < len(self.config.tasks):  # the table so far, marked partial
                    write_table(self, list(self.config.tasks[: i + 1]))
            if self.config.transfer or self.config.pooled:  # last: these rows need every task's rows
                self.fit_on_other_tasks()
                for name in self.config.tasks:
                    self.evaluate(name)

            for name in self.config.learning_curve.tasks:
                learning_curve(self, name)
        except (KeyboardInterrupt, Interrupted):  # a step's own message would name its command, not the study's
            raise Interrupted(f"finished steps are kept in {self.root}; rerun the same command to continue") from None
        return write_table(self)

    def fit_on_other_tasks(self) -> None:
        """The transfer policies (each task's, fitted on the others') and the policy fitted on every task's rows."""
        for name in self.config.tasks if self.config.transfer else []:
            others = [other for other in self.config.tasks if other != name]
            self.transfer_policy(name, others)
            if self.config.transfer_check_rows:
                self.transfer_rule(name)
            if self.config.task_transfer_budgets:
                self.transfer_task_policy(name, others)
        self.transfer_policy("all", list(self.config.tasks))
        if self.config.task.pooled:
            self.transfer_task_policy("all", [*self.config.tasks, *self.pooled_sources()])
        if self.config.pooled and self.config.query.verify_rows:
            for name in self.config.tasks:
                self.pooled_choice(name)
        for name in self.config.tasks if self.config.every_policy else []:
            self.every_policy_choice(name)

    def table_so_far(self) -> StudyTable:
        """Write the table of the tasks whose evaluation is finished (partial unless all are), without new work."""
        done = []
        for name in self.config.tasks:
            path = self.root / "evaluation" / f"{name}.json"
            if not path.is_file() or json.loads(path.read_text()).get("partial", True):
                break  # tasks finish in the config's order
            done.append(name)
        if not done:
            raise ConfigError(f"no task of the study has a finished evaluation in {self.root / 'evaluation'} yet")
        self.tasks = {name: load_task(name, self.config.data_dir) for name in done}
        return write_table(self, done)

    # ------------------------------------------------------------------ shared pieces

    def resources(self, name: str) -> Resources:
        """The evaluation resources of a task: one LLM for all, the study's embedder, a shared reward cache."""
        if name not in self._resources:
            config = self.config
            if not hasattr(self, "_reward_cache"):
                self._reward_cache = RewardCache(path=self.root / "cache" / "rewards.sqlite")
            self._resources[name] = Resources(
                self.tasks[name],
                lm=lambda: shared_language_model(config.model, config.device, config.dtype),
                scoring=ScoringConfig(),
                embedder=config.embedder,
                reward_cache=self._reward_cache,
                data_seed=0,
            )
            self._resources[name].progress = self.progress
        return self._resources[name]

    def train_config(self, tasks: list[str], mode: str, **overrides: JsonValue) -> TrainConfig:
        """The TrainConfig of a learner (fqi on dense rows) for ``tasks`` in ``mode``."""
        config = self.config
        learner = config.query if mode == "query" else config.task
        env: JsonObject = {
            "mode": mode,
            "k": config.k,
            "num_candidates": learner.num_candidates,
            "order": "append",
            "value": "probability",
            "features": dict(learner.features),
        }
        if mode == "query":
            env["query_source"] = "pool"
            env["stop"] = config.query.stop
            if config.query.proposers is not None:
                env["proposers"] = dict(config.query.proposers)
        else:
            env["reward_rows"] = config.task.reward_rows
        values = {
            "tasks": tasks,
            "algo": "fqi",
            "env": env,
            "steps": learner.rounds,
            "seed": config.seed,
            "data_dir": config.data_dir,
            "model": config.model,
            "device": config.device,
            "dtype": config.dtype,
            "data": {
                "dense_episodes": config.query_episodes(tasks[0]) if mode == "query" else config.task.episodes,
                "dense_limit": config.query.training_queries if mode == "query" else None,
                "behaviour": dict(learner.behaviour),
                "behaviour_epsilon": learner.epsilon,
            },
            "fqi": {"epochs": learner.epochs, "alpha": 0.0 if mode == "query" else config.task.alpha},
            "evaluation": {"baselines": []},
        }
        return TrainConfig.from_dict(values).with_overrides(overrides)

    def fit(self, train_config: TrainConfig, run_dir: Path) -> Path:
        """Train (or finish training) a learner without touching the test split."""
        from rl_select.train import train  # deferred: it loads stable-baselines3, which --table-only never needs

        resume = (run_dir / "config.json").is_file()
        train(train_config, run_dir, resume=resume, progress=self.progress, evaluate=False)
        return run_dir

    # ------------------------------------------------------------------ steps

    def query_learner(self, name: str) -> Path:
        """Rows on pool queries, every variant fitted, the best on dev kept; returns its run directory."""
        data_run, *others = self.state.query_runs(name, len(self.config.query.variants))
        first = self.config.query.variants[0]
        self.fit(self.train_config([name], "query", **first), data_run)
        variants = [data_run]
        for run, variant in zip(others, self.config.query.variants[1:], strict=True):
            overrides = {**variant, "data.dense_data": [str(data_run / "episodes")]}
            variants.append(self.fit(self.train_config([name], "query", **overrides), run))
        chosen = max(variants, key=lambda run: self.dev_score(name, run))
        self.state.write_choice(name, DevChoice(chosen.name, [v.name for v in variants]))
        return chosen

    def dev_score(self, name: str, run_dir: Path) -> float:
        """Calibrated dev accuracy of a query-mode policy (cached in ``dev/``; its LLM cost is recorded)."""
        selector = PolicySelector.from_run(run_dir)
        return self.scored_on_dev(name, run_dir.name, selector, self.config.query.dev_rows).accuracy_calibrated

    def scored_on_dev(self, name: str, key: str, selector: PolicySelector, rows: int) -> DevScore:
        """``selector``'s calibrated accuracy on ``rows`` dev rows of the task, stored as ``dev/<key>.json``."""
        stored = self.state.dev_score(key)
        if stored is not None:
            return stored
        resources = self.resources(name)
        before = resources.scorer.cost()
        report = evaluate_selector(
            selector, resources, k=self.config.k, seeds=[0], n_rows=rows, split="dev", progress=self.progress
        )
        score = DevScore(key, report.calibrated[0], resources.scorer.cost() - before)
        self.state.write_dev_score(score)
        return score

    def query_policy(self, name: str) -> Path:
        """The chosen query-mode run of a task."""
        return self.state.run(self.state.choice(name).chosen)

    def query_cost(self, name: str) -> LearnerCost:
        """The query-mode learner's LLM cost: its rows and the dev comparison of its variants."""
        selection = LLMCost()
        for variant in self.state.choice(name).variants:
            score = self.state.dev_score(variant)
            if score is None:
                raise ArtifactError(f"{self.root / 'dev'} lacks the dev score of {variant}; rerun the study")
            selection += score.cost
        data = data_cost(self.state.data_run(name), self.config.query.training_queries)
        return LearnerCost(data=data, selection=selection)

    def verified_rule(self, name: str) -> RuleChoice:
        """What dev chose for the task's query-mode policy: its Q-function or a rule (stored in its run)."""
        run = self.query_policy(name)
        return verify_rules(run, self.resources(name), rows=self.config.query.verify_rows, progress=self.progress)

    def stored_rule(self, name: str) -> RuleChoice | None:
        """The rule dev chose for the task's query-mode policy, if it was verified (no LLM calls)."""
        return read_rule_choice(self.query_policy(name), name)

    def task_learner(self, name: str) -> Path:
        """Task-mode rows and fitted Q; returns the run directory."""
        return self.fit(self.train_config([name], "task"), self.state.task_run(name))

    def task_cost(self, name: str) -> LearnerCost:
        """The task-mode learner's LLM cost (its rows, including its candidates' zero-shot features)."""
        return LearnerCost(data=data_cost(self.state.task_run(name)), selection=LLMCost())

    def transfer_policy(self, name: str, sources: list[str]) -> Path:
        """The query-mode learner fitted on ``sources``' rows (no new LLM calls).

        Its variant is the one dev chose most often on the source tasks (never the target task's dev).
        """
        roots = {source: self.root for source in sources}
        roots.update(self.pooled_sources())  # with pooled_with, other studies' tasks join every fit on other tasks
        data = [str(StudyState(root).data_run(source) / "episodes") for source, root in roots.items()]
        picked = [StudyState(root).choice(source).index for source, root in roots.items()]
        variant = max(range(len(self.config.query.variants)), key=lambda v: (picked.count(v), -v))
        overrides = {**self.config.query.variants[variant], "data.dense_data": data}
        return self.fit(self.train_config(list(roots), "query", **overrides), self.transfer_run(name))

    def pooled_sources(self) -> dict[str, Path]:
        """The tasks of the ``pooled_with`` studies → their study's directory (a one-line error if one cannot join)."""
        found: dict[str, Path] = {}
        for folder in map(Path, self.config.pooled_with if self.config.pooled else ()):
            other = StudyState(folder).config()
            mine = self.config
            if (other.k, other.embedder, other.query) != (mine.k, mine.embedder, mine.query):
                raise ConfigError(f"pooled_with study {folder} has other k, embedder or query settings than this one")
            if mine.task.pooled and other.task.row_settings() != mine.task.row_settings():
                raise ConfigError(f"pooled_with study {folder} has other task-mode row settings than this one")
            for task in other.tasks:
                if task not in self.config.tasks and task not in found:
                    found[task] = folder
        return found

    def transfer_rule(self, name: str) -> RuleChoice:
        """The transfer policy label-checked on the task's dev rows: it or a rule, by gold-label share (no LLM)."""
        run = self.transfer_run(name)
        return verify_rules(run, self.resources(name), rows=self.config.transfer_check_rows, by=LABELS)

    def stored_transfer_rule(self, name: str) -> RuleChoice | None:
        """The rule the label check chose for the task's transfer policy, if it was checked."""
        return read_rule_choice(self.transfer_run(name), name)

    def transfer_run(self, name: str) -> Path:
        """The run directory of the query-mode policy fitted on every task but ``name``.

        ``all``: on every task, with ``pooled`` also the ``pooled_with`` studies' tasks.
        """
        return self.state.run(f"transfer-{name}")

    def pooled_choice(self, name: str) -> PooledChoice:
        """The pooled policy on the dev rows the task's own policy was verified on, beside what dev chose for it."""
        own = self.verified_rule(name)
        return compare_pooled(own, self.policy_on_dev(name, "all", own.dev_rows))

    def stored_pooled_choice(self, name: str) -> tuple[PooledChoice, LLMCost] | None:
        """The task's pooled choice and its LLM cost, if the pooled policy was scored on dev (no LLM calls)."""
        own, score = self.stored_rule(name), self.state.dev_score(pooled_key(name))
        return None if own is None or score is None else (compare_pooled(own, score), score.cost)

    def every_policy_choice(self, name: str) -> PolicyChoice:
        """The task's own dev choice, the pooled policy and the other tasks' policy on the same dev rows."""
        own = self.verified_rule(name)
        pooled, other_tasks = (self.policy_on_dev(name, fitted, own.dev_rows) for fitted in ("all", name))
        return compare_every(own, pooled, other_tasks)

    def stored_every_policy_choice(self, name: str) -> tuple[PolicyChoice, LLMCost] | None:
        """The task's every-policy choice and the LLM cost of the scores it adds to the own choice's (no LLM calls)."""
        own = self.stored_rule(name)
        pooled, other_tasks = self.state.dev_score(pooled_key(name)), self.state.dev_score(other_tasks_key(name))
        if own is None or pooled is None or other_tasks is None:
            return None
        return compare_every(own, pooled, other_tasks), pooled.cost + other_tasks.cost

    def policy_on_dev(self, name: str, fitted: str, rows: int) -> DevScore:
        """The policy of ``transfer_run(fitted)`` on ``rows`` dev rows of the task, following its Q-function."""
        key = pooled_key(name) if fitted == "all" else other_tasks_key(name)
        policy = PolicySelector.from_run(self.transfer_run(fitted), rule=POLICY_RULE)
        return self.scored_on_dev(name, key, policy, rows)

    def transfer_task_policy(self, name: str, sources: list[str]) -> Path:
        """The task-mode learner fitted on ``sources``' task-mode rows (no new LLM calls).

        ``name``: the task it is for (its rows not among ``sources``), or ``all`` (every task's rows, with
        ``pooled_with`` the other studies' tasks' too).
        """
        roots = {**{task: self.root for task in self.config.tasks}, **self.pooled_sources()}
        data = [str(StudyState(roots[source]).task_run(source) / "episodes") for source in sources]
        config = self.train_config(sources, "task", dense_data=data)
        return self.fit(config, self.transfer_task_run(name))

    def transfer_task_run(self, name: str) -> Path:
        """The run directory of :meth:`transfer_task_policy` for ``name``."""
        return self.state.run(f"transfer-task-{name}")

    def equal_budget_sets(self, name: str) -> int:
        """best-of-N's N at the task-mode learner's budget, over best-of-N's dev rows.

        The budget is what the learner spent learning plus the most it can spend choosing one prompt (the
        zero-shot features of its M held-out candidates, computed in blocks), so best-of-N is never short-changed.
        """
        choosing = task_mode_choosing(self.config.task, len(self.tasks[name].dev))
        return equal_budget_sets(
            self.task_cost(name).total.queries + choosing, self.config.evaluation.best_of_n_dev_rows
        )

    def selectors(self, name: str, transfer: bool = True) -> list[Any]:
        """The table's rows for one task (:func:`~rl_select.study.rows.study_rows`), as selectors.

        ``transfer``: with the rows that need every task's rows (transfer and pooled).
        """
        rows = [row for row in study_rows(self.config) if transfer or not row.all_tasks]
        device_type = self.resources(name).lm.device.type
        policy = partial(self._policy_row, name)
        return row_selectors(self.config, rows, device_type, self.equal_budget_sets(name), policy)

    def _policy_row(self, name: str, row: Row) -> PolicySelector:
        """A learned row on task ``name``: its learner's run, the rule it follows and how it proposes."""
        verify = {"proposals": row.proposals, "verify_rows": row.verify_rows}
        ranked = {"ranked_draws": self.config.task.ranked_draws, **verify}
        choices: dict[str, Callable[[], tuple[Path, dict[str, Any]]]] = {
            LEARNED_QUERY: lambda: (self.query_policy(name), {"rule": POLICY_RULE}),
            VERIFIED_QUERY: lambda: (self.query_policy(name), {"rule": self.verified_rule(name).rule}),
            LEARNED_TASK: lambda: (self.state.task_run(name), verify),
            SCORED_TASK: lambda: (
                self.state.task_run(name),
                {"scored_prompts": self.config.task.scored_prompts, **verify},
            ),
            RANKED_TASK: lambda: (self.state.task_run(name), ranked),
            TRANSFER_QUERY: lambda: (self.transfer_run(name), {"zero_cost": True, "rule": POLICY_RULE}),
            CHECKED_TRANSFER: lambda: (
                self.transfer_run(name),
                {"zero_cost": True, "rule": self.transfer_rule(name).rule},
            ),
            TRANSFER_TASK: lambda: (self.transfer_task_run(name), verify),
            RANKED_TRANSFER_TASK: lambda: (self.transfer_task_run(name), ranked),
            POOLED_QUERY: lambda: (self.transfer_run("all"), {"rule": POLICY_RULE}),
            VERIFIED_POOLED: lambda: self._verified_pooled(name),
            VERIFIED_EVERY: lambda: self._every_policy_kept(name),
            POOLED_TASK: lambda: (self.transfer_task_run("all"), verify),
        }
        run, options = choices[row.key]()
        return PolicySelector.from_run(run, name=row.name, **options)

    def _verified_pooled(self, name: str) -> tuple[Path, dict[str, Any]]:
        """The pooled policy or the task's own dev-verified choice, whichever dev kept."""
        choice = self.pooled_choice(name)
        if choice.pooled:
            return self.transfer_run("all"), {"rule": POLICY_RULE}
        return self.query_policy(name), {"rule": choice.own_rule}

    def _every_policy_kept(self, name: str) -> tuple[Path, dict[str, Any]]:
        """The policy dev kept among the task's own choice, the pooled policy and the other tasks' policy."""
        choice = self.every_policy_choice(name)
        run, rule = {
            OWN: (self.query_policy(name), choice.own_rule),
            POOLED: (self.transfer_run("all"), POLICY_RULE),
            OTHER_TASKS: (self.transfer_run(name), POLICY_RULE),
        }[choice.kept]
        return run, {"rule": rule}

    def evaluate(self, name: str, transfer: bool = True) -> list[SelectorReport]:
        """Every row on the same test rows and seeds (resumable: ``evaluation/<task>.json``).

        ``transfer=False`` leaves the transfer and pooled rows out (they need every task's rows); a later call with
        it adds those rows and keeps the others.
        """
        resources = self.resources(name)
        config = self.config
        seeds = list(range(config.evaluation.seeds))
        n_rows = min(config.evaluation.rows, len(self.tasks[name].test))
        key = evaluation_key(resources, k=config.k, split="test", n_rows=n_rows, seeds=seeds)

        path = self.root / "evaluation" / f"{name}.json"
        log = EvaluationLog(path, key, {"provenance": provenance(seeds=seeds, model=resources.lm.info())})
        return run_evaluation(
            self.selectors(name, transfer),
            resources,
            log,
            k=config.k,
            seeds=seeds,
            n_rows=n_rows,
            progress=self.progress,
        )

    def reports(self, name: str) -> list[SelectorReport]:
        """The finished evaluation of a task."""
        payload = json.loads((self.root / "evaluation" / f"{name}.json").read_text())
        return [SelectorReport.from_dict(r) for r in payload["reports"]]

    def export_transfer_policy(self, out: Path) -> Path:
        """Copy the all-task transfer policy (config and weights, no pool or data) to ``out``."""
        source = self.transfer_run("all")
        if out.exists():
            shutil.rmtree(out)
        (out / "policy").mkdir(parents=True)
        shutil.copy2(source / "config.json", out / "config.json")
        for file in (source / "policy").iterdir():
            if file.is_file():  # rules verified on the source's tasks (policy/rules/) stay behind
                shutil.copy2(file, out / "policy" / file.name)
        return out


__all__ = ["LearnerCost", "Study", "data_cost"]
