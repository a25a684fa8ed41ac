"""Label read-out and calibration: from log-probabilities at read positions to a request's cached scores.

A label's score is the log-probability of its answer's full token sequence (the sum over its tokens; divided by
the token count with ``length_normalize``). Contextual calibration (Zhao et al. 2021) scores the content-free
inputs "N/A", "" and "[MASK]" under the same prefix as the queries; the mean of their label distributions is
each query's ``content_free`` (the division ``p ∝ p_raw / p_cf`` happens in :class:`ScoreResult`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from rl_select.scoring.cache import CachedScores, PrefixState
from rl_select.scoring.packing import PackedItems
from rl_select.scoring.prompts import PlannedQuery, TruncationReport
from rl_select.scoring.results import softmax


@dataclass
class Job:
    """Token sequences to score after one prefix: ``real`` queries first, then content-free inputs."""

    prefix: PrefixState
    items: list[tuple[int, ...]]
    real: int


@dataclass
class Plan:
    """How one request's queries are scored: each query's planned prompt, and per kept prefix its members and job."""

    plans: list[PlannedQuery]
    groups: list[tuple[list[int], Job]]


def answer_branch_tokens(label_tokens: tuple[tuple[int, ...], ...]) -> int:
    """Tokens fed after each scored item to read multi-token answers: every label's tokens but its last."""
    return sum(len(tokens) - 1 for tokens in label_tokens)


class LabelReadout:
    """Reads a task's label scores out of next-token log-probabilities and assembles calibrated results.

    Args:
        label_tokens: Each label's answer tokens.
        length_normalize: Divide each label's log-probability by its token count.
        device: Where the log-probabilities live.
    """

    def __init__(self, label_tokens: tuple[tuple[int, ...], ...], length_normalize: bool, device: torch.device) -> None:
        self.label_tokens = label_tokens
        self.length_normalize = length_normalize
        self.device = device
        self.first_tokens = torch.tensor([t[0] for t in label_tokens], device=device)
        self.lengths = np.array([len(t) for t in label_tokens], dtype=np.float64)
        self.answer_tokens = answer_branch_tokens(label_tokens)
        """Tokens the answer branches add after each item."""

    @property
    def num_labels(self) -> int:
        """How many labels are read."""
        return len(self.label_tokens)

    def scores(self, rows: list[tuple[PrefixState, PackedItems]], logprobs: torch.Tensor) -> list[np.ndarray]:
        """Per row, ``[items, C]`` answer log-probabilities (not length-normalised).

        ``logprobs[r]`` holds row ``r``'s log-softmax rows read at its ``packed.reads``: first reads inside the
        row, then the continuations. All rows are read with one gather and one copy to the host (per-item reads
        cost a device sync each, which bound the scorer on a GPU).
        """
        starts = np.cumsum([0] + [len(packed.first_reads) for _, packed in rows])
        first: list[tuple[int, int, int]] = []  # (row, read, item)
        after_prefix: list[tuple[int, torch.Tensor]] = []  # (item, the prefix's last log-probs): empty queries
        later: list[tuple[int, int, int, int, int]] = []  # (row, read, item, label, token)
        for r, (prefix, packed) in enumerate(rows):
            cursor = 0
            for item, read in enumerate(packed.first_reads):
                if read >= 0:
                    first.append((r, cursor, starts[r] + item))
                    cursor += 1
                elif prefix.last_logprobs is not None:  # an empty query: the answer follows the prefix directly
                    after_prefix.append((starts[r] + item, prefix.last_logprobs))
            continuations = enumerate(packed.continuations)
            later += [(r, cursor + o, starts[r] + i, label, t) for o, (i, label, _, t) in continuations]
        scores = torch.full((int(starts[-1]), self.num_labels), -torch.inf, device=self.device)
        if first:
            row, read, item = self._columns(first)
            scores[item] = logprobs[row[:, None], read[:, None], self.first_tokens[None, :]]
        for item, last in after_prefix:
            scores[item] = last[self.first_tokens]
        if later:
            row, read, item, label, token = self._columns(later)
            scores = scores.index_put((item, label), logprobs[row, read, token], accumulate=True)
        host = scores.double().cpu().numpy()
        return [host[starts[r] : starts[r + 1]] for r in range(len(rows))]

    def _columns(self, entries: list[tuple[int, ...]]) -> tuple[torch.Tensor, ...]:
        """Index tensors on the device, one per column of ``entries``."""
        return tuple(torch.tensor(np.array(entries, dtype=np.int64).T, device=self.device))

    def normalized(self, scores: np.ndarray) -> np.ndarray:
        """``scores`` divided by each label's token count when ``length_normalize`` is on."""
        return scores / self.lengths if self.length_normalize else scores

    def content_free(self, scores: np.ndarray) -> np.ndarray:
        """``[C]`` mean label distribution of the content-free inputs' scores (uniform when none could be scored)."""
        finite = scores[np.isfinite(scores).all(axis=1)]
        return softmax(finite).mean(axis=0) if len(finite) else np.full(self.num_labels, 1.0 / self.num_labels)

    def from_items(self, scores: np.ndarray, num_queries: int, prefix_length: int) -> CachedScores:
        """Per-query arrays from the raw scores of one prefix's items (its queries, then the content-free inputs)."""
        scores = self.normalized(scores)
        return CachedScores(
            log_scores=scores[:num_queries],
            content_free=np.tile(self.content_free(scores[num_queries:]), (num_queries, 1)),
            prefix_tokens=np.full(num_queries, prefix_length, dtype=np.int64),
            prefix_nll=np.full(num_queries, np.nan),
            truncation=TruncationReport(queries=num_queries).to_dict(),
        )

    def assemble(self, plan: Plan, scores: list[np.ndarray]) -> CachedScores:
        """Per-query arrays of one request from its jobs' raw scores."""
        n = len(plan.plans)
        log_scores = np.zeros((n, self.num_labels))
        content_free = np.zeros((n, self.num_labels))
        prefix_tokens = np.zeros(n, dtype=np.int64)
        prefix_nll = np.full(n, np.nan)
        for (members, job), raw in zip(plan.groups, scores, strict=True):
            job_scores = self.normalized(raw)
            log_scores[members] = job_scores[: job.real]
            content_free[members] = self.content_free(job_scores[job.real :])
            prefix_tokens[members] = job.prefix.length
            if job.prefix.nll_count:
                prefix_nll[members] = job.prefix.nll_sum / job.prefix.nll_count
        report = TruncationReport(
            queries=n,
            queries_with_dropped_demos=sum(1 for p in plan.plans if p.num_dropped),
            demos_dropped=sum(p.num_dropped for p in plan.plans),
            queries_truncated=sum(1 for p in plan.plans if p.truncated),
        )
        return CachedScores(log_scores, content_free, prefix_tokens, prefix_nll, report.to_dict())
