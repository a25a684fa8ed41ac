"""Would verifying on more rows choose better? Dev verification widened with pool queries no learner trained on.

Dev verification keeps the best of a few candidates on 200 dev rows (50 on cb), where one row is 0.5 points and
near-tied candidates switch on noise. The pool holds labelled queries that cost nothing but LLM calls; the learners
trained on a few hundred of them, the rest are unused. Decided before any pool row was scored (this docstring and
docs/results.md committed first):

1. Candidates: what the every-policy row can keep — the task's own policy, each rule its dev verification scored
   (a proposer's top k, zero-shot), the pooled policy, the other tasks' policy — with the study's stored
   calibrated dev accuracy (its dev rows).
2. Contenders: the candidates within ``--margin`` (5) points of the best stored dev accuracy.
3. Extra rows: ``--pool-rows`` (400) pool queries that none of the task's query-mode learner's episodes used
   (seed 0; all that are left where fewer). A pool query is never its own candidate (the proposers exclude it).
4. Kept: the contender with the best calibrated accuracy over the dev and the pool rows together (weighted by
   rows), the earlier in the order above on ties.
5. Test: the kept candidate's calibrated test accuracy, read from the study's evaluation where it is a row there
   (the policies, zero-shot, the task's own dev-verified rule), else scored now on the same test rows and seeds.
   Bar, as the every-policy row's: ≥ the task's best non-learned row − 1.

Post hoc on the seven shared tasks (their test table was read before this was written); the rule and its bar were
fixed before it ran. Resumable: the study's reward cache answers every prompt already scored. Writes ``OUT.json``
and ``OUT.md``::

    python experiments/wide_verification.py experiments/results/strongest_cpu --data-dir ../shared/data \\
        --out experiments/results/wide_verification
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling scripts' helpers
from gated_verification import Tally, accuracy, fmt, study_parser, test_reports, write_outputs

from rl_select.budget import Projection, Step, describe, measure_throughput, profiles_for, query_level
from rl_select.errors import RLSelectError
from rl_select.evaluation.core import evaluate_seed, evaluate_selector
from rl_select.evaluation.stats import paired_bootstrap
from rl_select.provenance import Provenance, markdown_table, provenance, provenance_markdown
from rl_select.rules import POLICY_RULE
from rl_select.runs.dirs import RuleChoice, read_rule_choice
from rl_select.runs.episode_store import EpisodeStore
from rl_select.runs.policy import PolicySelector
from rl_select.scoring.results import LLMCost
from rl_select.study.learned import Study
from rl_select.study.rows import LEARNED_QUERY, POOLED_QUERY, TRANSFER_QUERY, VERIFIED_EVERY, VERIFIED_QUERY
from rl_select.study.state import OTHER_TASKS, OWN, POOLED, PolicyChoice, StudyState
from rl_select.tasks.task import Example

ZERO_SHOT = "zero-shot"


@dataclass
class Candidate:
    """One candidate of a task: its stored dev accuracy (points) and, for contenders, its pool accuracy."""

    name: str
    dev: float
    pool: float | None = None

    def combined(self, dev_rows: int, pool_rows: int) -> float:
        """Accuracy over the dev and the pool rows together (points)."""
        if self.pool is None:
            return self.dev
        return (dev_rows * self.dev + pool_rows * self.pool) / (dev_rows + pool_rows)


@dataclass
class WideCheck:
    """One task: the candidates, the study's every-policy choice and the wide choice, with test accuracy."""

    study: str
    task: str
    dev_rows: int
    pool_rows: int
    candidates: list[Candidate]
    every_argmax: str
    kept: str
    best_baseline: str
    best_baseline_test: float
    every_test: float
    kept_test: float
    every_vs_best_baseline: dict
    kept_vs_best_baseline: dict
    kept_vs_every: dict


@dataclass
class TaskPlan:
    """What a task's check reads from its study and scores: the stored choices, the contenders, the pool rows."""

    own: RuleChoice
    every: PolicyChoice
    contenders: list[str]
    rows: list[Example]

    @property
    def dev(self) -> dict[str, float]:
        """Every candidate's stored calibrated dev accuracy (points), in the order ties are broken by."""
        return candidate_order(self.own, self.every)

    @property
    def scored(self) -> list[str]:
        """The contenders scored on the pool rows: none where there is one, or no pool row."""
        return self.contenders if self.rows and len(self.contenders) > 1 else []


def plan_task(study: Study, task: str, margin: float, pool_rows: int) -> TaskPlan:
    """Read the task's stored choices once and draw its unused pool queries."""
    own = read_rule_choice(study.query_policy(task), task)
    every = study.stored_every_policy_choice(task)
    if own is None or every is None:
        raise RLSelectError(f"{study.root} has no every-policy choice for {task}; run the study with every_policy")
    racing = contenders(candidate_order(own, every[0]), margin)
    return TaskPlan(own, every[0], racing, unused_pool_queries(study, task, pool_rows))


