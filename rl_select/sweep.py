"""Research sweeps with Ray Tune: a grid of training runs, summarised into tables and plots.

A sweep file (YAML)::

    name: ppo-grid                      # directory under storage
    storage: runs/sweeps                # resolved to an absolute path
    description: free text
    metric: accuracy_calibrated         # accuracy | accuracy_raw | accuracy_calibrated (learned policy, test)
    resources_per_trial: {cpu: 1, gpu: 0}
    max_concurrent: 2
    base: {algo: ppo, steps: 20000, env: {k: 4}}   # TrainConfig fields shared by every trial
    grid:                               # every combination is one trial; dotted keys reach env.* fields
      tasks: [[sst2], [agnews]]
      learning_rate: [1.0e-4, 3.0e-4]
      env.mode: [task, query]
      seed: [0, 1, 2]

Everything is validated before Ray starts: unknown keys, empty or non-list grids, and every grid point as a
full TrainConfig (so a bad range fails at once, naming the point). Each trial trains in
``<storage>/<name>/runs/<trial key>``; running the same sweep again resumes it (finished trials are kept,
interrupted ones continue from their checkpoints). Results: ``trials.csv``, ``summary.md`` (mean ± sd over seeds
per configuration, best configuration per task), ``accuracy.png`` and ``learning_curves.png``.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rl_select.errors import ConfigError, RLSelectError, reject_unknown_keys
from rl_select.logs import setup_logging
from rl_select.provenance import markdown_table, provenance, provenance_markdown, write_json
from rl_select.types import JsonObject, JsonValue, Overrides

if TYPE_CHECKING:
    from rl_select.runs.config import TrainConfig
    from rl_select.train import TrainResult

SWEEP_KEYS = {"name", "storage", "description", "metric", "resources_per_trial", "max_concurrent", "base", "grid"}
METRICS = ("accuracy", "accuracy_raw", "accuracy_calibrated")
RESOURCE_KEYS = {"cpu", "gpu"}


@dataclass(frozen=True)
class SweepSpec:
    """A validated sweep file."""

    name: str
    storage: Path
    description: str
    metric: str
    resources: dict[str, float]
    max_concurrent: int
    base: Overrides
    grid: dict[str, list[JsonValue]]
    source: str

    @property
    def root(self) -> Path:
        """``<storage>/<name>``."""
        return self.storage / self.name

    @property
    def runs(self) -> Path:
        """``<root>/runs``: one training run directory per trial, named by :func:`trial_key`."""
        return self.root / "runs"

    def points(self) -> list[Overrides]:
        """Every grid combination, in a stable order."""
        return _points(self.grid)


@dataclass
class TrialRow:
    """One trial of a sweep: its grid point, whether it finished, and its test metrics (see :func:`trial_metrics`)."""

    trial: str
    status: str  # "ok" or "error"
    point: Overrides
    metrics: dict[str, float] = field(default_factory=dict)
    run_dir: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """Whether the trial finished."""
        return self.status == "ok"

    def to_dict(self) -> JsonObject:
        """One flat row (``trials.csv``, ``summary.json``): trial, status, the point's settings, the metrics."""
        extra = {key: value for key, value in (("run_dir", self.run_dir), ("error", self.error)) if value is not None}
        return {"trial": self.trial, "status": self.status, **self.point, **self.metrics, **extra}


@dataclass
class SweepOutcome:
    """A finished (or resumed) sweep: every trial, the best grid point per task, and how many trials failed."""

    rows: list[TrialRow]
    best: dict[str, tuple[Overrides, list[float]]]
    failed: int


