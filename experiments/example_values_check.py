"""Do the task-mode learner's rows value single demonstrations? A post-hoc check on finished studies.

The task-mode Q-function (a function of candidate features) does not rank prompts (``q_ranking_check.py``). Its
rows hold more than it uses: every dense action row values each candidate added to a state, on the same reward
rows in every episode, so a candidate's marginal gains over the states it was offered at are comparable across
episodes. This values each demonstration the learner ever saw by its mean marginal gain (an additive, "CondAcc"-
style value model) and proposes ``task.proposals`` prompts: the k best-valued demonstrations, then the k best of
values perturbed by their standard errors (seeded), duplicates redrawn. Finding them costs no LLM calls.

Each proposal, and the greedy prompts of ``--draws`` candidate draws of the task's learner (what learned task mode
verifies, as they come), is scored on the verification dev rows the learner never scored on (``task.verify_rows``
less the reward rows; the study's model and reward cache). Reported per task: mean and best of the proposals, of
the first ``task.proposals`` draws and of all draws. Post hoc and dev only: no test row is scored. Writes
``OUT.json`` and ``OUT.md``::

    python experiments/example_values_check.py experiments/results/strongest_cpu --data-dir ../shared/data \\
        --out experiments/results/example_values_check
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rl_select.errors import RLSelectError
from rl_select.provenance import Provenance, provenance
from rl_select.runs.episode_store import EpisodeStore
from rl_select.runs.policy import PolicySelector
from rl_select.scoring.results import LLMCost
from rl_select.study.learned import Study
from rl_select.types import Selection

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gated_verification import check_studies, study_parser, write_outputs
from q_ranking_check import PromptSet, dev_accuracy, dev_report


@dataclass
class ExampleValues:
    """Each demonstration's mean marginal gain over the states it was offered at, with its standard error."""

    ids: np.ndarray
    mean: np.ndarray
    stderr: np.ndarray

    @classmethod
    def from_episodes(cls, records: list[dict[str, np.ndarray]]) -> ExampleValues:
        """From dense task-mode episodes (``action_values`` against each state's ``values``)."""
        gains: dict[int, list[float]] = {}
        for record in records:
            candidates = record["candidate_ids"]
            for row, value in zip(record["action_values"], record["values"], strict=False):
                for slot, pool_id in enumerate(candidates):
                    if np.isfinite(row[slot]):
                        gains.setdefault(int(pool_id), []).append(float(row[slot] - value))
        if not gains:
            raise RLSelectError("no dense action rows to value demonstrations by")
        ids = np.array(sorted(gains))
        mean = np.array([np.mean(gains[i]) for i in ids])
        spread = float(np.std(np.concatenate([np.asarray(gains[i]) - np.mean(gains[i]) for i in ids])))
        stderr = np.array([spread / np.sqrt(len(gains[i])) for i in ids])
        return cls(ids, mean, stderr)

    def proposals(self, k: int, count: int, rng: np.random.Generator, tries: int = 100) -> list[Selection]:
        """The k best-valued demonstrations, then ``count - 1`` more from values perturbed by their errors."""
        prompts = [self._top(self.mean, k)]
        for _ in range(tries * count):
            if len(prompts) >= count:
                break
            prompt = self._top(self.mean + self.stderr * rng.standard_normal(len(self.mean)), k)
            if prompt not in prompts:
                prompts.append(prompt)
        return prompts

    def _top(self, values: np.ndarray, k: int) -> Selection:
        """The pool ids of the k highest values, highest first (a greedy learner's append order)."""
        return [int(self.ids[i]) for i in np.argsort(-values, kind="stable")[:k]]


@dataclass
class ValuesCheck:
    """One task: the value model's proposals against the learner's greedy draws, on unseen dev rows."""

    task: str
    valued_demonstrations: int
    dev_rows: int
    proposals: PromptSet
    first_drawn: PromptSet
    all_draws: PromptSet


def check_task(study: Study, task: str, draws: int) -> ValuesCheck:
    """Propose from the task's own task-mode rows; score proposals and greedy draws on unseen dev rows."""
    resources = study.resources(task)
    settings = study.config.task
    count = max(settings.proposals, 1)
    values = ExampleValues.from_episodes(EpisodeStore(study.state.task_run(task) / "episodes").load())
    proposals = values.proposals(study.config.k, count, np.random.default_rng(0))
    policy = PolicySelector.from_run(study.state.task_run(task)).build(resources)
    drawn = [prompt for _, prompt in policy.valued_greedy_prompts(draws, np.random.default_rng(0))]
    reward_ids = {row.id for row in resources.task.sample("dev", settings.reward_rows, seed=resources.data_seed)}
    dev = [row for row in resources.dev_sample(settings.verify_rows) if row.id not in reward_ids]
    accuracy = dev_accuracy(study, task, proposals + drawn, dev, "prompts")
    proposed, rest = accuracy[: len(proposals)], accuracy[len(proposals) :]
    return ValuesCheck(
        task=task,
        valued_demonstrations=len(values.ids),
        dev_rows=len(dev),
        proposals=PromptSet.of(proposed, proposals),
        first_drawn=PromptSet.of(rest[:count], drawn[:count]),
        all_draws=PromptSet.of(rest, drawn),
    )


def markdown(checks: list[ValuesCheck], record: Provenance, cost: LLMCost, draws: int) -> str:
    """The report: one line per task and the mean over tasks."""

    def cell(sets: list[PromptSet]) -> str:
        return f"{np.mean([s.mean for s in sets]):.1f} / {np.mean([s.best for s in sets]):.1f}"

    rows = [
        [
            c.task,
            str(c.valued_demonstrations),
            str(c.dev_rows),
            *(cell([s]) for s in (c.proposals, c.first_drawn, c.all_draws)),
        ]
        for c in checks
    ]
    rows.append(
        [
            "mean",
            "",
            "",
            *(cell([getattr(c, name) for c in checks]) for name in ("proposals", "first_drawn", "all_draws")),
        ]
    )
    headers = [
        "task",
        "demonstrations valued",
        "dev rows",
        "value-model proposals: mean / best",
        "first drawn greedy prompts: mean / best",
        f"all {draws} draws: mean / best",
    ]
    intro = (
        "Each task's task-mode rows: every demonstration valued by its mean marginal gain over the states it was "
        "offered at; proposals are the k best-valued, then the k best of values perturbed by their standard "
        "errors. Scored with the learner's greedy draws on the verification dev rows it never scored on "
        "(calibrated accuracy, percent). Post hoc, dev rows only."
    )
    title = "Do the task-mode learner's rows value single demonstrations?"
    return dev_report(title, intro, (headers, rows), record, cost)


def main(argv: list[str] | None = None) -> int:
    """Check every task of the given studies; write OUT.json and OUT.md."""
    parser = study_parser(__doc__)
    parser.add_argument("--draws", type=int, default=64, help="candidate draws of the learner scored per task")
    args = parser.parse_args(argv)
    if args.draws < 1:
        print("error: --draws must be at least 1", file=sys.stderr)
        return 2
    try:
        checks, tally = check_studies(args, lambda study, task: check_task(study, task, args.draws))
    except (RLSelectError, OSError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    record = provenance(seeds=[0], model=tally.model())
    payload = {"provenance": record, "cost": tally.cost.to_dict(), "tasks": [asdict(c) for c in checks]}
    write_outputs(Path(args.out), payload, markdown(checks, record, tally.cost, args.draws))
    return 0


if __name__ == "__main__":
    sys.exit(main())
