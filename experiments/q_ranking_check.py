"""Does the task-mode Q-function's value rank prompts? A post-hoc check on finished studies.

The Q-ranked task-mode row (``task.ranked_draws``) verifies the greedy prompts of the candidate draws whose first
choice the learner's Q-function values highest, and did worse than verifying draws as they come. This asks why:
for each task, the task-mode learner's greedy prompts of ``--draws`` candidate draws (seed 0, the study's
candidate pool) with their values, each scored on the study's verification dev rows (``task.verify_rows``, the
rows propose-and-verify scores on; the study's model and reward cache), and reports

* the Spearman correlation of value and dev accuracy over the draws, with a bootstrap interval over draws;
* the mean and best dev accuracy of the ``task.proposals`` best-valued draws against the first that many drawn
  (what the two task-mode rows verify) and against all draws;
* how many distinct demonstrations each of those sets of prompts holds.

Post hoc: the Q-ranked row's test accuracy was read before this was written. Dev rows only. Writes ``OUT.json``
and ``OUT.md``::

    python experiments/q_ranking_check.py experiments/results/strongest_cpu --data-dir ../shared/data \\
        --out experiments/results/q_ranking_check
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rl_select.errors import RLSelectError
from rl_select.provenance import Provenance, markdown_table, provenance, provenance_markdown
from rl_select.runs.policy import PolicySelector
from rl_select.scoring.results import LLMCost
from rl_select.study.learned import Study
from rl_select.tasks.task import Example
from rl_select.types import Selection

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gated_verification import check_studies, study_parser, write_outputs


@dataclass
class PromptSet:
    """Dev accuracy (percent) of a set of proposed prompts, and the distinct demonstrations among them."""

    mean: float
    best: float
    distinct_demonstrations: int

    @classmethod
    def of(cls, accuracy: list[float], prompts: list[Selection]) -> PromptSet:
        """Of parallel lists of dev accuracies and prompts."""
        distinct = len({i for prompt in prompts for i in prompt})
        return cls(round(float(np.mean(accuracy)), 2), round(float(np.max(accuracy)), 2), distinct)


@dataclass
class RankingCheck:
    """One task: how the Q-function's values of its draws' greedy prompts relate to their dev accuracy."""

    task: str
    draws: int
    dev_rows: int
    spearman: float
    spearman_ci95: list[float]
    top_valued: PromptSet
    first_drawn: PromptSet
    all_draws: PromptSet


def average_ranks(values: np.ndarray) -> np.ndarray:
    """Ranks (0-based) with ties sharing their mean rank."""
    ranks = np.empty(len(values))
    ranks[values.argsort(kind="stable")] = np.arange(len(values))
    for value in np.unique(values):
        tied = values == value
        ranks[tied] = ranks[tied].mean()
    return ranks


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (0 where either side is constant)."""
    ra, rb = average_ranks(a), average_ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return 0.0
    return float(np.corrcoef(ra, rb)[0, 1])


def spearman_interval(a: np.ndarray, b: np.ndarray, resamples: int = 1000, seed: int = 0) -> list[float]:
    """A 95% bootstrap interval of :func:`spearman`, resampling the pairs."""
    rng = np.random.default_rng(seed)
    draws = [spearman(a[i], b[i]) for i in (rng.integers(0, len(a), len(a)) for _ in range(resamples))]
    return [round(float(q), 3) for q in np.quantile(draws, [0.025, 0.975])]


def check_task(study: Study, task: str, draws: int) -> RankingCheck:
    """Value and dev-score the greedy prompts of ``draws`` candidate draws of the task's own task-mode learner."""
    resources = study.resources(task)
    settings = study.config.task
    policy = PolicySelector.from_run(study.state.task_run(task)).build(resources)
    valued = policy.valued_greedy_prompts(draws, np.random.default_rng(0))
    dev = resources.dev_sample(settings.verify_rows)
    prompts = [prompt for _, prompt in valued]
    accuracy = dev_accuracy(study, task, prompts, dev, "valued draws")
    values = np.array([value for value, _ in valued])
    count = max(settings.proposals, 1)
    top = np.argsort(-values, kind="stable")[:count]
    return RankingCheck(
        task=task,
        draws=draws,
        dev_rows=len(dev),
        spearman=round(spearman(values, np.array(accuracy)), 3),
        spearman_ci95=spearman_interval(values, np.array(accuracy)),
        top_valued=PromptSet.of([accuracy[i] for i in top], [prompts[i] for i in top]),
        first_drawn=PromptSet.of(accuracy[:count], prompts[:count]),
        all_draws=PromptSet.of(accuracy, prompts),
    )


