"""The SQLite reward cache shared by processes: no entry lost or corrupted, corrupt files refused clearly."""

import multiprocessing

import numpy as np
import pytest

from rl_select.errors import ArtifactError
from rl_select.scoring.cache import CachedScores, RewardCache

ENTRIES = 150


def entry(writer: int, i: int) -> CachedScores:
    value = float(writer * 10_000 + i)
    return CachedScores(
        log_scores=np.full((3, 2), value),
        content_free=np.full((3, 2), 0.5),
        prefix_tokens=np.array([i, i, i]),
        prefix_nll=np.full(3, np.nan),
        truncation={"queries": 3},
    )


def write_entries(path: str, writer: int, start) -> None:
    start.wait()  # both processes write at the same time
    cache = None
    for i in range(ENTRIES):
        if i % 10 == 0:  # open the file again and again: opening while the other writes is the racy part
            if cache is not None:
                cache.close()
            cache = RewardCache(max_entries=10, path=path)
        cache.put(f"w{writer}-{i}", entry(writer, i))
        cache.put(f"shared-{i}", entry(0, i))  # both write the same keys too
    cache.close()


def test_two_processes_writing_one_cache_lose_nothing(tmp_path):
    path = str(tmp_path / "rewards.sqlite")
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    workers = [context.Process(target=write_entries, args=(path, w, start)) for w in (1, 2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=120)
        assert worker.exitcode == 0
    cache = RewardCache(path=path)
    for writer in (1, 2):
        for i in range(ENTRIES):
            found = cache.get(f"w{writer}-{i}")
            assert found is not None, f"entry w{writer}-{i} lost"
            np.testing.assert_array_equal(found.log_scores, entry(writer, i).log_scores)
            np.testing.assert_array_equal(found.prefix_tokens, [i, i, i])
    assert all(cache.get(f"shared-{i}") is not None for i in range(ENTRIES))
    cache.close()


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_corrupt_cache_file_is_refused_in_one_line_and_can_be_rebuilt(tmp_path, damage):
    path = tmp_path / "rewards.sqlite"
    cache = RewardCache(path=path)
    for i in range(200):
        cache.put(f"k{i}", entry(1, i))
    cache.close()
    for leftover in tmp_path.glob("rewards.sqlite-*"):  # WAL files of the closed connection
        leftover.unlink()
    data = path.read_bytes()
    path.write_bytes(b"this is not a database" * 100 if damage == "garbage" else data[: len(data) // 2])
    with pytest.raises(ArtifactError, match="corrupt or not a reward cache") as info:
        RewardCache(path=path).get("k1")
    assert "\n" not in str(info.value) and "delete it" in str(info.value)
    path.unlink()
    rebuilt = RewardCache(path=path)
    rebuilt.put("k1", entry(1, 1))
    assert rebuilt.get("k1") is not None
