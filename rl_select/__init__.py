"""rl-select: learn which in-context demonstrations to put in an LLM prompt.

The heavy parts (torch, transformers, SB3, Ray) are imported only by the modules that use them, so
``import rl_select`` and the exported-policy runtime (:func:`load_selector`) stay light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rl_select._version import __version__

if TYPE_CHECKING:
    from rl_select.export.runtime import Demonstration, Selector, load_selector

__all__ = ["Demonstration", "Selector", "__version__", "load_selector"]


def __getattr__(name: str) -> Any:
    if name in {"load_selector", "Selector", "Demonstration"}:
        from rl_select.export import runtime  # deferred: loads numpy and pydantic

        return getattr(runtime, name)
    raise AttributeError(f"module 'rl_select' has no attribute {name!r}")