def trial_key(point: Overrides) -> str:
    """A readable, unique, file-name-safe name for a grid point."""
    parts = []
    for key, value in point.items():
        text = "+".join(map(str, value)) if isinstance(value, list) else str(value)
        parts.append(f"{key.split('.')[-1]}={text}")
    slug = "_".join(parts).replace("/", "-").replace(" ", "")[:80]
    digest = hashlib.sha1(json.dumps(point, sort_keys=True).encode()).hexdigest()[:8]
    return f"{slug}_{digest}"


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and fully validate a sweep file (no Ray involved)."""
    from rl_select.runs.config import TrainConfig, read_yaml_mapping  # deferred: loads gymnasium
    from rl_select.runs.setup import load_tasks  # deferred: loads torch and gymnasium

    path = Path(path)
    data = read_yaml_mapping(path, "sweep settings")
    reject_unknown_keys(data, SWEEP_KEYS, "sweep")
    name = data.get("name")
    if not isinstance(name, str) or not name or "/" in name:
        raise ConfigError(f"{path}: 'name' must be a non-empty name without '/'")
    metric = data.get("metric", "accuracy")
    if metric not in METRICS:
        raise ConfigError(f"{path}: unknown metric '{metric}' (choose from {', '.join(METRICS)})")
    resources = data.get("resources_per_trial", {"cpu": 1, "gpu": 0})
    if not isinstance(resources, dict) or set(resources) - RESOURCE_KEYS:
        raise ConfigError(f"{path}: resources_per_trial takes only {sorted(RESOURCE_KEYS)}")
    if any(not isinstance(v, (int, float)) or v < 0 for v in resources.values()) or resources.get("cpu", 1) <= 0:
        raise ConfigError(f"{path}: resources_per_trial needs cpu > 0 and gpu >= 0")
    max_concurrent = data.get("max_concurrent", 1)
    if not isinstance(max_concurrent, int) or max_concurrent < 1:
        raise ConfigError(f"{path}: max_concurrent must be a positive integer")
    base = data.get("base") or {}
    grid = data.get("grid") or {}
    if not isinstance(base, dict) or not isinstance(grid, dict) or not grid:
        raise ConfigError(f"{path}: 'base' must be a mapping and 'grid' a non-empty mapping")
    for key, values in grid.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{path}: grid '{key}' must be a non-empty list of values")
        if any(isinstance(v, dict) for v in values) and not all(isinstance(v, dict) and v for v in values):
            raise ConfigError(f"{path}: grid '{key}' mixes bundles (mappings) with plain values")
    try:
        base_config = TrainConfig.from_dict(base)
    except RLSelectError as exc:
        raise ConfigError(f"{path}: base: {exc}") from None
    checked_tasks: set[tuple[str, ...]] = set()
    for point in _points(grid):
        try:
            config = base_config.with_overrides(point)
        except (RLSelectError, TypeError) as exc:
            raise ConfigError(f"{path}: grid point {point}: {exc}") from None
        if config.tasks not in checked_tasks:
            try:
                load_tasks(config)
            except RLSelectError as exc:
                raise ConfigError(f"{path}: grid point {point}: {exc}") from None
            checked_tasks.add(config.tasks)
    storage = Path(data.get("storage", "runs/sweeps")).expanduser().resolve()
    return SweepSpec(
        name=name,
        storage=storage,
        description=str(data.get("description", "")),
        metric=metric,
        resources={k: float(v) for k, v in resources.items()},
        max_concurrent=max_concurrent,
        base=base,
        grid=grid,
        source=path.read_text(),
    )


def _points(grid: dict[str, list[JsonValue]]) -> list[Overrides]:
    """Cartesian product of the grid's value lists, as dicts of overrides.

    A grid entry whose values are mappings is a list of *bundles*: each mapping sets several keys together
    (e.g. ``fold: [{tasks: [a, b], eval_tasks: [c]}, ...]`` for leave-one-out folds); its own name is a label.
    """
    points = []
    for values in itertools.product(*grid.values()):
        point: Overrides = {}
        for key, value in zip(grid, values, strict=True):
            point.update(value) if isinstance(value, dict) else point.__setitem__(key, value)
        points.append(point)
    return points


def grid_keys(points: list[Overrides]) -> list[str]:
    """The keys that vary or are set by the grid, in first-seen order (seed excluded)."""
    return [k for k in dict.fromkeys(k for p in points for k in p) if k != "seed"]


def trial_config(point: Overrides, base: Overrides) -> TrainConfig:
    """The training settings of one grid point: the sweep's base with the point's values."""
    from rl_select.runs.config import TrainConfig  # deferred: loads gymnasium

    return TrainConfig.from_dict(base).with_overrides(point)


def unfinished_trials(spec: SweepSpec) -> dict[str, TrainConfig]:
    """The settings of every trial not finished yet (no results.json in its run directory), by trial name."""
    return {
        trial_key(point): trial_config(point, spec.base)
        for point in spec.points()
        if not (spec.runs / trial_key(point) / "results.json").is_file()
    }


def run_trial(point: Overrides, base: Overrides, runs_root: str) -> None:
    """Ray Tune function trainable: train one grid point (resuming its run directory), report test metrics."""
    from ray import tune  # deferred: loads Ray and PyYAML

    from rl_select.train import train  # deferred: loads torch and gymnasium

    setup_logging(False)
    config = trial_config(point, base)
    run_dir = Path(runs_root) / trial_key(point)
    resume = (run_dir / "config.json").is_file()
    result = train(config, run_dir, resume=resume, progress_bar=False)
    tune.report(trial_metrics(result, run_dir))


def trial_metrics(result: TrainResult, run_dir: Path) -> dict[str, float | str]:
    """Per method: ``<method>/<task>/<metric>`` and ``<method>/<metric>`` averaged over the scored tasks.

    The scored tasks are the transfer tasks when the run has ``eval_tasks``, else its training tasks; the
    learned policy is reported as ``learned``.
    """
    reports = result.reports
    learned_name = reports[0].name
    scored = set(result.transfer) or {r.task for r in reports}
    metrics: dict[str, float | str] = {"run_dir": str(run_dir)}
    sums: dict[str, list[float]] = defaultdict(list)
    for report in reports:
        method = "learned" if report.name == learned_name else report.name
        values = {
            "accuracy": report.mean_sd[0],
            "accuracy_raw": report.raw[0],
            "accuracy_calibrated": report.calibrated[0],
        }
        for name, value in values.items():
            metrics[f"{method}/{report.task}/{name}"] = value
            if report.task in scored:
                sums[f"{method}/{name}"].append(value)
    metrics.update({key: float(np.mean(values)) for key, values in sums.items()})
    return metrics


def run_sweep(spec: SweepSpec) -> SweepOutcome:
    """Run (or resume) the sweep with Ray Tune; write trials.csv, summary.md and plots."""
    from ray import tune  # deferred: loads Ray and PyYAML

    from rl_select.rollouts.ray_runtime import ensure_ray  # deferred: loads torch and gymnasium

    root = spec.root
    root.mkdir(parents=True, exist_ok=True)
    stored = root / "sweep.yaml"
    if stored.is_file() and stored.read_text() != spec.source:
        raise ConfigError(f"sweep '{spec.name}' in {root} was started from a different file; use a new name")
    stored.write_text(spec.source)
    ensure_ray()
    trainable = tune.with_resources(
        tune.with_parameters(_trial_entry, base=spec.base, runs_root=str(spec.runs)), spec.resources
    )
    param_space = {"point": tune.grid_search(spec.points())}
    tune_dir = root / "tune"
    if tune.Tuner.can_restore(str(tune_dir)):
        tuner = tune.Tuner.restore(str(tune_dir), trainable=trainable, resume_unfinished=True, resume_errored=True)
    else:
        tuner = tune.Tuner(
            trainable,
            param_space=param_space,
            tune_config=tune.TuneConfig(max_concurrent_trials=spec.max_concurrent),
            run_config=tune.RunConfig(name="tune", storage_path=str(root), verbose=1),
        )
    grid = tuner.fit()
    rows = []
    for result in grid:
        point, metrics = result.config["point"], result.metrics or {}
        rows.append(
            TrialRow(
                trial=trial_key(point),
                status="error" if result.error else "ok",
                point=point,
                metrics={key: float(value) for key, value in metrics.items() if "/" in key},
                run_dir=metrics.get("run_dir"),
                error=str(result.error).strip().splitlines()[-1][:300] if result.error else None,
            )
        )
    return write_sweep_results(spec, rows)


def _trial_entry(config: dict[str, Overrides], base: Overrides, runs_root: str) -> None:
    run_trial(config["point"], base, runs_root)


def _fmt(values: list[float | None]) -> str:
    values = [v for v in values if v is not None and not math.isnan(v)]
    if not values:
        return "–"
    sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
    return f"{100 * np.mean(values):.1f} ± {100 * sd:.1f} (n={len(values)})"


def write_sweep_results(spec: SweepSpec, rows: list[TrialRow]) -> SweepOutcome:
    """trials.csv, summary.md, accuracy.png and learning_curves.png under the sweep directory."""
    root = spec.root
    flat = [row.to_dict() for row in rows]
    columns = sorted({k for row in flat for k in row}, key=lambda k: (k not in ("trial", "status"), k))
    with open(root / "trials.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        for row in flat:
            writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in row.items()})
    metric = f"learned/{spec.metric}"
    keys = grid_keys(spec.points())
    groups: dict[str, list[TrialRow]] = defaultdict(list)
    for row in rows:
        groups[json.dumps({k: row.point.get(k) for k in keys}, sort_keys=True)].append(row)
    config_rows = []
    for key, members in groups.items():
        values = [m.metrics.get(metric) for m in members if m.ok]
        config = json.loads(key)
        mean = float(np.mean([v for v in values if v is not None])) if any(v is not None for v in values) else -1
        config_rows.append((config, values, mean, sum(not m.ok for m in members)))
    config_rows.sort(key=lambda item: -item[2])
    table = [
        [", ".join(f"{k}={v}" for k, v in config.items()) or "(all)", _fmt(values), failed]
        for config, values, _, failed in config_rows
    ]
    best_per_task: dict[str, tuple[Overrides, list[float]]] = {}
    for config, values, mean, _ in config_rows:
        task = "+".join(config.get("tasks") or spec.base.get("tasks", ["?"]))
        if task not in best_per_task and mean >= 0:
            best_per_task[task] = (config, values)
    baselines = sorted({k.split("/")[0] for row in rows for k in row.metrics if k.count("/") == 1} - {"learned"})
    best_table = []
    for task, (config, values) in best_per_task.items():
        members = groups[json.dumps({k: config.get(k) for k in keys}, sort_keys=True)]
        best_table.append(
            [
                task,
                ", ".join(f"{k}={v}" for k, v in config.items() if k != "tasks"),
                _fmt(values),
                *[_fmt([m.metrics.get(f"{b}/{spec.metric}") for m in members]) for b in baselines],
            ]
        )
    record = provenance(seeds=sorted({row.point.get("seed", spec.base.get("seed", 0)) for row in rows}))
    text = (
        f"# Sweep {spec.name}\n\n{spec.description}\n\nMetric: test {spec.metric} of the learned policy, "
        f"mean ± sd over seeds. {len(rows)} trials, {sum(not r.ok for r in rows)} failed.\n\n"
        "## Best configuration per task\n\n"
        + markdown_table(["task", "configuration", f"learned {spec.metric}", *baselines], best_table)
        + "\n## All configurations\n\n"
        + markdown_table(["configuration", spec.metric, "failed trials"], table)
        + "\n"
        + provenance_markdown(record)
    )
    (root / "summary.md").write_text(text)
    write_json(root / "summary.json", {"provenance": record, "metric": spec.metric, "trials": flat})
    plot_sweep(spec, rows, best_per_task, baselines)
    return SweepOutcome(rows, best_per_task, sum(not r.ok for r in rows))


def plot_sweep(
    spec: SweepSpec, rows: list[TrialRow], best: dict[str, tuple[Overrides, list[float]]], baselines: list[str]
) -> None:
    """accuracy.png (learned best configuration vs baselines, per task) and learning_curves.png."""
    import matplotlib  # deferred: loads matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred: loads matplotlib

    from rl_select.train.curve import Curve  # deferred: loads torch and gymnasium

    tasks = list(best)
    methods = ["learned (best config)", *baselines]
    fig, ax = plt.subplots(figsize=(max(4, 1.6 * len(tasks) * len(methods) / 3), 3.6))
    width = 0.8 / len(methods)
    keys = grid_keys(spec.points())
    for m, method in enumerate(methods):
        means, sds = [], []
        for task in tasks:
            config, values = best[task]
            if m > 0:
                members = [r for r in rows if all(r.point.get(k) == config.get(k) for k in keys)]
                values = [r.metrics.get(f"{method}/{spec.metric}") for r in members]
            values = [v for v in values if v is not None]
            means.append(100 * np.mean(values) if values else 0)
            sds.append(100 * np.std(values, ddof=1) if len(values) > 1 else 0)
        ax.bar(np.arange(len(tasks)) + m * width, means, width, yerr=sds, label=method, capsize=2)
    ax.set_xticks(np.arange(len(tasks)) + width * (len(methods) - 1) / 2, tasks)
    ax.set_ylabel(f"test {spec.metric} (%)")
    ax.legend(fontsize=7)
    ax.set_title(f"sweep {spec.name}", fontsize=9)
    fig.tight_layout()
    fig.savefig(spec.root / "accuracy.png", dpi=120)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 3.6))
    for row in rows:
        curve_path = Path(row.run_dir or "") / "curve.csv"
        if row.run_dir is None or not curve_path.is_file():
            continue
        series = Curve(curve_path).read()
        key = "rollout/episode_value" if "rollout/episode_value" in series else "train/td_loss"
        if key not in series:
            continue
        steps, values = zip(*series[key], strict=True)
        window = max(len(values) // 20, 1)
        smooth = np.convolve(values, np.ones(window) / window, mode="valid")
        ax.plot(steps[window - 1 :], smooth, alpha=0.7, linewidth=1, label=row.trial[:40])
        ax.set_ylabel(key)
    ax.set_xlabel("step")
    if len(rows) <= 12:
        ax.legend(fontsize=5)
    ax.set_title(f"learning curves · sweep {spec.name}", fontsize=9)
    fig.tight_layout()
    fig.savefig(spec.root / "learning_curves.png", dpi=120)
    plt.close(fig)
