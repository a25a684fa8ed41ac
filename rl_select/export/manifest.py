"""The exported-policy format: file names, the manifest (one pydantic model), checksums.

Shared by the exporter (training side) and the runtime (light: pydantic and the standard library only).

An exported policy directory holds::

    manifest.json            format version, k, mode, feature spec, embedder, task format, provenance, sha256s
    policy.onnx              candidate scorer: (candidates, chosen, step, state[, query], action_mask) -> scores
    pool.jsonl               the candidate pool (id, text, label[, text_pair])
    pool_embeddings.npy      [N, D] unit embeddings of the pool
    pool_static.npy          [N, F_static] static candidate features (zero-shot LLM statistics included)
    pool.faiss               inner-product index over the pool's centred unit vectors (query mode's neighbours)
    projection_matrix.npy    the random projection and its standardisation (projection_mean.npy,
    projection_mean.npy      projection_scale.npy)
    projection_scale.npy
    anchor.npy               task mode: centred centroid of the reward rows
    embedder.onnx            query mode, when the embedder could be exported (tokenizer.json beside it)
    tokenizer.json

No file is a pickle: arrays are ``.npy`` read with ``allow_pickle=False``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, JsonValue, ValidationError

from rl_select.errors import ArtifactError
from rl_select.paths import file_sha256

FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
"""Version 2 added the stop action, proposers and the task proposer's list; version 3 the rule the policy follows
(chosen on dev); older artifacts load as before (they follow the policy)."""
MANIFEST = "manifest.json"
POLICY_ONNX = "policy.onnx"
POOL_JSONL = "pool.jsonl"
POOL_EMBEDDINGS = "pool_embeddings.npy"
POOL_STATIC = "pool_static.npy"
POOL_INDEX = "pool.faiss"
PROJECTION_FILES = ("projection_matrix.npy", "projection_mean.npy", "projection_scale.npy")
ANCHOR = "anchor.npy"
EMBEDDER_ONNX = "embedder.onnx"
EMBEDDER_TOKENIZER = "tokenizer.json"


class EmbedderSpec(BaseModel):
    """How the runtime embeds a query: the embedder's id and where it comes from."""

    model_config = ConfigDict(extra="forbid")

    id: str
    spec: str | None = None
    kind: str
    model: str | None = None
    dtype: str | None = None
    onnx: bool = False
    max_length: int = 256
    onnx_max_abs_error: float | None = None


class TaskFormat(BaseModel):
    """The task's prompt format and pool."""

    model_config = ConfigDict(extra="forbid")

    name: str
    template: str
    verbalizer: dict[str, str]
    labels: list[str]
    separator: str = "\n\n"
    pool_size: int
    pool_source: str = ""


class Manifest(BaseModel):
    """``manifest.json``: everything the runtime needs besides the arrays, written by the exporter.

    Attributes:
        format_version: The artifact format (the runtime reads :data:`FORMAT_VERSION`).
        algo: The learner that trained the policy.
        mode: ``task`` or ``query``.
        k: Demonstrations per prompt the policy was trained with.
        num_candidates: Candidates per episode (M).
        prompt_order: ``append`` or ``prepend`` (artifacts from before the setting appended).
        seed: Seed of the task-mode candidate draw.
        features: The observation's :class:`~rl_select.observation.FeatureConfig`.
        layout: Column names of each observation block.
        onnx_inputs: Input names of ``policy.onnx``.
        embedder: How queries are embedded.
        scoring: What scored the training rewards (model, dtype, calibration, value).
        task: The prompt format and pool.
        provenance: Training and export provenance.
        task_candidates: Task mode: the pool ids the policy chooses among.
        stop_action: The policy may stop before k demonstrations (its action M); version 2.
        proposers: Query mode: how many candidates each proposer offers
            (:class:`~rl_select.proposals.ProposerConfig`); None: the M nearest neighbours. Version 2.
        task_proposals: The task proposer's pool ids, best task-level prompt first. Version 2.
        rule: Query mode: what the runtime follows (:mod:`rl_select.rules`): the policy's Q-function, or the rule
            its verification on dev chose (one proposer's own top k, zero-shot). Version 3.
        pool_swapped: A pool file used instead of the exported one (set by the runtime, never written).
        files: sha256 of every file of the artifact.
        manifest_sha256: sha256 of this manifest without this field.
    """

    model_config = ConfigDict(extra="forbid")

    format_version: int
    algo: str
    mode: str
    k: int
    num_candidates: int
    prompt_order: str = "append"
    seed: int = 0
    features: dict[str, JsonValue]
    layout: dict[str, list[str]]
    onnx_inputs: list[str]
    embedder: EmbedderSpec
    scoring: dict[str, JsonValue] = Field(default_factory=dict)
    task: TaskFormat
    provenance: dict[str, JsonValue] = Field(default_factory=dict)
    task_candidates: list[int] = Field(default_factory=list)
    stop_action: bool = False
    proposers: dict[str, int] | None = None
    task_proposals: list[int] = Field(default_factory=list)
    rule: str = "policy"
    pool_swapped: str | None = None
    files: dict[str, str]
    manifest_sha256: str | None = None


