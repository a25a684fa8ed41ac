"""The study's learning curve: test accuracy of the query-mode learner against its number of training queries.

On each curve task, the query-mode data run collected episodes on as many pool queries as the curve's largest
count (the learner itself uses the first ``training_queries``). For every count n, the dev-chosen variant is fitted
on the first n episodes (no LLM calls) and evaluated on the study's test rows (seed 0: the policy is
deterministic), paired with kNN on the same rows. Each point is written as it finishes (``curve/<task>.json``),
so an interrupted curve continues where it stopped; ``curve.png`` plots every finished task.
"""

from __future__ import annotations

import json
from typing import Any

from rl_select.evaluation import evaluate_selector, stratified_bootstrap
from rl_select.study.view import StudyView as Study


def learning_curve(study: Study, name: str) -> dict[str, Any]:
    """Fit and evaluate every point of ``name``'s curve that is not done yet; return the task's curve."""
    from rl_select.runs.policy import PolicySelector

    config = study.config
    path = study.root / "curve" / f"{name}.json"
    curve = json.loads(path.read_text()) if path.is_file() else {"task": name, "points": {}}
    variant = _chosen_variant(study, name)
    episodes = study.root / "runs" / f"{name}-query-data" / "episodes"
    knn = next(r for r in study.reports(name) if r.name == "knn").correct()[:1]
    for count in sorted(config.learning_curve.queries):
        if str(count) in curve["points"]:
            continue
        train_config = study.train_config([name], "query", **variant, dense_data=[str(episodes)], dense_limit=count)
        run = study.fit(train_config, study.root / "runs" / f"{name}-curve-{count}")
        report = evaluate_selector(
            PolicySelector.from_run(run, name=f"learned query mode, {count} queries"),
            study.resources(name),
            k=config.k,
            seeds=[0],
            n_rows=min(config.eval_rows, len(study.tasks[name].test)),
            progress=study.progress,
        )
        delta = stratified_bootstrap([(report.correct(), knn)]) if report.correct().shape == knn.shape else None
        curve["points"][str(count)] = {
            "training_queries": count,
            "calibrated": round(100 * report.calibrated[0], 2),
            "raw": round(100 * report.raw[0], 2),
            "delta_vs_knn": None if delta is None else delta.to_dict(),
        }
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(curve, indent=2) + "\n")
    plot_curves(study)
    return curve


def _chosen_variant(study: Study, name: str) -> dict[str, Any]:
    """The fitted-Q settings dev chose for the task."""
    choices = json.loads((study.root / "dev" / "choices.json").read_text())[name]
    return dict(study.config.query.variants[choices["variants"].index(choices["chosen"])])


def plot_curves(study: Study) -> None:
    """``curve.png``: calibrated test accuracy against training queries, one line per finished task."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files = sorted((study.root / "curve").glob("*.json"))
    if not files:
        return
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for file in files:
        curve = json.loads(file.read_text())
        points = sorted(curve["points"].values(), key=lambda p: p["training_queries"])
        ax.plot([p["training_queries"] for p in points], [p["calibrated"] for p in points], "o-", label=curve["task"])
    ax.set_xscale("log")
    ax.set_xlabel("training queries (pool queries with dense rows)")
    ax.set_ylabel("test accuracy, calibrated (%)")
    ax.legend(fontsize=7)
    ax.set_title(f"study {study.config.name}: learning curve", fontsize=9)
    fig.tight_layout()
    fig.savefig(study.root / "curve.png", dpi=120)
    plt.close(fig)
