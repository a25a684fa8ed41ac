"""What retrieval needs without a model: the embedder protocol and vector helpers (numpy only)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Protocol

import numpy as np


class Embedder(Protocol):
    """Maps texts to L2-normalised float32 vectors."""

    id: str
    """Identifies the embedder in cache keys and manifests."""

    def embed(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """``[len(texts), dim]`` float32, unit norm."""
        ...


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (zero rows stay zero), as contiguous float32."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors / np.clip(norms, 1e-12, None))


def embedder_digest(embedder_id: str) -> str:
    """A short, file-name-safe hash of an embedder id."""
    return hashlib.sha256(embedder_id.encode()).hexdigest()[:12]
