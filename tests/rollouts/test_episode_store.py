"""EpisodeStore keeps an episode's LLM cost beside it, so the episode file depends only on the episode."""

import numpy as np
import pytest

from rl_select.errors import ArtifactError
from rl_select.rollouts.episodes import EpisodeStore, best_scored_prompts, cost_record
from rl_select.scoring import LLMCost


def record(episode_id: int, cost: LLMCost | None) -> dict[str, np.ndarray]:
    fields = {"episode_id": np.asarray(episode_id), "actions": np.arange(3)}
    if cost is not None:
        fields.update(cost_record(cost))
    return fields


def test_cost_goes_to_a_side_file_and_adds_up(tmp_path):
    store = EpisodeStore(tmp_path)
    store.create({"settings": {}})
    store.write(record(0, LLMCost(3, 100)))
    store.write(record(1, LLMCost(2, 50)))
    assert set(store.read(0)) == {"episode_id", "actions"}
    assert store.has_costs()
    assert store.cost() == LLMCost(5, 150)


def test_older_data_sets_with_cost_fields_in_the_episode_still_count(tmp_path):
    store = EpisodeStore(tmp_path)
    store.create({"settings": {}})
    np.savez(store.episodes / "00000000.npz", **record(0, LLMCost(4, 40)))
    assert store.cost() == LLMCost(4, 40)


def test_missing_or_corrupt_costs(tmp_path):
    store = EpisodeStore(tmp_path)
    store.create({"settings": {}})
    store.write(record(0, None))
    assert not store.has_costs()
    store.write(record(1, LLMCost(1, 1)))
    (tmp_path / "costs" / "00000001.json").write_text("{")
    with pytest.raises(ArtifactError, match="corrupt"):
        store.cost()


def task_episode(episode_id: int, task: str, actions: list[int], last_row: list[float]) -> dict[str, np.ndarray]:
    """A k = 3 task-mode episode over candidates 100..103 whose last action row is ``last_row``."""
    rows = np.full((3, 4), 0.1, dtype=np.float32)
    rows[2] = last_row
    return {
        "episode_id": np.asarray(episode_id),
        "task": np.asarray(task),
        "actions": np.asarray(actions),
        "action_values": rows,
        "candidate_ids": np.arange(100, 104),
    }


def test_best_scored_prompts_are_each_episodes_best_ranked_by_value(tmp_path):
    store = EpisodeStore(tmp_path)
    store.create({"settings": {}})
    store.write(task_episode(0, "sst2", [0, 1, 2], [np.nan, np.nan, 0.6, 0.5]))
    store.write(task_episode(1, "sst2", [3, 0, 1], [np.nan, np.nan, 0.9, np.nan]))
    store.write(task_episode(2, "trec", [0, 1, 2], [np.nan, np.nan, 0.99, 0.1]))  # another task: not offered
    store.write(task_episode(3, "sst2", [0, 1, 3], [np.nan, np.nan, 0.6, np.nan]))  # episode 0's prompt again
    assert best_scored_prompts([tmp_path], "sst2", 3, "append", 5) == [[103, 100, 102], [100, 101, 102]]
    assert best_scored_prompts([tmp_path], "sst2", 3, "prepend", 1) == [[102, 100, 103]]
    assert best_scored_prompts([tmp_path], "sst2", 4, "append", 5) == []  # no episode reached k = 4
    assert best_scored_prompts([tmp_path], "rte", 3, "append", 5) == []
