"""Would a gated dev verification have chosen better? A post-hoc check on finished studies.

Dev verification (``query.verify_rows``) keeps the rule with the best dev accuracy among the policy and the rules it
can reproduce; the every-policy row then keeps the best of the task's own choice, the pooled policy and the other
tasks' policy. On a few hundred dev rows the argmax can switch on noise. The gate (:func:`significant_switch`)
keeps the incumbent — the learned policy, then the task's own (gated) choice — unless an alternative beats it on the
same dev rows with its paired 95% interval above 0.

This re-scores, per dev row, every alternative whose stored dev accuracy is at least the incumbent's (the others
cannot pass the gate), with the study's own model and reward cache (what it already scored costs nothing), reports
how far the re-scored accuracies are from the stored ones (another CPU's bf16 rounds differently), and reads the
test accuracy of each choice from the study's evaluation files (a choice that is no row there is reported
unevaluated). Post hoc: the studies' test rows were read before this gate was written. Writes ``OUT.json`` and
``OUT.md``::

    python experiments/gated_verification.py experiments/results/strongest_cpu --data-dir ../shared/data \\
        --out experiments/results/gated_verification
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

import numpy as np

from rl_select.errors import RLSelectError
from rl_select.evaluation.core import SelectorReport, evaluate_selector
from rl_select.evaluation.stats import paired_bootstrap
from rl_select.provenance import Provenance, markdown_table, provenance, provenance_markdown, write_json
from rl_select.rules import POLICY_RULE
from rl_select.runs.dirs import read_rule_choice
from rl_select.runs.policy import PolicySelector
from rl_select.scoring.results import LLMCost
from rl_select.study.learned import Study
from rl_select.study.rows import LEARNED_QUERY, POOLED_QUERY, TRANSFER_QUERY, VERIFIED_EVERY, VERIFIED_QUERY
from rl_select.study.state import OTHER_TASKS, OWN, POOLED

Check = TypeVar("Check")
"""What a post-hoc check reports on one task."""

POLICY_ROWS = {POOLED: POOLED_QUERY, OTHER_TASKS: TRANSFER_QUERY}
"""The test rows of the pooled and the other tasks' policy, each following its Q-function."""


@dataclass
class Level:
    """One choice (the own rule, or the policy across sources): the argmax's and the gate's, dev and test."""

    incumbent: str
    argmax: str
    gated: str
    dev: dict[str, float]
    dev_stored: dict[str, float]
    gate_intervals: dict[str, list[float]] = field(default_factory=dict)
    test_argmax: float | None = None
    test_gated: float | None = None

    @property
    def rescored_shift(self) -> float:
        """The largest |re-scored − stored| dev accuracy (points) of a rule scored again; 0 where none was."""
        return max(
            (abs(self.dev[name] - self.dev_stored[name]) for name in self.dev if name in self.dev_stored), default=0.0
        )


@dataclass
class TaskCheck:
    """One task of one study."""

    study: str
    task: str
    dev_rows: int
    best_baseline: str
    best_baseline_test: float
    own: Level
    every: Level
    gated_vs_best_baseline: dict | None = None
    argmax_vs_best_baseline: dict | None = None
    gated_vs_argmax: dict | None = None


def test_reports(root: Path, task: str) -> dict[str, SelectorReport]:
    """The study's test reports of ``task`` by row name."""
    data = json.loads((root / "evaluation" / f"{task}.json").read_text())
    reports = [SelectorReport.from_dict(report) for report in data["reports"]]
    return {report.selector["name"]: report for report in reports}


def dev_correct(study: Study, task: str, selector: PolicySelector, rows: int) -> np.ndarray:
    """``[1, rows]`` calibrated correctness of ``selector`` on the task's first ``rows`` dev rows."""
    report = evaluate_selector(
        selector, study.resources(task), k=study.config.k, seeds=[0], n_rows=rows, split="dev", progress=study.progress
    )
    return report.correct(calibrated=True)


def significant_switch(incumbent: str, correct: dict[str, np.ndarray]) -> str:
    """``incumbent`` unless another beats it on the same dev rows with its paired 95% interval above 0.

    Of several that do, the one with the best dev accuracy (the first such on ties). ``correct``: every
    candidate's ``[seeds, rows]`` correctness, the incumbent's among them.
    """
    better = [
        name
        for name in correct
        if name != incumbent and paired_bootstrap(correct[name], correct[incumbent]).ci95[0] > 0
    ]
    return max(better, key=lambda name: float(correct[name].mean())) if better else incumbent


