"""Per-task feature banks: what the MDP computes once per example and reuses in every episode."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property

import numpy as np

from rl_select.errors import ConfigError
from rl_select.observation import FeatureConfig, Projection, static_features, word_length
from rl_select.paths import cache_dir, file_lock
from rl_select.resources import Resources
from rl_select.retrieval import split_embeddings
from rl_select.tasks.task import Example

ZERO_SHOT_BLOCK = 16
"""Zero-shot statistics are computed for whole blocks of this many consecutive pool ids, always together (a block
of short rows fills about one 512-token forward on a CPU)."""


class FeatureBank:
    """Embeddings, projection and static candidate features of one task.

    Zero-shot LLM statistics (``llm_features``) are computed on first use for the candidates that need them and
    cached on disk per (task pool, model, scoring settings), so later runs and workers reuse them. They are
    computed in fixed blocks of :data:`ZERO_SHOT_BLOCK` pool ids: a score depends in its last float bits on
    which rows share its forward pass, so fixed blocks make every value independent of which candidates
    happened to be asked for first (and so of what earlier runs cached).

    Args:
        resources: The task's shared resources (scorer, embedder).
        config: Which features to build.
    """

    def __init__(self, resources: Resources, config: FeatureConfig) -> None:
        self.resources = resources
        self.config = config
        self.task = resources.task
        if config.label_onehot and self.task.num_labels > config.max_labels:
            raise ConfigError(
                f"task '{self.task.name}' has {self.task.num_labels} labels but features allow max_labels="
                f"{config.max_labels}; raise max_labels"
            )
        self._zero_shot: np.ndarray | None = None
        self._computed: np.ndarray | None = None
        self._static: dict[int, np.ndarray] = {}

    @cached_property
    def pool_vectors(self) -> np.ndarray:
        """``[N, D]`` unit embeddings of the pool (cached on disk)."""
        return split_embeddings(self.task, "train", self.resources.embedder, self.resources.progress)

    @cached_property
    def projection(self) -> Projection:
        """The random projection, standardised on this pool."""
        return Projection.fit(self.pool_vectors, self.config.projection_dim, self.config.projection_seed)

    @cached_property
    def space_pool(self) -> np.ndarray:
        """``[N, D]`` unit pool vectors in the space of the similarity features (see ``centred_similarity``)."""
        return self.projection.to_space(self.pool_vectors, self.config.centred_similarity)

    @cached_property
    def pool_projected(self) -> np.ndarray:
        """``[N, P]`` projected pool embeddings, computed for the whole pool at once.

        One product for all rows makes every row's features independent of which candidates were asked for
        first (a matrix product's last float bits depend on its shape), so a resumed run sees the same floats.
        """
        return self.projection(self.pool_vectors)

    @cached_property
    def pool_labels(self) -> np.ndarray:
        """``[N]`` label index of every pool example."""
        return self.task.gold(self.task.train)

    @cached_property
    def pool_lengths(self) -> np.ndarray:
        """``[N]`` length feature of every pool example."""
        return word_length([e.input_text for e in self.task.train])

    def in_space(self, examples: Sequence[Example]) -> np.ndarray:
        """Unit vectors of any examples in the similarity space (pool rows from the cache, others embedded once)."""
        if all(e.split == "train" for e in examples):
            return self.space_pool[[e.id for e in examples]]
        return self.projection.to_space(self.resources.query_vectors(examples), self.config.centred_similarity)

    def anchor(self, rows: Sequence[Example]) -> np.ndarray:
        """Unit centroid of ``rows`` in the similarity space (task mode's anchor)."""
        mean = self.in_space(rows).mean(axis=0)
        return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)

    def static(self, ids: Sequence[int]) -> np.ndarray:
        """``[len(ids), P + L + 4]`` static features of pool examples."""
        ids = [int(i) for i in ids]
        missing = [i for i in ids if i not in self._static]
        if missing:
            zero_shot = self.zero_shot(missing) if self.config.llm_features else None
            rows = static_features(
                self.pool_projected[missing],
                self.pool_labels[missing],
                self.pool_lengths[missing],
                zero_shot,
                self.config,
            )
            for i, row in zip(missing, rows, strict=True):
                self._static[i] = row
        return np.stack([self._static[i] for i in ids])

    def _zero_shot_path(self):
        scorer = self.resources.scorer
        return cache_dir("features") / f"{self.task.name}-{self.task.fingerprint('train')}-{scorer.namespace}.npz"

    def zero_shot(self, ids: Sequence[int]) -> np.ndarray:
        """``[len(ids), 3]``: normalised entropy, gold-label probability, correctness of each candidate zero-shot."""
        n = len(self.task.train)
        if self._zero_shot is None:
            self._zero_shot = np.zeros((n, 3), dtype=np.float32)
            self._computed = np.zeros(n, dtype=bool)
            path = self._zero_shot_path()
            if path.is_file():
                with np.load(path, allow_pickle=False) as stored:
                    if stored["values"].shape == (n, 3):
                        self._zero_shot, self._computed = stored["values"], stored["computed"]
        ids = np.asarray(ids, dtype=np.int64)
        blocks = np.unique(ids[~self._computed[ids]] // ZERO_SHOT_BLOCK)
        for block in blocks:
            members = np.arange(block * ZERO_SHOT_BLOCK, min((block + 1) * ZERO_SHOT_BLOCK, n))
            result = self.resources.scorer.score([], [self.task.train[i] for i in members], use_cache=False)
            self._zero_shot[members, 0] = result.entropy / np.log(self.task.num_labels)
            self._zero_shot[members, 1] = result.gold_probs
            self._zero_shot[members, 2] = result.correct
            self._computed[members] = True
        if blocks.size:
            self._save_zero_shot()
        return self._zero_shot[ids].copy()

    def _save_zero_shot(self) -> None:
        path = self._zero_shot_path()
        with file_lock(path.with_suffix(".lock")):
            if path.is_file():  # merge what other processes computed meanwhile
                with np.load(path, allow_pickle=False) as stored:
                    if stored["values"].shape == self._zero_shot.shape:
                        theirs = stored["computed"] & ~self._computed
                        self._zero_shot[theirs] = stored["values"][theirs]
                        self._computed |= stored["computed"]
            tmp = path.with_name(f".{path.stem}.tmp.npz")
            np.savez(tmp, values=self._zero_shot, computed=self._computed)
            tmp.replace(path)
