"""Baseline selectors behind one interface, and their registry.

>>> from rl_select.selectors import SELECTORS
>>> sorted(SELECTORS)[:3]
['balanced', 'best-of-n', 'bm25']
"""

from __future__ import annotations

import inspect
from typing import Any

from rl_select.errors import ConfigError, unknown_name
from rl_select.selectors.base import Selector, check_k
from rl_select.selectors.random import BalancedRandomSelector, RandomSelector, ZeroShotSelector
from rl_select.selectors.reranked import ConESelector, MDLSelector, VoteKSelector
from rl_select.selectors.retrieval import BM25Selector, DPPSelector, KNNSelector, MMRSelector
from rl_select.selectors.scored import BestOfNSelector, GreedyOracleSelector, MaxEntropySelector
from rl_select.settings import fit_to_device

SELECTORS: dict[str, type[Selector]] = {
    cls.name: cls
    for cls in (
        ZeroShotSelector,
        RandomSelector,
        BalancedRandomSelector,
        KNNSelector,
        BM25Selector,
        MMRSelector,
        DPPSelector,
        VoteKSelector,
        MDLSelector,
        ConESelector,
        MaxEntropySelector,
        BestOfNSelector,
        GreedyOracleSelector,
    )
}
"""Every baseline selector by name."""


def device_defaults(name: str, device_type: str) -> dict[str, int]:
    """The options selector ``name`` takes on ``device_type``: its schema's CPU values on a CPU, none on a GPU.

    The LLM-heavy selectors search less on a CPU (their usual defaults, the papers', stay for GPUs); options given
    explicitly win. Results record the settings used.
    """
    schema = SELECTORS[name].schema if name in SELECTORS else None
    return dict(fit_to_device(schema(), set(), device_type)[1]) if schema is not None else {}


def check_baselines(names: tuple[str, ...]) -> None:
    """Reject names that are not baseline selectors (one error naming them and the known ones)."""
    unknown = [name for name in names if name not in SELECTORS]
    if unknown:
        raise ConfigError(f"unknown baseline(s) {unknown} (choose from: {', '.join(sorted(SELECTORS))})")


def make_selector(name: str, *, strict: bool = True, **options: Any) -> Selector:
    """Instantiate a selector by name.

    Args:
        name: A key of :data:`SELECTORS`.
        strict: Reject options the selector does not take. The CLI passes ``strict=False`` because its shared
            flags (``--dev-size``, ``--num-candidates``, ...) apply only to the selectors that have them.
        **options: Constructor arguments; ``None`` values mean "the selector's default".

    Raises:
        ConfigError: Unknown name (with the closest match) or, when strict, an option the selector lacks.
    """
    if name not in SELECTORS:
        raise unknown_name("selector", name, [*SELECTORS, "all"])
    cls = SELECTORS[name]
    accepted = set(inspect.signature(cls.__init__).parameters) - {"self"}
    given = {key: value for key, value in options.items() if value is not None}
    if strict and set(given) - accepted:
        raise ConfigError(
            f"selector '{name}' has no option(s) {sorted(set(given) - accepted)}; it takes {sorted(accepted) or 'none'}"
        )
    return cls(**{key: value for key, value in given.items() if key in accepted})


__all__ = [
    "SELECTORS",
    "BM25Selector",
    "BalancedRandomSelector",
    "BestOfNSelector",
    "ConESelector",
    "DPPSelector",
    "GreedyOracleSelector",
    "KNNSelector",
    "MDLSelector",
    "MMRSelector",
    "MaxEntropySelector",
    "RandomSelector",
    "Selector",
    "VoteKSelector",
    "ZeroShotSelector",
    "check_baselines",
    "check_k",
    "device_defaults",
    "make_selector",
]
