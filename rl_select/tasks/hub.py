"""The seven benchmark tasks from the Hugging Face hub, through ``datasets``.

Each :class:`HubTaskSpec` says which hub dataset holds the task, which columns hold text and label, how hub
labels map to ours, and how train/dev/test are cut, following ``shared/data/README.md``: where the source has no
dev split, dev is a seeded slice of its train split; pools are capped where the benchmark caps them; pool rows
whose text appears in dev or test are dropped. Templates and verbalizers are the benchmark's.

Hub labels are mapped by *name* (the dataset's ``ClassLabel`` names, or a ``label_text`` column) wherever the
dataset provides names, so a reordered hub class list cannot silently permute labels.

For machines without the hub, ``RL_SELECT_HUB_MIRROR=/dir`` makes every dataset id ``org/name`` load from
``/dir/org/name`` (a local copy of the hub repository, same files): the same code path, offline.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from rl_select.errors import DataError
from rl_select.tasks.task import Example, Task
from rl_select.tasks.template import PromptTemplate

MIRROR_ENV = "RL_SELECT_HUB_MIRROR"
CARVE_SEED = 0


@dataclass(frozen=True)
class HubTaskSpec:
    """Where and how to read one task from the hub."""

    name: str
    dataset: str
    config: str | None
    text_column: str
    label_column: str
    label_map: dict[Any, str]
    template: str
    verbalizer: dict[str, str]
    labels: tuple[str, ...]
    train_split: str = "train"
    dev_split: str | None = None
    test_split: str = "test"
    text_pair_column: str | None = None
    label_text_column: str | None = None
    dev_size: int | None = None
    max_train: int | None = None
    max_test: int | None = None
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


# DBpedia-14 classes in the hub's label-id order: (hub class name, our label, verbalizer word).
_DBPEDIA_CLASSES = (
    ("Company", "company", "Company"),
    ("EducationalInstitution", "school", "School"),
    ("Artist", "artist", "Artist"),
    ("Athlete", "athlete", "Athlete"),
    ("OfficeHolder", "politician", "Politics"),
    ("MeanOfTransportation", "transportation", "Transportation"),
    ("Building", "building", "Building"),
    ("NaturalPlace", "nature", "Nature"),
    ("Village", "village", "Village"),
    ("Animal", "animal", "Animal"),
    ("Plant", "plant", "Plant"),
    ("Album", "album", "Album"),
    ("Film", "film", "Film"),
    ("WrittenWork", "book", "Book"),
)
_SUPERGLUE_NOTE = "test = SuperGLUE validation split, dev carved from train (seed 0)"

HUB_TASKS: dict[str, HubTaskSpec] = {
    spec.name: spec
    for spec in [
        HubTaskSpec(
            name="sst2",
            dataset="SetFit/sst2",
            config=None,
            text_column="text",
            label_column="label",
            label_text_column="label_text",
            label_map={"negative": "negative", "positive": "positive", 0: "negative", 1: "positive"},
            template="Review: {text}\nSentiment: {label}",
            verbalizer={"negative": "negative", "positive": "positive"},
            labels=("negative", "positive"),
            dev_split="validation",
            description="SST-2 sentence level (stsa.binary splits)",
        ),
        HubTaskSpec(
            name="agnews",
            dataset="fancyzhx/ag_news",
            config=None,
            text_column="text",
            label_column="label",
            label_map={
                "World": "world",
                "Sports": "sports",
                "Business": "business",
                "Sci/Tech": "technology",
                0: "world",
                1: "sports",
                2: "business",
                3: "technology",
            },
            template="Article: {text}\nAnswer: {label}",
            verbalizer={
                "world": "World",
                "sports": "Sports",
                "business": "Business",
                "technology": "Technology",
            },
            labels=("world", "sports", "business", "technology"),
            dev_size=200,
            max_train=1000,
            description="AG News; pool and dev sampled from train (seed 0), test = full test split",
        ),
        HubTaskSpec(
            name="trec",
            dataset="CogComp/trec",
            config=None,
            text_column="text",
            label_column="coarse_label",
            label_map={
                "ABBR": "abbreviation",
                "ENTY": "entity",
                "DESC": "description",
                "HUM": "human",
                "LOC": "location",
                "NUM": "number",
                0: "abbreviation",
                1: "entity",
                2: "description",
                3: "human",
                4: "location",
                5: "number",
            },
            template="Question: {text}\nAnswer Type: {label}",
            verbalizer={
                "description": "Description",
                "entity": "Entity",
                "abbreviation": "Abbreviation",
                "human": "Person",
                "location": "Location",
                "number": "Number",
            },
            labels=("description", "entity", "abbreviation", "human", "location", "number"),
            dev_size=500,
            description="TREC coarse question type; dev carved from train (seed 0)",
        ),
        HubTaskSpec(
            name="subj",
            dataset="SetFit/subj",
            config=None,
            text_column="text",
            label_column="label",
            label_text_column="label_text",
            label_map={"subjective": "subjective", "objective": "objective", 0: "objective", 1: "subjective"},
            template="Input: {text}\nType: {label}",
            verbalizer={"subjective": "subjective", "objective": "objective"},
            labels=("subjective", "objective"),
            dev_size=500,
            description="SUBJ (Pang & Lee 2004); dev carved from train (seed 0)",
        ),
        HubTaskSpec(
            name="cb",
            dataset="aps/super_glue",
            config="cb",
            text_column="premise",
            text_pair_column="hypothesis",
            label_column="label",
            label_map={
                "entailment": "entailment",
                "contradiction": "contradiction",
                "neutral": "neutral",
                0: "entailment",
                1: "contradiction",
                2: "neutral",
            },
            template="{text}\nquestion: {text_pair} true, false, or neither?\nanswer: {label}",
            verbalizer={"entailment": "true", "contradiction": "false", "neutral": "neither"},
            labels=("contradiction", "entailment", "neutral"),
            test_split="validation",
            dev_size=50,
            description=f"CommitmentBank; {_SUPERGLUE_NOTE}",
        ),
        HubTaskSpec(
            name="rte",
            dataset="aps/super_glue",
            config="rte",
            text_column="premise",
            text_pair_column="hypothesis",
            label_column="label",
            label_map={
                "entailment": "entailment",
                "not_entailment": "not_entailment",
                0: "entailment",
                1: "not_entailment",
            },
            template="{text}\nquestion: {text_pair} True or False?\nanswer: {label}",
            verbalizer={"entailment": "True", "not_entailment": "False"},
            labels=("entailment", "not_entailment"),
            test_split="validation",
            dev_size=300,
            description=f"RTE; {_SUPERGLUE_NOTE}",
        ),
        HubTaskSpec(
            name="dbpedia",
            dataset="fancyzhx/dbpedia_14",
            config=None,
            text_column="content",
            label_column="label",
            label_map={
                **{hub: ours for hub, ours, _ in _DBPEDIA_CLASSES},
                **{i: ours for i, (_, ours, _) in enumerate(_DBPEDIA_CLASSES)},
            },
            template="Article: {text}\nAnswer: {label}",
            verbalizer={ours: word for _, ours, word in _DBPEDIA_CLASSES},
            labels=tuple(ours for _, ours, _ in _DBPEDIA_CLASSES),
            dev_size=280,
            max_train=2000,
            max_test=256,
            description="DBpedia-14; pool and dev sampled from train (seed 0), test = 256 rows of test (seed 0)",
        ),
    ]
}


def dataset_location(dataset: str) -> str:
    """The path ``datasets`` loads ``dataset`` from: the hub id, or its copy under ``RL_SELECT_HUB_MIRROR``."""
    mirror = os.environ.get(MIRROR_ENV)
    if not mirror:
        return dataset
    local = Path(mirror).expanduser() / dataset
    if not local.is_dir():
        raise DataError(f"{MIRROR_ENV}={mirror} has no copy of '{dataset}' (expected {local})")
    return str(local)


def check_hub_reachable(timeout_s: float = 3.0) -> None:
    """Fail at once, in one line, when the hub cannot be reached (instead of minutes of retry warnings).

    Skipped under ``HF_HUB_OFFLINE``/``HF_DATASETS_OFFLINE``, where ``datasets`` reads its cache without asking.
    """
    if any(os.environ.get(v, "").lower() in ("1", "true", "yes") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")):
        return
    endpoint = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname or "", port), timeout=timeout_s).close()
    except OSError as exc:
        raise DataError(
            f"the hub ({endpoint.geturl()}) cannot be reached ({exc.strerror or exc}); pass --data-dir, set "
            f"RL_SELECT_DATA or {MIRROR_ENV}, or set HF_HUB_OFFLINE=1 to read datasets' cache"
        ) from None


def load_hub_task(name: str) -> Task:
    """Download (or read from the ``datasets`` cache) one of :data:`HUB_TASKS` and cut it into splits."""
    spec = HUB_TASKS[name]
    template = PromptTemplate(spec.template, spec.verbalizer, spec.labels)
    location = dataset_location(spec.dataset)
    if location == spec.dataset:
        check_hub_reachable()
    try:
        import datasets  # deferred: loads datasets and pandas
    except ImportError:  # pragma: no cover - datasets is a core dependency
        raise DataError("loading tasks from the hub needs the 'datasets' package") from None
    try:
        loaded = datasets.load_dataset(location, spec.config)
    except Exception as exc:  # datasets raises many types (ConnectionError, FileNotFoundError, ...)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"could not load '{spec.dataset}' from the hub ({first}); without network, pass --data-dir "
            f"or set {MIRROR_ENV}"
        ) from None
    for needed in {spec.train_split, spec.test_split, *(s for s in [spec.dev_split] if s)}:
        if needed not in loaded:
            raise DataError(f"hub dataset '{spec.dataset}' has no '{needed}' split (has {sorted(loaded)})")

    train_rows = _rows(loaded[spec.train_split], spec)
    test_rows = _rows(loaded[spec.test_split], spec)
    rng = np.random.default_rng(CARVE_SEED)
    order = rng.permutation(len(train_rows))
    if spec.dev_split:
        dev_rows = _rows(loaded[spec.dev_split], spec)
        pool_rows = [train_rows[i] for i in order]
    else:
        if spec.dev_size is None or spec.dev_size >= len(train_rows):
            raise DataError(f"hub dataset '{spec.dataset}' is too small to carve a dev split")
        dev_rows = [train_rows[i] for i in order[: spec.dev_size]]
        pool_rows = [train_rows[i] for i in order[spec.dev_size :]]
    held_out = {r["text"].strip().lower() for r in dev_rows + test_rows}
    pool_rows = [r for r in pool_rows if r["text"].strip().lower() not in held_out]
    if spec.max_train is not None:
        pool_rows = pool_rows[: spec.max_train]
    if spec.max_test is not None and len(test_rows) > spec.max_test:
        keep = sorted(np.random.default_rng(CARVE_SEED).choice(len(test_rows), spec.max_test, replace=False))
        test_rows = [test_rows[i] for i in keep]

    splits = {
        split: [
            Example(split=split, id=i, text=r["text"], label=r["label"], text_pair=r.get("text_pair"))
            for i, r in enumerate(rows)
        ]
        for split, rows in (("train", pool_rows), ("dev", dev_rows), ("test", test_rows))
    }
    return Task(
        name=name,
        template=template,
        splits=splits,
        source=f"hub:{spec.dataset}",
        description=spec.description,
    )


def _rows(split_data: Any, spec: HubTaskSpec) -> list[dict[str, str]]:
    """Map one hub split to ``{"text", "label"[, "text_pair"]}`` rows, dropping unlabelled ones (label -1)."""
    columns = set(split_data.column_names)
    needed = {spec.text_column, spec.label_column} | ({spec.text_pair_column} if spec.text_pair_column else set())
    if needed - columns:
        raise DataError(f"hub dataset '{spec.dataset}' lacks column(s) {sorted(needed - columns)}")
    feature = split_data.features.get(spec.label_column)
    class_names = getattr(feature, "names", None)
    use_text = spec.label_text_column if spec.label_text_column in columns else None
    rows = []
    for record in split_data:
        raw = record[spec.label_column]
        if raw is None or raw == -1:
            continue
        if use_text is not None:
            key: Any = record[use_text]
        elif class_names is not None:
            key = class_names[raw]
        else:
            key = raw
        if key not in spec.label_map:
            raise DataError(f"hub dataset '{spec.dataset}': label {key!r} has no mapping to the task's labels")
        text = str(record[spec.text_column] or "").strip()
        if not text:
            continue
        row = {"text": text, "label": spec.label_map[key]}
        if spec.text_pair_column:
            row["text_pair"] = str(record[spec.text_pair_column] or "").strip()
        rows.append(row)
    if not rows:
        raise DataError(f"hub dataset '{spec.dataset}' gave no labelled rows")
    return rows