def candidate_order(own: RuleChoice, every: PolicyChoice) -> dict[str, float]:
    """Every candidate's stored calibrated dev accuracy (points), in the order ties are broken by."""
    scores = {POLICY_RULE: own.dev_scores[POLICY_RULE]}
    scores.update({rule: value for rule, value in own.dev_scores.items() if rule != POLICY_RULE})
    scores.update({POOLED: every.scores[POOLED], OTHER_TASKS: every.scores[OTHER_TASKS]})
    return {name: round(100 * value, 2) for name, value in scores.items()}


def contenders(dev: dict[str, float], margin: float) -> list[str]:
    """The candidates within ``margin`` points of the best dev accuracy."""
    best = max(dev.values())
    return [name for name, value in dev.items() if value >= best - margin]


def kept_candidate(candidates: list[Candidate], dev_rows: int, pool_rows: int) -> str:
    """The contender (a candidate with pool rows) with the best combined accuracy, the first on ties."""
    scored = [c for c in candidates if c.pool is not None] or candidates
    return max(scored, key=lambda c: c.combined(dev_rows, pool_rows)).name


def unused_pool_queries(study: Study, task: str, n: int, seed: int = 0) -> list[Example]:
    """Up to ``n`` pool queries none of the task's query-mode learner's episodes used (a seeded sample)."""
    store = EpisodeStore(study.state.data_run(task) / "episodes")
    used = {int(store.read(i)["query_key"][1]) for i in store.ids()}
    pool = study.resources(task).task.train
    unused = [example for example in pool if example.id not in used]
    if len(unused) <= n:
        return unused
    picked = np.random.default_rng(seed).choice(len(unused), size=n, replace=False)
    return [unused[i] for i in sorted(picked.tolist())]


def selector(study: Study, task: str, name: str) -> PolicySelector:
    """The candidate as a selector: a policy (following its Q-function) or the task policy's rule."""
    if name == POOLED:
        return PolicySelector.from_run(study.transfer_run("all"), rule=POLICY_RULE)
    if name == OTHER_TASKS:
        return PolicySelector.from_run(study.transfer_run(task), rule=POLICY_RULE)
    return PolicySelector.from_run(study.query_policy(task), rule=name)


def pool_accuracy(study: Study, task: str, name: str, rows: list[Example]) -> float:
    """Calibrated accuracy (points) of candidate ``name`` on the pool rows."""
    resources = study.resources(task)
    chosen = selector(study, task, name)
    chosen.build(resources)
    result = evaluate_seed(chosen, resources, rows, study.config.k, 0, study.progress)
    return round(100 * result.accuracy_calibrated, 2)


def test_correct(study: Study, task: str, name: str, own_rule: str, reports: dict) -> np.ndarray:
    """``[seeds, rows]`` calibrated test correctness of a candidate: the study's row, or scored now on its rows."""
    rows = {POLICY_RULE: LEARNED_QUERY, ZERO_SHOT: ZERO_SHOT, POOLED: POOLED_QUERY, OTHER_TASKS: TRANSFER_QUERY}
    if own_rule != POLICY_RULE:
        rows[own_rule] = VERIFIED_QUERY
    if rows.get(name) in reports:
        return reports[rows[name]].correct(calibrated=True)
    config = study.config
    report = evaluate_selector(
        selector(study, task, name),
        study.resources(task),
        k=config.k,
        seeds=list(range(config.evaluation.seeds)),
        n_rows=min(config.evaluation.rows, len(study.tasks[task].test)),
        split="test",
        progress=study.progress,
    )
    return report.correct(calibrated=True)


def check_task(study: Study, task: str, plan: TaskPlan) -> WideCheck:
    """The wide choice on one task beside the study's every-policy row."""
    dev_rows, rows = plan.own.dev_rows, plan.rows
    candidates = [
        Candidate(name, value, pool_accuracy(study, task, name, rows) if name in plan.scored else None)
        for name, value in plan.dev.items()
    ]
    kept = kept_candidate(candidates, dev_rows, len(rows))
    reports = test_reports(study.root, task)
    best = json.loads((study.root / "summary.json").read_text())[task]["best_baseline"]
    test = {name: reports[name].correct(calibrated=True) for name in (VERIFIED_EVERY, best)}
    kept_rows = test_correct(study, task, kept, plan.own.rule, reports)
    every_name = plan.every.own_rule if plan.every.kept == OWN else plan.every.kept
    return WideCheck(
        study=study.config.name,
        task=task,
        dev_rows=dev_rows,
        pool_rows=len(rows),
        candidates=candidates,
        every_argmax=every_name,
        kept=kept,
        best_baseline=best,
        best_baseline_test=accuracy(test, best),
        every_test=accuracy(test, VERIFIED_EVERY),
        kept_test=round(100 * float(kept_rows.mean()), 1),
        every_vs_best_baseline=paired_bootstrap(test[VERIFIED_EVERY], test[best]).to_dict(),
        kept_vs_best_baseline=paired_bootstrap(kept_rows, test[best]).to_dict(),
        kept_vs_every=paired_bootstrap(kept_rows, test[VERIFIED_EVERY]).to_dict(),
    )


