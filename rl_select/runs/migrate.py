"""Reading training settings written in the flat format 1 (``config.json`` files, YAML configs, sweeps).

Format 1 spelled grouped settings as flat keys (``eval_rows`` for ``evaluation.rows``); this table is that
format's definition, frozen: new settings never enter it (they exist only as fields of the schema). Reading a
flat key warns once with its new path.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from rl_select.types import JsonObject, JsonValue, Overrides

logger = logging.getLogger(__name__)

FORMAT_1 = 1
FORMAT_1_KEYS: dict[str, str] = {
    "ppo_n_steps": "ppo.n_steps",
    "ppo_epochs": "ppo.epochs",
    "ppo_ent_coef": "ppo.ent_coef",
    "ppo_prior": "ppo.prior",
    "dqn_buffer_size": "dqn.buffer_size",
    "dqn_learning_starts": "dqn.learning_starts",
    "dqn_exploration_fraction": "dqn.exploration_fraction",
    "cql_alpha": "cql.alpha",
    "cql_dropout": "cql.dropout",
    "fqi_alpha": "fqi.alpha",
    "fqi_epochs": "fqi.epochs",
    "cql_episodes": "data.cql_episodes",
    "cql_data": "data.cql_data",
    "dense_episodes": "data.dense_episodes",
    "dense_data": "data.dense_data",
    "dense_limit": "data.dense_limit",
    "behaviour": "data.behaviour",
    "behaviour_epsilon": "data.behaviour_epsilon",
    "eval_tasks": "evaluation.tasks",
    "eval_rows": "evaluation.rows",
    "eval_seeds": "evaluation.seeds",
    "eval_episodes": "evaluation.episodes",
    "eval_every": "evaluation.every",
    "baselines": "evaluation.baselines",
    "best_of_n_sets": "evaluation.best_of_n_sets",
    "best_of_n_dev_rows": "evaluation.best_of_n_dev_rows",
    "n_envs": "parallel.n_envs",
    "workers": "parallel.workers",
    "address": "parallel.address",
    "scorer_placement": "parallel.scorer_placement",
    "worker_gpus": "parallel.worker_gpus",
}
"""Format 1's flat key → the setting's dotted path."""
FORMAT_1_SHARED: dict[str, tuple[str, ...]] = {
    "learning_rate": ("ppo", "dqn", "cql", "fqi"),
    "hidden": ("ppo", "dqn", "cql", "fqi"),
    "layers": ("ppo", "dqn"),
    "batch_size": ("ppo", "dqn", "cql", "fqi"),
    "gamma": ("ppo", "dqn"),
    "target_update": ("dqn", "cql"),
}
"""Format 1's knobs that set the field of every learner that has it (None: unset)."""
_warned: set[str] = set()


def migrate_keys(settings: Mapping[str, JsonValue]) -> Overrides:
    """``settings`` with format 1's flat keys rewritten as dotted paths (each warned about once)."""
    migrated: Overrides = {}
    for key, value in settings.items():
        if key in FORMAT_1_KEYS:
            _warn(key, FORMAT_1_KEYS[key])
            migrated[FORMAT_1_KEYS[key]] = value
        elif key in FORMAT_1_SHARED:
            learners = FORMAT_1_SHARED[key]
            _warn(key, f"{learners[0]}.{key} (one per learner)")
            if value is not None:
                migrated |= {f"{learner}.{key}": value for learner in learners}
        else:
            migrated[key] = value
    return migrated


def _warn(old: str, new: str) -> None:
    if old not in _warned:
        _warned.add(old)
        logger.info("setting '%s' is the flat format-1 name of '%s'", old, new)


def migrate_format_1(settings: Mapping[str, JsonValue]) -> JsonObject:
    """A format-1 ``config.json`` ``config`` as the nested form, with the defaults its older writers ran under."""
    settings = dict(settings)
    env = dict(settings.get("env") or {})
    if "ppo_prior" not in settings:  # written before prompt order and the PPO prior
        settings["ppo_prior"] = 0.0
        env.setdefault("order", "append")
    if isinstance(env.get("features"), dict):  # written before the similarity setting: centred similarities
        env["features"] = {"centred_similarity": True, **env["features"]}
    settings["env"] = env
    return migrate_keys(settings)


__all__ = ["FORMAT_1", "FORMAT_1_KEYS", "FORMAT_1_SHARED", "migrate_format_1", "migrate_keys"]
