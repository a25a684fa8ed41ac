"""The committed transfer policy, label-checked, on tasks outside the study's seven: is the label check confirmed?

The label check (``rl-select verify RUN --task T --by labels``) was designed in the session that saw the
seven-task test table, so its result there is not held out. This runs it on tasks no learner or design decision
has seen, as a new user would (no LLM calls on the task to choose), against the same zero-cost baselines, on the
same protocol as the study (``experiments/configs/strongest-cpu.yaml``: k = 4, SmolLM2-135M, calibrated, 500 test
rows × 3 seeds, 200 dev rows for the check, paired bootstrap intervals). Two sets of tasks, each built at run time
from a file fetched from a package registry, never committed:

- ``--vader``: four sentiment tasks from the human-rated sentences in the source distribution of ``vaderSentiment``
  3.3.2 (Hutto & Gilbert 2014; MIT licence): tweets, Amazon review snippets and New York Times editorial snippets,
  each binary (mean rating > 1 positive, < −1 negative), and the tweets again with a neutral class
  (|rating| < 0.5). Its movie-review snippets are left out: they are the sentences SST-2 was built from. A fifth,
  added later for a held-out study of its own: vader-words, the human-rated tokens of its lexicon (words, slang,
  emoticons), binary on the same bands.
- ``--wordnet``: three tasks from Princeton WordNet 3.0 (Debian's ``wordnet-base``; WordNet 3.0 licence), the
  kinds the sentiment set could not test (topic-like classes, a sentence pair): a noun's definition → its
  lexicographer class (8 classes: animal, plant, food, person, location, artifact, body, substance; 340 synsets
  each), a verb's definition → its class (6: motion, communication, consumption, competition, emotion,
  perception; 240 each), and "is X a kind of Y?" (X's definition and a hypernym of X, or the hypernym of another
  synset of X's class that is none of X's ancestors; 2,700 synsets, half each).

Decided before each set ran (the study's transfer bars): the label check is confirmed on a set if the
label-checked policy is ≥ the best zero-cost baseline − 1 on all tasks but at most one and ≥ it on average.
Resumable: every finished (selector, seed) is on disk; rerun the same command to continue::

    pip download --no-deps --no-binary :all: vaderSentiment==3.3.2 -d /tmp/vader
    python experiments/heldout_transfer.py --vader /tmp/vader/vaderSentiment-3.3.2.tar.gz \
        --work /tmp/heldout --out experiments/results/heldout_transfer

    (cd /tmp && apt-get download wordnet-base && dpkg-deb -x wordnet-base_*.deb /tmp/wordnet)
    python experiments/heldout_transfer.py --wordnet /tmp/wordnet/usr/share/wordnet \
        --work /tmp/heldout --out experiments/results/heldout_wordnet
"""

from __future__ import annotations

import argparse
import html
import io
import json
import shutil
import sys
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rl_select.errors import RLSelectError
from rl_select.rules import POLICY_RULE
from rl_select.study.config import StudyConfig, read_study
from rl_select.study.table import ZERO_COST

POLICY = Path(__file__).parent / "policies" / "transfer-query"
STUDY = Path(__file__).parent / "configs" / "strongest-cpu.yaml"
TRANSFER, CHECKED = "transfer policy", "transfer policy, label-checked"
TEST_ROWS, DEV_ROWS, SPLIT_SEED = 500, 200, 0


def write_task(name: str, rows: list[dict[str, str]], spec: dict, data_dir: Path) -> None:
    """Shuffle (seed 0) and split into test, dev and the pool; write the shared task layout with ``spec``."""
    order = np.random.default_rng(SPLIT_SEED).permutation(len(rows))
    shuffled = [rows[i] for i in order]
    splits = {
        "test": shuffled[:TEST_ROWS],
        "dev": shuffled[TEST_ROWS : TEST_ROWS + DEV_ROWS],
        "train": shuffled[TEST_ROWS + DEV_ROWS :],
    }
    folder = data_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    for split, split_rows in splits.items():
        (folder / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in split_rows))
    rows_per_split = {split: len(split_rows) for split, split_rows in splits.items()}
    (folder / "task.json").write_text(json.dumps({"name": name, **spec, "rows": rows_per_split}, indent=2) + "\n")


