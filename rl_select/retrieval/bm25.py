"""BM25 over the candidate pool with ``bm25s``."""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np


class BM25Index:
    """Lexical retrieval over a list of documents.

    Args:
        documents: The pool's texts, in pool-id order.
    """

    def __init__(self, documents: Sequence[str]) -> None:
        import bm25s  # deferred: loads scipy and bm25s

        logging.getLogger("bm25s").setLevel(logging.WARNING)  # bm25s sets DEBUG on import
        self._bm25s = bm25s
        self.size = len(documents)
        self.retriever = bm25s.BM25()
        self.retriever.index(bm25s.tokenize(list(documents), stopwords="en", show_progress=False), show_progress=False)

    def search(self, query: str, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` documents for ``query``: ``(scores [k], ids [k])``, best first."""
        k = min(k, self.size)
        tokens = self._bm25s.tokenize([query], stopwords="en", show_progress=False)
        if not tokens.vocab:  # only stop words: no lexical signal, every document scores 0
            return np.zeros(k), np.arange(k)
        ids, scores = self.retriever.retrieve(tokens, k=k, show_progress=False)
        return scores[0], ids[0]
