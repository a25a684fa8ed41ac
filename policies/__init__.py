"""Learned demonstration selectors (CQL, DQN, PPO) and the baselines as policies of the selection env."""

from rl_select.policies.baselines import ENV_BASELINES, EnvBaseline, run_env_baseline
from rl_select.policies.config import ALGOS, TrainConfig
from rl_select.policies.cql import CQL, CQLConfig
from rl_select.policies.selector import LoadedPolicy, PolicySelector, load_policy

__all__ = [
    "ALGOS",
    "CQL",
    "ENV_BASELINES",
    "CQLConfig",
    "EnvBaseline",
    "LoadedPolicy",
    "PolicySelector",
    "TrainConfig",
    "load_policy",
    "run_env_baseline",
]