def gate(incumbent: str, stored: dict[str, float], score: Callable[[str], np.ndarray], argmax: str) -> Level:
    """The gated choice among ``stored`` scores beside the study's ``argmax``, re-scoring only what can pass."""
    contenders = [name for name, value in stored.items() if name == incumbent or value >= stored[incumbent]]
    correct = {name: score(name) for name in contenders} if len(contenders) > 1 else {}
    intervals = {
        name: list(paired_bootstrap(correct[name], correct[incumbent]).ci95) for name in correct if name != incumbent
    }
    return Level(
        incumbent=incumbent,
        argmax=argmax,
        gated=significant_switch(incumbent, correct) if correct else incumbent,
        dev={name: round(100 * float(c.mean()), 1) for name, c in correct.items()},
        dev_stored={name: round(100 * value, 1) for name, value in stored.items()},
        gate_intervals=intervals,
    )


def check_task(study: Study, task: str) -> TaskCheck:
    """The gate's choices on one task beside the argmax's, with test accuracy from the study's evaluation."""
    if not study.config.every_policy or not study.config.query.verify_rows:
        raise RLSelectError(f"{study.root} has no every-policy row (every_policy, query.verify_rows) to check")
    run = study.query_policy(task)
    own_choice = read_rule_choice(run, task)
    if own_choice is None:
        raise RLSelectError(f"{run} was not verified on dev; run the study with query.verify_rows")
    rows = own_choice.dev_rows

    def own_rule(rule: str) -> np.ndarray:
        return dev_correct(study, task, PolicySelector.from_run(run, rule=rule), rows)

    own = gate(POLICY_RULE, own_choice.dev_scores, own_rule, own_choice.rule)
    reports = test_reports(study.root, task)
    test = {name: report.correct(calibrated=True) for name, report in reports.items()}
    own_rows = {POLICY_RULE: LEARNED_QUERY, own_choice.rule: VERIFIED_QUERY}
    own.test_argmax = accuracy(test, own_rows.get(own.argmax))
    own.test_gated = accuracy(test, own_rows.get(own.gated))

    stored_choice = study.stored_every_policy_choice(task)  # read only: nothing is scored or written for it
    if stored_choice is None:
        raise RLSelectError(f"{study.root} has no every-policy choice for {task}; run the study with every_policy")
    fitted = {POOLED: "all", OTHER_TASKS: task}
    stored_every = {**stored_choice[0].scores, OWN: own.dev.get(own.gated, own.dev_stored[own.gated]) / 100}

    def every_source(source: str) -> np.ndarray:
        if source == OWN:
            return own_rule(own.gated)
        policy = PolicySelector.from_run(study.transfer_run(fitted[source]), rule=POLICY_RULE)
        return dev_correct(study, task, policy, rows)

    every = gate(OWN, stored_every, every_source, stored_choice[0].kept)
    every_rows = {OWN: own_rows.get(own.gated), **POLICY_ROWS}
    every.test_argmax = accuracy(test, VERIFIED_EVERY)
    every.test_gated = accuracy(test, every_rows.get(every.gated))

    best = json.loads((study.root / "summary.json").read_text())[task]["best_baseline"]
    check = TaskCheck(study.config.name, task, rows, best, accuracy(test, best), own, every)
    check.argmax_vs_best_baseline = paired_bootstrap(test[VERIFIED_EVERY], test[best]).to_dict()
    gated_row = every_rows.get(every.gated)
    if gated_row in test:
        check.gated_vs_best_baseline = paired_bootstrap(test[gated_row], test[best]).to_dict()
        check.gated_vs_argmax = paired_bootstrap(test[gated_row], test[VERIFIED_EVERY]).to_dict()
    return check


def accuracy(test: dict[str, np.ndarray], row: str | None) -> float | None:
    """Calibrated test accuracy (points) of a row, None where the study has no such row."""
    return None if row not in test else round(100 * float(test[row].mean()), 1)


