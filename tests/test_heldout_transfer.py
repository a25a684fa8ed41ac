"""experiments/heldout_transfer.py: held-out tasks built from the vaderSentiment sdist and WordNet, and the verdict."""

import io
import json
import tarfile
from types import SimpleNamespace

import numpy as np
import pytest

from rl_select.errors import RLSelectError
from rl_select.tasks import load_task
from tests.helpers import experiment_module

RATED = {
    "tweets_GroundTruth.txt": [
        ("1", "2.5", "So lucky &amp; happy"),
        ("2", "-2.0", "Worst   day ever"),
        ("3", "0.1", "It is Tuesday"),
        ("4", "0.8", "Kind of fine"),  # between the bands: left out everywhere
        ("5", "3.0", "so LUCKY &amp; happy"),  # the first row again, other case: kept once
    ]
    + [(str(i), "1.5" if i % 2 else "-1.5", f"tweet number {i}") for i in range(6, 40)],
    "amazonReviewSnippets_GroundTruth.txt": [(str(i), "1.2" if i % 3 else "-3", f"review {i}") for i in range(40)],
    "nytEditorialSnippets_GroundTruth.txt": [(str(i), "-1.1" if i % 2 else "2", f"editorial {i}") for i in range(40)],
}
LEXICON = [(":-)", "1.3", "0.5", "[1, 2]"), ("meh", "-0.3", "0.4", "[0, -1]"), ("hate", "-2.7", "0.6", "[-3, -2]")] + [
    (f"word{i}", "2.0" if i % 2 else "-2.0", "0.5", "[2, -2]") for i in range(30)
]  # token, mean rating, sd, ratings


