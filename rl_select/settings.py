"""Settings said once: each field of a settings dataclass declares its type, default, bounds, help and CPU value.

Everything else is derived from those declarations, never kept by hand:

* the nested mapping form (YAML files, ``config.json``, sweeps) — :func:`to_mapping`, :func:`build`;
* the dotted paths of ``--set`` and of sweep grids (``evaluation.rows``, ``env.features.embedder``) —
  :func:`with_values`, :func:`leaves`;
* the command-line options (``--evaluation.rows``, plus a short flag such as ``--eval-rows`` for the settings
  a user needs first) — :func:`rl_select.cli.options.with_options`, from :func:`leaves`;
* the values fitted to a CPU (the ``cpu`` of each field: one declaration, applied by :func:`fit_to_device` and
  shown by ``--help`` and ``--dry-run``).

A field is declared with :func:`setting`::

    @dataclass(frozen=True)
    class Evaluation:
        rows: int | None = setting(None, help="Test rows (None: the whole split).", minimum=1, cpu=100)

        def __post_init__(self) -> None:
            check_fields(self)
"""

from __future__ import annotations

import dataclasses
import importlib.util
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import MISSING, dataclass, fields, is_dataclass
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from rl_select.errors import ConfigError, did_you_mean
from rl_select.types import JsonObject, JsonValue, Overrides

T = TypeVar("T")
UNSET: Any = object()
"""No CPU value: the field's default holds on every device."""
META_KEY = "rl_select.setting"

DATA_DIR_HELP = "Task data directory (default: $RL_SELECT_DATA)."
MODEL_HELP = "HF model id or path, or a .gguf file (default: the embedded SmolLM2-135M)."
DEVICE_HELP = "Scoring device: auto, cpu, cuda or cuda:N."
DTYPE_HELP = (
    "Scoring dtype: auto (CPU: the faster of float32 and bfloat16, measured once per machine; CUDA: bfloat16), "
    "float32, bfloat16 or float16."
)
"""The scoring LLM's settings, which every command shares: their help is written here once."""


@dataclass(frozen=True)
class Setting:
    """What a field declares beyond its type and default.

    Attributes:
        help: One line for ``--help`` and the docs.
        flags: Short command-line flags of a setting users need first (``("--eval-rows",)``); every setting
            also has its dotted flag (``--evaluation.rows``, ``--evaluation.best-of-n-sets``).
        minimum: Smallest allowed value (inclusive).
        above: Values must be larger than this (exclusive bound).
        maximum: Largest allowed value (inclusive).
        below: Values must be smaller than this (exclusive bound).
        choices: The allowed values of a string setting.
        cpu: The value used when the scoring model runs on a CPU and the user did not choose one.
        cpu_needs: A module the CPU value needs (when it is not installed, the default stays).
    """

    help: str
    flags: tuple[str, ...] = ()
    minimum: float | None = None
    above: float | None = None
    maximum: float | None = None
    below: float | None = None
    choices: tuple[str, ...] = ()
    cpu: Any = UNSET
    cpu_needs: str | None = None


def setting(
    default: Any = MISSING,
    *,
    help: str,
    factory: Callable[[], Any] | None = None,
    flags: tuple[str, ...] = (),
    minimum: float | None = None,
    above: float | None = None,
    maximum: float | None = None,
    below: float | None = None,
    choices: tuple[str, ...] = (),
    cpu: Any = UNSET,
    cpu_needs: str | None = None,
) -> Any:
    """A dataclass field carrying its :class:`Setting` (give ``default`` or ``factory``)."""
    meta = Setting(help, flags, minimum, above, maximum, below, tuple(choices), cpu, cpu_needs)
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata={META_KEY: meta})
    return dataclasses.field(default=default, metadata={META_KEY: meta})


DTYPES = ("auto", "float32", "bfloat16", "float16")


@dataclass(frozen=True, kw_only=True)
class DataAndModel:
    """Where the tasks are and which LLM scores them: every command's schema inherits these, declared once here."""

    data_dir: str | None = setting(None, help=DATA_DIR_HELP, flags=("--data-dir",))
    model: str | None = setting(None, help=MODEL_HELP, flags=("--model",))
    device: str = setting("auto", help=DEVICE_HELP, flags=("--device",))
    dtype: str = setting("auto", help=DTYPE_HELP, flags=("--dtype",), choices=DTYPES)


