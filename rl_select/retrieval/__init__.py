"""Embeddings, faiss and BM25 retrieval over a task's candidate pool.

Names are imported on first use, so ``rl_select.retrieval.index`` (numpy + faiss) can be used without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BM25Index": "rl_select.retrieval.bm25",
    "Embedder": "rl_select.retrieval.base",
    "normalize": "rl_select.retrieval.base",
    "LMEmbedder": "rl_select.retrieval.embed",
    "SentenceTransformerEmbedder": "rl_select.retrieval.embed",
    "make_embedder": "rl_select.retrieval.embed",
    "VectorIndex": "rl_select.retrieval.index",
    "pool_index": "rl_select.retrieval.index",
    "split_embeddings": "rl_select.retrieval.index",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rl_select.retrieval' has no attribute {name!r}")
