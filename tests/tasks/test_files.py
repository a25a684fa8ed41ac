import json

import pytest

from rl_select.errors import DataError
from rl_select.tasks import load_task
from tests.helpers import SENTIMENT_SPEC, sentiment_rows, write_task


def make(tmp_path, rows=None, spec=None):
    return write_task(tmp_path, "t", spec or SENTIMENT_SPEC, rows or sentiment_rows())


def test_loads_data_dir_task(data_root):
    task = load_task("tiny_sst", data_root)
    assert task.labels == ("negative", "positive")
    assert [e.id for e in task.train] == list(range(len(task.train)))
    assert task.source.startswith("data-dir:")
    assert task.gold(task.dev[:2]).tolist() == [task.label_index(e.label) for e in task.dev[:2]]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ({"text": "ok"}, "row has no label"),
        ({"text": "ok", "label": "neutral"}, "label 'neutral' is not one of"),
        ({"text": "   ", "label": "positive"}, "empty text"),
        ({"label": "positive"}, "no 'text'"),
        (["text", "label"], "must be a JSON object"),
    ],
)
def test_bad_rows_name_file_and_line(tmp_path, row, message):
    rows = sentiment_rows()
    rows["dev"] = [*rows["dev"][:2], row]
    make(tmp_path, rows)
    with pytest.raises(DataError, match=message) as info:
        load_task(str(tmp_path / "t"))
    assert "dev.jsonl:3" in str(info.value)


def test_non_utf8_file(tmp_path):
    path = make(tmp_path)
    (path / "test.jsonl").write_bytes('{"text": "caf\xe9", "label": "positive"}\n'.encode("latin-1"))
    with pytest.raises(DataError, match="not valid UTF-8"):
        load_task(str(path))


def test_malformed_json_and_missing_split(tmp_path):
    path = make(tmp_path)
    (path / "dev.jsonl").write_text('{"text": "a", "label": \n')
    with pytest.raises(DataError, match=r"dev\.jsonl:1: not valid JSON"):
        load_task(str(path))
    (path / "dev.jsonl").unlink()
    with pytest.raises(DataError, match="dev split file"):
        load_task(str(path))


def test_template_without_text_in_task_file(tmp_path):
    spec = {**SENTIMENT_SPEC, "template": "Sentiment: {label}"}
    make(tmp_path, spec=spec)
    with pytest.raises(DataError, match="must contain"):
        load_task(str(tmp_path / "t"))


def test_user_task_with_csv_and_custom_split_names(tmp_path):
    (tmp_path / "pool.csv").write_text('text,label\n"good, really",positive\nbad,negative\nfine,positive\n')
    (tmp_path / "val.jsonl").write_text(json.dumps({"text": "meh", "label": "negative"}) + "\n")
    (tmp_path / "eval.csv").write_text("text,label\ngreat,positive\n")
    spec = {
        **SENTIMENT_SPEC,
        "name": "mine",
        "separator": "\n---\n",
        "splits": {"train": "pool.csv", "dev": "val.jsonl", "test": "eval.csv"},
    }
    (tmp_path / "task.json").write_text(json.dumps(spec))
    task = load_task(str(tmp_path / "task.json"))
    assert task.name == "mine" and task.source.startswith("file:")
    assert task.train[0].text == "good, really"
    assert task.template.separator == "\n---\n"


def test_csv_without_label_column(tmp_path):
    (tmp_path / "train.csv").write_text("sentence,label\na,positive\n")
    for split in ("dev", "test"):
        (tmp_path / f"{split}.jsonl").write_text(json.dumps({"text": "a", "label": "positive"}) + "\n")
    (tmp_path / "task.json").write_text(json.dumps(SENTIMENT_SPEC))
    with pytest.raises(DataError, match="CSV header must name"):
        load_task(str(tmp_path))


def test_unknown_key_in_task_file(tmp_path):
    make(tmp_path, spec={**SENTIMENT_SPEC, "verbaliser": {}})
    with pytest.raises(DataError, match="unknown key"):
        load_task(str(tmp_path / "t"))


def test_fingerprint_changes_with_rows(tmp_path):
    path = make(tmp_path)
    first = load_task(str(path)).fingerprint("train")
    rows = sentiment_rows()
    rows["train"][0]["text"] = "changed"
    write_task(tmp_path / "other", "t", SENTIMENT_SPEC, rows)
    assert load_task(str(tmp_path / "other" / "t")).fingerprint("train") != first


def test_shared_data_tasks_load(shared_data):
    for name in ("sst2", "agnews", "trec", "subj", "cb", "rte", "dbpedia"):
        task = load_task(name, shared_data)
        assert len(task.train) > 100 and len(task.dev) >= 50 and len(task.test) >= 56
        if name in ("cb", "rte"):
            assert task.template.uses_text_pair and task.train[0].text_pair
