"""Caches of the scorer: demonstration-prefix KV states and scored results (rewards).

``RewardCache`` keys a scoring result by (model, task, ordered demonstration ids, evaluated rows, scoring
config). It lives in memory (LRU) and optionally in a SQLite file, so sweeps and repeated runs share rewards
across processes. Arrays are stored in ``.npy`` form (no pickle).
"""

from __future__ import annotations

import io
import json
import random
import sqlite3
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rl_select.errors import ArtifactError
from rl_select.scoring.results import RewardCacheStats


@dataclass
class PrefixState:
    """The KV cache of one demonstration prefix and what the scorer needs to extend or read after it.

    Attributes:
        key: Ordered ``(split, id)`` keys of the demonstrations.
        kv: Per layer ``(keys, values)``, each ``[1, heads, length, head_dim]``; None for an empty prefix.
        length: Tokens in the prefix.
        last_logprobs: Log-probabilities of the token after the prefix (``[vocab]``); None when empty.
        nll_sum: Summed negative log-likelihood of the prefix tokens that were scored.
        nll_count: How many prefix tokens were scored (0 unless prefix perplexity is enabled).
    """

    key: tuple
    kv: list[tuple[torch.Tensor, torch.Tensor]] | None
    length: int
    last_logprobs: torch.Tensor | None
    nll_sum: float = 0.0
    nll_count: int = 0

    @property
    def nbytes(self) -> int:
        """Memory held by the tensors."""
        total = 0 if self.last_logprobs is None else self.last_logprobs.nbytes
        for k, v in self.kv or []:
            total += k.nbytes + v.nbytes
        return total

    def as_cache(self) -> Any:
        """A fresh transformers ``DynamicCache`` holding this prefix (the stored tensors are not modified)."""
        from transformers import DynamicCache  # deferred: loads transformers and httpx

        cache = DynamicCache()
        for layer, (k, v) in enumerate(self.kv or []):
            cache.update(k, v, layer)
        return cache


