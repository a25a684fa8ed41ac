"""The exported-policy format: file names, the manifest, checksums. Shared by exporter and runtime (numpy only).

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
from typing import Any

from rl_select.errors import ArtifactError
from rl_select.paths import file_sha256

FORMAT_VERSION = 1
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
REQUIRED_KEYS = (
    "format_version",
    "k",
    "mode",
    "num_candidates",
    "features",
    "layout",
    "embedder",
    "task",
    "files",
    "algo",
    "onnx_inputs",
)


def manifest_digest(manifest: dict[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON without its own ``manifest_sha256`` field."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def read_manifest(directory: Path, verify: bool = True) -> dict[str, Any]:
    """Read ``manifest.json`` and check it.

    Checks the format version, the required keys and, with ``verify``, the manifest's own checksum and every
    file's sha256.
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
    if version != FORMAT_VERSION:
        raise ArtifactError(f"{path} has format version {version!r}; this rl-select reads version {FORMAT_VERSION}")
    if verify and manifest.get("manifest_sha256") != manifest_digest(manifest):
        raise ArtifactError(f"{path} was edited after export (its checksum does not match); re-export the policy")
    missing = [k for k in REQUIRED_KEYS if k not in manifest]
    if missing:
        raise ArtifactError(f"{path} is corrupt: missing {missing}")
    files = manifest["files"]
    if not isinstance(files, dict) or not files:
        raise ArtifactError(f"{path} is corrupt: no file checksums")
    for name, digest in files.items():
        file = directory / name
        if "/" in name or name.startswith("."):
            raise ArtifactError(f"{path} lists an unexpected file name {name!r}")
        if not file.is_file():
            raise ArtifactError(f"{directory} is missing {name}")
        if verify and file_sha256(file) != digest:
            raise ArtifactError(f"checksum mismatch for {name} in {directory}: the file was changed or damaged")
    return manifest


def write_manifest(directory: Path, manifest: dict[str, Any]) -> None:
    """Add the sha256 of every file in ``directory`` (but the manifest) and write ``manifest.json``."""
    files = {p.name: file_sha256(p) for p in sorted(Path(directory).iterdir()) if p.is_file() and p.name != MANIFEST}
    manifest = {**manifest, "format_version": FORMAT_VERSION, "files": files}
    manifest["manifest_sha256"] = manifest_digest(manifest)
    (Path(directory) / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n")