# --- vaderSentiment: four sentiment tasks -------------------------------------------------------------------------

CLEAR, NEUTRAL = 1.0, 0.5  # |mean rating| beyond CLEAR: polar; below NEUTRAL: neutral (the 3-way task)
LEXICON = "vader_lexicon.txt"  # the package's rated tokens (token, mean, sd, ratings), beside the ground-truth files


@dataclass(frozen=True)
class VaderTask:
    """One task built from a VADER ground-truth file."""

    name: str
    source_file: str
    template: str
    three_way: bool = False

    def label(self, rating: float) -> str | None:
        """The rating's label, or None for a row left out (between the bands)."""
        if rating > CLEAR:
            return "positive"
        if rating < -CLEAR:
            return "negative"
        return "neutral" if self.three_way and abs(rating) < NEUTRAL else None


VADER_TASKS = [
    VaderTask("vader-tweets", "tweets_GroundTruth.txt", "Tweet: {text}\nSentiment: {label}"),
    VaderTask("vader-amazon", "amazonReviewSnippets_GroundTruth.txt", "Review: {text}\nSentiment: {label}"),
    VaderTask("vader-nyt", "nytEditorialSnippets_GroundTruth.txt", "Text: {text}\nSentiment: {label}"),
    VaderTask("vader-tweets-3way", "tweets_GroundTruth.txt", "Tweet: {text}\nSentiment: {label}", three_way=True),
    VaderTask("vader-words", LEXICON, "Word: {text}\nSentiment: {label}"),
]


def ground_truth_files(sdist: Path) -> dict[str, str]:
    """The ``*_GroundTruth.txt`` files inside the sdist's nested ``hutto_ICWSM_2014.tar.gz`` and its lexicon."""

    def text(archive: tarfile.TarFile, member: tarfile.TarInfo) -> str:
        return archive.extractfile(member).read().decode("utf-8", "replace")  # type: ignore[union-attr]

    try:
        with tarfile.open(sdist) as outer:
            members = outer.getmembers()
            member = next(m for m in members if m.name.endswith("hutto_ICWSM_2014.tar.gz"))
            inner_bytes = outer.extractfile(member).read()  # type: ignore[union-attr]
            lexicon = next(m for m in members if m.name.endswith(f"vaderSentiment/{LEXICON}"))
            files = {LEXICON: text(outer, lexicon)}
        with tarfile.open(fileobj=io.BytesIO(inner_bytes)) as inner:
            found = [m for m in inner.getmembers() if m.name.endswith("_GroundTruth.txt")]
            return files | {Path(m.name).name: text(inner, m) for m in found}
    except (OSError, tarfile.TarError, StopIteration) as error:
        raise RLSelectError(f"{sdist} is not the vaderSentiment 3.3.2 sdist with its ground-truth data") from error


def rated_line(line: str) -> tuple[float, str] | None:
    """(mean rating, text) of a ground-truth line (id, mean, sentence) or a lexicon line (token, mean, sd, ratings)."""
    parts = line.split("\t")
    if len(parts) == 3:
        return float(parts[1]), parts[2]
    return (float(parts[1]), parts[0]) if len(parts) == 4 else None


def labelled_rows(text: str, task: VaderTask) -> list[dict[str, str]]:
    """``{"text", "label"}`` rows of one ground-truth or lexicon file, each text once."""
    rows, seen = [], set()
    for line in text.splitlines():
        rated = rated_line(line)
        if rated is None:
            continue
        label, sentence = task.label(rated[0]), " ".join(html.unescape(rated[1]).split())
        if label is not None and sentence and sentence.lower() not in seen:
            seen.add(sentence.lower())
            rows.append({"text": sentence, "label": label})
    return rows


