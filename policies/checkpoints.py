"""Exact, resumable checkpoints of SB3 training runs (PPO and DQN).

SB3's own zip holds the weights, the optimizer and the step counters, but not the random number generators nor
the environments, so a run resumed from it takes other actions and sees other episodes than the run that was
interrupted. A checkpoint here adds both:

* ``<algo>_<steps>_steps.zip``: the SB3 model (``model.save``);
* ``<algo>_<steps>_steps.state.json`` / ``.state.npz``: torch, numpy and Python RNG states and the vectorised
  env's state (each sub-env's RNG and episode, see :meth:`DemoSelectionVecEnv.state`);
* DQN: ``<algo>_replay_buffer_<steps>_steps.pkl`` (SB3's replay buffer file).

Checkpoints are written at the start of a rollout (after the previous update, before any new env step) when
every sub-env is between episodes, so the prompts a resumed run scores are built exactly as the uninterrupted
run built them. Every file is written to a temporary name and renamed, the zip last: a checkpoint is complete
when its zip exists, and a crash or a full disk mid-write leaves the earlier checkpoints intact. Resuming from
one with the same seed on the same machine gives the same final policy as a run that was never stopped.
"""

from __future__ import annotations

import json
import logging
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback

from rl_select.envs.vector import VecEnvState

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Checkpoint:
    """One complete checkpoint on disk."""

    model: Path
    state: Path
    arrays: Path
    replay_buffer: Path
    steps: int


def checkpoint_paths(directory: Path, algo: str, steps: int) -> Checkpoint:
    """Where the files of the checkpoint at ``steps`` go."""
    stem = f"{algo}_{steps}_steps"
    return Checkpoint(
        model=directory / f"{stem}.zip",
        state=directory / f"{stem}.state.json",
        arrays=directory / f"{stem}.state.npz",
        replay_buffer=directory / f"{algo}_replay_buffer_{steps}_steps.pkl",
        steps=steps,
    )


def latest_checkpoint(directory: Path, algo: str) -> Checkpoint | None:
    """The complete checkpoint with the most steps (its zip and state files exist), or None."""
    pattern = re.compile(rf"^{algo}_(\d+)_steps\.zip$")
    found = []
    for path in directory.glob(f"{algo}_*_steps.zip") if directory.is_dir() else ():
        match = pattern.match(path.name)
        if match:
            checkpoint = checkpoint_paths(directory, algo, int(match.group(1)))
            if checkpoint.state.is_file() and checkpoint.arrays.is_file():
                found.append(checkpoint)
    return max(found, key=lambda c: c.steps) if found else None


def _replace_atomically(path: Path, write: Any) -> None:
    """``write(tmp)`` then rename over ``path`` (the suffix is kept, so libraries that add one do not)."""
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    write(tmp)
    tmp.replace(path)


def rng_states() -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """torch, numpy (global) and Python RNG states, as JSON and arrays."""
    name, keys, position, has_gauss, cached = np.random.get_state()
    version, python_state, gauss_next = random.getstate()
    meta = {
        "numpy": {"name": name, "pos": int(position), "has_gauss": int(has_gauss), "cached_gaussian": cached},
        "python": {"version": version, "state": list(python_state), "gauss_next": gauss_next},
    }
    return meta, {"torch_rng": torch.get_rng_state().numpy(), "numpy_keys": np.asarray(keys)}


def restore_rng_states(meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    """Inverse of :func:`rng_states`."""
    torch.set_rng_state(torch.from_numpy(np.asarray(arrays["torch_rng"], dtype=np.uint8)))
    numpy = meta["numpy"]
    np.random.set_state(
        (numpy["name"], arrays["numpy_keys"], numpy["pos"], numpy["has_gauss"], numpy["cached_gaussian"])
    )
    python = meta["python"]
    random.setstate((python["version"], tuple(python["state"]), python["gauss_next"]))


def save_checkpoint(model: BaseAlgorithm, directory: Path, algo: str, *, replay_buffer: bool) -> Checkpoint:
    """Write a complete checkpoint of ``model`` and its env (see the module docstring)."""
    directory.mkdir(parents=True, exist_ok=True)
    checkpoint = checkpoint_paths(directory, algo, int(model.num_timesteps))
    meta, arrays = rng_states()
    env = model.get_env()
    meta["env"] = env.state().to_dict() if hasattr(env, "state") else None  # through SB3's wrappers too
    _replace_atomically(checkpoint.arrays, lambda tmp: np.savez(tmp, **arrays))
    _replace_atomically(checkpoint.state, lambda tmp: tmp.write_text(json.dumps(meta) + "\n"))
    if replay_buffer:
        _replace_atomically(checkpoint.replay_buffer, model.save_replay_buffer)
    _replace_atomically(checkpoint.model, model.save)
    return checkpoint


def load_checkpoint(algorithm: type[BaseAlgorithm], checkpoint: Checkpoint, env: Any) -> BaseAlgorithm:
    """The model of ``checkpoint`` on ``env``, with RNGs and (where the env supports it) episodes restored.

    SB3's zip holds the observation the model saw last; restoring the env's episodes puts the env back where
    that observation came from, so the model continues without a reset. An env without a saved state (Ray
    workers) is reset by SB3 instead: the policy resumes exactly, the episodes start afresh.
    """
    meta = json.loads(checkpoint.state.read_text())
    exact = meta.get("env") is not None and hasattr(env, "restore")
    model = algorithm.load(checkpoint.model, env=env, device="cpu", force_reset=not exact)
    if checkpoint.replay_buffer.is_file():
        model.load_replay_buffer(checkpoint.replay_buffer)
    with np.load(checkpoint.arrays, allow_pickle=False) as stored:
        arrays = {key: stored[key] for key in stored.files}
    if exact:
        env.restore(VecEnvState.from_dict(meta["env"]))
    else:
        logger.warning("the env state is not in this checkpoint; episodes restart after the resume")
    restore_rng_states(meta, arrays)
    return model


class ResumableCheckpoint(BaseCallback):
    """Saves :func:`save_checkpoint` checkpoints every ``every`` env steps, at the first exact point after.

    Args:
        directory: Checkpoint directory.
        algo: File name prefix (``ppo`` or ``dqn``).
        every: Env steps between checkpoints.
        replay_buffer: Also save the replay buffer (off-policy algorithms).
    """

    def __init__(self, directory: Path, algo: str, every: int, *, replay_buffer: bool = False) -> None:
        super().__init__()
        self.directory = Path(directory)
        self.algo = algo
        self.every = every
        self.replay_buffer = replay_buffer
        self.last_saved: int | None = None

    def _on_training_start(self) -> None:
        latest = latest_checkpoint(self.directory, self.algo)
        self.last_saved = latest.steps if latest is not None else None

    def _on_rollout_start(self) -> None:
        steps = self.model.num_timesteps
        due = self.last_saved is None or steps - self.last_saved >= self.every
        env = self.model.get_env()
        exact = not hasattr(env, "at_episode_start") or env.at_episode_start()
        if due and exact and steps != self.last_saved:
            save_checkpoint(self.model, self.directory, self.algo, replay_buffer=self.replay_buffer)
            self.last_saved = steps

    def _on_step(self) -> bool:
        return True
