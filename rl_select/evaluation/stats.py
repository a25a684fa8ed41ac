"""Paired comparisons of methods on the same rows: differences in points with bootstrap intervals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rl_select.types import JsonObject


@dataclass(frozen=True)
class PairedDelta:
    """Paired difference of two methods' accuracy on the same rows, with a bootstrap interval (points)."""

    mean: float
    ci95: tuple[float, float]

    def to_dict(self) -> JsonObject:
        """``{"mean": points, "ci95": [lo, hi]}``."""
        return {"mean": round(self.mean, 2), "ci95": [round(self.ci95[0], 2), round(self.ci95[1], 2)]}


def paired_bootstrap(a: np.ndarray, b: np.ndarray, *, samples: int = 10_000, seed: int = 0) -> PairedDelta:
    """Mean of ``a − b`` in points with a 95% percentile bootstrap over rows and seeds.

    Args:
        a: ``[seeds_a, rows]`` correctness (0/1) of method A.
        b: ``[seeds_b, rows]`` correctness of method B on the same rows (seed counts may differ).
        samples: Bootstrap resamples.
        seed: Seed of the resampling.

    Each resample draws the rows with replacement (the same rows for both methods: the pairing) and each
    method's seeds with replacement, and takes the difference of the mean accuracies.
    """
    return stratified_bootstrap([(a, b)], samples=samples, seed=seed)


def stratified_bootstrap(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]], *, samples: int = 10_000, seed: int = 0
) -> PairedDelta:
    """The mean over strata (tasks) of ``a − b``, with a bootstrap that resamples each stratum on its own.

    Each element of ``pairs`` is one task's ``(a, b)`` as in :func:`paired_bootstrap`; the statistic is the
    unweighted average of the per-task differences (every task counts the same, as in an averaged table).
    """
    rng = np.random.default_rng(seed)
    point, draws = 0.0, np.zeros(samples)
    for a, b in pairs:
        a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
        if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or a.shape[1] == 0:
            raise ValueError("paired bootstrap needs [seeds, rows] arrays over the same rows")
        n = a.shape[1]
        rows = rng.integers(n, size=(samples, n))
        pick_a = rng.integers(a.shape[0], size=(samples, a.shape[0]))
        pick_b = rng.integers(b.shape[0], size=(samples, b.shape[0]))
        # mean over resampled seeds of each seed's mean over the resampled rows
        row_means_a = np.stack([a[s][rows].mean(axis=1) for s in range(a.shape[0])], axis=1)  # [samples, seeds]
        row_means_b = np.stack([b[s][rows].mean(axis=1) for s in range(b.shape[0])], axis=1)
        draws += np.take_along_axis(row_means_a, pick_a, 1).mean(1) - np.take_along_axis(row_means_b, pick_b, 1).mean(1)
        point += a.mean() - b.mean()
    draws /= len(pairs)
    low, high = np.percentile(draws, [2.5, 97.5])
    return PairedDelta(mean=100 * point / len(pairs), ci95=(100 * float(low), 100 * float(high)))