def source_path(task: VaderTask) -> str:
    """Where in the sdist the task's rows come from."""
    return f"vaderSentiment/{LEXICON}" if task.source_file == LEXICON else f"hutto_ICWSM_2014/{task.source_file}"


def build_vader_tasks(sdist: Path, data_dir: Path) -> None:
    """Every VADER task in ``data_dir`` (the same files every time: the split is seeded)."""
    files = ground_truth_files(sdist)
    for task in VADER_TASKS:
        if task.source_file not in files:
            raise RLSelectError(f"{sdist} has no {task.source_file}")
        labels = ["negative", "neutral", "positive"] if task.three_way else ["negative", "positive"]
        spec = {
            "template": task.template,
            "labels": labels,
            "verbalizer": {label: label for label in labels},
            "source": f"vaderSentiment 3.3.2 sdist, {source_path(task)} (Hutto & Gilbert 2014)",
        }
        write_task(task.name, labelled_rows(files[task.source_file], task), spec, data_dir)


# --- WordNet 3.0: two topic-like tasks and a sentence pair ----------------------------------------------------------

WORDNET_SOURCE = "Princeton WordNet 3.0 (Debian wordnet-base), {file}"
# lex_filenum → class name (lexnames(5WN)): noun.animal, noun.plant, ...; verb.motion, verb.communication, ...
NOUN_CLASSES = {
    5: "animal", 20: "plant", 13: "food", 18: "person", 15: "location", 6: "artifact", 8: "body", 27: "substance"
}  # fmt: skip
VERB_CLASSES = {
    38: "motion", 32: "communication", 34: "consumption", 33: "competition", 37: "emotion", 39: "perception"
}  # fmt: skip
NOUNS_PER_CLASS, VERBS_PER_CLASS, KIND_OF_PAIRS = 340, 240, 2700
NOUN_TOPS = 3  # noun.Tops: the unique beginners, left out of "kind of"


@dataclass(frozen=True)
class Synset:
    """One line of a WordNet ``data.*`` file: its lexicographer class, words, hypernyms and definition."""

    offset: str
    lexfile: int
    words: tuple[str, ...]
    hypernyms: tuple[str, ...]
    definition: str

    @property
    def text(self) -> str:
        """The first word and its definition, as a row's text."""
        return f"{self.words[0]}: {self.definition}"


def parse_synset(line: str) -> Synset:
    """A ``data.noun``/``data.verb`` line (wndb(5WN)): offset, lex_filenum, type, words, pointers, ``| gloss``."""
    head, _, gloss = line.partition(" | ")
    fields = head.split()
    n_words = int(fields[3], 16)
    words = tuple(w.replace("_", " ") for w in fields[4 : 4 + 2 * n_words : 2])
    at = 4 + 2 * n_words
    pointers = fields[at + 1 : at + 1 + 4 * int(fields[at])]
    hypernyms = tuple(pointers[i + 1] for i in range(0, len(pointers), 4) if pointers[i] in ("@", "@i"))
    definition = gloss.split('; "')[0].strip().rstrip(";").strip()
    return Synset(fields[0], int(fields[1]), words, hypernyms, definition)


def read_synsets(folder: Path, part_of_speech: str) -> dict[str, Synset]:
    """Every synset of ``data.<part_of_speech>`` by offset (its licence header left out)."""
    path = folder / f"data.{part_of_speech}"
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        synsets = [parse_synset(line) for line in lines if line and not line.startswith("  ")]
    except (OSError, ValueError, IndexError) as error:
        raise RLSelectError(f"{path} is not a WordNet 3.0 data file: {error}") from error
    return {s.offset: s for s in synsets if s.definition}


