"""The runtime's optional torch parts: the original (non-ONNX) embedder and a swapped-in pool's zero-shot features.

The runtime itself (:mod:`rl_select.export.runtime`) imports no torch: an artifact whose embedder was exported
to ONNX, and whose features need no LLM, runs on numpy, onnxruntime and faiss. Only an artifact without an ONNX
embedder, or a pool swapped in under a policy with zero-shot LLM features, comes here.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rl_select.errors import ArtifactError
from rl_select.export.manifest import EmbedderSpec, Manifest
from rl_select.tasks.task import Example, Task
from rl_select.tasks.template import PromptTemplate


def load_original_embedder(spec: EmbedderSpec) -> Any:
    """The embedder the policy was exported with (the scoring LLM's hidden states, or sentence-transformers)."""
    from rl_select.retrieval.embed import make_embedder  # deferred: loads torch

    if spec.kind == "lm":
        from rl_select.scoring.model import load_language_model  # deferred: loads torch

        embedder = make_embedder(None, load_language_model(spec.model, device="cpu", dtype=spec.dtype or "float32"))
    else:
        embedder = make_embedder(spec.spec, lambda: None)
    if embedder.id != spec.id:
        raise ArtifactError(
            f"the embedder loaded here ({embedder.id}) is not the one the policy was exported with ({spec.id})"
        )
    return embedder


def zero_shot_features(manifest: Manifest, template: PromptTemplate, pool: list[Example]) -> np.ndarray:
    """``[N, 3]`` zero-shot statistics of a pool (normalised entropy, gold probability, correctness)."""
    from rl_select.scoring import Scorer, ScoringConfig, load_language_model  # deferred: loads torch

    scoring = manifest.scoring
    lm = load_language_model(scoring.get("model"), device="cpu", dtype=scoring.get("dtype", "float32"))
    task = Task(
        name=manifest.task.name,
        template=template,
        splits={"train": pool, "dev": pool[:1], "test": pool[:1]},
        source=f"pool:{len(pool)}",
    )
    result = Scorer(lm, task, ScoringConfig(calibrate=scoring.get("calibrate", True))).score([], pool)
    return np.stack([result.entropy / np.log(len(template.labels)), result.gold_probs, result.correct], axis=1).astype(
        np.float32
    )
