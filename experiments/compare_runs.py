"""How far apart are two runs of the same command? Row by row, query by query.

Reads the ``results.json`` of two or more runs of one ``rl-select train`` or ``evaluate`` command (e.g. on two
CPUs, with and without ``--deterministic``, or two configs of one job) and writes, per selector and relative to
the first run: accuracy (calibrated and raw), its paired difference with a 95% bootstrap interval (over test
rows × seeds, where both runs scored the same rows), the test queries whose prompt differs, and those whose
prediction differs. Writes ``OUT.json`` and ``OUT.md``::

    python experiments/compare_runs.py experiments/results/quickstart_cpu/results.json /tmp/qs-det/results.json \
        --out experiments/results/reproducibility/quickstart
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rl_select.evaluation import stratified_bootstrap


@dataclass
class RowComparison:
    """One selector of one run against the same selector of the reference run."""

    selector: str
    run: str
    reference_calibrated: float
    accuracy_calibrated: float
    accuracy_raw: float
    prompts_differing: int
    predictions_differing_calibrated: int
    predictions_differing_raw: int
    queries: int
    delta_calibrated: float | None = None
    delta_ci95: list[float] | None = None


def load(path: Path) -> dict[str, Any]:
    """A run's results file, or a one-line exit."""
    try:
        payload = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as error:
        sys.exit(f"error: cannot read {path}: {error}")
    if not isinstance(payload, dict) or not isinstance(payload.get("reports"), list):
        sys.exit(f"error: {path} is not an rl-select results file (no 'reports')")
    return payload


def prompts(seed: dict[str, Any], queries: int) -> list[Any]:
    """Per query, the prompt's demonstration ids (one prompt for all queries where the selector is per task)."""
    if seed.get("selections") is not None:
        return [tuple(s) for s in seed["selections"]]
    return [tuple(seed.get("selection") or ())] * queries


def correct(report: dict[str, Any]) -> np.ndarray:
    """``[seeds, rows]``: whether each test row was predicted right (calibrated) under each seed."""
    gold = np.asarray(report["gold"])
    return np.array([np.asarray(seed["predictions_calibrated"]) == gold for seed in report["seeds"]])


def paired_delta(reference: dict[str, Any], other: dict[str, Any]) -> tuple[float | None, list[float] | None]:
    """Calibrated accuracy of ``other`` − ``reference`` in points with its 95% interval (None unless same rows).

    Rows are paired; where both runs used the same seeds (one command run twice), so are the seeds: each row's
    accuracy is averaged over its seeds before the rows are resampled, so identical runs differ by exactly 0.
    """
    if "gold" not in reference or reference.get("gold") != other.get("gold"):
        return None, None
    a, b = correct(other), correct(reference)
    if [s.get("seed") for s in other["seeds"]] == [s.get("seed") for s in reference["seeds"]]:
        a, b = a.mean(axis=0, keepdims=True), b.mean(axis=0, keepdims=True)
    delta = stratified_bootstrap([(a, b)])
    return round(delta.mean, 2), [round(bound, 2) for bound in delta.ci95]


def differing(a: list[Any], b: list[Any]) -> int:
    """How many positions of two equally long lists differ."""
    if len(a) != len(b):
        sys.exit("error: the runs scored different numbers of test queries; compare runs of the same command")
    return sum(x != y for x, y in zip(a, b, strict=True))


def compare(reference: dict[str, Any], other: dict[str, Any], run: str) -> list[RowComparison]:
    """Every selector both runs have, summed over their common seeds."""
    others = {r["selector"]["name"]: r for r in other["reports"]}
    rows = []
    for ref in reference["reports"]:
        name = ref["selector"]["name"]
        if name not in others:
            continue
        seeds = list(zip(ref["seeds"], others[name]["seeds"], strict=False))
        counts = {"prompts": 0, "calibrated": 0, "raw": 0, "queries": 0}
        for a, b in seeds:
            n = a["queries"]
            counts["prompts"] += differing(prompts(a, n), prompts(b, n))
            counts["calibrated"] += differing(a["predictions_calibrated"], b["predictions_calibrated"])
            counts["raw"] += differing(a["predictions_raw"], b["predictions_raw"])
            counts["queries"] += n
        delta, ci95 = paired_delta(ref, others[name])
        rows.append(
            RowComparison(
                selector=name,
                run=run,
                reference_calibrated=100 * ref["accuracy_calibrated_mean"],
                accuracy_calibrated=100 * others[name]["accuracy_calibrated_mean"],
                accuracy_raw=100 * others[name]["accuracy_raw_mean"],
                prompts_differing=counts["prompts"],
                predictions_differing_calibrated=counts["calibrated"],
                predictions_differing_raw=counts["raw"],
                queries=counts["queries"],
                delta_calibrated=delta,
                delta_ci95=ci95,
            )
        )
    return rows


def describe(payload: dict[str, Any]) -> str:
    """Commit, CPU, threads and whether the run was --deterministic."""
    record = payload["provenance"]
    hardware = record.get("hardware", {})
    pinned = payload.get("config", {}).get("deterministic", False)
    return (
        f"{hardware.get('cpu', '?')}, {hardware.get('threads', '?')} torch thread(s)"
        f"{', --deterministic' if pinned else ''}, commit {str(record.get('commit', '?'))[:7]}"
    )


def markdown(runs: list[tuple[str, dict[str, Any]]], rows: list[RowComparison]) -> str:
    """The comparison as a table, each run described by its provenance."""
    lines = ["# The same command, run apart", ""]
    for i, (path, payload) in enumerate(runs):
        lines.append(f"- run {i}: `{path}` — {describe(payload)}; `{payload['provenance'].get('command', '?')}`")
    lines += ["", "Counts are over test queries × seeds, against run 0.", ""]
    lines.append(
        "| selector | run | calibrated (run 0) | calibrated | raw | − run 0 (paired, 95%) | prompts differing | "
        "predictions differing (calibrated / raw) |"
    )
    lines.append("|---|---|---|---|---|---|---|---|")
    for row in rows:
        lines.append(
            f"| {row.selector} | {row.run} | {row.reference_calibrated:.1f} | {row.accuracy_calibrated:.1f} | "
            f"{row.accuracy_raw:.1f} | {_delta(row)} | "
            f"{row.prompts_differing} of {row.queries} | {row.predictions_differing_calibrated} / "
            f"{row.predictions_differing_raw} |"
        )
    return "\n".join(lines) + "\n"


def _delta(row: RowComparison) -> str:
    if row.delta_calibrated is None or row.delta_ci95 is None:
        return "–"
    return f"{row.delta_calibrated:+.1f} [{row.delta_ci95[0]:+.1f}, {row.delta_ci95[1]:+.1f}]"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results", nargs="+", type=Path, help="results.json of each run; the first is the reference")
    parser.add_argument("--out", type=Path, required=True, help="writes OUT.json and OUT.md")
    args = parser.parse_args()
    if len(args.results) < 2:
        sys.exit("error: give at least two results files")
    runs = [(str(path), load(path)) for path in args.results]
    try:
        rows = [row for i, (_, payload) in enumerate(runs[1:], 1) for row in compare(runs[0][1], payload, str(i))]
        table = markdown(runs, rows)
    except (KeyError, TypeError) as error:
        sys.exit(f"error: a results file lacks what rl-select writes ({error}); compare results.json files")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "runs": [{"path": path, "provenance": p.get("provenance"), "config": p.get("config")} for path, p in runs],
        "rows": [asdict(row) for row in rows],
    }
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