def class_rows(synsets: dict[str, Synset], classes: dict[int, str], per_class: int) -> list[dict[str, str]]:
    """``per_class`` synsets of each class (seeded), each text once, labelled with the class name."""
    rng, rows, seen = np.random.default_rng(SPLIT_SEED), [], set()
    for lexfile, name in classes.items():
        members = sorted((s for s in synsets.values() if s.lexfile == lexfile), key=lambda s: s.offset)
        taken = 0
        for index in rng.permutation(len(members)):
            text = members[index].text
            if taken < per_class and text.lower() not in seen:
                seen.add(text.lower())
                rows.append({"text": text, "label": name})
                taken += 1
        if taken < per_class:
            raise RLSelectError(f"WordNet class {name} has {taken} usable synsets, fewer than {per_class}")
    return rows


def ancestors(synset: Synset, synsets: dict[str, Synset]) -> set[str]:
    """Offsets of every hypernym of ``synset``, transitively."""
    found, stack = set(), list(synset.hypernyms)
    while stack:
        offset = stack.pop()
        if offset not in found and offset in synsets:
            found.add(offset)
            stack.extend(synsets[offset].hypernyms)
    return found


def kind_of_rows(synsets: dict[str, Synset], n_pairs: int) -> list[dict[str, str]]:
    """ "Is X a kind of Y?" pairs: half with a hypernym of X, half with the hypernym of another synset of X's class."""
    rng = np.random.default_rng(SPLIT_SEED)
    usable = sorted(
        (s for s in synsets.values() if s.lexfile != NOUN_TOPS and s.hypernyms and s.hypernyms[0] in synsets),
        key=lambda s: s.offset,
    )
    by_class: dict[int, list[Synset]] = {}
    for synset in usable:
        by_class.setdefault(synset.lexfile, []).append(synset)
    rows, seen = [], set()
    for index in rng.permutation(len(usable)):
        synset = usable[index]
        if len(rows) == n_pairs or synset.text.lower() in seen:
            continue
        entailed = len(rows) % 2 == 0
        other = synset if entailed else negative_for(synset, by_class[synset.lexfile], synsets, rng)
        if other is None:
            continue
        seen.add(synset.text.lower())
        kind = synsets[other.hypernyms[0]].words[0]
        rows.append(
            {
                "text": synset.text,
                "text_pair": f"{synset.words[0]} is a kind of {kind}.",
                "label": "entailment" if entailed else "not_entailment",
            }
        )
    return rows


def negative_for(synset: Synset, same_class: list[Synset], synsets: dict[str, Synset], rng) -> Synset | None:
    """A synset of ``synset``'s class whose first hypernym is none of ``synset``'s ancestors (nor its word)."""
    lineage = ancestors(synset, synsets)
    for _ in range(20):
        other = same_class[int(rng.integers(len(same_class)))]
        kind = synsets[other.hypernyms[0]]
        if kind.offset not in lineage and not set(kind.words) & set(synset.words):
            return other
    return None


def class_spec(classes: dict[int, str], part_of_speech: str) -> dict:
    """task.json fields of a definition → class task."""
    labels = list(classes.values())
    return {
        "template": "Definition: {text}\nCategory: {label}",
        "labels": labels,
        "verbalizer": {label: label.capitalize() for label in labels},
        "source": WORDNET_SOURCE.format(file=f"data.{part_of_speech}: lexicographer classes"),
    }


KIND_OF_SPEC = {
    "template": "{text}\nquestion: {text_pair} True or False?\nanswer: {label}",
    "labels": ["entailment", "not_entailment"],
    "verbalizer": {"entailment": "True", "not_entailment": "False"},
    "source": WORDNET_SOURCE.format(file="data.noun: hypernyms"),
}
WORDNET_TASKS = ("wordnet-nouns", "wordnet-verbs", "wordnet-kind-of")


