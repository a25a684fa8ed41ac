"""The demonstration-selection MDP as Gymnasium environments.

Importing this package registers ``rl_select/DemoSelection-v0`` (exactly k demonstrations from the query's nearest
neighbours or sampled candidates) and ``rl_select/DemoSelection-v1`` (the same MDP with a stop action: at most k
demonstrations; query-mode candidates may come from several proposers, see ``EnvConfig.proposers``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from gymnasium.envs.registration import register, registry

from rl_select.envs.config import EnvConfig

if TYPE_CHECKING:
    from rl_select.envs.demo_selection import DemoSelectionEnv
    from rl_select.envs.episode import Episode, ScoreRequest, run_requests
    from rl_select.envs.features import FeatureBank
    from rl_select.envs.proposers import QueryProposer, TaskProposals, task_proposals

ENV_ID = "rl_select/DemoSelection-v0"
ENV_ID_V1 = "rl_select/DemoSelection-v1"

# Episodes end by themselves (k is per instance), so no TimeLimit is registered.
if ENV_ID not in registry:
    register(id=ENV_ID, entry_point="rl_select.envs.demo_selection:DemoSelectionEnv", max_episode_steps=None)
if ENV_ID_V1 not in registry:
    register(
        id=ENV_ID_V1,
        entry_point="rl_select.envs.demo_selection:DemoSelectionEnv",
        max_episode_steps=None,
        kwargs={"stop": True},
    )

LAZY = {
    "DemoSelectionEnv": "demo_selection",
    "Episode": "episode",
    "ScoreRequest": "episode",
    "run_requests": "episode",
    "FeatureBank": "features",
    "QueryProposer": "proposers",
    "TaskProposals": "proposers",
    "task_proposals": "proposers",
}
"""Names imported on first use: the env imports the scorer (torch), which the settings (``EnvConfig``) and the
command line's start-up never need."""


def __getattr__(name: str) -> Any:
    if name in LAZY:
        return getattr(importlib.import_module(f"rl_select.envs.{LAZY[name]}"), name)
    raise AttributeError(f"module 'rl_select.envs' has no attribute '{name}'")


__all__ = [
    "ENV_ID",
    "ENV_ID_V1",
    "DemoSelectionEnv",
    "EnvConfig",
    "Episode",
    "FeatureBank",
    "QueryProposer",
    "ScoreRequest",
    "TaskProposals",
    "run_requests",
    "task_proposals",
]
