"""Episodes of the selection MDP: running them, and storing them as an offline data set.

An episode is fully determined by its id: the env is reset with ``seed = base_seed + episode_id`` and the
random behaviour policy draws from ``np.random.default_rng(seed)``. So which process runs an episode, and in
which order, never changes the data set.

A data set directory holds ``meta.json`` (what was collected, with provenance) and one ``episodes/<id>.npz``
per episode, written atomically, so an interrupted collection keeps every finished episode, and a re-run skips
them (no episode is lost or stored twice).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from rl_select.errors import ArtifactError

EPISODE_FILE = re.compile(r"^(\d{8})\.npz$")
OBS_KEYS = ("candidates", "chosen", "step", "state", "query")


def run_episode(
    env: Any, episode_id: int, base_seed: int, policy: Callable[[dict, np.ndarray], int] | None = None
) -> dict[str, np.ndarray]:
    """Run one episode (random valid actions unless ``policy(obs, mask) -> action``) and record it.

    Returns:
        ``obs_<key>`` ``[k + 1, ...]`` observations, ``actions`` ``[k]``, ``rewards`` ``[k]``, ``values``
        ``[k + 1]`` (value before the first step, then after each), ``candidate_ids`` ``[M]``,
        ``selection`` ``[k]`` (pool ids), ``episode_id``, ``seed``, ``task``.
    """
    seed = base_seed + episode_id
    rng = np.random.default_rng(seed)
    obs, info = env.reset(seed=seed)
    observations = [obs]
    actions, rewards, values = [], [], [info["value"]]
    terminated = False
    while not terminated:
        mask = env.action_masks()
        action = int(rng.choice(np.flatnonzero(mask))) if policy is None else int(policy(obs, mask))
        obs, reward, terminated, truncated, info = env.step(action)
        observations.append(obs)
        actions.append(action)
        rewards.append(reward)
        values.append(info["value"])
        terminated = terminated or truncated
    record = {f"obs_{key}": np.stack([o[key] for o in observations]) for key in OBS_KEYS if key in obs}
    record.update(
        actions=np.asarray(actions, dtype=np.int64),
        rewards=np.asarray(rewards, dtype=np.float32),
        values=np.asarray(values, dtype=np.float32),
        candidate_ids=np.asarray(info["candidate_ids"], dtype=np.int64),
        selection=np.asarray(info["selection"], dtype=np.int64),
        episode_id=np.asarray(episode_id, dtype=np.int64),
        seed=np.asarray(seed, dtype=np.int64),
        task=np.asarray(info["task"]),
    )
    return record


class EpisodeStore:
    """A directory of episodes, one ``.npz`` per episode id.

    Args:
        path: The data set directory (created if missing).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.episodes = self.path / "episodes"

    def create(self, meta: dict[str, Any]) -> None:
        """Start (or continue) a data set; an existing one must have been collected with the same settings."""
        self.episodes.mkdir(parents=True, exist_ok=True)
        meta_path = self.path / "meta.json"
        if meta_path.is_file():
            old = self.meta()
            if old.get("settings") != meta.get("settings"):
                raise ArtifactError(
                    f"{self.path} holds episodes collected with other settings; use a new --out directory"
                )
            return
        tmp = meta_path.with_name(".meta.json.tmp")
        tmp.write_text(json.dumps(meta, indent=2, default=str) + "\n")
        tmp.replace(meta_path)

    def meta(self) -> dict[str, Any]:
        """The data set's ``meta.json``."""
        path = self.path / "meta.json"
        if not path.is_file():
            raise ArtifactError(f"{self.path} is not an episode data set (no meta.json); run `rl-select collect`")
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise ArtifactError(f"{path} is corrupt ({exc.msg})") from None

    def ids(self) -> list[int]:
        """Ids of the episodes stored."""
        if not self.episodes.is_dir():
            return []
        return sorted(int(m.group(1)) for p in self.episodes.iterdir() if (m := EPISODE_FILE.match(p.name)))

    def write(self, record: dict[str, np.ndarray]) -> Path:
        """Store one episode atomically (a second write of the same id replaces it with identical data)."""
        episode_id = int(record["episode_id"])
        path = self.episodes / f"{episode_id:08d}.npz"
        tmp = self.episodes / f".{episode_id:08d}.tmp.npz"
        np.savez(tmp, **record)
        tmp.replace(path)
        return path

    def read(self, episode_id: int) -> dict[str, np.ndarray]:
        """One stored episode."""
        path = self.episodes / f"{episode_id:08d}.npz"
        try:
            with np.load(path, allow_pickle=False) as data:
                return {key: data[key] for key in data.files}
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"corrupt episode file {path}: {exc}") from None

    def load(self, ids: Iterable[int] | None = None) -> list[dict[str, np.ndarray]]:
        """Stored episodes (all, or ``ids``), in id order."""
        return [self.read(i) for i in (self.ids() if ids is None else sorted(ids))]
