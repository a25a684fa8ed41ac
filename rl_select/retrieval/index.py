"""Exact inner-product search over normalised embeddings with faiss, cached on disk.

Vectors are unit norm, so inner product is cosine similarity. The index is a ``faiss.IndexFlatIP``, moved to
the GPU when faiss was built with GPU support (``rl-select[gpu]``) and CUDA is present. Embeddings of a split
are cached under ``<cache>/embeddings/<task>-<split fingerprint>-<embedder hash>.npy`` and the pool's index
beside them as ``.faiss``, so a pool is embedded once per embedder.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from rl_select.errors import ArtifactError, ModelError
from rl_select.paths import cache_dir, file_lock
from rl_select.retrieval.base import Embedder, embedder_digest
from rl_select.tasks.task import Task

logger = logging.getLogger(__name__)


def import_faiss() -> Any:
    """Import faiss or explain how to install it."""
    try:
        import faiss  # deferred: loads faiss
    except ImportError:
        raise ModelError("retrieval needs faiss: pip install 'rl-select[cpu]' (or 'rl-select[gpu]')") from None
    return faiss


def gpu_available(faiss: Any) -> bool:
    """Whether this faiss build has GPU support and a GPU is visible."""
    return hasattr(faiss, "StandardGpuResources") and getattr(faiss, "get_num_gpus", lambda: 0)() > 0


class VectorIndex:
    """Exact cosine-similarity search over unit vectors.

    Args:
        vectors: ``[N, D]`` float32 unit vectors.
        use_gpu: Move the index to the GPU when faiss and CUDA allow (``None``: whenever possible).
        cpu_index: An already built ``IndexFlatIP`` over ``vectors`` (as read by :meth:`load`).
    """

    def __init__(self, vectors: np.ndarray, use_gpu: bool | None = None, cpu_index: Any = None) -> None:
        faiss = import_faiss()
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if cpu_index is None:
            cpu_index = faiss.IndexFlatIP(self.vectors.shape[1])
            cpu_index.add(self.vectors)
        self._cpu_index = cpu_index
        self.on_gpu = gpu_available(faiss) if use_gpu is None else (use_gpu and gpu_available(faiss))
        if self.on_gpu:
            self._resources = faiss.StandardGpuResources()
            self.index = faiss.index_cpu_to_gpu(self._resources, 0, cpu_index)
        else:
            self.index = cpu_index

    @classmethod
    def load(cls, path: Path, vectors: np.ndarray, use_gpu: bool | None = None) -> VectorIndex:
        """Read an index written by :meth:`save`; its size must match ``vectors``."""
        faiss = import_faiss()
        try:
            cpu_index = faiss.read_index(str(path))
        except RuntimeError:
            raise ArtifactError(f"corrupt faiss index {path}") from None
        if cpu_index.ntotal != len(vectors) or cpu_index.d != vectors.shape[1]:
            raise ArtifactError(
                f"faiss index {path} holds {cpu_index.ntotal}x{cpu_index.d}, expected {len(vectors)}x{vectors.shape[1]}"
            )
        return cls(vectors, use_gpu=use_gpu, cpu_index=cpu_index)

    def save(self, path: Path) -> None:
        """Write the (CPU copy of the) index."""
        import_faiss().write_index(self._cpu_index, str(path))

    def __len__(self) -> int:
        return int(self._cpu_index.ntotal)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top ``k`` neighbours of each query: ``(similarities [n, k], ids [n, k])``, most similar first.

        A single query on the CPU is searched with one OpenMP thread (the calling thread's setting is restored
        after): a team of threads gains nothing for one query and, left spinning, slowed the query-mode service's
        ONNX embedder on 2 cores (selection p50 14.7 → 6.8 ms in-process).
        """
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = min(k, len(self))
        if self.on_gpu or len(queries) != 1:
            return self.index.search(queries, k)
        faiss = import_faiss()
        threads = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            return self.index.search(queries, k)
        finally:
            faiss.omp_set_num_threads(threads)


ProgressFactory = Callable[[str, int], Callable[[int], None]]


def split_embeddings(task: Task, split: str, embedder: Embedder, progress: ProgressFactory | None = None) -> np.ndarray:
    """Embeddings of a split's ``input_text`` (cached on disk per split content and embedder).

    ``progress(description, total)`` is called only when the split has to be embedded.
    """
    path = _cache_path(task, split, embedder, ".npy")
    if path.is_file():
        vectors = np.load(path, allow_pickle=False)
        if vectors.shape[0] == len(task.split(split)):
            return vectors
    with file_lock(path.with_suffix(".lock")):
        if path.is_file():
            vectors = np.load(path, allow_pickle=False)
            if vectors.shape[0] == len(task.split(split)):
                return vectors
        logger.info("embedding %d %s rows of %s with %s", len(task.split(split)), split, task.name, embedder.id)
        rows = task.split(split)
        advance = progress(f"embedding {task.name} {split}", len(rows)) if progress else None
        vectors = embedder.embed([e.input_text for e in rows], progress=advance)
        tmp = path.with_suffix(".tmp.npy")
        np.save(tmp, vectors, allow_pickle=False)
        tmp.replace(path)
    return vectors


def pool_index(task: Task, embedder: Embedder, progress: ProgressFactory | None = None) -> VectorIndex:
    """The faiss index over the task's pool (``train``), cached on disk beside its embeddings."""
    vectors = split_embeddings(task, "train", embedder, progress)
    path = _cache_path(task, "train", embedder, ".faiss")
    if path.is_file():
        try:
            return VectorIndex.load(path, vectors)
        except ArtifactError:
            logger.warning("rebuilding corrupt cached index %s", path)
    index = VectorIndex(vectors)
    with file_lock(path.with_suffix(".lock")):
        tmp = path.with_suffix(".tmp.faiss")
        index.save(tmp)
        tmp.replace(path)
    return index


def _cache_path(task: Task, split: str, embedder: Embedder, suffix: str) -> Path:
    name = f"{task.name}-{split}-{task.fingerprint(split)}-{embedder_digest(embedder.id)}{suffix}"
    return cache_dir("embeddings") / name
