"""Does the label check pick what the LLM would? A dev-only test of the gold-label share as a proxy of accuracy.

Every task of a finished study has a query-mode policy verified on dev by the LLM's accuracy (``query.verify_rows``).
This label-checks a copy of each (config and weights only; the study's files are not touched) on the same dev rows
and reports, per task, the rule each measure keeps among the rules both can judge (the policy, kNN's, BM25's and the
balanced set; labels judge neither zero-shot nor the task proposer). No test row is read and no LLM call is made.
Writes ``OUT.json`` and ``OUT.md``::

    python experiments/label_check_agreement.py experiments/results/strongest_cpu --data-dir ../shared/data \
        --out experiments/results/strongest_cpu/label_check_agreement
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from rl_select.errors import RLSelectError
from rl_select.evaluation.verify import plan_verification, verify_run
from rl_select.provenance import markdown_table, provenance, provenance_markdown, write_json
from rl_select.rules import LABELS
from rl_select.runs.dirs import LEGACY_RULE_FILE, read_rule_choice
from rl_select.study.state import StudyState


@dataclass
class Agreement:
    """One task: what each measure kept among the rules both judge, and every score."""

    task: str
    by_accuracy: str
    by_labels: str
    accuracy: dict[str, float]
    gold_label_share: dict[str, float]
    dev_rows: int

    @property
    def agree(self) -> bool:
        """Whether both measures kept the same rule."""
        return self.by_accuracy == self.by_labels


def check_task(root: Path, task: str, data_dir: str | None, scratch: Path) -> Agreement:
    """Label-check a copy of the task's chosen query-mode run; compare with its stored accuracy choice."""
    state = StudyState(root)
    run = state.run(state.choice(task).chosen)
    stored = read_rule_choice(run, task)
    if stored is None:
        raise RLSelectError(f"{run} was not verified by accuracy; run the study with query.verify_rows")
    copy = scratch / run.name
    (copy / "policy").mkdir(parents=True)
    shutil.copy2(run / "config.json", copy / "config.json")
    for file in (run / "policy").iterdir():
        if file.is_file() and file.name != LEGACY_RULE_FILE:  # the copy keeps no rule: it is checked afresh
            shutil.copy2(file, copy / "policy" / file.name)
    labels = verify_run(plan_verification(copy, task, data_dir, LABELS), rows=stored.dev_rows)
    shared = [rule for rule in labels.dev_scores if rule in stored.dev_scores]
    by_accuracy = max(shared, key=lambda rule: stored.dev_scores[rule])  # first best, as verify keeps
    return Agreement(task, by_accuracy, labels.rule, stored.dev_scores, labels.dev_scores, labels.dev_rows)


def markdown(agreements: list[Agreement], record: object) -> str:
    """The comparison as a markdown table with provenance."""
    rows = [
        [
            a.task,
            a.by_accuracy,
            a.by_labels,
            "yes" if a.agree else "no",
            ", ".join(f"{r} {100 * v:.1f}" for r, v in a.accuracy.items()),
            ", ".join(f"{r} {100 * v:.1f}" for r, v in a.gold_label_share.items()),
        ]
        for a in agreements
    ]
    headers = ["task", "kept by accuracy", "kept by labels", "same", "dev accuracy", "gold-label share"]
    agreed = sum(a.agree for a in agreements)
    return "\n".join(
        [
            "# The label check against the LLM's dev accuracy\n",
            "Each task's own query-mode policy, on the same dev rows: the rule the LLM's calibrated accuracy keeps "
            "and the rule the gold-label share of the demonstrations keeps, among the rules both judge (policy, "
            "embedding, bm25, balanced; the label check leaves the task proposer out of the policy's candidates, "
            "so its 'policy' differs a little from the accuracy check's). No test rows, no LLM calls.\n",
            markdown_table(headers, rows),
            f"\nSame rule on {agreed} of {len(agreements)} tasks.\n",
            provenance_markdown(record),  # type: ignore[arg-type]
        ]
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("study", type=Path, help="A finished study's directory (its study.json and runs/).")
    parser.add_argument("--data-dir", default=None, help="Data directory of the tasks (default: the study's).")
    parser.add_argument("--out", type=Path, required=True, help="Output path without suffix (.json and .md).")
    args = parser.parse_args(argv)
    try:
        config = StudyState(args.study).config()
        with tempfile.TemporaryDirectory() as scratch:
            agreements = [check_task(args.study, t, args.data_dir, Path(scratch)) for t in config.tasks]
    except (OSError, json.JSONDecodeError, RLSelectError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    record = provenance(seeds=[config.seed])
    payload = {
        "provenance": record,
        "agree": sum(a.agree for a in agreements),
        "tasks": [{**asdict(a), "agree": a.agree} for a in agreements],
    }
    write_json(args.out.with_suffix(".json"), payload)
    args.out.with_suffix(".md").write_text(markdown(agreements, record) + "\n")
    print(f"same rule on {payload['agree']} of {len(agreements)} tasks: {args.out}.json, {args.out}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
