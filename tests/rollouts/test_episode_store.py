"""EpisodeStore keeps an episode's LLM cost beside it, so the episode file depends only on the episode."""

import numpy as np
import pytest

from rl_select.errors import ArtifactError
from rl_select.rollouts.episodes import EpisodeStore, cost_record
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
