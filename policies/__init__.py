"""Learned demonstration selectors (CQL, DQN, PPO, fitted Q) and the baselines as policies of the selection env.

Names are imported on first use, so reading the light settings (:mod:`.settings`) does not load torch or SB3.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CQL": "rl_select.policies.cql",
    "FQI": "rl_select.policies.fqi",
    "DenseRows": "rl_select.policies.fqi",
    "make_ppo": "rl_select.policies.ppo",
    "make_dqn": "rl_select.policies.dqn",
    "ENV_BASELINES": "rl_select.policies.baselines",
    "EnvBaseline": "rl_select.policies.baselines",
    "BaselineEpisode": "rl_select.policies.baselines",
    "run_env_baseline": "rl_select.policies.baselines",
    "CQLConfig": "rl_select.policies.settings",
    "DQNConfig": "rl_select.policies.settings",
    "FQIConfig": "rl_select.policies.settings",
    "PPOConfig": "rl_select.policies.settings",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rl_select.policies' has no attribute {name!r}")
