"""The hub code path, with ``datasets`` pointed at a local mirror of the hub repositories."""

import json

import pytest

from rl_select.errors import DataError
from rl_select.tasks import load_hub_task


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    import datasets

    root = tmp_path / "mirror"
    # SetFit/sst2: JSON lines with a label_text column, splits named by file
    sst = root / "SetFit" / "sst2"
    sst.mkdir(parents=True)
    for split, n in (("train", 30), ("validation", 10), ("test", 12)):
        rows = [
            {"text": f"{split} review {i}", "label": i % 2, "label_text": ["negative", "positive"][i % 2]}
            for i in range(n)
        ]
        rows.append({"text": "validation review 0", "label": 0, "label_text": "negative"}) if split == "train" else None
        (sst / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    # aps/super_glue, config cb: parquet with ClassLabel features declared in the README's configs
    glue = root / "aps" / "super_glue"
    (glue / "cb").mkdir(parents=True)
    features = datasets.Features(
        {
            "premise": datasets.Value("string"),
            "hypothesis": datasets.Value("string"),
            "label": datasets.ClassLabel(names=["entailment", "contradiction", "neutral"]),
        }
    )
    for split, n in (("train", 80), ("validation", 9), ("test", 5)):
        data = {
            "premise": [f"{split} premise {i}" for i in range(n)],
            "hypothesis": [f"hypothesis {i}" for i in range(n)],
            "label": [i % 3 for i in range(n)] if split != "test" else [-1] * n,
        }
        datasets.Dataset.from_dict(data, features=features).to_parquet(str(glue / "cb" / f"{split}.parquet"))
    (glue / "README.md").write_text(
        "---\nconfigs:\n- config_name: cb\n  data_files:\n"
        + "".join(f"  - split: {s}\n    path: cb/{s}.parquet\n" for s in ("train", "validation", "test"))
        + "---\n"
    )
    monkeypatch.setenv("RL_SELECT_HUB_MIRROR", str(root))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    return root


def test_sst2_from_hub_mirror(mirror):
    task = load_hub_task("sst2")
    assert task.source == "hub:SetFit/sst2"
    assert (len(task.dev), len(task.test)) == (10, 12)
    # the pool row whose text is also a dev row is dropped
    assert len(task.train) == 30
    assert {e.label for e in task.train} == {"negative", "positive"}
    assert task.train[0].text.startswith("train review")


def test_cb_labels_map_by_class_names(mirror):
    task = load_hub_task("cb")
    assert task.labels == ("contradiction", "entailment", "neutral")
    assert len(task.dev) == 50 and len(task.train) == 30 and len(task.test) == 9
    by_text = {e.text: e for e in task.test}
    assert by_text["validation premise 1"].label == "contradiction"
    assert by_text["validation premise 2"].label == "neutral"
    assert by_text["validation premise 0"].text_pair == "hypothesis 0"


def test_mirror_without_the_dataset(mirror):
    with pytest.raises(DataError, match="has no copy of 'CogComp/trec'"):
        load_hub_task("trec")


def test_an_unreachable_hub_is_one_line_at_once(monkeypatch):
    import time

    monkeypatch.delenv("RL_SELECT_HUB_MIRROR", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens there
    began = time.monotonic()
    with pytest.raises(DataError, match=r"the hub \(http://127.0.0.1:9\) cannot be reached.*--data-dir"):
        load_hub_task("trec")
    assert time.monotonic() - began < 5