class SettingError(ConfigError):
    """A field's value is out of its declared bounds; :func:`build` prefixes the field's full path."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"{name} {problem}")
        self.name, self.problem = name, problem


# ---------------------------------------------------------------------------------------------- declarations


@dataclass(frozen=True)
class Leaf:
    """One setting of a schema: its dotted path, type, default and declaration."""

    path: str
    kind: Any
    default: Any
    spec: Setting

    @property
    def param(self) -> str:
        """Its Python parameter name on a command (``evaluation__rows``)."""
        return self.path.replace(".", "__")

    @property
    def flags(self) -> tuple[str, ...]:
        """Its command-line flags: the short ones first, then ``--<dotted path>`` (dashes for underscores)."""
        return tuple(dict.fromkeys((*self.spec.flags, f"--{self.path.replace('_', '-')}")))


def spec_of(field: dataclasses.Field) -> Setting:
    """The :class:`Setting` of a field (a field declared without :func:`setting` is a bug)."""
    try:
        return field.metadata[META_KEY]
    except KeyError:
        raise TypeError(f"field '{field.name}' is not declared with rl_select.settings.setting") from None


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _default(field: dataclasses.Field) -> Any:
    return field.default_factory() if field.default_factory is not MISSING else field.default


def leaves(cls: type, prefix: str = "") -> list[Leaf]:
    """Every setting of schema ``cls``, nested dataclasses walked into, in declaration order."""
    found = []
    for field in fields(cls):
        kind = _hints(cls)[field.name]
        if is_dataclass(kind):
            found += leaves(kind, f"{prefix}{field.name}.")
        else:
            found.append(Leaf(f"{prefix}{field.name}", kind, _default(field), spec_of(field)))
    return found


def unwrap_optional(kind: Any) -> tuple[Any, bool]:
    """``(X, True)`` for ``X | None``, else ``(kind, False)``."""
    if typing.get_origin(kind) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(kind) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(kind)) == 2:
            return args[0], True
    return kind, False


# ---------------------------------------------------------------------------------------------- checking


def check_fields(obj: Any) -> None:
    """Check every declared bound and choice of ``obj``'s own fields (call it from ``__post_init__``)."""
    for field in fields(obj):
        spec = field.metadata.get(META_KEY)
        value = getattr(obj, field.name)
        if spec is None or value is None or is_dataclass(value):
            continue
        check_value(field.name, value, spec)


