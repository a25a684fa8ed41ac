import pytest

from rl_select.errors import DataError
from rl_select.tasks import list_tasks, load_task


def test_unknown_task_suggests_close_name(data_root):
    with pytest.raises(DataError, match="did you mean 'tiny_sst'"):
        load_task("tiny_ss", data_root)


def test_missing_data_dir(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        load_task("sst2", tmp_path / "nope")


def test_env_data_dir(data_root, monkeypatch):
    monkeypatch.setenv("RL_SELECT_DATA", str(data_root))
    assert load_task("tiny_trec").name == "tiny_trec"
    names = [info.name for info in list_tasks()]
    assert "tiny_trec" in names and "hub:sst2" in names


def test_unknown_name_without_data_dir(monkeypatch):
    monkeypatch.delenv("RL_SELECT_DATA", raising=False)
    with pytest.raises(DataError, match="no data directory is set"):
        load_task("not-a-task")
    with pytest.raises(DataError, match="unknown hub task"):
        load_task("hub:sst3")