def markdown(checks: list[TaskCheck], record: Provenance, cost: LLMCost) -> str:
    """The report: per task, each level's argmax and gated choice with test accuracy."""
    header = ["study", "task", "own: argmax → test", "own: gated → test", "every: argmax → test", "every: gated → test"]
    header += ["dev re-scored − stored (max)"]
    body = [
        [
            c.study,
            c.task,
            f"{c.own.argmax} → {c.own.test_argmax}",
            f"{c.own.gated} → {c.own.test_gated}",
            f"{c.every.argmax} → {c.every.test_argmax}",
            f"{c.every.gated} → {c.every.test_gated}",
            f"{max(c.own.rescored_shift, c.every.rescored_shift):.1f}",
        ]
        for c in checks
    ]
    bars = [
        [
            c.study,
            c.task,
            f"{c.best_baseline} {c.best_baseline_test}",
            fmt(c.argmax_vs_best_baseline),
            fmt(c.gated_vs_best_baseline),
            fmt(c.gated_vs_argmax),
        ]
        for c in checks
    ]
    met = {
        name: sum(d is not None and d["mean"] >= -1 for d in (getattr(c, f"{name}_vs_best_baseline") for c in checks))
        for name in ("argmax", "gated")
    }
    changes = [c.gated_vs_argmax["mean"] for c in checks if c.gated_vs_argmax is not None]
    tally = (
        f"Every-policy row ≥ the best non-learned row − 1: argmax on {met['argmax']} of {len(checks)} tasks, gated on "
        f"{met['gated']}. Gated − argmax on test: higher on {sum(d > 0 for d in changes)}, lower on "
        f"{sum(d < 0 for d in changes)}, equal on {sum(d == 0 for d in changes)}; mean {np.mean(changes):+.2f} points "
        "(unweighted over tasks)."
    )
    return "\n".join(
        [
            "# Gated dev verification, post hoc",
            "",
            "The argmax keeps the best dev score; the gate keeps the incumbent (the policy; then the task's own "
            "gated choice) unless an alternative beats it on the same dev rows with a paired 95% interval above 0. "
            "Test accuracy is calibrated, points, read from each study's evaluation (mean over seeds). Post hoc: "
            "these studies' test rows were read before the gate was written. Dev rows are re-scored on this machine "
            "(the gate needs each row); where its bf16 rounds differently from the study's machine, re-scored dev "
            "accuracy differs from the stored (last column) and the gate decides on the re-scored rows.",
            "",
            markdown_table(header, body),
            "",
            "## Every-policy row − the best non-learned row (paired, test)",
            "",
            markdown_table(["study", "task", "best baseline", "argmax", "gated", "gated − argmax"], bars),
            "",
            tally,
            "",
            f"LLM cost of this check: {cost.queries:,} dev queries scored ({cost.tokens:,} tokens computed; the "
            "studies' reward caches answer what they already scored). No test row is scored: test accuracy is read "
            "from the studies' evaluation files.",
            "",
            provenance_markdown(record),
        ]
    )


def fmt(delta: dict | None) -> str:
    """``+1.2 [-0.3, +2.7]`` or ``not evaluated``."""
    if delta is None:
        return "not evaluated"
    lo, hi = delta["ci95"]
    return f"{delta['mean']:+.1f} [{lo:+.1f}, {hi:+.1f}]"


def main(argv: list[str] | None = None) -> int:
    """Check every task of the given studies; write OUT.json and OUT.md."""
    args = study_parser(__doc__).parse_args(argv)
    try:
        checks, tally = check_studies(args, check_task)
    except (RLSelectError, OSError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    record = provenance(seeds=[0], model=tally.model())
    payload = {"provenance": record, "dev_cost": tally.cost.to_dict(), "tasks": [asdict(c) for c in checks]}
    write_outputs(Path(args.out), payload, markdown(checks, record, tally.cost))
    return 0


def study_parser(doc: str | None) -> argparse.ArgumentParser:
    """The arguments of a post-hoc check on finished studies (its first ``doc`` line the description)."""
    parser = argparse.ArgumentParser(description=(doc or "").split("\n")[0])
    parser.add_argument("studies", nargs="+", help="finished study directories (each with study.json)")
    parser.add_argument("--data-dir", required=True, help="the folder holding every study's task folders")
    parser.add_argument("--out", required=True, help="output path without extension")
    return parser


def check_studies(args: argparse.Namespace, check: Callable[[Study, str], Check]) -> tuple[list[Check], Tally]:
    """``check`` run on every task of the studies :func:`study_parser` read, with what their scorers spent."""
    from rl_select.cli.common import progress_bars  # deferred: the front end's rich display

    checks, tally = [], Tally()
    with progress_bars() as progress:
        for root in args.studies:
            study = Study.from_dir(root, args.data_dir, progress=progress)
            checks += [check(study, task) for task in study.config.tasks]
            tally.add(study, study.config.tasks)
    return checks, tally


@dataclass
class Tally:
    """What a check over several studies spent, and the models it scored with."""

    cost: LLMCost = field(default_factory=LLMCost)
    models: set[str] = field(default_factory=set)

    def add(self, study: Study, tasks: Sequence[str]) -> None:
        """Count the LLM work of the study's scorers on ``tasks`` and the study's model."""
        self.cost += sum((study.resources(task).scorer.cost() for task in tasks), LLMCost())
        self.models.add(json.dumps(study.resources(tasks[0]).lm.info(), sort_keys=True))

    def model(self) -> dict | None:
        """The model record (``lm.info()``) the studies share; None where they used several."""
        return json.loads(next(iter(self.models))) if len(self.models) == 1 else None


def write_outputs(out: Path, payload: dict, text: str) -> None:
    """``OUT.json`` (``payload``) and ``OUT.md`` (``text``, also printed)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out.with_suffix(".json"), payload)
    out.with_suffix(".md").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    sys.exit(main())
