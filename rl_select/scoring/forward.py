"""The scorer's backend: forward passes of a transformers causal LM over packed token trees.

A backend answers two questions and counts its work in :class:`ScorerStats`:

* :meth:`TorchBackend.prefix_state`: the KV state of a demonstration prefix (built from scratch or by extending
  a cached ancestor);
* :meth:`TorchBackend.forward_rows`: log-probabilities at chosen positions of several token trees, one batch row
  each, every row after its own KV-cached prefix.

Rows are right-padded to the widest; rows after the same prefix share its KV state (expanded, not recomputed),
rows after different prefixes get them left-padded. A row is a query (or a candidate block with its queries)
and its answer branches, so attention costs each query its own length times the prefix's, not the whole
batch's: packing many queries into one long row under a 4D mask computed attention between every pair of
them, which was half of a CPU forward's time.
"""

from __future__ import annotations

import inspect
import time
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import torch

from rl_select.errors import ConfigError
from rl_select.scoring.cache import PrefixState
from rl_select.scoring.model import LanguageModel
from rl_select.scoring.packing import TokenTree, additive_mask
from rl_select.scoring.results import ScorerStats


@dataclass
class Row:
    """One batch row: a token tree after a prefix, and the tree indices whose next-token log-probs are read."""

    prefix: PrefixState
    tree: TokenTree
    reads: list[int]


