"""llama.cpp scoring the benchmark's prompts: the engine CPU users pick instead, measured beside ours.

The same token sequences as the naive loop and our scorer (from the same ``PromptEncoder``), from the same GGUF
file, through ``llama-cpp-python``'s low-level API, at its best as we could set it up: the demonstration prefix
is decoded once into a unified KV cache shared by up to ``sequences`` sequences, then each batch decodes that
many queries at once, one sequence each (a query's answer branches are further sequences sharing its tokens),
logits only where answers are read. ``llama-cpp-python`` has no wheel for this platform and builds from source
(about 10 minutes on two cores): ``pip install llama-cpp-python``.
"""

from __future__ import annotations

import importlib.util
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from rl_select.errors import ConfigError
from rl_select.scoring.prompts import PromptEncoder
from rl_select.tasks.task import Example


def llama_cpp_available() -> bool:
    """Whether ``llama_cpp`` (llama-cpp-python) is installed."""
    return importlib.util.find_spec("llama_cpp") is not None


class LlamaCppScorer:
    """Label log-probabilities of prompts with llama.cpp, sharing each demonstration prefix's KV cells.

    Args:
        gguf: The GGUF model file.
        threads: CPU threads.
        sequences: Queries decoded per batch (each its own sequence after the shared prefix).
        context: KV cells (prefix plus one batch of queries must fit).
    """

    def __init__(self, gguf: Path, threads: int, sequences: int = 16, context: int = 4096) -> None:
        import llama_cpp as llama  # deferred: loads llama.cpp

        self.llama = llama
        self.sequences = sequences
        llama.llama_backend_init()
        self.model = llama.llama_model_load_from_file(str(gguf).encode(), llama.llama_model_default_params())
        if not self.model:
            raise ConfigError(f"llama.cpp could not load {gguf}")
        params = llama.llama_context_default_params()
        params.n_ctx = context
        params.n_batch = context
        params.n_ubatch = 512
        params.n_seq_max = sequences
        params.n_threads = params.n_threads_batch = threads
        params.kv_unified = True  # prefix cells shared by every sequence instead of copied per sequence
        self.context_size = context
        self.ctx = llama.llama_init_from_model(self.model, params)
        self.memory = llama.llama_get_memory(self.ctx)
        self.vocab = llama.llama_vocab_n_tokens(llama.llama_model_get_vocab(self.model))
        self.batch = llama.llama_batch_init(context, 0, sequences)

    def close(self) -> None:
        """Free the context and model."""
        self.llama.llama_batch_free(self.batch)
        self.llama.llama_free(self.ctx)
        self.llama.llama_model_free(self.model)

    def log_scores(
        self,
        encoder: PromptEncoder,
        demos: Sequence[Example],
        queries: Sequence[Example],
        max_tokens: int,
        progress: Callable[[int], None] | None = None,
    ) -> np.ndarray:
        """``[Q, C]`` label log-probabilities (sum over answer tokens), as :func:`naive_log_scores` computes them."""
        labels = encoder.label_tokens
        out = np.zeros((len(queries), len(labels)))
        by_dropped: dict[int, list[int]] = defaultdict(list)
        plans = [encoder.plan(demos, q, max_tokens) for q in queries]
        for i, plan in enumerate(plans):
            by_dropped[plan.num_dropped].append(i)
        branches = [c for c, tokens in enumerate(labels) if len(tokens) > 1] or [-1]
        per_batch = max(1, self.sequences // len(branches))
        for dropped, members in by_dropped.items():
            prefix = encoder.prefix(demos[dropped:])
            self._decode_prefix(prefix)
            for start in range(0, len(members), per_batch):
                chunk = members[start : start + per_batch]
                out[chunk] = self._score_chunk(len(prefix), [plans[i].tokens for i in chunk], labels, branches)
                if progress is not None:
                    progress(len(chunk))
        return out

    def _decode_prefix(self, prefix: list[int]) -> None:
        self.llama.llama_memory_clear(self.memory, True)
        if prefix:
            every = list(range(self.sequences))
            self._decode([(t, p, every, p == len(prefix) - 1) for p, t in enumerate(prefix)])

    def _score_chunk(
        self, past: int, items: list[tuple[int, ...]], labels: tuple[tuple[int, ...], ...], branches: list[int]
    ) -> np.ndarray:
        """Decode ``items`` after the cached prefix (each with its answer branches); their label log-probs."""
        for sequence in range(self.sequences):
            self.llama.llama_memory_seq_rm(self.memory, sequence, past, -1)
        entries: list[tuple[int, int, list[int], bool]] = []
        reads: list[tuple[int, int, int, int]] = []  # (item, label or -1 for every first token, entry, token)
        for item, tokens in enumerate(items):
            own = [item * len(branches) + b for b in range(len(branches))]
            for j, token in enumerate(tokens):
                entries.append((token, past + j, own, j == len(tokens) - 1))
            reads.append((item, -1, len(entries) - 1, -1))
            for b, c in enumerate(branches):
                for j, token in enumerate(labels[c][:-1] if c >= 0 else ()):
                    entries.append((token, past + len(tokens) + j, [own[b]], True))
                    reads.append((item, c, len(entries) - 1, labels[c][j + 1]))
        self._decode(entries)
        first = [tokens[0] for tokens in labels]
        scores = np.zeros((len(items), len(labels)))
        for item, label, entry, token in reads:
            logprobs = self._logprobs(entry)
            if label < 0:
                scores[item] += logprobs[first]
            else:
                scores[item, label] += logprobs[token]
        return scores

    def _logprobs(self, entry: int) -> np.ndarray:
        pointer = self.llama.llama_get_logits_ith(self.ctx, entry)
        logits = np.ctypeslib.as_array(pointer, shape=(self.vocab,)).astype(np.float64)
        top = logits.max()
        return logits - top - np.log(np.exp(logits - top).sum())

    def _decode(self, entries: list[tuple[int, int, list[int], bool]]) -> None:
        """One ``llama_decode`` of ``(token, position, sequences, wants logits)`` entries."""
        if len(entries) > self.context_size:
            raise ConfigError(f"llama.cpp batch of {len(entries)} tokens exceeds its context of {self.context_size}")
        batch = self.batch
        batch.n_tokens = len(entries)
        for i, (token, position, sequences, logits) in enumerate(entries):
            batch.token[i] = token
            batch.pos[i] = position
            batch.n_seq_id[i] = len(sequences)
            for j, sequence in enumerate(sequences):
                batch.seq_id[i][j] = sequence
            batch.logits[i] = logits
        status = self.llama.llama_decode(self.ctx, batch)
        if status != 0:
            raise ConfigError(f"llama_decode failed with status {status}")
