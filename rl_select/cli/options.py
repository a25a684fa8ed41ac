"""Command-line options derived from a settings schema: one typer option per setting (see :mod:`rl_select.settings`)."""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Mapping
from dataclasses import is_dataclass
from typing import Any

from rl_select.errors import ConfigError
from rl_select.settings import Leaf, check_value, default_text, leaves, unwrap_optional
from rl_select.types import Overrides

SCALARS = (int, float, str, bool)


def option_type(leaf: Leaf) -> Any:
    """The type the command line parses a setting's value as (``str`` for lists and mappings: YAML text)."""
    base, _ = unwrap_optional(leaf.kind)
    return base if base in SCALARS else str


def command_options(cls: type) -> list[inspect.Parameter]:
    """One keyword parameter per setting of ``cls``, ready for a typer command's signature (all default None)."""
    import typer  # deferred: CLI start-up

    params = []
    for leaf in leaves(cls):
        decls = leaf.flags
        if option_type(leaf) is bool:
            decls = tuple(f"{flag}/--no-{flag.removeprefix('--')}" for flag in decls if flag.startswith("--"))
        help_text = f"{leaf.spec.help} [{default_text(leaf)}]"
        base = unwrap_optional(leaf.kind)[0]
        if typing.get_origin(base) is tuple:
            help_text += " (a list: a,b or [a, b]; repeatable)"
        elif typing.get_origin(base) is dict or is_dataclass(base):
            help_text += " (a YAML mapping: {key: value})"
        option = typer.Option(
            None,
            *decls,
            help=help_text,
            show_default=False,
        )
        annotation = (typing.Literal[leaf.spec.choices] if leaf.spec.choices else option_type(leaf)) | None
        if is_list(leaf):
            annotation = list[str] | None  # repeatable, and each value may hold several: a,b or [a, b]
        params.append(
            inspect.Parameter(leaf.param, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation)
        )
    return params


def is_list(leaf: Leaf) -> bool:
    """Whether a setting holds a list (its option is repeatable)."""
    return typing.get_origin(unwrap_optional(leaf.kind)[0]) is tuple


def given_values(cls: type, options: Mapping[str, Any]) -> Overrides:
    """The settings a command's options set (None or no values: not given), by dotted path, text parsed."""
    given = {}
    for leaf in leaves(cls):
        value = options.get(leaf.param)
        if isinstance(value, (list, tuple)) and is_list(leaf):  # a repeatable option: its values joined
            value = [item for text in value for item in _as_list(parse_text(text, leaf))] or None
        if value is not None:
            given[leaf.path] = parse_text(value, leaf) if isinstance(value, str) else value
            check_value(leaf.flags[0], given[leaf.path], leaf.spec)  # named as typed: --n-test, not rows
    return given


def _as_list(value: Any) -> list[Any]:
    return list(value) if isinstance(value, (list, tuple)) else [value]


def parse_sets(cls: type, sets: list[str]) -> Overrides:
    """``--set path=value`` items by path, each value parsed as its setting's type (YAML, or a,b for a list)."""
    by_path = {leaf.path: leaf for leaf in leaves(cls)}
    parsed: Overrides = {}
    for item in sets:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got '{item}'")
        key, text = (part.strip() for part in item.split("=", 1))
        parsed[key] = parse_text(text, by_path.get(key))
    return parsed


def parse_text(text: str, leaf: Leaf | None = None) -> Any:
    """A value written on the command line: YAML (``4``, ``[a, b]``, ``{k: 1}``, ``null``), or ``a,b`` for a list."""
    import yaml  # deferred: CLI start-up (loads PyYAML)

    if leaf is not None and option_type(leaf) is str and unwrap_optional(leaf.kind)[0] is str:
        return None if text == "null" and unwrap_optional(leaf.kind)[1] else text
    wants_list = leaf is not None and is_list(leaf)
    if wants_list and not text.lstrip().startswith("["):
        parts = [part.strip() for part in text.split(",") if part.strip()]
        strings = typing.get_args(unwrap_optional(leaf.kind)[0])[0] is str  # type: ignore[union-attr]
        return parts if strings else [parse_text(part) for part in parts]
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def with_options(cls: type, command: Callable[..., Any], *, skip: tuple[str, ...] = ()) -> Callable[..., Any]:
    """``command`` with one option per setting of ``cls`` added to its signature.

    ``--help`` lists the settings with short flags first, then ``command``'s own options, then the rest.

    The wrapper passes the settings the user gave as ``settings`` (dotted path → value); ``command``'s own
    parameters stay as they are. ``skip`` leaves settings off the command line (YAML and ``--set`` still reach
    them).
    """
    hints = typing.get_type_hints(command)  # resolved where ``command`` is defined, not here
    own = [
        p.replace(kind=inspect.Parameter.KEYWORD_ONLY, annotation=hints.get(p.name, p.annotation))
        for p in inspect.signature(command).parameters.values()
        if p.name != "settings"
    ]
    schema = [p for p in command_options(cls) if p.name.replace("__", ".") not in skip]
    names = {p.name for p in schema}
    short = {leaf.param for leaf in leaves(cls) if leaf.spec.flags}
    ordered = [*(p for p in schema if p.name in short), *own, *(p for p in schema if p.name not in short)]

    def wrapper(**kwargs: Any) -> Any:
        settings = given_values(cls, {k: v for k, v in kwargs.items() if k in names})
        return command(settings=settings, **{k: v for k, v in kwargs.items() if k not in names})

    wrapper.__signature__ = inspect.Signature(ordered)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in ordered}
    wrapper.__doc__, wrapper.__name__ = command.__doc__, command.__name__
    wrapper.__module__ = command.__module__
    return wrapper


__all__ = [
    "SCALARS",
    "command_options",
    "given_values",
    "is_list",
    "option_type",
    "parse_sets",
    "parse_text",
    "with_options",
]