def tar_bytes(files: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture
def heldout(monkeypatch):
    module = experiment_module("heldout_transfer.py")
    monkeypatch.setattr(module, "TEST_ROWS", 10)
    monkeypatch.setattr(module, "DEV_ROWS", 6)
    return module


@pytest.fixture
def sdist(tmp_path):
    inner = {
        f"hutto_ICWSM_2014/{name}": "".join("\t".join(row) + "\r\n" for row in rows).encode()
        for name, rows in RATED.items()
    }
    outer = {
        "vaderSentiment-3.3.2/additional_resources/hutto_ICWSM_2014.tar.gz": tar_bytes(inner),
        "vaderSentiment-3.3.2/vaderSentiment/vader_lexicon.txt": "".join("\t".join(r) + "\n" for r in LEXICON).encode(),
    }
    path = tmp_path / "vaderSentiment-3.3.2.tar.gz"
    path.write_bytes(tar_bytes(outer))
    return path


def test_tasks_are_built_in_the_shared_layout_with_clear_labels_and_each_text_once(heldout, sdist, tmp_path):
    heldout.build_vader_tasks(sdist, tmp_path / "data")
    tweets = load_task("vader-tweets", tmp_path / "data")
    three = load_task("vader-tweets-3way", tmp_path / "data")
    assert tweets.labels == ("negative", "positive") and three.labels == ("negative", "neutral", "positive")
    texts = {e.text: e.label for split in ("train", "dev", "test") for e in tweets.splits[split]}
    assert texts["So lucky & happy"] == "positive" and texts["Worst day ever"] == "negative"
    assert "so LUCKY & happy" not in texts and "It is Tuesday" not in texts and "Kind of fine" not in texts
    assert {e.text: e.label for s in ("train", "dev", "test") for e in three.splits[s]}["It is Tuesday"] == "neutral"
    assert (len(tweets.test), len(tweets.dev), len(tweets.train)) == (10, 6, 36 - 16)
    first = (tmp_path / "data" / "vader-tweets" / "test.jsonl").read_text()
    heldout.build_vader_tasks(sdist, tmp_path / "again")
    assert (tmp_path / "again" / "vader-tweets" / "test.jsonl").read_text() == first  # seeded split
    assert json.loads((tmp_path / "data" / "vader-nyt" / "task.json").read_text())["rows"]["test"] == 10
    words = load_task("vader-words", tmp_path / "data")  # the lexicon's rated tokens, on the same bands
    labels = {e.text: e.label for s in ("train", "dev", "test") for e in words.splits[s]}
    assert labels[":-)"] == "positive" and labels["hate"] == "negative" and "meh" not in labels and len(labels) == 32


def test_a_file_that_is_not_the_sdist_is_a_one_line_error(heldout, tmp_path, capsys):
    bad = tmp_path / "x.tar.gz"
    bad.write_bytes(b"not a tarball")
    with pytest.raises(RLSelectError, match=r"not the vaderSentiment 3\.3\.2 sdist"):
        heldout.build_vader_tasks(bad, tmp_path / "data")
    assert heldout.main(["--vader", str(bad), "--work", str(tmp_path / "w"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1
    assert heldout.main(["--vader", str(bad), "--work", "w", "--out", "o", "--tasks", "imdb"]) == 2
    assert "unknown task(s) imdb" in capsys.readouterr().err
    assert heldout.main(["--wordnet", str(tmp_path), "--work", "w", "--out", "o"]) == 2  # no data.noun there
    err = capsys.readouterr().err
    assert err.startswith("error:") and "is not a WordNet 3.0 data file" in err and err.count("\n") == 1


def report(correct: list[int]) -> SimpleNamespace:
    rows = np.array([correct], dtype=float)
    return SimpleNamespace(calibrated=(rows.mean(), 0.0), correct=lambda: rows)


def test_the_verdict_compares_with_each_tasks_best_zero_cost_row(heldout):
    base = {name: report([1, 0, 0, 0] * 5) for name in heldout.ZERO_COST}
    strong = {**base, "bm25": report([1, 1, 0, 0] * 5)}  # 50% where the others have 25%
    choice = SimpleNamespace(rule="bm25", dev_scores={"policy": 0.4, "bm25": 0.6})
    results = {
        "a": {
            "choice": choice,
            "reports": {**strong, heldout.TRANSFER: report([0] * 20), heldout.CHECKED: strong["bm25"]},
        },
        "b": {
            "choice": choice,
            "reports": {**base, heldout.TRANSFER: report([1] * 20), heldout.CHECKED: report([1] * 20)},
        },
    }
    summary = heldout.summarize(results, heldout.read_study(heldout.STUDY), "vader")
    assert summary["tasks"]["a"]["best_zero_cost"] == "bm25" and summary["tasks"]["b"]["best_zero_cost"] == "zero-shot"
    assert summary["tasks"]["a"]["checked_vs_best_zero_cost"]["mean"] == 0.0
    assert summary["tasks"]["a"]["policy_vs_best_zero_cost"]["mean"] == -50.0
    assert summary["tasks"]["b"]["checked_vs_best_zero_cost"]["mean"] == 75.0
    assert summary["within_1_of_best_zero_cost"] == 2 and summary["confirmed"]
    results["b"]["reports"][heldout.CHECKED] = report([0] * 20)  # now 25 points below on b, 12.5 on average
    summary = heldout.summarize(results, heldout.read_study(heldout.STUDY), "vader")
    assert summary["within_1_of_best_zero_cost"] == 1 and not summary["confirmed"]
    from rl_select.provenance import provenance

    text = heldout.markdown(summary, provenance(seeds=[0]))
    assert "**The label check is not confirmed on these tasks.**" in text
    assert summary["label_check_switched"] == 2 and "switched from the policy to a rule on 2 of 2" in text
    protocol = summary["protocol"]  # the study's settings, named there once
    assert f"{protocol['test_rows']} test rows × {protocol['seeds']} seeds" in text and protocol["check_rows"] == 200


def synset_line(offset: int, lexfile: int, pos: str, word: str, hypernym: int | None, gloss: str) -> str:
    pointers = f"001 @ {hypernym:08d} {pos} 0000" if hypernym is not None else "000"
    return f'{offset:08d} {lexfile:02d} {pos} 01 {word} 0 {pointers} | {gloss}; "an example of {word}"  '


def wordnet_folder(root, module):
    """A data.noun and data.verb in WordNet's format: per class a parent, two sub-parents and eight members."""
    lines = {"noun": ["  1 This software and database is being provided to you"], "verb": []}
    offset = 100
    for pos, classes in (("noun", module.NOUN_CLASSES), ("verb", module.VERB_CLASSES)):
        tag = pos[0]
        for lexfile, name in classes.items():
            parent = offset
            lines[pos].append(synset_line(parent, lexfile, tag, f"{name}_thing", None, f"any {name}"))
            subs = [parent + 1, parent + 2]
            for sub in subs:
                lines[pos].append(synset_line(sub, lexfile, tag, f"{name}_kind_{sub}", parent, f"a {name} kind"))
            for i in range(8):
                member = f"{name}_member_{i}"
                gloss = f"a {name} of sort {i}"
                lines[pos].append(synset_line(parent + 3 + i, lexfile, tag, member, subs[i % 2], gloss))
            offset += 100
    folder = root / "dict"
    folder.mkdir()
    for pos, pos_lines in lines.items():
        (folder / f"data.{pos}").write_text("\n".join(pos_lines) + "\n")
    return folder


def test_wordnet_tasks_label_definitions_by_class_and_pair_true_with_false_kinds(heldout, tmp_path, monkeypatch):
    monkeypatch.setattr(heldout, "NOUNS_PER_CLASS", 4)
    monkeypatch.setattr(heldout, "VERBS_PER_CLASS", 3)
    monkeypatch.setattr(heldout, "KIND_OF_PAIRS", 40)
    folder = wordnet_folder(tmp_path, heldout)
    heldout.build_wordnet_tasks(folder, tmp_path / "data")
    nouns = load_task("wordnet-nouns", tmp_path / "data")
    verbs = load_task("wordnet-verbs", tmp_path / "data")
    assert nouns.labels == tuple(heldout.NOUN_CLASSES.values()) and verbs.labels == tuple(heldout.VERB_CLASSES.values())
    noun_rows = [e for split in ("train", "dev", "test") for e in nouns.splits[split]]
    assert len(noun_rows) == 4 * len(heldout.NOUN_CLASSES) and len(verbs.test) == 10
    assert all(e.text.startswith(f"{e.label} ") and "example" not in e.text for e in noun_rows)  # words, definition
    assert all(sum(e.label == label for e in noun_rows) == 4 for label in heldout.NOUN_CLASSES.values())
    kind_of = load_task("wordnet-kind-of", tmp_path / "data")
    pairs = [e for split in ("train", "dev", "test") for e in kind_of.splits[split]]
    assert len(pairs) == 40 and sum(e.label == "entailment" for e in pairs) == 20
    synsets = heldout.read_synsets(folder, "noun")
    by_word = {s.words[0]: s for s in synsets.values()}
    for pair in pairs:
        word, _, kind = pair.text_pair.removesuffix(".").partition(" is a kind of ")
        lineage = {synsets[o].words[0] for o in heldout.ancestors(by_word[word], synsets)}
        assert (kind in lineage) == (pair.label == "entailment"), pair
    first = (tmp_path / "data" / "wordnet-kind-of" / "test.jsonl").read_text()
    assert heldout.main(["--wordnet", str(folder), "--work", str(tmp_path / "again"), "--build-only"]) == 0
    assert (tmp_path / "again" / "data" / "wordnet-kind-of" / "test.jsonl").read_text() == first  # seeded


def test_a_wordnet_class_with_too_few_synsets_is_a_clear_error(heldout, tmp_path, monkeypatch):
    monkeypatch.setattr(heldout, "NOUNS_PER_CLASS", 9)  # each class has 11 synsets: enough for 9, not for 12
    monkeypatch.setattr(heldout, "VERBS_PER_CLASS", 12)
    with pytest.raises(RLSelectError, match=r"WordNet class motion has 11 usable synsets, fewer than 12"):
        heldout.build_wordnet_tasks(wordnet_folder(tmp_path, heldout), tmp_path / "data")
