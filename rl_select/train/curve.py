"""Learning curves: SB3's logger writes them to ``curve.csv`` (long form) and TensorBoard; a PNG is drawn at the end."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

CURVE_PREFIXES = ("rollout/", "selection/", "train/", "eval/")
"""Logged scalars that go into ``curve.csv``."""
PLOTTED = ("rollout/episode_value", "eval/episode_value", "train/td_loss", "train/cql_loss")


class Curve:
    """``curve.csv``: one ``step,metric,value`` row per logged point (read by plots and sweeps)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.is_file():
            path.write_text("step,metric,value\n")

    def add(self, step: int, metric: str, value: float) -> None:
        """Record one point."""
        with open(self.path, "a", newline="") as f:
            csv.writer(f).writerow([step, metric, f"{value:.6f}"])

    def truncate(self, step: int) -> None:
        """Drop the points after ``step`` (a run resumed from a checkpoint at ``step`` logs them again)."""
        with open(self.path, newline="") as f:
            rows = list(csv.reader(f))
        kept = [rows[0], *(row for row in rows[1:] if int(row[0]) <= step)]
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        with open(tmp, "w", newline="") as f:
            csv.writer(f).writerows(kept)
        tmp.replace(self.path)

    def read(self) -> dict[str, list[tuple[int, float]]]:
        """Points by metric."""
        series: dict[str, list[tuple[int, float]]] = {}
        with open(self.path) as f:
            for row in csv.DictReader(f):
                series.setdefault(row["metric"], []).append((int(row["step"]), float(row["value"])))
        return series


def tensorboard_available() -> bool:
    """Whether TensorBoard logs can be written (the package is optional on minimal GPU images)."""
    return importlib.util.find_spec("tensorboard") is not None


def run_logger(run_dir: Path) -> Any:
    """An SB3 logger writing CSV and (when available) TensorBoard under ``tb/``, and the curve to ``curve.csv``."""
    from stable_baselines3.common.logger import (  # deferred: loads stable-baselines3 and rich
        KVWriter,
        Logger,
        make_output_format,
    )

    curve = Curve(run_dir / "curve.csv")

    class CurveWriter(KVWriter):
        """Appends the logger's scalars under :data:`CURVE_PREFIXES` to ``curve.csv`` at every dump."""

        def write(self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0) -> None:
            for key, value in key_values.items():
                if key.startswith(CURVE_PREFIXES) and isinstance(value, (int, float, np.number)):
                    curve.add(step, key, float(value))

        def close(self) -> None:
            """Nothing is held open."""

    folder = str(run_dir / "tb")
    formats = ["csv", "tensorboard"] if tensorboard_available() else ["csv"]
    return Logger(folder, [make_output_format(f, folder) for f in formats] + [CurveWriter()])


def plot_curve(curve: Curve, path: Path, title: str) -> None:
    """Learning curve PNG: episode values (moving average) or CQL losses and evaluation values."""
    import matplotlib  # deferred: loads matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred: loads matplotlib

    series = curve.read()
    keys = [k for k in PLOTTED if k in series]
    fig, axes = plt.subplots(1, max(len(keys), 1), figsize=(5 * max(len(keys), 1), 3.6), squeeze=False)
    for ax, key in zip(axes[0], keys, strict=False):
        steps, values = zip(*series[key], strict=True)
        ax.plot(steps, values, ".", alpha=0.3, label=key)
        if len(values) >= 5:
            window = max(len(values) // 20, 5)
            smooth = np.convolve(values, np.ones(window) / window, mode="valid")
            ax.plot(steps[window - 1 :], smooth, "-", label=f"moving mean ({window})")
        ax.set_xlabel("step")
        ax.set_title(key)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