def build_wordnet_tasks(folder: Path, data_dir: Path) -> None:
    """Every WordNet task in ``data_dir`` from the ``data.noun`` and ``data.verb`` files in ``folder`` (seeded)."""
    nouns, verbs = read_synsets(folder, "noun"), read_synsets(folder, "verb")
    built = (
        (class_rows(nouns, NOUN_CLASSES, NOUNS_PER_CLASS), class_spec(NOUN_CLASSES, "noun")),
        (class_rows(verbs, VERB_CLASSES, VERBS_PER_CLASS), class_spec(VERB_CLASSES, "verb")),
        (kind_of_rows(nouns, KIND_OF_PAIRS), KIND_OF_SPEC),
    )
    for name, (rows, spec) in zip(WORDNET_TASKS, built, strict=True):
        write_task(name, rows, spec, data_dir)


@dataclass(frozen=True)
class Source:
    """A set of held-out tasks: where they come from, how they are built, and how the table names them."""

    tasks: tuple[str, ...]
    build: Callable[[Path, Path], None]
    described: str


SOURCES = {
    "vader": Source(
        tuple(t.name for t in VADER_TASKS),
        build_vader_tasks,
        "sentiment tasks built from vaderSentiment 3.3.2's rated sentences",
    ),
    "wordnet": Source(
        WORDNET_TASKS,
        build_wordnet_tasks,
        "WordNet 3.0 tasks: a noun's and a verb's class from its definition, and 'is X a kind of Y?'",
    ),
}


def evaluate_task(
    study: StudyConfig, name: str, data_dir: Path, work: Path, out: Path, progress: Callable | None
) -> dict:
    """Label-check a fresh copy of the transfer policy on the task's dev rows; evaluate every row on test.

    As the study does: its model, embedder, k, test rows, seeds and label-check rows.
    """
    from rl_select.budget import TokenProfile, measure_throughput, project_evaluation
    from rl_select.cli.common import announce_budget
    from rl_select.evaluation.core import EvaluationLog, evaluation_key, run_evaluation
    from rl_select.evaluation.tables import evaluation_markdown
    from rl_select.evaluation.verify import verify_rules
    from rl_select.provenance import provenance
    from rl_select.resources import Resources
    from rl_select.rules import LABELS
    from rl_select.runs.policy import PolicySelector
    from rl_select.scoring import ScoringConfig
    from rl_select.scoring.cache import RewardCache
    from rl_select.scoring.model import shared_language_model
    from rl_select.selectors import make_selector
    from rl_select.tasks import load_task

    task = load_task(name, data_dir)
    lm = shared_language_model(study.model, study.device, study.dtype)
    resources = Resources(
        task,
        lm=lm,
        scoring=ScoringConfig(),
        embedder=study.embedder,
        reward_cache=RewardCache(path=work / "cache" / "rewards.sqlite"),
        data_seed=0,
        progress=progress,
    )
    run = work / "policies" / name  # a copy: the label check stores its choice in the run, never in the committed one
    if not run.exists():
        shutil.copytree(POLICY, run)
    choice = verify_rules(run, resources, rows=study.transfer_check_rows, by=LABELS)
    selectors = [make_selector(b) for b in ZERO_COST]
    selectors.append(PolicySelector.from_run(run, name=TRANSFER, zero_cost=True, rule=POLICY_RULE))
    selectors.append(PolicySelector.from_run(run, name=CHECKED, rule=choice.rule, zero_cost=True))
    seeds = list(range(study.evaluation.seeds))
    rows = min(study.evaluation.rows, len(task.test))
    key = evaluation_key(resources, k=study.k, split="test", n_rows=rows, seeds=seeds)
    header = {
        "provenance": provenance(seeds=seeds, model=lm.info()),
        "task": task.summary(),
        "label_check": choice.to_dict(),
    }
    log = EvaluationLog(out / "evaluation" / f"{name}.json", key, header, render=evaluation_markdown)
    profile = TokenProfile.of(task, lm.tokenizer)
    projection = project_evaluation(selectors, task, profile, study.k, rows, len(seeds), log.kept_seeds)
    announce_budget(projection, measure_throughput(lm, [task], study.k), table=False)  # what is left to do
    reports = run_evaluation(selectors, resources, log, k=study.k, seeds=seeds, n_rows=rows, progress=progress)
    return {"choice": choice, "reports": {r.name: r for r in reports}, "model": lm.info()}


