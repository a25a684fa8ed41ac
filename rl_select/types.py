"""Type aliases shared across rl-select."""

from __future__ import annotations

from collections.abc import Sequence

DemoId = int
"""Index of a demonstration in a task's candidate pool (its ``train`` split)."""

Selection = list[DemoId]
"""An ordered list of pool ids: the demonstrations of one prompt, first to last."""

SplitName = str
"""One of ``"train"`` (candidate pool), ``"dev"`` (reward set) and ``"test"`` (held-out evaluation)."""

ExampleKey = tuple[str, int]
"""``(split, row id)``: identifies an example across a task's splits (for caches)."""

IdSequence = Sequence[int]
