"""Packing many prompts into one forward pass as a token tree.

Scoring needs, for every query, the log-probability of each label's answer tokens after a demonstration
prefix. Instead of one padded row per (prompt, label), the scorer lays out a *tree* of token runs in a single
row without padding:

* a node per shared piece (a demonstration prefix, a query part, one label's continuation),
* every token attends to the tokens of its ancestors and to the earlier tokens of its own node,
* positions continue from the parent's last position, so each path reads exactly like its flat prompt.

A prefix that many queries share is usually not in the tree at all but in the KV cache (``past_length``
tokens every packed token may attend to). Logits are read only at the positions whose next token is scored.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass
class TokenTree:
    """Token runs with parent links, laid out depth-first in one sequence.

    Args:
        past_length: Tokens already in the KV cache; every packed token attends to them and root nodes'
            positions start after them.
    """

    past_length: int = 0
    ids: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    starts: list[int] = field(default_factory=list)
    ends: list[int] = field(default_factory=list)
    parents: list[int] = field(default_factory=list)
    next_position: list[int] = field(default_factory=list)

    def add(self, tokens: tuple[int, ...] | list[int], parent: int = -1) -> int:
        """Append a node holding ``tokens`` under ``parent`` (-1: a root); return its id."""
        node = len(self.starts)
        first = self.past_length if parent < 0 else self.next_position[parent]
        start = len(self.ids)
        self.ids.extend(tokens)
        self.positions.extend(range(first, first + len(tokens)))
        self.starts.append(start)
        self.ends.append(len(self.ids))
        self.parents.append(parent)
        self.next_position.append(first + len(tokens))
        return node

    def last_index(self, node: int) -> int:
        """Index of the last token on the path to ``node`` that lies in the packed row.

        For an empty node that is its nearest non-empty ancestor's last token; -1 means the path is empty
        (the logits after it are the last logits of the KV-cached prefix).
        """
        while node >= 0 and self.ends[node] == self.starts[node]:
            node = self.parents[node]
        return self.ends[node] - 1 if node >= 0 else -1

    def __len__(self) -> int:
        return len(self.ids)

    def attention_mask(self, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """Additive 4D mask ``[1, 1, T, past + T]``: 0 where attention is allowed, the dtype's minimum elsewhere."""
        return additive_mask(self.allowed(), dtype, device)[None, None]

    def allowed(self) -> np.ndarray:
        """``[T, past + T]`` booleans: which key each packed token may attend to."""
        total = len(self.ids)
        allowed = np.zeros((total, self.past_length + total), dtype=bool)
        allowed[:, : self.past_length] = True
        causal_cache: dict[int, np.ndarray] = {}
        for node, (start, end) in enumerate(zip(self.starts, self.ends, strict=True)):
            n = end - start
            if n == 0:
                continue
            if n not in causal_cache:
                causal_cache[n] = np.tril(np.ones((n, n), dtype=bool))
            cols = slice(self.past_length + start, self.past_length + end)
            allowed[start:end, cols] = causal_cache[n]
            ancestor = self.parents[node]
            while ancestor >= 0:
                a_start, a_end = self.starts[ancestor], self.ends[ancestor]
                allowed[start:end, self.past_length + a_start : self.past_length + a_end] = True
                ancestor = self.parents[ancestor]
        return allowed


def additive_mask(allowed: np.ndarray, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """A float mask from booleans: 0 where allowed, the dtype's minimum elsewhere (works for eager and SDPA)."""
    mask = torch.zeros(allowed.shape, dtype=dtype)
    mask.masked_fill_(torch.from_numpy(~allowed), torch.finfo(dtype).min)
    return mask.to(device)


@dataclass
class PackedItems:
    """Token sequences whose answers are scored, laid out as one token tree, with where to read each answer.

    Attributes:
        tree: The tree (items under their heads, each label's continuation a branch after its item).
        first_reads: Per item, the packed index whose logits score every answer's first token (-1: the answer
            follows the KV-cached prefix directly).
        continuations: ``(item, label, packed index, token)`` for every later answer token.
    """

    tree: TokenTree
    first_reads: list[int]
    continuations: list[tuple[int, int, int, int]]

    @property
    def reads(self) -> list[int]:
        """The packed indices whose logits are needed: first reads (those in the row), then continuations."""
        return [r for r in self.first_reads if r >= 0] + [index for _, _, index, _ in self.continuations]


def pack_items(
    past_length: int, groups: list[tuple[tuple[int, ...], list[tuple[int, ...]]]], labels: tuple[tuple[int, ...], ...]
) -> PackedItems:
    """Pack ``(head, items)`` groups after ``past_length`` cached tokens: each item follows its group's head.

    A head is what every item of its group follows (a candidate's demonstration block, a prompt's prefix, or
    nothing); an item is a query part. Labels of more than one token get a branch after each item.
    """
    tree = TokenTree(past_length=past_length)
    first_reads: list[int] = []
    continuations: list[tuple[int, int, int, int]] = []
    multi = [c for c, tokens in enumerate(labels) if len(tokens) > 1]
    for head, items in groups:
        parent = tree.add(head) if head else -1
        for tokens in items:
            node = tree.add(tokens, parent=parent)
            item = len(first_reads)
            first_reads.append(tree.last_index(node))
            for c in multi:
                start = tree.starts[tree.add(labels[c][:-1], parent=node)]
                continuations += [(item, c, start + j, labels[c][j + 1]) for j in range(len(labels[c]) - 1)]
    return PackedItems(tree, first_reads, continuations)


def batches_by_width(widths: list[int], budget: int) -> list[list[int]]:
    """Indices of rows grouped into batches of at most ``budget`` padded tokens (rows × widest row).

    Rows are taken shortest first, so rows of similar width share a batch and padding stays small; a row wider
    than the budget forms a batch of its own.
    """
    batches: list[list[int]] = []
    widest = 0
    for index in sorted(range(len(widths)), key=lambda i: (widths[i], i)):
        widest_with = max(widest, widths[index])
        if batches and widest_with * (len(batches[-1]) + 1) <= budget:
            batches[-1].append(index)
            widest = widest_with
        else:
            batches.append([index])
            widest = widths[index]
    return batches
