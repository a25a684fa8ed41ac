"""Starting (or joining) Ray: one local cluster per process, or an existing cluster by address."""

from __future__ import annotations

import os
from typing import Any

from rl_select.errors import ConfigError


def require_ray() -> Any:
    """Import Ray or explain how to install it."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    try:
        import ray  # deferred: loads Ray and PyYAML
    except ImportError:
        raise ConfigError("--workers needs Ray: pip install 'rl-select[ray]'") from None
    return ray


def ensure_ray(address: str | None = None, num_cpus: int | None = None) -> Any:
    """``ray.init`` once: a local cluster (``num_cpus`` defaults to the machine's) or ``address``.

    An already initialised Ray (a test session's shared cluster, a user's own ``ray.init``) is reused.
    """
    ray = require_ray()
    if ray.is_initialized():
        return ray
    kwargs: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False}
    if address:
        kwargs["address"] = address
    else:
        kwargs["num_cpus"] = num_cpus or os.cpu_count() or 1
    try:
        ray.init(**kwargs)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
        raise ConfigError(f"could not start or join {where}: {str(exc).splitlines()[0]}") from None
    return ray
