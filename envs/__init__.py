"""The demonstration-selection MDP as Gymnasium environments.

Importing this package registers ``rl_select/DemoSelection-v0``.
"""

from gymnasium.envs.registration import register, registry

from rl_select.envs.config import EnvConfig
from rl_select.envs.demo_selection import DemoSelectionEnv, ScoreRequest, run_requests
from rl_select.envs.features import FeatureBank

ENV_ID = "rl_select/DemoSelection-v0"

if ENV_ID not in registry:
    # Episodes end by themselves after k steps (k is per instance), so no TimeLimit is registered.
    register(id=ENV_ID, entry_point="rl_select.envs.demo_selection:DemoSelectionEnv", max_episode_steps=None)

__all__ = ["ENV_ID", "DemoSelectionEnv", "EnvConfig", "FeatureBank", "ScoreRequest", "run_requests"]