def projection(study: Study, plans: dict[str, TaskPlan]) -> Projection:
    """The pool rows to score: contenders × unused pool queries per task (what the reward cache holds included)."""
    profiles = profiles_for(list(study.tasks.values()), study.resources(next(iter(study.tasks))).lm.tokenizer)
    steps = []
    for task, plan in plans.items():
        rows = len(plan.rows) if plan.scored else 0
        work = query_level(profiles[task], study.config.k, rows * len(plan.contenders))
        name = f"{task}: {len(plan.contenders)} × {rows} pool rows"
        steps.append(Step(name).add(work.queries, work.tokens, work.forwards))
    return Projection(steps)


def markdown(checks: list[WideCheck], args: argparse.Namespace, cost: LLMCost, record: Provenance) -> str:
    """The report: per task, the contenders' dev and pool accuracy, the choice and its test accuracy."""
    header = ["study", "task", "dev + pool rows", "contenders: dev / pool", "every-policy → test", "wide → test"]
    body = [
        [
            c.study,
            c.task,
            f"{c.dev_rows} + {c.pool_rows}",
            ", ".join(f"{x.name} {x.dev:.1f} / {x.pool:.1f}" for x in c.candidates if x.pool is not None) or "one",
            f"{c.every_argmax} → {c.every_test}",
            f"{c.kept} → {c.kept_test}",
        ]
        for c in checks
    ]
    bars = [
        [c.task, f"{c.best_baseline} {c.best_baseline_test}"]
        + [fmt(d) for d in (c.every_vs_best_baseline, c.kept_vs_best_baseline, c.kept_vs_every)]
        for c in checks
    ]
    met = {
        name: sum(getattr(c, f"{name}_vs_best_baseline")["mean"] >= -1 for c in checks) for name in ("every", "kept")
    }
    changes = [c.kept_vs_every["mean"] for c in checks]
    tally = (
        f"≥ the best non-learned row − 1: the every-policy row on {met['every']} of {len(checks)} tasks, the wide "
        f"choice on {met['kept']}. Wide − every-policy on test: higher on {sum(d > 0 for d in changes)}, lower on "
        f"{sum(d < 0 for d in changes)}, equal on {sum(d == 0 for d in changes)}; mean {np.mean(changes):+.2f} "
        "points (unweighted over tasks)."
    )
    return "\n".join(
        [
            "# Wide verification: dev rows plus unused pool queries",
            "",
            f"Contenders: the every-policy row's candidates within {args.margin} points of the best stored dev "
            f"accuracy, each scored on up to {args.pool_rows} pool queries no learner of the task trained on; kept: "
            "the best over dev and pool rows together. Calibrated accuracy, points; test read from the study's "
            "evaluation or scored on its test rows and seeds. Post hoc on tasks whose test table was read before; "
            "the rule was fixed before any pool row was scored.",
            "",
            markdown_table(header, body),
            "",
            "## − the best non-learned row (paired, test)",
            "",
            markdown_table(["task", "best baseline", "every-policy row", "wide choice", "wide − every-policy"], bars),
            "",
            tally,
            "",
            f"LLM cost: {cost.queries:,} queries scored ({cost.tokens:,} tokens computed; the reward cache answers "
            "what was scored before).",
            "",
            provenance_markdown(record),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Check every task of the given studies; write OUT.json and OUT.md."""
    parser = study_parser(__doc__)
    parser.add_argument("--margin", type=float, default=5.0, help="contenders: within this many dev points")
    parser.add_argument("--pool-rows", type=int, default=400, help="unused pool queries per contender")
    parser.add_argument("--tasks", default="", help="comma-separated tasks of the studies (default: all)")
    args = parser.parse_args(argv)
    if args.pool_rows < 0 or args.margin < 0:
        print("error: --pool-rows and --margin must be non-negative", file=sys.stderr)
        return 2
    from rl_select.cli.common import progress_bars  # deferred: the front end's rich display

    try:
        checks, tally = [], Tally()
        wanted = {name for name in args.tasks.split(",") if name}
        with progress_bars() as progress:
            for root in args.studies:
                names = [name for name in StudyState(Path(root)).config().tasks if not wanted or name in wanted]
                if not names:
                    continue
                study = Study.from_dir(root, args.data_dir, names, progress)
                plans = {task: plan_task(study, task, args.margin, args.pool_rows) for task in names}
                lm = study.resources(names[0]).lm
                work = describe(projection(study, plans), measure_throughput(lm, list(study.tasks.values())))
                print(f"{root}: projected work\n{work}")
                checks += [check_task(study, task, plans[task]) for task in names]
                tally.add(study, names)
        if not checks:
            raise RLSelectError(f"no study has the tasks {args.tasks}")
    except (RLSelectError, OSError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    record = provenance(seeds=[0], model=tally.model())
    payload = {
        "provenance": record,
        "settings": {"margin": args.margin, "pool_rows": args.pool_rows},
        "cost": tally.cost.to_dict(),
        "tasks": [asdict(c) for c in checks],
    }
    write_outputs(Path(args.out), payload, markdown(checks, args, tally.cost, record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
