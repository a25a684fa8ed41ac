"""Online training with SB3: MaskablePPO (sb3-contrib) or DQN, exact checkpoints, SB3's logger and monitor."""

from __future__ import annotations

import logging
from typing import Any

from rl_select.observation import feature_layout
from rl_select.runs.dirs import policy_files
from rl_select.runs.setup import RunSetup, make_vec_env
from rl_select.scoring import LLMCost
from rl_select.train.cost import add_learning_cost
from rl_select.train.curve import Curve, run_logger

logger = logging.getLogger(__name__)


def vec_env_for(setup: RunSetup) -> Any:
    """The run's sub-envs (in-process, or in Ray workers), with SB3's VecMonitor counting episodes."""
    from stable_baselines3.common.vec_env import VecMonitor  # deferred: loads stable-baselines3 and rich

    if setup.config.parallel.workers:
        from rl_select.rollouts.ray_vec_env import RayVecEnv  # deferred: loads stable-baselines3 and rich

        return VecMonitor(RayVecEnv(setup.config, setup.run_dir))
    return VecMonitor(make_vec_env(setup))


def workers_llm_cost(vec_env: Any) -> LLMCost:
    """The LLM work done in Ray rollout workers (none for in-process sub-envs)."""
    inner = getattr(vec_env, "venv", vec_env)
    return inner.llm_cost() if hasattr(inner, "llm_cost") else LLMCost()


def new_model(setup: RunSetup, vec_env: Any) -> Any:
    """A fresh MaskablePPO or DQN for the run's settings."""
    from rl_select.policies.dqn import make_dqn  # deferred: loads stable-baselines3 and sb3-contrib
    from rl_select.policies.ppo import make_ppo  # deferred: loads stable-baselines3 and sb3-contrib

    config = setup.config
    if config.algo == "ppo":
        prior_column = feature_layout(config.env.features, config.env.mode).candidate.index("anchor_rank")
        return make_ppo(
            vec_env, config.ppo, seed=config.seed, prior_column=prior_column, prior_weight=config.ppo_prior_weight
        )
    return make_dqn(vec_env, config.dqn, seed=config.seed)


def episode_values_callback() -> Any:
    """Logs each finished episode's value and its gain over zero-shot to SB3's logger (means per dump)."""
    from stable_baselines3.common.callbacks import BaseCallback  # deferred: loads stable-baselines3 and rich

    class EpisodeValues(BaseCallback):
        def _on_step(self) -> bool:
            for info, done in zip(self.locals["infos"], self.locals["dones"], strict=True):
                if done and "episode_value" in info:
                    self.logger.record_mean("rollout/episode_value", info["episode_value"])
                    self.logger.record_mean("selection/value_gain", info["episode_value"] - info["zero_shot_value"])
            return True

    return EpisodeValues()


def train_sb3(setup: RunSetup, progress: bool) -> None:
    """Train (or resume) PPO or DQN; checkpoints are exact (see :mod:`rl_select.policies.checkpoints`)."""
    from sb3_contrib import MaskablePPO  # deferred: loads stable-baselines3 and sb3-contrib
    from stable_baselines3.common.callbacks import CallbackList  # deferred: loads stable-baselines3 and rich

    from rl_select.policies.checkpoints import (  # deferred: loads stable-baselines3 and rich
        ResumableCheckpoint,
        latest_checkpoint,
        load_checkpoint,
    )
    from rl_select.policies.dqn import MaskedDQN  # deferred: loads stable-baselines3 and sb3-contrib

    config, run_dir = setup.config, setup.run_dir
    vec_env = vec_env_for(setup)
    checkpoint_dir = run_dir / "checkpoints"
    latest = latest_checkpoint(checkpoint_dir, config.algo)
    if latest is not None:
        logger.info("resuming from %s (%d steps)", latest.model.name, latest.steps)
        model = load_checkpoint(MaskablePPO if config.algo == "ppo" else MaskedDQN, latest, vec_env)
        Curve(run_dir / "curve.csv").truncate(latest.steps)  # points logged after the checkpoint come again
    else:
        model = new_model(setup, vec_env)
    model.set_logger(run_logger(run_dir))
    checkpoints = ResumableCheckpoint(
        checkpoint_dir, config.algo, config.checkpoint_every, replay_buffer=config.algo == "dqn"
    )
    remaining = config.total_steps - model.num_timesteps
    try:
        if remaining > 0:
            model.learn(
                total_timesteps=remaining,
                callback=CallbackList([checkpoints, episode_values_callback()]),
                progress_bar=progress,
                reset_num_timesteps=latest is None,
            )
    finally:  # Ray workers counted their own LLM work; this process counts only its own
        add_learning_cost(run_dir, workers_llm_cost(vec_env))
    path = policy_files(run_dir, config.algo)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    model.save(tmp)
    tmp.replace(path)
    vec_env.close()
