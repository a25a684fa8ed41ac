"""Type aliases shared across rl-select."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ForwardRef

DemoId = int
"""Index of a demonstration in a task's candidate pool (its ``train`` split)."""

Selection = list[DemoId]
"""An ordered list of pool ids: the demonstrations of one prompt, first to last."""

SplitName = str
"""One of ``"train"`` (candidate pool), ``"dev"`` (reward set) and ``"test"`` (held-out evaluation)."""

ExampleKey = tuple[str, int]
"""``(split, row id)``: identifies an example across a task's splits (for caches)."""

IdSequence = Sequence[int]

_JSON_VALUE = ForwardRef("JsonValue", module=__name__)  # resolvable by get_type_hints from any module
JsonValue = None | bool | int | float | str | list[_JSON_VALUE] | dict[str, _JSON_VALUE]
"""A value as JSON (and YAML) hold it."""

JsonObject = dict[str, JsonValue]
"""A JSON object: the on-disk form of a typed record (its ``to_dict``), or a file's content before it is checked."""

Overrides = dict[str, JsonValue]
"""Settings by their dotted path (``fqi.alpha``) with YAML values: a ``--set`` list, a sweep's grid point."""
