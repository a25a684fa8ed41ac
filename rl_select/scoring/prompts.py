r"""Prompts as token sequences.

Each demonstration block (``query part + answer + tail + separator``), each query part and each label's answer
is tokenized once and cached; prompts are concatenations of those token lists. Tokenizing a whole prompt string
instead moves token boundaries between blocks (on SST-2 with SmolLM2 that alone flipped 6% of predictions),
and would make a cached demonstration prefix differ from the same prefix inside a longer prompt.

Over-long prompts follow one declared policy, applied per query and always reported: drop the oldest
demonstrations until the prompt fits; if the query alone is still too long, cut tokens out of the middle of
its query part, keeping its head and the template's tail (the ``\\nSentiment:`` cue before the answer).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from rl_select.tasks.task import Example, Task
from rl_select.types import ExampleKey

CONTENT_FREE_INPUTS = ("N/A", "", "[MASK]")
"""Content-free inputs of contextual calibration (Zhao et al. 2021)."""


@dataclass
class TruncationReport:
    """What the over-long-prompt policy did in one scoring call."""

    queries: int = 0
    queries_with_dropped_demos: int = 0
    demos_dropped: int = 0
    queries_truncated: int = 0

    def merge(self, other: TruncationReport) -> None:
        """Add another report's counts to this one."""
        self.queries += other.queries
        self.queries_with_dropped_demos += other.queries_with_dropped_demos
        self.demos_dropped += other.demos_dropped
        self.queries_truncated += other.queries_truncated

    @property
    def any(self) -> bool:
        """Whether any prompt was shortened."""
        return bool(self.queries_with_dropped_demos or self.queries_truncated)

    def to_dict(self) -> dict[str, int]:
        """JSON form."""
        return {
            "queries": self.queries,
            "queries_with_dropped_demos": self.queries_with_dropped_demos,
            "demos_dropped": self.demos_dropped,
            "queries_truncated": self.queries_truncated,
        }


@dataclass(frozen=True)
class PlannedQuery:
    """One query's prompt after the length policy: which demonstrations it keeps and its tokens."""

    num_dropped: int
    tokens: tuple[int, ...]
    truncated: bool


@dataclass
class PromptEncoder:
    """Tokenizes a task's blocks once and builds token-level prompts.

    Args:
        task: The task whose template and verbalizer are used.
        tokenizer: A transformers tokenizer.
    """

    task: Task
    tokenizer: object
    _blocks: dict[ExampleKey, tuple[int, ...]] = field(default_factory=dict, init=False, repr=False)
    _queries: dict[ExampleKey, tuple[int, ...]] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        template = self.task.template
        self.special_prefix: tuple[int, ...] = self._special_prefix()
        self.label_tokens: tuple[tuple[int, ...], ...] = tuple(
            self.encode(template.answer(label)) for label in template.labels
        )
        if any(len(t) == 0 for t in self.label_tokens):
            raise ValueError("a verbalized label encodes to no tokens")
        self.separator_tokens = self.encode(template.separator)
        self.tail_tokens = self.encode(template.tail)
        cue = template.query_template.rsplit("}", 1)[-1]  # the fixed text after the last input field
        self.query_cue_length = len(self.encode(cue))
        self.content_free = tuple(
            Example(
                split="content-free",
                id=i,
                text=text,
                label=self.task.labels[0],
                text_pair=text if template.uses_text_pair else None,
            )
            for i, text in enumerate(CONTENT_FREE_INPUTS)
        )

    def encode(self, text: str) -> tuple[int, ...]:
        """Token ids of ``text`` without special tokens."""
        if not text:
            return ()
        return tuple(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _special_prefix(self) -> tuple[int, ...]:
        """The special tokens the tokenizer puts before a text (BOS for Llama-2 style tokenizers; often none)."""
        probe = "a"
        plain = self.tokenizer(probe, add_special_tokens=False)["input_ids"]
        full = self.tokenizer(probe)["input_ids"]
        if len(full) > len(plain) and full[len(full) - len(plain) :] == plain:
            return tuple(full[: len(full) - len(plain)])
        return ()

    @property
    def max_label_length(self) -> int:
        """Tokens in the longest answer."""
        return max(len(t) for t in self.label_tokens)

    def block(self, example: Example) -> tuple[int, ...]:
        """Tokens of one demonstration block, separator included (cached)."""
        cached = self._blocks.get(example.key)
        if cached is None:
            label = self.task.labels.index(example.label)
            cached = self.query(example) + self.label_tokens[label] + self.tail_tokens + self.separator_tokens
            self._blocks[example.key] = cached
        return cached

    def query(self, example: Example) -> tuple[int, ...]:
        """Tokens of one query part (cached)."""
        cached = self._queries.get(example.key)
        if cached is None:
            cached = self.encode(self.task.template.query(example.text, example.text_pair))
            self._queries[example.key] = cached
        return cached

    def prefix(self, demos: Sequence[Example]) -> list[int]:
        """Tokens of the demonstration prefix: special tokens, then every block."""
        tokens = list(self.special_prefix)
        for demo in demos:
            tokens.extend(self.block(demo))
        return tokens

    def plan(self, demos: Sequence[Example], query: Example, max_tokens: int) -> PlannedQuery:
        """Apply the over-long-prompt policy to one (demonstrations, query) pair."""
        budget = max_tokens - self.max_label_length
        tokens = self.query(query)
        lengths = [len(self.block(d)) for d in demos]
        used = len(self.special_prefix) + sum(lengths)
        dropped = 0
        while dropped < len(demos) and used + len(tokens) > budget:
            used -= lengths[dropped]
            dropped += 1
        truncated = False
        room = budget - used
        if len(tokens) > room:
            if room < 2:
                raise ValueError(f"max prompt length {max_tokens} leaves no room for a query")
            tail = min(self.query_cue_length, room // 2)
            tokens = tokens[: room - tail] + tokens[len(tokens) - tail :]
            truncated = True
        return PlannedQuery(num_dropped=dropped, tokens=tokens, truncated=truncated)
