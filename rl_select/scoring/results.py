"""What scoring returns: label distributions with calibration (``ScoreResult``), and the LLM work it cost."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property

import numpy as np

from rl_select.scoring.prompts import TruncationReport


def softmax(x: np.ndarray) -> np.ndarray:
    """Softmax over the last axis."""
    z = x - x.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _entropy(p: np.ndarray) -> np.ndarray:
    return -(p * np.log(np.clip(p, 1e-12, None))).sum(axis=-1)


@dataclass
class ScoreResult:
    """Scores of a set of queries.

    Attributes:
        log_scores: ``[Q, C]`` label log-probabilities (length-normalised if configured), uncalibrated.
        content_free: ``[Q, C]`` mean content-free label distribution under each query's prefix.
        gold: ``[Q]`` gold label indices.
        calibrate: Whether the primary distribution is the calibrated one.
        prefix_tokens: ``[Q]`` prompt tokens before each query (after the length policy).
        prefix_nll: ``[Q]`` mean NLL per prefix token (NaN unless ``prefix_perplexity``).
        truncation: What the over-long-prompt policy did.
    """

    log_scores: np.ndarray
    content_free: np.ndarray
    gold: np.ndarray
    calibrate: bool
    prefix_tokens: np.ndarray
    prefix_nll: np.ndarray
    truncation: TruncationReport = field(default_factory=TruncationReport)

    @cached_property
    def probs_raw(self) -> np.ndarray:
        """``[Q, C]`` label distribution without calibration."""
        return softmax(self.log_scores)

    @cached_property
    def probs_calibrated(self) -> np.ndarray:
        """``[Q, C]`` contextually calibrated label distribution."""
        ratio = self.probs_raw / np.clip(self.content_free, 1e-12, None)
        return ratio / ratio.sum(axis=-1, keepdims=True)

    @property
    def probs(self) -> np.ndarray:
        """The primary label distribution."""
        return self.probs_calibrated if self.calibrate else self.probs_raw

    @property
    def predictions(self) -> np.ndarray:
        """``[Q]`` predicted label indices (primary distribution)."""
        return self.probs.argmax(axis=-1)

    @property
    def correct(self) -> np.ndarray:
        """``[Q]`` whether each prediction is right."""
        return self.predictions == self.gold

    @property
    def accuracy(self) -> float:
        """Accuracy of the primary distribution."""
        return float(self.correct.mean()) if len(self.gold) else float("nan")

    @property
    def accuracy_raw(self) -> float:
        """Accuracy without calibration."""
        return float((self.probs_raw.argmax(-1) == self.gold).mean())

    @property
    def accuracy_calibrated(self) -> float:
        """Accuracy with contextual calibration."""
        return float((self.probs_calibrated.argmax(-1) == self.gold).mean())

    @property
    def gold_probs(self) -> np.ndarray:
        """``[Q]`` primary probability of each query's gold label."""
        return self.probs[np.arange(len(self.gold)), self.gold]

    @property
    def entropy(self) -> np.ndarray:
        """``[Q]`` entropy (nats) of the primary distribution."""
        return _entropy(self.probs)

    @property
    def prefix_perplexity(self) -> float:
        """Perplexity of the demonstration prefix (mean over queries; NaN when not computed)."""
        finite = self.prefix_nll[np.isfinite(self.prefix_nll)]
        return float(np.exp(finite.mean())) if finite.size else float("nan")

    def summary(self) -> dict:
        """Accuracies, mean entropy and truncation counts."""
        return {
            "accuracy": self.accuracy,
            "accuracy_raw": self.accuracy_raw,
            "accuracy_calibrated": self.accuracy_calibrated,
            "mean_entropy": float(self.entropy.mean()),
            "queries": len(self.gold),
            "truncation": self.truncation.to_dict(),
        }


@dataclass(frozen=True)
class LLMCost:
    """LLM work, the unit every selector and learner is charged in.

    Attributes:
        queries: Queries scored under some prompt, counted when asked for whether or not a cache answered
            (the calls a cold cache would make; content-free calibration inputs are not counted).
        tokens: Tokens that went through the model's forward passes (what was actually computed).
    """

    queries: int = 0
    tokens: int = 0

    def __add__(self, other: LLMCost) -> LLMCost:
        return LLMCost(self.queries + other.queries, self.tokens + other.tokens)

    def __sub__(self, other: LLMCost) -> LLMCost:
        return LLMCost(self.queries - other.queries, self.tokens - other.tokens)

    #: What a table's "N q / M tok" cost counts, for the note under the table.
    NOTE = (
        "queries scored (cache hits included) / forward tokens computed (fewer, even 0, where the cache already "
        "held the scores: another row or an earlier run had scored the same prompts on the same rows)"
    )

    def to_dict(self) -> dict[str, int]:
        """JSON form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: object) -> LLMCost:
        """Inverse of :meth:`to_dict`; raises ``ValueError`` unless both counts are integers."""
        if not isinstance(data, dict) or not all(isinstance(data.get(k), int) for k in ("queries", "tokens")):
            raise ValueError(f"not an LLM cost: {data!r}")
        return cls(data["queries"], data["tokens"])


@dataclass
class ScorerStats:
    """Work done by a scorer: forward passes, tokens computed, queries scored, seconds in forward passes.

    ``requested`` counts the queries callers asked to score (cache hits included); ``queries`` only those the
    model computed. ``tokens`` counts real tokens; ``padding`` the pad positions batched rows added to them.
    """

    forwards: int = 0
    tokens: int = 0
    queries: int = 0
    requested: int = 0
    seconds: float = 0.0
    prefix_hits: int = 0
    prefix_extensions: int = 0
    prefix_builds: int = 0
    padding: int = 0

    def to_dict(self) -> dict[str, int | float]:
        """JSON form."""
        return asdict(self)


@dataclass(frozen=True)
class RewardCacheStats:
    """The reward cache's use: hits, misses, hit rate, entries held, and its file (None in memory)."""

    hits: int
    misses: int
    hit_rate: float
    entries: int
    path: str | None


@dataclass(frozen=True)
class CacheStats:
    """A scorer's caches and work: the reward cache, prefix states held, and :class:`ScorerStats`."""

    reward_cache: RewardCacheStats
    prefix_states: int
    work: ScorerStats

    def to_dict(self) -> dict[str, object]:
        """JSON form: ``reward_cache``, ``prefix_states`` and the work counters at the top level."""
        return {"reward_cache": asdict(self.reward_cache), "prefix_states": self.prefix_states, **self.work.to_dict()}


def accuracy_interval(accuracies: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    values = np.asarray(accuracies, dtype=np.float64)
    if values.size == 0:
        return math.nan, math.nan
    return float(values.mean()), float(values.std(ddof=1)) if values.size > 1 else 0.0