class PolicyInfo(BaseModel):
    """A summary of a served policy's manifest (what ``GET /v1/policy`` returns)."""

    format_version: int
    algo: str
    mode: str
    k: int
    num_candidates: int
    prompt_order: str
    stop_action: bool
    proposers: dict[str, int] | None
    rule: str = "policy"
    pool_size: int
    task: str
    labels: list[str]
    template: str
    embedder: str
    trained: list[str] | None
    commit: str | None


def manifest_digest(manifest: dict[str, JsonValue]) -> str:
    """sha256 of the manifest's canonical JSON without its own ``manifest_sha256`` field."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def read_manifest(directory: Path, verify: bool = True) -> Manifest:
    """Read ``manifest.json`` and check it.

    Checks the format version, the fields and, with ``verify``, the manifest's own checksum and every file's
    sha256.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ArtifactError(f"exported policy {directory} does not exist")
    path = directory / MANIFEST
    if not path.is_file():
        raise ArtifactError(f"{directory} is not an exported policy (no {MANIFEST}); create one with rl-select export")
    try:
        manifest = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{path} is corrupt: {exc}") from None
    if not isinstance(manifest, dict):
        raise ArtifactError(f"{path} is corrupt: not a JSON object")
    version = manifest.get("format_version")
    if version not in READABLE_VERSIONS:
        readable = ", ".join(str(v) for v in READABLE_VERSIONS)
        raise ArtifactError(f"{path} has format version {version!r}; this rl-select reads versions {readable}")
    if verify and manifest.get("manifest_sha256") != manifest_digest(manifest):
        raise ArtifactError(f"{path} was edited after export (its checksum does not match); re-export the policy")
    try:
        parsed = Manifest.model_validate(manifest)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "manifest"
        raise ArtifactError(f"{path} is corrupt: {where}: {first.get('msg', 'invalid')}") from None
    if not parsed.files:
        raise ArtifactError(f"{path} is corrupt: no file checksums")
    for name, digest in parsed.files.items():
        file = directory / name
        if "/" in name or name.startswith("."):
            raise ArtifactError(f"{path} lists an unexpected file name {name!r}")
        if not file.is_file():
            raise ArtifactError(f"{directory} is missing {name}")
        if verify and file_sha256(file) != digest:
            raise ArtifactError(f"checksum mismatch for {name} in {directory}: the file was changed or damaged")
    return parsed


def write_manifest(directory: Path, manifest: Manifest | dict[str, JsonValue]) -> Manifest:
    """Add the sha256 of every file in ``directory`` (but the manifest) and write ``manifest.json``."""
    body = manifest.model_dump(exclude_none=True) if isinstance(manifest, Manifest) else dict(manifest)
    files = {p.name: file_sha256(p) for p in sorted(Path(directory).iterdir()) if p.is_file() and p.name != MANIFEST}
    body.update(format_version=FORMAT_VERSION, files=files)
    body.pop("manifest_sha256", None)
    body["manifest_sha256"] = manifest_digest(body)
    (Path(directory) / MANIFEST).write_text(json.dumps(body, indent=2, ensure_ascii=False) + "\n")
    return Manifest.model_validate(body)
