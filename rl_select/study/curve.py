"""The study's learning curve: test accuracy of the query-mode learner against its number of training queries.

On each curve task, the query-mode data run collected episodes on as many pool queries as the curve's largest
count (the learner itself uses the first ``training_queries``). For every count n, the dev-chosen variant is fitted
on the first n episodes (no LLM calls) and evaluated on the study's test rows (seed 0: the policy is
deterministic), paired with kNN on the same rows. Each point is written as it finishes (``curve/<task>.json``),
so an interrupted curve continues where it stopped; ``curve.png`` plots every finished task.
"""

from __future__ import annotations

from rl_select.evaluation import evaluate_selector, stratified_bootstrap
from rl_select.runs.policy import PolicySelector
from rl_select.study.state import CurvePoint, LearningCurve, StudyState
from rl_select.study.view import StudyView as Study


def learning_curve(study: Study, name: str) -> LearningCurve:
    """Fit and evaluate every point of ``name``'s curve that is not done yet; return the task's curve."""
    config = study.config
    state = StudyState(study.root)
    curve = state.curve(name)
    variant = dict(config.query.variants[state.choice(name).index])  # the fitted-Q settings dev chose
    episodes = state.data_run(name) / "episodes"
    knn = next(r for r in study.reports(name) if r.name == "knn").correct()[:1]
    for count in sorted(config.learning_curve.queries):
        if count in curve.points:
            continue
        train_config = study.train_config([name], "query", **variant, dense_data=[str(episodes)], dense_limit=count)
        run = study.fit(train_config, state.run(f"{name}-curve-{count}"))
        report = evaluate_selector(
            PolicySelector.from_run(run, name=f"learned query mode, {count} queries"),
            study.resources(name),
            k=config.k,
            seeds=[0],
            n_rows=min(config.evaluation.rows, len(study.tasks[name].test)),
            progress=study.progress,
        )
        delta = stratified_bootstrap([(report.correct(), knn)]) if report.correct().shape == knn.shape else None
        curve.points[count] = CurvePoint(
            training_queries=count,
            calibrated=round(100 * report.calibrated[0], 2),
            raw=round(100 * report.raw[0], 2),
            delta_vs_knn=delta,
        )
        state.write_curve(curve)
    plot_curves(study)
    return curve


def plot_curves(study: Study) -> None:
    """``curve.png``: calibrated test accuracy against training queries, one line per finished task."""
    import matplotlib  # deferred: loads matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred: loads matplotlib

    curves = StudyState(study.root).curves()
    if not curves:
        return
    fig, ax = plt.subplots(figsize=(5, 3.4))
    for curve in curves:
        points = [curve.points[n] for n in sorted(curve.points)]
        ax.plot([p.training_queries for p in points], [p.calibrated for p in points], "o-", label=curve.task)
    ax.set_xscale("log")
    ax.set_xlabel("training queries (pool queries with dense rows)")
    ax.set_ylabel("test accuracy, calibrated (%)")
    ax.legend(fontsize=7)
    ax.set_title(f"study {study.config.name}: learning curve", fontsize=9)
    fig.tight_layout()
    fig.savefig(study.root / "curve.png", dpi=120)
    plt.close(fig)
