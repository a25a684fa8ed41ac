r"""Prompt templates and verbalizers.

A template such as ``"Review: {text}\\nSentiment: {label}"`` is split at ``{label}`` into the *query part*
(``"Review: {text}\\nSentiment:"``), the *answer* (``" positive"``: the space before the slot moves into the
answer, so the scored continuation starts with it, as the tokenizer would see it in running text) and a tail
that only demonstrations carry. A demonstration is ``query part + answer + tail``; prompts join
demonstrations with the task's separator.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from rl_select.errors import DataError

FIELD_PATTERN = re.compile(r"\{([^{}]*)\}")
TEXT_FIELDS = ("text", "text_pair")
KNOWN_FIELDS = (*TEXT_FIELDS, "label")
DEFAULT_SEPARATOR = "\n\n"


@dataclass(frozen=True)
class PromptTemplate:
    """A task's prompt format: template, verbalizer and demonstration separator.

    Args:
        template: Text with ``{text}``, optionally ``{text_pair}``, and exactly one ``{label}`` after them.
        verbalizer: Maps every label to the word the LLM is scored on (non-empty, distinct).
        labels: The task's labels, in a fixed order (the order of score columns).
        separator: Placed between demonstrations and before the query.
    """

    template: str
    verbalizer: Mapping[str, str]
    labels: tuple[str, ...]
    separator: str = DEFAULT_SEPARATOR
    query_template: str = field(init=False, repr=False)
    answer_prefix: str = field(init=False, repr=False)
    tail: str = field(init=False, repr=False)

    def __post_init__(self) -> None:
        fields = FIELD_PATTERN.findall(self.template)
        unknown = sorted({f for f in fields if f not in KNOWN_FIELDS})
        if unknown:
            raise DataError(
                f"template has unknown field(s) {', '.join('{' + u + '}' for u in unknown)}; "
                f"allowed: {{text}}, {{text_pair}}, {{label}} (template: {self.template!r})"
            )
        if "text" not in fields:
            raise DataError(f"template must contain {{text}}: {self.template!r}")
        if fields.count("label") != 1:
            raise DataError(f"template must contain {{label}} exactly once: {self.template!r}")
        head, tail = self.template.split("{label}")
        if "{text}" not in head or ("{text_pair}" in tail):
            raise DataError(f"template must place {{label}} after {{text}} and {{text_pair}}: {self.template!r}")
        if len(set(self.labels)) != len(self.labels):
            raise DataError(f"task labels must be distinct, got {list(self.labels)}")
        if len(self.labels) < 2:
            raise DataError(f"a task needs at least two labels, got {list(self.labels)}")
        missing = [label for label in self.labels if label not in self.verbalizer]
        if missing:
            raise DataError(f"verbalizer has no word for label(s) {missing}")
        words = [self.verbalizer[label] for label in self.labels]
        if any(not isinstance(w, str) or not w.strip() for w in words):
            raise DataError(f"verbalizer words must be non-empty strings, got {words}")
        if len({w.strip() for w in words}) != len(words):
            raise DataError(f"verbalizer words must be distinct, got {words}")
        stripped = head.rstrip(" ")
        object.__setattr__(self, "query_template", stripped)
        object.__setattr__(self, "answer_prefix", head[len(stripped) :])
        object.__setattr__(self, "tail", tail)

    @property
    def uses_text_pair(self) -> bool:
        """Whether the template reads a second text (pair tasks such as RTE and CB)."""
        return "{text_pair}" in self.template

    def query(self, text: str, text_pair: str | None = None) -> str:
        """The query part for one input: the template up to the label slot, fields filled in."""
        values = {"text": text, "text_pair": text_pair if text_pair is not None else ""}
        return FIELD_PATTERN.sub(lambda m: values[m.group(1)], self.query_template)

    def answer(self, label: str) -> str:
        """The scored continuation for ``label``: the verbalized word with its leading space."""
        return self.answer_prefix + self.verbalizer[label]

    def demonstration(self, text: str, label: str, text_pair: str | None = None) -> str:
        """One filled-in demonstration, without the separator."""
        return self.query(text, text_pair) + self.answer(label) + self.tail

    def prompt(self, demonstrations: list[tuple[str, str, str | None]], text: str, text_pair: str | None = None) -> str:
        """A full prompt as a string: demonstrations ``(text, label, text_pair)`` then the query part."""
        blocks = [self.demonstration(t, label, p) + self.separator for t, label, p in demonstrations]
        return "".join(blocks) + self.query(text, text_pair)

    def to_dict(self) -> dict:
        """The JSON form used in ``task.json`` files and exported manifests."""
        return {
            "template": self.template,
            "verbalizer": dict(self.verbalizer),
            "labels": list(self.labels),
            "separator": self.separator,
        }
