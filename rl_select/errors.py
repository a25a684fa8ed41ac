"""The small error hierarchy of rl-select.

Every error a user can cause (bad data, bad configuration, a missing model, a corrupt artifact) is an
:class:`RLSelectError` whose message is one line that says what is wrong and how to fix it. The CLI prints
that line and exits with status 2; the service turns it into a 4xx response. Anything else is a bug.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping


class RLSelectError(Exception):
    """Base class for user-facing errors: the message is one line, shown as is."""


class ConfigError(RLSelectError, ValueError):
    """A setting is out of range, inconsistent with another one, or unknown."""


class DataError(RLSelectError, ValueError):
    """A data file, row, label or template is malformed."""


class ModelError(RLSelectError):
    """A language model or embedder could not be found or loaded."""


class ArtifactError(RLSelectError):
    """A run directory, checkpoint or exported policy is missing, corrupt or incompatible."""


class Interrupted(RLSelectError):
    """A run stopped by Ctrl-C or SIGTERM after saving what it finished; the message says where and how to go on."""


class WorkerLost(RLSelectError):
    """A Ray rollout worker (or the node it ran on) died where the run cannot go on in place (a training step)."""


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """Return ``"; did you mean 'x'?"`` for the closest of ``choices``, or ``""`` when none is close."""
    close = difflib.get_close_matches(name, list(choices), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def unknown_name(kind: str, name: str, choices: Iterable[str]) -> ConfigError:
    """Build the error for a lookup by name that failed, with a close match and the valid names."""
    choices = sorted(choices)
    return ConfigError(f"unknown {kind} '{name}'{did_you_mean(name, choices)} (choose from: {', '.join(choices)})")


def reject_unknown_keys(data: Mapping[str, object], known: Iterable[str], what: str) -> None:
    """Raise a :class:`ConfigError` naming the keys of ``data`` that are not in ``known``."""
    known = set(known)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"unknown {what} setting(s) {unknown}; known: {sorted(known)}")
