"""One episode's state, and the scoring requests environments hand to the scorer."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from rl_select.observation import nearest_first
from rl_select.scoring import Scorer, ScoreResult
from rl_select.tasks.task import Example
from rl_select.types import JsonObject


@dataclass(frozen=True)
class EpisodeState:
    """An episode where it stands: its candidates (pool ids), its query (split, row), picks and values so far."""

    candidates: list[int]
    query: tuple[str, int] | None
    chosen: list[int]
    values: list[float]
    stopped: bool = False

    def to_dict(self) -> JsonObject:
        """JSON form (a checkpoint's)."""
        return {**asdict(self), "query": None if self.query is None else list(self.query)}

    @classmethod
    def from_dict(cls, data: JsonObject) -> EpisodeState:
        """Inverse of :meth:`to_dict`."""
        query = data["query"]
        return cls(
            candidates=[int(i) for i in data["candidates"]],
            query=None if query is None else (str(query[0]), int(query[1])),
            chosen=[int(i) for i in data["chosen"]],
            values=[float(v) for v in data["values"]],
            stopped=bool(data.get("stopped", False)),
        )


@dataclass(frozen=True)
class EnvState:
    """Everything needed to continue an env exactly where it is: its RNG's state and its episode (if any)."""

    rng: JsonObject
    episode: EpisodeState | None

    def to_dict(self) -> JsonObject:
        """JSON form (a checkpoint's)."""
        return {"rng": self.rng, "episode": None if self.episode is None else self.episode.to_dict()}

    @classmethod
    def from_dict(cls, data: JsonObject) -> EnvState:
        """Inverse of :meth:`to_dict`."""
        episode = data["episode"]
        return cls(data["rng"], None if episode is None else EpisodeState.from_dict(episode))


@dataclass(frozen=True)
class ScoreRequest:
    """One scoring call an environment needs: ``demos`` (prompt order) scored on ``rows``."""

    scorer: Scorer
    demos: tuple[Example, ...]
    rows: tuple[Example, ...]


def run_requests(requests: Sequence[ScoreRequest]) -> list[ScoreResult]:
    """Score many requests, one :meth:`Scorer.score_many` call per scorer (so per task)."""
    results: list[ScoreResult | None] = [None] * len(requests)
    by_scorer: dict[int, list[int]] = {}
    for i, request in enumerate(requests):
        by_scorer.setdefault(id(request.scorer), []).append(i)
    for members in by_scorer.values():
        scorer = requests[members[0]].scorer
        scored = scorer.score_many([(requests[i].demos, requests[i].rows) for i in members])
        for i, result in zip(members, scored, strict=True):
            results[i] = result
    return results  # type: ignore[return-value]


@dataclass
class Episode:
    """The state of one episode: what is offered, what is chosen, and the prompt's value after each step.

    Attributes:
        candidates: ``[M]`` pool ids offered (action ``i`` adds ``candidates[i]``).
        static: ``[M, P + L + 4]`` static features of the candidates.
        vectors: ``[M, D]`` their centred unit embeddings.
        labels: ``[M]`` their label indices.
        anchor: ``[D]`` centred unit vector similarity is measured to (the query, or the reward rows' centroid).
        query: The episode's query (query mode), else None.
        query_features: ``[P + 1]`` projected query and its length (query mode), else None.
        rows: The rows a prompt's value is measured on.
        proposer_features: ``[M, 8]`` which proposers offered each candidate, at which rank (with proposers).
        chosen: Candidate indices chosen so far, in the order they were chosen.
        values: The prompt's value before the first step, then after each step.
        stopped: Whether the stop action ended the episode.
    """

    candidates: np.ndarray
    static: np.ndarray
    vectors: np.ndarray
    labels: np.ndarray
    anchor: np.ndarray
    query: Example | None
    query_features: np.ndarray | None
    rows: tuple[Example, ...]
    proposer_features: np.ndarray | None = None
    chosen: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    stopped: bool = False

    @property
    def nearest_first(self) -> np.ndarray:
        """Candidate indices by decreasing similarity to the anchor (``anchor_rank`` order, ties by index)."""
        return nearest_first(self.vectors, self.anchor)

    def state(self) -> EpisodeState:
        """What :meth:`DemoSelectionEnv.restore` needs to rebuild this episode exactly."""
        return EpisodeState(
            candidates=[int(i) for i in self.candidates],
            query=None if self.query is None else (self.query.split, int(self.query.id)),
            chosen=[int(i) for i in self.chosen],
            values=[float(v) for v in self.values],
            stopped=self.stopped,
        )