class PrefixCache:
    """LRU of :class:`PrefixState` bounded by bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._states: OrderedDict[tuple, PrefixState] = OrderedDict()
        self._bytes = 0

    def get(self, key: tuple) -> PrefixState | None:
        """The state for ``key``, marked as recently used, or None."""
        state = self._states.get(key)
        if state is not None:
            self._states.move_to_end(key)
        return state

    def put(self, state: PrefixState) -> None:
        """Store ``state``, evicting the least recently used ones beyond the byte budget."""
        old = self._states.pop(state.key, None)
        if old is not None:
            self._bytes -= old.nbytes
        self._states[state.key] = state
        self._bytes += state.nbytes
        while self._bytes > self.max_bytes and len(self._states) > 1:
            _, evicted = self._states.popitem(last=False)
            self._bytes -= evicted.nbytes

    def clear(self) -> None:
        """Drop every state."""
        self._states.clear()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._states)


@dataclass
class CachedScores:
    """What a scoring call returns, minus what the caller already knows (the queries' gold labels)."""

    log_scores: np.ndarray
    content_free: np.ndarray
    prefix_tokens: np.ndarray
    prefix_nll: np.ndarray
    truncation: dict[str, int]


LOCK_TIMEOUT_S = 60.0
_BACKOFF = random.Random()  # its own generator: retries never move the global RNG that seeded runs rely on


def _retry_while_locked(operation: Callable[[], None], timeout: float = LOCK_TIMEOUT_S) -> None:
    """Run ``operation``, retrying while another process holds a lock SQLite will not wait for.

    SQLite's busy timeout covers ordinary lock waits, but not all of them: a connection that opens the file
    while another is switching it to WAL mode, or whose read snapshot went stale, gets "database is locked"
    at once. Retrying with a short random back-off is the documented remedy.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            operation()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.01 + 0.05 * _BACKOFF.random())


def _to_npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def _from_npy(blob: bytes) -> np.ndarray:
    return np.load(io.BytesIO(blob), allow_pickle=False)


class RewardCache:
    """LRU of scoring results with hit statistics and optional SQLite persistence.

    Args:
        max_entries: In-memory entries kept.
        path: SQLite file shared by processes (None: memory only).
    """

    def __init__(self, max_entries: int = 50_000, path: str | Path | None = None) -> None:
        self.max_entries = max_entries
        self.path = Path(path) if path else None
        self._entries: OrderedDict[str, CachedScores] = OrderedDict()
        self.hits = 0
        self.misses = 0
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                self._db = sqlite3.connect(self.path, timeout=LOCK_TIMEOUT_S, check_same_thread=False)
                _retry_while_locked(self._open_tables)
            except sqlite3.DatabaseError as exc:
                self.close()
                raise self._corrupt(exc) from None

    def _open_tables(self) -> None:
        """WAL mode, an integrity check, and the table (created by whichever process comes first)."""
        assert self._db is not None
        if self._db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            self._db.execute("PRAGMA journal_mode=WAL")
        if self._db.execute("PRAGMA quick_check").fetchone()[0] != "ok":
            raise sqlite3.DatabaseError("integrity check failed")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS rewards (key TEXT PRIMARY KEY, log_scores BLOB, content_free BLOB, "
            "prefix_tokens BLOB, prefix_nll BLOB, truncation TEXT)"
        )
        self._db.commit()

    def _corrupt(self, exc: Exception) -> ArtifactError:
        """The one-line error for a failed SQLite operation: a full disk, a lock held too long, or corruption."""
        text = str(exc)
        if "full" in text:
            return ArtifactError(f"cannot write reward cache {self.path}: {text}")
        if "locked" in text:
            return ArtifactError(
                f"reward cache {self.path} stayed locked by another process for over {LOCK_TIMEOUT_S:g} s"
            )
        return ArtifactError(
            f"reward cache {self.path} is corrupt or not a reward cache ({text}); delete it and rerun to rebuild it"
        )

    def get(self, key: str) -> CachedScores | None:
        """The cached result for ``key`` or None; counts a hit or a miss."""
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            elif self._db is not None:
                try:
                    row = self._db.execute(
                        "SELECT log_scores, content_free, prefix_tokens, prefix_nll, truncation FROM rewards "
                        "WHERE key=?",
                        (key,),
                    ).fetchone()
                    if row is not None:
                        found = CachedScores(
                            _from_npy(row[0]),
                            _from_npy(row[1]),
                            _from_npy(row[2]),
                            _from_npy(row[3]),
                            json.loads(row[4]),
                        )
                except (sqlite3.DatabaseError, ValueError) as exc:
                    raise self._corrupt(exc) from None
                if found is not None:
                    self._remember(key, found)
            if found is None:
                self.misses += 1
            else:
                self.hits += 1
            return found

    def put(self, key: str, value: CachedScores) -> None:
        """Store ``value`` under ``key`` (and in the SQLite file, if any)."""
        with self._lock:
            self._remember(key, value)
            if self._db is not None:
                row = (
                    key,
                    _to_npy(value.log_scores),
                    _to_npy(value.content_free),
                    _to_npy(value.prefix_tokens),
                    _to_npy(value.prefix_nll),
                    json.dumps(value.truncation),
                )
                try:
                    _retry_while_locked(lambda: self._insert(row))
                except sqlite3.DatabaseError as exc:
                    raise self._corrupt(exc) from None

    def _insert(self, row: tuple) -> None:
        assert self._db is not None
        try:
            self._db.execute("INSERT OR REPLACE INTO rewards VALUES (?, ?, ?, ?, ?, ?)", row)
            self._db.commit()
        except sqlite3.OperationalError:
            self._db.rollback()
            raise

    def _remember(self, key: str, value: CachedScores) -> None:
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    @property
    def hit_rate(self) -> float:
        """Hits over lookups (0 before any lookup)."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def stats(self) -> RewardCacheStats:
        """Hits, misses, hit rate and size."""
        path = str(self.path) if self.path else None
        return RewardCacheStats(self.hits, self.misses, round(self.hit_rate, 4), len(self._entries), path)

    def close(self) -> None:
        """Close the SQLite connection."""
        if self._db is not None:
            self._db.close()
            self._db = None