def dev_accuracy(study: Study, task: str, prompts: list[Selection], dev: list[Example], label: str) -> list[float]:
    """Each prompt's calibrated accuracy (percent) on the dev rows, with the study's scorer, under a progress bar."""
    resources = study.resources(task)
    pool = resources.task.train
    print(f"{task}: scoring {len(prompts)} prompts on {len(dev)} dev rows: at most {len(prompts) * len(dev):,} queries")
    advance = study.progress(f"{task} · {label}", len(prompts)) if study.progress else None
    accuracy = []
    for prompt in prompts:
        accuracy.append(100 * resources.scorer.score([pool[i] for i in prompt], dev).accuracy)
        if advance is not None:
            advance(1)
    return accuracy


def markdown(checks: list[RankingCheck], record: Provenance, cost: LLMCost, proposals: int) -> str:
    """The report: one line per task and the mean over tasks."""
    rows = [
        [
            c.task,
            f"{c.spearman:+.2f} [{c.spearman_ci95[0]:+.2f}, {c.spearman_ci95[1]:+.2f}]",
            f"{c.top_valued.mean:.1f} / {c.top_valued.best:.1f}",
            f"{c.first_drawn.mean:.1f} / {c.first_drawn.best:.1f}",
            f"{c.all_draws.mean:.1f} / {c.all_draws.best:.1f}",
            f"{c.top_valued.distinct_demonstrations} / {c.first_drawn.distinct_demonstrations}",
        ]
        for c in checks
    ]
    rows.append(
        [
            "mean",
            f"{np.mean([c.spearman for c in checks]):+.2f}",
            f"{np.mean([c.top_valued.mean for c in checks]):.1f} / {np.mean([c.top_valued.best for c in checks]):.1f}",
            f"{np.mean([c.first_drawn.mean for c in checks]):.1f} / "
            f"{np.mean([c.first_drawn.best for c in checks]):.1f}",
            f"{np.mean([c.all_draws.mean for c in checks]):.1f} / {np.mean([c.all_draws.best for c in checks]):.1f}",
            "",
        ]
    )
    headers = [
        "task",
        "Spearman (value, dev accuracy)",
        f"{proposals} best-valued: mean / best",
        f"first {proposals} drawn: mean / best",
        "all draws: mean / best",
        "distinct demonstrations (best-valued / first drawn)",
    ]
    draws, dev_rows = checks[0].draws, checks[0].dev_rows
    intro = (
        f"Each task's task-mode learner: the greedy prompts of {draws} candidate draws (seed 0), each valued by "
        f"the score of its first choice and scored on the {dev_rows} verification dev rows (calibrated "
        "accuracy, percent). Post hoc, dev rows only."
    )
    return dev_report("Does the task-mode Q-function's value rank prompts?", intro, (headers, rows), record, cost)


def dev_report(
    title: str, intro: str, table: tuple[list[str], list[list[str]]], record: Provenance, cost: LLMCost
) -> str:
    """A dev-only check's markdown: title, what was scored, the table, its LLM cost and provenance."""
    return "\n".join(
        [
            f"# {title}\n",
            f"{intro}\n",
            markdown_table(*table),
            f"\nLLM cost: {cost.queries:,} queries scored ({cost.tokens:,} tokens computed; the reward cache answers "
            "what was scored before). No test row is scored.\n",
            provenance_markdown(record),
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """Check every task of the given studies; write OUT.json and OUT.md."""
    parser = study_parser(__doc__)
    parser.add_argument("--draws", type=int, default=64, help="candidate draws valued and scored per task")
    args = parser.parse_args(argv)
    if args.draws < 2:
        print("error: --draws must be at least 2", file=sys.stderr)
        return 2
    proposals = set()

    def check(study: Study, task: str) -> RankingCheck:
        proposals.add(max(study.config.task.proposals, 1))
        return check_task(study, task, args.draws)

    try:
        checks, tally = check_studies(args, check)
    except (RLSelectError, OSError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    record = provenance(seeds=[0], model=tally.model())
    payload = {"provenance": record, "cost": tally.cost.to_dict(), "tasks": [asdict(c) for c in checks]}
    write_outputs(Path(args.out), payload, markdown(checks, record, tally.cost, min(proposals)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