class TorchBackend:
    """Forward passes of ``lm`` (any transformers causal LM that takes 4D masks and explicit positions).

    Args:
        lm: The language model.
        stats: Where forwards, tokens, padding and seconds are counted.
    """

    name = "torch"

    def __init__(self, lm: LanguageModel, stats: ScorerStats) -> None:
        self.lm = lm
        self.stats = stats
        parameters = inspect.signature(lm.model.forward).parameters
        self._keeps_logits = "logits_to_keep" in parameters
        # the KV cache's argument: ``cache`` since transformers 5.2x, ``past_key_values`` before (removed in 5.40)
        self._cache_keyword = "cache" if "cache" in parameters else "past_key_values"

    def prefix_state(
        self, key: tuple, tokens: list[int], base: PrefixState | None, perplexity: bool = False
    ) -> PrefixState:
        """The KV state of ``base``'s prefix followed by ``tokens`` (``base`` None: ``tokens`` from scratch).

        With ``perplexity``, the negative log-likelihood of every new prefix token is added to ``base``'s.
        """
        past_length = base.length if base is not None else 0
        tree = TokenTree(past_length=past_length)
        tree.add(tokens)
        reads = list(range(len(tokens))) if perplexity else [len(tokens) - 1]
        logprobs, cache = self._forward_one(tree, base, reads)
        nll_sum, nll_count = (base.nll_sum, base.nll_count) if base is not None else (0.0, 0)
        if perplexity:
            targets = torch.tensor(tokens[1:], device=logprobs.device)
            nll_sum -= float(logprobs[:-1].gather(1, targets[:, None]).sum())
            nll_count += len(tokens) - 1
            if base is not None and base.last_logprobs is not None:
                nll_sum -= float(base.last_logprobs[tokens[0]])
                nll_count += 1
        return PrefixState(
            key=key,
            kv=[(entry[0], entry[1]) for entry in cache],
            length=past_length + len(tokens),
            last_logprobs=logprobs[-1],
            nll_sum=nll_sum,
            nll_count=nll_count,
        )

    @torch.inference_mode()
    def forward_rows(self, rows: list[Row]) -> torch.Tensor:
        """One batched forward: float32 log-softmax ``[rows, most reads, vocab]``, row ``r``'s reads first."""
        device = self.lm.device
        past = max(row.prefix.length for row in rows)
        width = max(len(row.tree) for row in rows)
        ids = torch.zeros((len(rows), width), dtype=torch.long)
        positions = torch.zeros((len(rows), width), dtype=torch.long)
        allowed = np.zeros((len(rows), width, past + width), dtype=bool)
        for r, row in enumerate(rows):
            length, size = row.prefix.length, len(row.tree)
            ids[r, :size] = torch.tensor(row.tree.ids)
            positions[r, :size] = torch.tensor(row.tree.positions)
            own = row.tree.allowed()
            allowed[r, :size, past - length : past] = own[:, :length]
            allowed[r, :size, past : past + size] = own[:, length:]
            allowed[r, np.arange(size, width), past + np.arange(size, width)] = True  # padding attends to itself
        keep = torch.zeros((len(rows), max(len(row.reads) for row in rows)), dtype=torch.long)
        for r, row in enumerate(rows):
            keep[r, : len(row.reads)] = torch.tensor(row.reads, dtype=torch.long)
        inputs = _model_inputs(
            ids.to(device),
            positions.to(device),
            additive_mask(allowed, self.lm.dtype, device)[:, None],
            self._row_cache(rows, past),
            self._cache_keyword,
        )
        started = time.perf_counter()
        logits = self._logits_at(inputs, keep.to(device))
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        real = sum(len(row.tree) for row in rows)
        self._count(started, real, len(rows) * width - real)
        return logprobs

    def _logits_at(self, inputs: dict[str, Any], keep: torch.Tensor) -> torch.Tensor:
        """Logits ``[rows, reads, vocab]`` at each row's positions ``keep``, by the cheapest path that is exact."""
        if self.logit_reads == "rows":
            return self.lm.model(**inputs, logits_to_keep=keep).logits
        if self.logit_reads == "head":
            hidden = self.lm.model.get_decoder()(**inputs).last_hidden_state
            picked = hidden.gather(1, keep[..., None].expand(-1, -1, hidden.shape[-1]))
            return self.lm.model.get_output_embeddings()(picked)
        full = self.lm.model(**inputs).logits
        return full.gather(1, keep[..., None].expand(-1, -1, full.shape[-1]))

    def _row_cache(self, rows: list[Row], past: int) -> Any:
        """The rows' prefix KV states as one cache: expanded when all rows share one, else left-padded."""
        if not past:
            return None
        from transformers import DynamicCache  # deferred: loads transformers and httpx

        cache = DynamicCache()
        first = rows[0].prefix
        if all(row.prefix is first for row in rows):
            for layer, (keys, values) in enumerate(first.kv or []):
                cache.update(keys.expand(len(rows), -1, -1, -1), values.expand(len(rows), -1, -1, -1), layer)
            return cache
        reference = next(row.prefix.kv for row in rows if row.prefix.kv)
        for layer, (ref_keys, ref_values) in enumerate(reference):
            keys = ref_keys.new_zeros((len(rows), ref_keys.shape[1], past, ref_keys.shape[-1]))
            values = ref_values.new_zeros((len(rows), ref_values.shape[1], past, ref_values.shape[-1]))
            for r, row in enumerate(rows):
                if row.prefix.kv:
                    keys[r, :, past - row.prefix.length :] = row.prefix.kv[layer][0][0]
                    values[r, :, past - row.prefix.length :] = row.prefix.kv[layer][1][0]
            cache.update(keys, values, layer)
        return cache

    @cached_property
    def logit_reads(self) -> str:
        """How :meth:`forward_rows` reads logits at each row's own positions, probed once on two tokens.

        Set it to force a path (benchmarks and tests compare them). ``rows``: the model gathers them itself (a 2D
        ``logits_to_keep``, recent transformers). ``head``: older releases index every row with the whole 2D tensor
        (logits of the wrong shape), so the decoder's hidden states are gathered and only those go through the
        output head, where that reproduces the model's own logits (no soft-capping or scaling after the head).
        ``full``: every position's logits, then gathered: on a GPU the float32 head over all positions took a
        quarter of the scorer's device time.
        """
        device = self.lm.device
        ids = torch.zeros((2, 2), dtype=torch.long, device=device)
        with torch.inference_mode():
            if self._keeps_logits:
                keep = torch.tensor([[0], [1]], dtype=torch.long, device=device)
                logits = self.lm.model(input_ids=ids, logits_to_keep=keep, use_cache=False).logits
                if tuple(logits.shape[:2]) == (2, 1) and logits.dim() == 3:
                    return "rows"
            return "head" if self._head_reproduces_logits(ids) else "full"

    def _head_reproduces_logits(self, ids: torch.Tensor) -> bool:
        """Whether the output head applied to the decoder's hidden states gives the model's logits on ``ids``."""
        model = self.lm.model
        try:
            decoder, head = model.get_decoder(), model.get_output_embeddings()
            if decoder is model or head is None:
                return False
            full = model(input_ids=ids, use_cache=False).logits.float()
            mine = head(decoder(input_ids=ids, use_cache=False).last_hidden_state).float()
        except (AttributeError, TypeError, ValueError, NotImplementedError, RuntimeError):  # an exotic model
            return False
        return mine.shape == full.shape and torch.allclose(mine, full, rtol=1e-4, atol=1e-4)

    @torch.inference_mode()
    def _forward_one(self, tree: TokenTree, past: PrefixState | None, reads: list[int]) -> tuple[torch.Tensor, Any]:
        """One packed row after ``past``; float32 log-softmax at ``reads`` and the KV cache extended by the row."""
        from transformers import DynamicCache  # deferred: loads transformers and httpx

        device = self.lm.device
        ids = torch.tensor([tree.ids], device=device)
        positions = torch.tensor([tree.positions], device=device)
        mask = tree.attention_mask(self.lm.dtype, device)
        cache = past.as_cache() if past is not None and past.kv is not None else DynamicCache()
        inputs = _model_inputs(ids, positions, mask, cache, self._cache_keyword)
        read_index = torch.tensor(reads, device=device, dtype=torch.long)
        if self._keeps_logits:
            inputs["logits_to_keep"] = read_index
        started = time.perf_counter()
        output = self.lm.model(**inputs)
        logits = output.logits[0] if self._keeps_logits else output.logits[0, read_index]
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        self._count(started, len(tree), 0)
        return logprobs, _returned_cache(output)

    def target_nll(self, prefixes: list[list[int]], target: list[int]) -> np.ndarray:
        """Mean NLL per token of ``target`` after each prefix: left-padded rows, logits only where they predict it."""
        if min(len(prefix) for prefix in prefixes) < 1:
            raise ConfigError("query_nll needs a non-empty prefix (a demonstration or the tokenizer's BOS)")
        device = self.lm.device
        width = max(len(prefix) for prefix in prefixes) + len(target)
        rows = [[0] * (width - len(prefix) - len(target)) + prefix + target for prefix in prefixes]
        mask = torch.tensor([[0] * (width - len(p) - len(target)) + [1] * (len(p) + len(target)) for p in prefixes])
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        inputs: dict[str, Any] = {
            "input_ids": torch.tensor(rows, device=device),
            "attention_mask": mask.to(device),
            "position_ids": positions.to(device),
        }
        if self._keeps_logits:
            inputs["logits_to_keep"] = len(target) + 1
        started = time.perf_counter()
        with torch.inference_mode():
            logits = self.lm.model(**inputs).logits[:, -len(target) - 1 : -1].float()
        real = int(mask.sum())
        self._count(started, real, mask.numel() - real)
        logprobs = torch.log_softmax(logits, dim=-1)
        wanted = torch.tensor(target, device=device)
        picked = logprobs[:, torch.arange(len(target), device=device), wanted]
        return (-picked.mean(dim=-1)).cpu().numpy().astype(np.float64)

    def _count(self, started: float, tokens: int, padding: int) -> None:
        """Add one finished forward (waiting for the GPU, so the time is real) to :attr:`stats`."""
        if self.lm.device.type == "cuda":
            torch.cuda.synchronize(self.lm.device)
        self.stats.seconds += time.perf_counter() - started
        self.stats.forwards += 1
        self.stats.tokens += tokens
        self.stats.padding += padding


def _returned_cache(output: Any) -> Any:
    """The KV cache a forward returned: ``cache`` since transformers 5.2x, ``past_key_values`` before."""
    if "cache" in output:
        return output["cache"]
    return output.past_key_values  # read only where it is the name: elsewhere it warns


def _model_inputs(
    ids: torch.Tensor, positions: torch.Tensor, mask: torch.Tensor, cache: object, cache_keyword: str
) -> dict[str, Any]:
    """Keyword arguments of a forward over packed rows with explicit positions, a 4D mask and an optional KV cache."""
    return {
        "input_ids": ids,
        "position_ids": positions,
        "attention_mask": mask,
        cache_keyword: cache,
        "use_cache": cache is not None,
    }
