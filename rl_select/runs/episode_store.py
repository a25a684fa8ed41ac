"""A run's stored episodes (``episodes/<id>.npz`` with ``meta.json``), and what a learner reads back from them.

A data set directory holds ``meta.json`` (what was collected, with provenance) and one ``episodes/<id>.npz``
per episode, written atomically, so an interrupted collection keeps every finished episode, and a re-run skips
them (no episode is lost or stored twice). Running episodes is :mod:`rl_select.rollouts`; this is the storage a
run directory and a loaded policy share.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from rl_select.errors import ArtifactError
from rl_select.observation import arrange_prompt
from rl_select.scoring import LLMCost
from rl_select.types import JsonObject

EPISODE_FILE = re.compile(r"^(\d{8})\.npz$")
COST_KEYS = ("cost_queries", "cost_tokens")


def cost_record(spent: LLMCost) -> dict[str, np.ndarray]:
    """An episode's LLM cost as record fields (so a data set's cost adds up however it was collected)."""
    return {
        COST_KEYS[0]: np.asarray(spent.queries, dtype=np.int64),
        COST_KEYS[1]: np.asarray(spent.tokens, dtype=np.int64),
    }


class EpisodeStore:
    """A directory of episodes, one ``.npz`` per episode id.

    Args:
        path: The data set directory (created if missing).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.episodes = self.path / "episodes"

    def create(self, meta: JsonObject) -> None:
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

    def meta(self) -> JsonObject:
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
        """Store one episode atomically (a second write of the same id replaces it with identical data).

        The LLM cost it took (``cost_*`` fields) goes to a side file: it depends on what the scorer had cached,
        so it varies with placement and resumption while the episode itself does not.
        """
        episode_id = int(record["episode_id"])
        cost = {key: int(record[key]) for key in COST_KEYS if key in record}
        if cost:
            self._write_cost(episode_id, cost)
        path = self.episodes / f"{episode_id:08d}.npz"
        tmp = self.episodes / f".{episode_id:08d}.tmp.npz"
        np.savez_compressed(tmp, **{key: value for key, value in record.items() if key not in COST_KEYS})
        tmp.replace(path)
        return path

    def _write_cost(self, episode_id: int, cost: dict[str, int]) -> None:
        costs = self.path / "costs"
        costs.mkdir(parents=True, exist_ok=True)
        tmp = costs / f".{episode_id:08d}.tmp.json"
        tmp.write_text(json.dumps(cost) + "\n")
        tmp.replace(costs / f"{episode_id:08d}.json")

    def read(self, episode_id: int) -> dict[str, np.ndarray]:
        """One stored episode."""
        path = self.episodes / f"{episode_id:08d}.npz"
        try:
            with np.load(path, allow_pickle=False) as data:
                return {key: data[key] for key in data.files}
        except (OSError, ValueError) as exc:
            raise ArtifactError(f"corrupt episode file {path}: {exc}") from None

    def episode_cost(self, episode_id: int) -> LLMCost | None:
        """The LLM cost episode ``episode_id`` recorded (side file, or fields of older data sets); None if none."""
        path = self.path / "costs" / f"{episode_id:08d}.json"
        if path.is_file():
            try:
                fields = json.loads(path.read_text())
            except json.JSONDecodeError as exc:
                raise ArtifactError(f"{path} is corrupt ({exc.msg})") from None
        else:
            fields = {key: value for key, value in self.read(episode_id).items() if key in COST_KEYS}
        if set(fields) != set(COST_KEYS):
            return None
        return LLMCost(int(fields["cost_queries"]), int(fields["cost_tokens"]))

    def has_costs(self) -> bool:
        """Whether every stored episode records the LLM cost it took (data sets from before costs were kept lack it)."""
        return bool(self.ids()) and all(self.episode_cost(i) is not None for i in self.ids())

    def cost(self, limit: int | None = None) -> LLMCost:
        """The LLM work of collecting the stored episodes (the first ``limit`` by id; default all)."""
        return sum((self.episode_cost(i) or LLMCost() for i in self.ids()[:limit]), LLMCost())

    def load(self, ids: Iterable[int] | None = None) -> list[dict[str, np.ndarray]]:
        """Stored episodes (all, or ``ids``), in id order."""
        return [self.read(i) for i in (self.ids() if ids is None else sorted(ids))]


def best_scored_prompts(stores: Iterable[str | Path], task: str, k: int, order: str, count: int) -> list[list[int]]:
    """The ``count`` best k-shot prompts a task-mode learner scored on ``task`` while collecting its dense rows.

    An episode's action row at its last state (k − 1 picks) values every k-shot prompt those picks extend to, on
    the episode's reward rows. Each episode offers its best one (prompts sharing k − 1 demonstrations would be
    near copies); those are ranked by that value (ties: first episode first), duplicates dropped. Returns pool
    ids in prompt order (``order``: the episodes' prompt order). Finding them costs no LLM calls.
    """
    scored: dict[tuple[int, ...], float] = {}
    for store in stores:
        for record in EpisodeStore(store).load():
            if str(record["task"]) != task or len(record["actions"]) < k or "action_values" not in record:
                continue
            candidates = record["candidate_ids"]
            row = record["action_values"][k - 1][: len(candidates)]
            if not np.isfinite(row).any():
                continue
            slot = int(np.nanargmax(row))
            picks = [int(a) for a in record["actions"][: k - 1]]
            prompt = tuple(int(candidates[i]) for i in arrange_prompt([*picks, slot], order))
            scored.setdefault(prompt, float(row[slot]))
    ranked = sorted(scored, key=lambda prompt: -scored[prompt])  # stable: ties keep their first-seen order
    return [list(prompt) for prompt in ranked[:count]]


__all__ = ["COST_KEYS", "EPISODE_FILE", "EpisodeStore", "best_scored_prompts", "cost_record"]