def summarize(results: dict[str, dict], study: StudyConfig, source: str) -> dict:
    """Per task and on average: the label-checked policy (and the policy alone) − the best zero-cost baseline."""
    from rl_select.evaluation.stats import paired_bootstrap, stratified_bootstrap

    tasks, checked_pairs, policy_pairs = {}, [], []
    for name, result in results.items():
        reports = result["reports"]
        best = max(ZERO_COST, key=lambda b: reports[b].calibrated[0])
        base = reports[best].correct()
        checked_pairs.append((reports[CHECKED].correct(), base))
        policy_pairs.append((reports[TRANSFER].correct(), base))
        tasks[name] = {
            "accuracy": {row: round(100 * r.calibrated[0], 2) for row, r in reports.items()},
            "best_zero_cost": best,
            "label_check": {"kept": result["choice"].rule, "gold_label_share": result["choice"].dev_scores},
            "checked_vs_best_zero_cost": paired_bootstrap(*checked_pairs[-1]).to_dict(),
            "policy_vs_best_zero_cost": paired_bootstrap(*policy_pairs[-1]).to_dict(),
            "checked_vs_knn": paired_bootstrap(reports[CHECKED].correct(), reports["knn"].correct()).to_dict(),
        }
    within = sum(t["checked_vs_best_zero_cost"]["mean"] >= -1 for t in tasks.values())
    switched = sum(t["label_check"]["kept"] != POLICY_RULE for t in tasks.values())
    average = stratified_bootstrap(checked_pairs).to_dict()
    return {
        "source": source,
        "protocol": {
            "k": study.k,
            "test_rows": study.evaluation.rows,
            "seeds": study.evaluation.seeds,
            "check_rows": study.transfer_check_rows,
        },
        "tasks": tasks,
        "average": {
            "checked_vs_best_zero_cost": average,
            "policy_vs_best_zero_cost": stratified_bootstrap(policy_pairs).to_dict(),
        },
        "within_1_of_best_zero_cost": within,
        "label_check_switched": switched,
        "confirmed": within >= len(tasks) - 1 and average["mean"] >= 0,
    }


def markdown(summary: dict, record: dict) -> str:
    """The held-out table with provenance."""
    from rl_select.provenance import markdown_table, provenance_markdown

    def delta(d: dict) -> str:
        return f"{d['mean']:+.1f} [{d['ci95'][0]:+.1f}, {d['ci95'][1]:+.1f}]"

    names, protocol = list(summary["tasks"]), summary["protocol"]
    described = SOURCES[summary["source"]].described
    rows = [
        [row, *(f"{summary['tasks'][t]['accuracy'][row]:.1f}" for t in names)]
        for row in [*ZERO_COST, TRANSFER, CHECKED]
    ]
    rows.append(["label check kept", *(summary["tasks"][t]["label_check"]["kept"] for t in names)])
    rows.append(["best zero-cost", *(summary["tasks"][t]["best_zero_cost"] for t in names)])
    rows.append(["checked − best zero-cost", *(delta(summary["tasks"][t]["checked_vs_best_zero_cost"]) for t in names)])
    rows.append(["policy − best zero-cost", *(delta(summary["tasks"][t]["policy_vs_best_zero_cost"]) for t in names)])
    average = summary["average"]
    verdict = "confirmed" if summary["confirmed"] else "not confirmed"
    return "\n".join(
        [
            f"# The label-checked transfer policy on {len(names)} held-out tasks\n",
            f"`experiments/policies/transfer-query` (fitted on the seven study tasks) on {described}; "
            f"calibrated accuracy, {protocol['test_rows']} test rows × "
            f"{protocol['seeds']} seeds (seed-free rows scored once), k = {protocol['k']}; the label check on "
            f"{protocol['check_rows']} dev rows (no LLM calls on the task). "
            "Deltas paired, with 95% bootstrap intervals over test rows × seeds.\n",
            markdown_table(["row", *names], rows),
            f"\nLabel-checked − best zero-cost on average: **{delta(average['checked_vs_best_zero_cost'])}**; the "
            f"policy alone: {delta(average['policy_vs_best_zero_cost'])}. Within 1 point of the best zero-cost row "
            f"on {summary['within_1_of_best_zero_cost']} of {len(names)} tasks.\n",
            f"Decided before it ran: confirmed if within 1 on at least {len(names) - 1} of {len(names)} tasks and "
            f"≥ 0 on average. **The label check is {verdict} on these tasks.**\n",
            switch_note(summary["label_check_switched"], len(names)),
            provenance_markdown(record),  # type: ignore[arg-type]
        ]
    )