def check_value(name: str, value: Any, spec: Setting) -> None:
    """Raise :class:`SettingError` (naming ``name``) where ``value`` is outside the setting's choices or bounds."""
    if spec.choices and value not in spec.choices:
        raise SettingError(name, f"must be one of {', '.join(spec.choices)}; got {value!r}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        _check_bounds(name, value, spec)


def _check_bounds(name: str, value: float, spec: Setting) -> None:
    bounds = (
        (spec.minimum, value >= (spec.minimum or 0), ">="),
        (spec.above, value > (spec.above or 0), ">"),
        (spec.maximum, value <= (spec.maximum or 0), "<="),
        (spec.below, value < (spec.below or 0), "<"),
    )
    for bound, ok, sign in bounds:
        if bound is not None and not ok:
            raise SettingError(name, f"must be {sign} {bound:g}, got {value}")


def _coerce(path: str, kind: Any, value: Any) -> Any:
    """``value`` checked against annotation ``kind`` (lists become tuples, ints become floats)."""
    base, optional = unwrap_optional(kind)
    if value is None:
        if optional or base is Any:
            return None
        raise ConfigError(f"{path} cannot be null")
    if is_dataclass(base):
        if isinstance(value, base):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path} must be a mapping, got {value!r}")
        return build(base, value, where=f"{path}.")
    origin = typing.get_origin(base)
    if origin in (typing.Union, types.UnionType):  # a JSON value (JsonValue): any YAML scalar, list or mapping
        if not _is_json(value):
            raise ConfigError(f"{path} must be a YAML scalar, list or mapping, got {value!r}")
        return value
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path} must be a list, got {value!r}")
        item = typing.get_args(base)[0]
        return tuple(_coerce(f"{path}[{i}]", item, v) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{path} must be a mapping, got {value!r}")
        key_kind, item = typing.get_args(base)
        return {str(k): _coerce(f"{path}.{k}", item, v) for k, v in value.items()}
    return _scalar(path, base, value)


def _is_json(value: Any) -> bool:
    if isinstance(value, list | tuple):
        return all(_is_json(item) for item in value)
    if isinstance(value, Mapping):
        return all(isinstance(key, str) and _is_json(item) for key, item in value.items())
    return value is None or isinstance(value, bool | int | float | str)


def _scalar(path: str, base: Any, value: Any) -> Any:
    if base is Any:
        return value
    if base is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{path} must be true or false, got {value!r}")
        return value
    if base is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if base in (int, str) and isinstance(value, base) and not isinstance(value, bool):
        return value
    names = {int: "an integer", float: "a number", str: "a string"}
    raise ConfigError(f"{path} must be {names.get(base, base)}, got {value!r}")


# ---------------------------------------------------------------------------------------------- mapping form


def to_mapping(obj: Any) -> JsonObject:
    """The nested mapping form of a settings object (JSON- and YAML-ready: tuples become lists)."""
    return {field.name: _plain(getattr(obj, field.name)) for field in fields(obj)}


def _plain(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return to_mapping(value)
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def nest(values: Mapping[str, JsonValue]) -> JsonObject:
    """Dotted keys (``env.k: 2``) expanded into nested mappings, merged with nested ones."""
    nested: JsonObject = {}
    for key, value in values.items():
        head, _, rest = str(key).partition(".")
        if rest:
            value = {rest: value}
        if isinstance(value, Mapping):
            value = nest(value)
        previous = nested.get(head)
        nested[head] = merge(previous, value) if isinstance(previous, dict) and isinstance(value, dict) else value
    return nested


def merge(base: Mapping[str, JsonValue], update: Mapping[str, JsonValue]) -> JsonObject:
    """``base`` with ``update`` merged in, mappings merged key by key."""
    merged = dict(base)
    for key, value in update.items():
        old = merged.get(key)
        merged[key] = merge(old, value) if isinstance(old, dict) and isinstance(value, Mapping) else value
    return merged


def flatten(mapping: Mapping[str, JsonValue], schema: type, prefix: str = "") -> Overrides:
    """The dotted path → value of every setting a mapping sets (leaf values kept whole, mappings included)."""
    known = {leaf.path for leaf in leaves(schema)}
    flat: Overrides = {}
    for key, value in nest(mapping).items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping) and path not in known:
            flat |= flatten(value, schema, f"{path}.")
        else:
            flat[path] = value
    return flat


def build(cls: type[T], data: Mapping[str, JsonValue], where: str = "") -> T:
    """A settings object from its mapping form (nested or dotted keys); unknown keys and bad values are errors."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where.rstrip('.') or 'settings'} must be a mapping, got {data!r}")
    declared = {field.name: field for field in fields(cls)}
    values = {}
    for name, raw in nest(data).items():
        if name not in declared:
            raise ConfigError(
                f"unknown setting '{where}{name}'{did_you_mean(name, declared)} (known: {', '.join(declared)})"
            )
        values[name] = _coerce(f"{where}{name}", _hints(cls)[name], raw)
    try:
        return cls(**values)
    except SettingError as exc:
        raise ConfigError(f"{where}{exc.name} {exc.problem}") from None


def with_values(obj: T, values: Mapping[str, JsonValue]) -> T:
    """A copy of settings object ``obj`` with ``values`` (dotted paths or nested mappings) applied.

    A setting's value replaces the old one whole (a mapping-valued setting such as a behaviour mix too).
    """
    schema = type(obj)
    return build(schema, {**flatten(to_mapping(obj), schema), **flatten(values, schema)})


def differences(old: Any, new: Any) -> list[str]:
    """``path: old → new`` for every setting that differs between two objects of one schema."""
    before, after = flatten(to_mapping(old), type(old)), flatten(to_mapping(new), type(new))
    return [f"{path}: {before.get(path)} → {after.get(path)}" for path in before if before.get(path) != after.get(path)]


# ---------------------------------------------------------------------------------------------- devices


def cpu_values(cls: type) -> Overrides:
    """The CPU profile of schema ``cls``: path → the value a CPU run uses (where its module is installed)."""
    return {
        leaf.path: leaf.spec.cpu
        for leaf in leaves(cls)
        if leaf.spec.cpu is not UNSET and (leaf.spec.cpu_needs is None or _installed(leaf.spec.cpu_needs))
    }


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def fit_to_device(obj: T, chosen: set[str], device_type: str) -> tuple[T, Overrides]:
    """``obj`` with the CPU profile applied to the settings not in ``chosen`` (on a CPU), and what was applied."""
    if device_type != "cpu":
        return obj, {}
    fitted = {path: value for path, value in cpu_values(type(obj)).items() if path not in chosen}
    return (with_values(obj, fitted) if fitted else obj), fitted


@cache
def this_machine_has_gpu() -> bool:
    """Whether an NVIDIA GPU is visible, without importing torch (for help texts)."""
    return Path("/dev/nvidia0").exists() or Path("/proc/driver/nvidia/version").exists()


def default_text(leaf: Leaf) -> str:
    """``default 64; 8 on a CPU (this machine)``: the default and the CPU value, marking what applies here."""
    if leaf.default is MISSING:
        return "required"
    default = _text(leaf.default)
    if leaf.spec.cpu is UNSET:
        return f"default {default}"
    here = " (this machine)" if not this_machine_has_gpu() else ""
    return f"default {default} on a GPU; {_text(leaf.spec.cpu)} on a CPU{here}"


def _text(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, (tuple, list)):
        return ",".join(map(str, value)) or "none"
    return str(_plain(value))


__all__ = [
    "UNSET",
    "Leaf",
    "Setting",
    "SettingError",
    "build",
    "check_fields",
    "check_value",
    "cpu_values",
    "differences",
    "fit_to_device",
    "flatten",
    "leaves",
    "merge",
    "nest",
    "setting",
    "to_mapping",
    "unwrap_optional",
    "with_values",
]
