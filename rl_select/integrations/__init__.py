"""Adapters that put an exported rl-select policy where users already build prompts: LangChain and DSPy.

Each adapter imports its library only when used (extras ``langchain`` and ``dspy``) and wraps the light runtime
(:func:`rl_select.export.runtime.load_selector`), so no training code or torch is imported.
"""

from __future__ import annotations

from pathlib import Path

from rl_select.export.runtime import Selector, load_selector


def as_selector(policy: str | Path | Selector) -> Selector:
    """An exported policy directory (or an already loaded :class:`Selector`) as a :class:`Selector`."""
    return policy if isinstance(policy, Selector) else load_selector(policy)


def missing_extra(extra: str, package: str) -> ImportError:
    """The one-line error when an optional dependency is not installed."""
    return ImportError(f"this adapter needs {package}: pip install 'rl-select[{extra}]'")