def switch_note(switched: int, tasks: int) -> str:
    """What the check did: where it kept the policy everywhere, this tests the policy, not a switch to a rule."""
    if switched == 0:
        return (
            f"The check kept the policy on all {tasks} tasks, so these tasks confirm the transferred policy and that "
            "the check left it alone where it was right; none of them tests a switch to a rule.\n"
        )
    return f"The check switched from the policy to a rule on {switched} of {tasks} tasks.\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--vader", type=Path, help="The vaderSentiment-3.3.2.tar.gz sdist: the sentiment tasks.")
    source.add_argument("--wordnet", type=Path, help="WordNet 3.0's dict folder (data.noun, data.verb).")
    parser.add_argument("--work", type=Path, required=True, help="Scratch: the built tasks, policy copies, cache.")
    parser.add_argument("--out", type=Path, help="Result folder (summary.json, README.md); not with --build-only.")
    parser.add_argument("--tasks", help="Comma-separated subset of the source's tasks (default: all).")
    parser.add_argument("--build-only", action="store_true", help="Build the tasks in WORK/data, then stop.")
    args = parser.parse_args(argv)
    from rl_select.cli.common import progress_bars
    from rl_select.provenance import provenance, write_json

    source_name, source_path = ("vader", args.vader) if args.vader else ("wordnet", args.wordnet)
    source = SOURCES[source_name]
    names = [n for n in args.tasks.split(",") if n] if args.tasks else list(source.tasks)
    if args.out is None and not args.build_only:
        parser.error("--out is required (unless --build-only)")
    unknown = sorted(set(names) - set(source.tasks))
    try:
        if unknown:
            raise RLSelectError(f"unknown task(s) {', '.join(unknown)}; choose from {', '.join(source.tasks)}")
        study = read_study(STUDY)
        source.build(source_path, args.work / "data")
        if args.build_only:
            print(f"built {', '.join(source.tasks)} in {args.work / 'data'}")
            return 0
        results = {}
        with progress_bars() as progress:
            for name in names:
                checks, rows = study.transfer_check_rows, len(ZERO_COST) + 2
                print(f"{name}: label check on {checks} dev rows, then {rows} rows on test", flush=True)
                results[name] = evaluate_task(study, name, args.work / "data", args.work, args.out, progress)
    except (OSError, RLSelectError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    summary = summarize(results, study, source_name)
    models = {json.dumps(result["model"], sort_keys=True) for result in results.values()}
    seeds = list(range(study.evaluation.seeds))
    record = provenance(seeds=seeds, model=json.loads(next(iter(models))) if len(models) == 1 else None)
    write_json(args.out / "summary.json", {"provenance": record, **summary})
    (args.out / "README.md").write_text(markdown(summary, record) + "\n")
    print(f"{'confirmed' if summary['confirmed'] else 'not confirmed'}: {args.out}/README.md, {args.out}/summary.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
