"""Embeddings, faiss and BM25 retrieval over a task's candidate pool."""

from rl_select.retrieval.bm25 import BM25Index
from rl_select.retrieval.embed import (
    Embedder,
    LMEmbedder,
    SentenceTransformerEmbedder,
    make_embedder,
    normalize,
)
from rl_select.retrieval.index import VectorIndex, pool_index, split_embeddings

__all__ = [
    "BM25Index",
    "Embedder",
    "LMEmbedder",
    "SentenceTransformerEmbedder",
    "VectorIndex",
    "make_embedder",
    "normalize",
    "pool_index",
    "split_embeddings",
]
