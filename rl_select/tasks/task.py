"""Examples and tasks."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace

import numpy as np

from rl_select.errors import ConfigError, unknown_name
from rl_select.tasks.template import PromptTemplate
from rl_select.types import ExampleKey

SPLITS = ("train", "dev", "test")
"""train = candidate pool, dev = reward set, test = held-out evaluation."""


@dataclass(frozen=True)
class Example:
    """One labelled row of a task split."""

    split: str
    id: int
    text: str
    label: str
    text_pair: str | None = None

    @property
    def key(self) -> ExampleKey:
        """``(split, id)``: identifies the example within its task."""
        return (self.split, self.id)

    @property
    def input_text(self) -> str:
        """The text an embedder or BM25 sees: ``text``, plus ``text_pair`` on its own line for pair tasks."""
        return self.text if self.text_pair is None else f"{self.text}\n{self.text_pair}"

    def to_dict(self) -> dict:
        """JSON form (``id``, ``text``, ``label`` and ``text_pair`` when present)."""
        row = {"id": self.id, "text": self.text, "label": self.label}
        if self.text_pair is not None:
            row["text_pair"] = self.text_pair
        return row


@dataclass
class Task:
    """A classification task: labels, prompt format and its three splits.

    Args:
        name: Short name (``sst2``).
        template: Prompt template, verbalizer and labels.
        splits: ``train`` (candidate pool), ``dev`` (reward set) and ``test`` (held-out evaluation).
        source: Where the task came from (``data-dir:/path``, ``hub:SetFit/sst2``, ``file:/path/task.json``).
        description: Free text from the task file.
    """

    name: str
    template: PromptTemplate
    splits: dict[str, list[Example]]
    source: str
    description: str = ""
    _fingerprints: dict[str, str] = field(default_factory=dict, init=False, repr=False)

    @property
    def labels(self) -> tuple[str, ...]:
        """The task's labels, in score-column order."""
        return self.template.labels

    @property
    def num_labels(self) -> int:
        """Number of labels."""
        return len(self.template.labels)

    @property
    def train(self) -> list[Example]:
        """The candidate pool."""
        return self.splits["train"]

    @property
    def dev(self) -> list[Example]:
        """The reward / validation set."""
        return self.splits["dev"]

    @property
    def test(self) -> list[Example]:
        """The held-out evaluation set."""
        return self.splits["test"]

    def split(self, name: str) -> list[Example]:
        """Rows of split ``name`` (``train``, ``dev`` or ``test``)."""
        if name not in self.splits:
            raise unknown_name("split", name, self.splits)
        return self.splits[name]

    def label_index(self, label: str) -> int:
        """Column of ``label`` in score arrays."""
        return self.template.labels.index(label)

    def gold(self, examples: list[Example]) -> np.ndarray:
        """Label indices of ``examples``."""
        index = {label: i for i, label in enumerate(self.labels)}
        return np.array([index[e.label] for e in examples], dtype=np.int64)

    def sample(self, split: str, n: int | None, seed: int) -> list[Example]:
        """A seeded random subset of ``n`` rows of ``split`` (all rows, in order, when ``n`` is None)."""
        rows = self.split(split)
        if n is None or n >= len(rows):
            return list(rows)
        if n <= 0:
            raise ConfigError(f"sample size must be positive, got {n}")
        picked = np.random.default_rng(seed).choice(len(rows), size=n, replace=False)
        return [rows[i] for i in sorted(picked.tolist())]

    def subset_pool(self, size: int | None, seed: int = 0) -> Task:
        """This task with a seeded random subset of ``size`` pool rows (re-numbered 0..size-1); all if None.

        For runs sized for a CPU: every method then draws from the same smaller pool.
        """
        if size is None or size >= len(self.train):
            return self
        if size < 2:
            raise ConfigError(f"pool size must be at least 2, got {size}")
        picked = sorted(np.random.default_rng(seed).choice(len(self.train), size=size, replace=False).tolist())
        train = [replace(self.train[i], id=new) for new, i in enumerate(picked)]
        return Task(
            name=self.name,
            template=self.template,
            splits={**self.splits, "train": train},
            source=f"{self.source} (pool subset {size}, seed {seed})",
            description=self.description,
        )

    def fingerprint(self, split: str) -> str:
        """sha256 over the split's rows and the prompt format: keys caches of embeddings and rewards."""
        if split not in self._fingerprints:
            h = hashlib.sha256(json.dumps(self.template.to_dict(), sort_keys=True).encode())
            for e in self.split(split):
                h.update(json.dumps(e.to_dict(), sort_keys=True).encode())
            self._fingerprints[split] = h.hexdigest()[:16]
        return self._fingerprints[split]

    def summary(self) -> dict:
        """Name, source, labels and row counts."""
        return {
            "name": self.name,
            "source": self.source,
            "labels": list(self.labels),
            "rows": {s: len(rows) for s, rows in self.splits.items()},
        }
