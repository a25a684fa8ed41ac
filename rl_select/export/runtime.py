"""Running an exported selector: ``load_selector(POLICY_DIR).select(query)``.

Needs numpy, onnxruntime, faiss and, for query-mode policies, the embedder: an ONNX embedder when the export
could convert it (onnxruntime + tokenizers), else the original one (torch). No stable-baselines3, Ray,
Gymnasium or training code is imported.

Example:
    >>> selector = load_selector("policies/sst2-query")  # doctest: +SKIP
    >>> [d.label for d in selector.select("a gripping, funny film", k=4)]  # doctest: +SKIP
    ['positive', 'negative', 'positive', 'positive']
    >>> print(selector.prompt("a gripping, funny film"))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import rl_select.export.manifest as fmt
from rl_select.errors import ArtifactError, ConfigError, RLSelectError
from rl_select.export.torch_parts import load_original_embedder, zero_shot_features
from rl_select.observation import (
    ORDERS,
    FeatureConfig,
    Projection,
    arrange_prompt,
    build_observation,
    feature_layout,
    nearest_first,
    query_features,
    static_features,
    word_length,
)
from rl_select.proposals import Proposal, ProposerConfig, balanced_ranking, merge_proposals
from rl_select.retrieval.bm25 import BM25Index
from rl_select.retrieval.index import VectorIndex
from rl_select.rules import POLICY_RULE, check_rule, rule_action
from rl_select.tasks.files import examples_from_rows, read_split
from rl_select.tasks.task import Example
from rl_select.tasks.template import PromptTemplate
from rl_select.types import JsonObject, JsonValue

MAX_QUERY_CHARS = 20_000


@dataclass(frozen=True)
class Demonstration:
    """One chosen demonstration: its pool id, text, label (and second text for pair tasks)."""

    id: int
    text: str
    label: str
    text_pair: str | None = None

    def to_dict(self) -> JsonObject:
        """JSON form."""
        row: JsonObject = {"id": self.id, "text": self.text, "label": self.label}
        if self.text_pair is not None:
            row["text_pair"] = self.text_pair
        return row


class OnnxEmbedder:
    """A sentence embedder exported to ONNX (token ids + mask → unit vector), tokenized with ``tokenizers``."""

    def __init__(self, model: Path, tokenizer: Path, max_length: int, embedder_id: str) -> None:
        import onnxruntime as ort  # deferred: loads onnxruntime
        from tokenizers import Tokenizer  # deferred: loads tokenizers

        self.tokenizer = Tokenizer.from_file(str(tokenizer))
        self.tokenizer.enable_truncation(max_length)
        self.tokenizer.no_padding()
        self.session = ort.InferenceSession(
            str(model), _session_options(embedder_threads()), providers=["CPUExecutionProvider"]
        )
        self.id = embedder_id

    def embed(self, texts: list[str], progress: Any = None) -> np.ndarray:
        """Unit vectors, one text per run (queries come one at a time)."""
        out = []
        for text in texts:
            encoding = self.tokenizer.encode(text)
            ids = np.asarray([encoding.ids], dtype=np.int64)
            mask = np.asarray([encoding.attention_mask], dtype=np.int64)
            out.append(self.session.run(None, {"input_ids": ids, "attention_mask": mask})[0][0])
        return np.asarray(out, dtype=np.float32).reshape(len(texts), -1)


def embedder_threads() -> int:
    """Threads per embedding: ``$RL_SELECT_EMBEDDER_THREADS``, else min(2, cores).

    Two threads cut a MiniLM query embedding from 5.5 to 3.3 ms (p50) on the 2-core dev machine; more add
    contention when requests run concurrently.
    """
    value = os.environ.get("RL_SELECT_EMBEDDER_THREADS")
    return max(1, int(value)) if value and value.isdigit() else min(2, os.cpu_count() or 1)


def _session_options(threads: int = 1) -> Any:
    import onnxruntime as ort  # deferred: loads onnxruntime

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads  # the policy network is tiny: one thread per request scales best
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return options


def _load_embedder(directory: Path, spec: fmt.EmbedderSpec) -> Any:
    """The query embedder: the exported ONNX one (light), else the original through the optional torch module."""
    if spec.onnx:
        return OnnxEmbedder(directory / fmt.EMBEDDER_ONNX, directory / fmt.EMBEDDER_TOKENIZER, spec.max_length, spec.id)

    return load_original_embedder(spec)


class Selector:
    """An exported demonstration selector. Thread-safe: one instance can serve concurrent requests.

    Use :func:`load_selector` to create one.
    """

    def __init__(self, directory: Path, manifest: fmt.Manifest, pool_file: str | Path | None = None) -> None:
        import onnxruntime as ort  # deferred: loads onnxruntime

        self.directory = directory
        self.manifest = manifest
        task = manifest.task
        self.template = PromptTemplate(task.template, task.verbalizer, tuple(task.labels), task.separator)
        self.mode: str = manifest.mode
        self.k: int = manifest.k
        self.num_candidates: int = manifest.num_candidates
        self.prompt_order: str = manifest.prompt_order  # artifacts from before the setting appended (the default)
        if self.prompt_order not in ORDERS:
            raise ArtifactError(f"{directory}: unknown prompt_order {self.prompt_order!r} in the manifest")
        self.features = FeatureConfig(**{"centred_similarity": True, **manifest.features})  # older: centred
        self.stop_action = manifest.stop_action
        self.proposers = None if manifest.proposers is None else ProposerConfig(**manifest.proposers)
        self.layout = feature_layout(self.features, self.mode, self.proposers is not None, self.stop_action)
        self.rule: str = manifest.rule
        try:
            counts = None if self.proposers is None or self.mode != "query" else self.proposers.counts()
            check_rule(self.rule, counts, self.stop_action)
        except ConfigError as exc:
            raise ArtifactError(f"{directory}: {exc}") from None
        try:
            self.session = ort.InferenceSession(
                str(directory / fmt.POLICY_ONNX), _session_options(), providers=["CPUExecutionProvider"]
            )
            self.projection = Projection(
                *(np.load(directory / name, allow_pickle=False) for name in fmt.PROJECTION_FILES)
            )
            self.anchor = np.load(directory / fmt.ANCHOR, allow_pickle=False) if self.mode == "task" else None
        except Exception as exc:  # onnxruntime raises its own exception types for damaged models
            raise ArtifactError(f"cannot load {directory}: {str(exc).splitlines()[0]}") from None
        self.input_names = [i.name for i in self.session.get_inputs()]
        if self.input_names != manifest.onnx_inputs:
            raise ArtifactError(f"{fmt.POLICY_ONNX} inputs {self.input_names} do not match the manifest")
        self._embedder: Any = None
        self._bm25: Any = None
        self._embedder_lock = threading.Lock()
        self._pool_lock = threading.Lock()
        if pool_file is None:
            self.pool = read_split(directory / fmt.POOL_JSONL, "train", self.template)
            self.vectors = np.load(directory / fmt.POOL_EMBEDDINGS, allow_pickle=False)
            self.static = np.load(directory / fmt.POOL_STATIC, allow_pickle=False)
            self.task_candidates = np.asarray(manifest.task_candidates, dtype=np.int64)
            self.task_proposals = np.asarray(manifest.task_proposals, dtype=np.int64)
        else:
            self._swap_pool(Path(pool_file))
        self.labels = np.array([self.template.labels.index(e.label) for e in self.pool], dtype=np.int64)
        self.space = self.projection.to_space(self.vectors, self.features.centred_similarity)
        self._check_shapes()
        self.index = self._index()

    # ------------------------------------------------------------------ public API

    def select(
        self, query: str | None = None, k: int | None = None, query_pair: str | None = None
    ) -> list[Demonstration]:
        """Demonstrations for ``query`` (query mode) or the task (task mode), in prompt order.

        Args:
            query: The input to classify (required in query mode; ignored by task-mode policies).
            k: Demonstrations to return (default: the k the policy was trained with; at most M). A policy with the
                stop action returns at most k, possibly none (zero-shot).
            query_pair: The second text of pair tasks (``{text_pair}`` in the template).
        """
        k = self.k if k is None else k
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= self.num_candidates:
            raise ConfigError(f"k must be an integer from 1 to {self.num_candidates} (the candidates per episode)")
        if self.mode == "task":
            ids = self._greedy(self.task_candidates, k, self.anchor, None)
        else:
            text = self._query_text(query, query_pair)
            raw = self.embedder.embed([text])[0]
            anchor = self.projection.to_space(raw[None], self.features.centred_similarity)[0]
            features = query_features(raw, self.projection, len(text.split()) / 50.0)
            if self.proposers is None:
                ids = self._greedy(self._nearest(anchor), k, anchor, features)
            else:
                proposal = self._propose(text, anchor)
                ids = self._greedy(proposal.candidates, k, anchor, features, proposal.features)
        return [Demonstration(int(i), self.pool[i].text, self.pool[i].label, self.pool[i].text_pair) for i in ids]

    def prompt(self, query: str, k: int | None = None, query_pair: str | None = None) -> str:
        """The full prompt: the selected demonstrations, then the query up to the answer."""
        self._query_text(query, query_pair)
        demos = self.select(query, k, query_pair)
        return self.template.prompt([(d.text, d.label, d.text_pair) for d in demos], query, query_pair)

    @property
    def embedder(self) -> Any:
        """The query embedder (loaded on first use; task-mode policies never need it)."""
        if self._embedder is None:
            with self._embedder_lock:
                if self._embedder is None:
                    self._embedder = _load_embedder(self.directory, self.manifest.embedder)
        return self._embedder

    def warm(self) -> None:
        """Load everything a selection needs now (the query embedder in query mode) rather than on first use."""
        if self.mode == "query":
            _ = self.embedder

    def info(self) -> fmt.PolicyInfo:
        """A summary of the manifest (what ``GET /v1/policy`` returns)."""
        m = self.manifest
        return fmt.PolicyInfo(
            format_version=m.format_version,
            algo=m.algo,
            mode=self.mode,
            k=self.k,
            num_candidates=self.num_candidates,
            prompt_order=self.prompt_order,
            stop_action=self.stop_action,
            proposers=None if self.proposers is None else self.proposers.counts(),
            rule=self.rule,
            pool_size=len(self.pool),
            task=m.task.name,
            labels=list(self.template.labels),
            template=self.template.template,
            embedder=m.embedder.id,
            trained=m.provenance.get("trained_on"),
            commit=m.provenance.get("commit"),
        )

    # ------------------------------------------------------------------ internals

    def _query_text(self, query: str | None, query_pair: str | None) -> str:
        if self.mode == "task" and query is None:
            return ""
        if not isinstance(query, str) or not query.strip():
            raise ConfigError("this policy selects per query: give a non-empty 'query'")
        if len(query) + len(query_pair or "") > MAX_QUERY_CHARS:
            raise ConfigError(f"query is longer than {MAX_QUERY_CHARS} characters")
        if self.template.uses_text_pair and not (isinstance(query_pair, str) and query_pair.strip()):
            raise ConfigError("this task's template has {text_pair}: give a non-empty 'query_pair'")
        return query if not self.template.uses_text_pair else f"{query}\n{query_pair}"

    def _nearest(self, anchor: np.ndarray) -> np.ndarray:
        """The M pool rows nearest the query (ties by pool id)."""
        sims, found = self.index.search(anchor[None].astype(np.float32), self.num_candidates)
        order = sorted(range(len(found[0])), key=lambda i: (-sims[0][i], found[0][i]))
        return found[0][order].astype(np.int64)

    def _propose(self, text: str, anchor: np.ndarray) -> Proposal:
        """The M candidates of the policy's proposers, as the environment proposed them in training."""
        counts = self.proposers.counts()  # type: ignore[union-attr]
        similarity = self.space @ anchor
        ranked = {"embedding": nearest_first(self.space, anchor)}
        if counts["bm25"]:
            ranked["bm25"] = self.bm25.search(text, counts["bm25"])[1]
        if counts["balanced"]:
            ranked["balanced"] = balanced_ranking(similarity, self.labels, counts["balanced"])
        if counts["task"]:
            ranked["task"] = self.task_proposals
        return merge_proposals(ranked, counts, self.num_candidates)

    @property
    def bm25(self) -> Any:
        """BM25 over the pool's texts (built on first use, again after the pool changes)."""
        if self._bm25 is None:
            self._bm25 = BM25Index([e.input_text for e in self.pool])
        return self._bm25

    def _greedy(
        self,
        candidates: np.ndarray,
        k: int,
        anchor: np.ndarray,
        query: np.ndarray | None,
        proposer_features: np.ndarray | None = None,
    ) -> list[int]:
        """The greedy prompt over ``candidates`` (the policy's, or its rule's): k picks, or fewer where it stops."""
        static, vectors, labels = self.static[candidates], self.space[candidates], self.labels[candidates]
        chosen: list[int] = []
        mask = np.ones(len(candidates) + int(self.stop_action), dtype=bool)
        for _ in range(k):
            obs = build_observation(
                static=static,
                vectors=vectors,
                label_ids=labels,
                num_labels=len(self.template.labels),
                chosen=chosen,
                k=k,
                anchor=anchor,
                query=query,
                label_vote=self.features.label_vote,
                proposer_features=proposer_features,
                stop=self.stop_action,
            )
            if self.rule == POLICY_RULE:
                feeds = {name: obs[name][None] for name in self.input_names if name != "action_mask"}
                feeds["action_mask"] = mask[None]
                scores = self.session.run(None, feeds)[0][0]
                action = int(np.argmax(np.where(mask, scores, -np.inf)))
            else:  # the rule dev chose over the policy (rl_select.rules)
                action = rule_action(obs["candidates"], mask, self.layout.candidate, self.rule, self.prompt_order)
            if action == len(candidates):  # the stop action
                break
            chosen.append(action)
            mask[action] = False
        return [int(candidates[i]) for i in arrange_prompt(chosen, self.prompt_order)]

    def _index(self) -> Any:

        path = self.directory / fmt.POOL_INDEX
        if self.manifest.pool_swapped or not path.is_file():
            return VectorIndex(self.space, use_gpu=False)
        return VectorIndex.load(path, self.space, use_gpu=False)

    def _check_shapes(self) -> None:
        n = len(self.pool)
        width = self.layout.static_width
        if self.vectors.shape[0] != n or self.static.shape != (n, width):
            raise ArtifactError(f"{self.directory}: pool arrays do not match pool.jsonl ({n} rows)")
        if self.mode == "task" and (
            len(self.task_candidates) != self.num_candidates or self.task_candidates.max(initial=-1) >= n
        ):
            raise ArtifactError(f"{self.directory}: task_candidates in the manifest do not fit the pool")
        if n < self.num_candidates:
            raise ArtifactError(f"the pool has {n} examples, fewer than the policy's {self.num_candidates} candidates")

    def use_pool(self, rows: Sequence[Mapping[str, JsonValue]], source: str = "rows") -> None:
        """Choose from these rows (``{"text", "label"[, "text_pair"]}``) instead of the exported pool.

        Their embeddings and static features are computed as the exporter computed the pool's (policies with
        zero-shot LLM features load the scoring model once).
        """
        self._install_pool(examples_from_rows(rows, "train", self.template, source), source)

    def add_examples(self, rows: Sequence[Mapping[str, JsonValue]]) -> list[int]:
        """Add rows to a query-mode policy's pool (chosen from the next call on); return their pool ids."""
        if self.mode == "task":
            raise ConfigError("a task-mode policy chooses one prompt from fixed candidates; use use_pool() instead")
        added = examples_from_rows(rows, "train", self.template, "added examples", first_id=len(self.pool))
        vectors, static = self._pool_features(added)
        with self._pool_lock:
            self.pool = [*self.pool, *added]
            self.vectors = np.concatenate([self.vectors, vectors])
            self.static = np.concatenate([self.static, static])
            self.labels = np.array([self.template.labels.index(e.label) for e in self.pool], dtype=np.int64)
            self.space = self.projection.to_space(self.vectors, self.features.centred_similarity)
            self.manifest = self.manifest.model_copy(update={"pool_swapped": "added examples"})
            self.index = self._index()
            self._bm25 = None
        return [e.id for e in added]

    def _swap_pool(self, pool_file: Path) -> None:
        self._install_pool(read_split(pool_file, "train", self.template), str(pool_file))

    def _install_pool(self, pool: list[Example], source: str) -> None:
        if len(pool) < self.num_candidates:
            raise ConfigError(f"the pool has {len(pool)} rows; the policy needs at least {self.num_candidates}")
        self.vectors, self.static = self._pool_features(pool)
        self.pool = pool
        self.labels = np.array([self.template.labels.index(e.label) for e in self.pool], dtype=np.int64)
        self.space = self.projection.to_space(self.vectors, self.features.centred_similarity)
        rng = np.random.default_rng(self.manifest.seed)
        self.task_candidates = np.sort(rng.choice(len(self.pool), size=self.num_candidates, replace=False))
        self.task_proposals = np.zeros(0, dtype=np.int64)  # its ids named the exported pool's rows
        self._bm25 = None
        self.manifest = self.manifest.model_copy(update={"pool_swapped": source})
        if hasattr(self, "index"):
            self.index = self._index()

    def _pool_features(self, pool: list[Example]) -> tuple[np.ndarray, np.ndarray]:
        """Embeddings and static observation features of pool rows, as the exporter computes them."""
        vectors = np.asarray(self.embedder.embed([e.input_text for e in pool]), dtype=np.float32)
        zero_shot = self._zero_shot(pool) if self.features.llm_features else None
        label_ids = np.array([self.template.labels.index(e.label) for e in pool], dtype=np.int64)
        lengths = word_length([e.input_text for e in pool])
        static = static_features(self.projection(vectors), label_ids, lengths, zero_shot, self.features)
        return vectors, static

    def _zero_shot(self, pool: list[Example]) -> np.ndarray:
        """Zero-shot LLM statistics of a swapped-in pool (loads the scoring model: these features need it)."""
        return zero_shot_features(self.manifest, self.template, pool)


def load_selector(path: str | Path, *, pool: str | Path | None = None, verify: bool = True) -> Selector:
    """Load an exported selector.

    Args:
        path: The directory written by ``rl-select export``.
        pool: A JSONL/CSV pool to use instead of the exported one (its features are recomputed; policies with
            zero-shot LLM features then load the scoring model once).
        verify: Check every file's sha256 against the manifest.

    Raises:
        ArtifactError: Missing, edited or damaged files, or an unknown format version.
    """
    directory = Path(path)
    manifest = fmt.read_manifest(directory, verify=verify)
    try:
        return Selector(directory, manifest, pool)
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, RLSelectError):  # a bad --pool file or setting: the user's input, not the artifact
            raise
        raise ArtifactError(f"{directory}/{fmt.MANIFEST} is inconsistent: {exc}") from None


def manifest_json(selector: Selector) -> str:
    """The selector's manifest summary as JSON."""
    return json.dumps(selector.info(), indent=2)
