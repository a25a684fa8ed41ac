"""``rl-select export RUN_DIR --out POLICY_DIR``: a trained selector as a self-contained, pickle-free artifact.

The policy network goes to ONNX with the action mask as an input and dynamic batch and candidate axes (the
network is per-candidate, so any M works). Pool features are computed here, once, with the training stack, so
the runtime needs no LLM for task-mode policies and only the embedder for query-mode ones. A mean-pooling
sentence-transformers embedder is exported to ONNX too (checked against the original); other embedders are
loaded by the runtime as they were in training.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from rl_select.errors import ArtifactError, ConfigError
from rl_select.export import manifest as fmt
from rl_select.export.runtime import OnnxEmbedder
from rl_select.observation import feature_layout
from rl_select.provenance import provenance
from rl_select.resources import ProgressFactory, Resources
from rl_select.retrieval.index import VectorIndex
from rl_select.scoring import ScoringConfig
from rl_select.scoring.model import shared_language_model
from rl_select.tasks import Task, load_task
from rl_select.tasks.files import read_split
from rl_select.types import JsonObject

logger = logging.getLogger(__name__)
OBS_ORDER = ("candidates", "chosen", "step", "state", "query")
MASKED = -1.0e9


class OnnxPolicy(nn.Module):
    """``(observation tensors..., action_mask) -> scores`` with masked candidates at -1e9."""

    def __init__(self, module: nn.Module, keys: list[str]) -> None:
        super().__init__()
        self.module = module
        self.keys = keys

    def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
        """Scores of the candidates; masked ones at -1e9."""
        obs = dict(zip(self.keys, tensors[:-1], strict=True))
        scores = self.module(obs)
        return torch.where(tensors[-1], scores, torch.full_like(scores, MASKED))


def export_policy_onnx(module: nn.Module, mode: str, dims: dict[str, int], path: Path) -> list[str]:
    """Write the ONNX policy; return its input names."""
    keys = [k for k in OBS_ORDER if k != "query" or mode == "query"]
    m = 3
    example = {
        "candidates": torch.zeros(1, m, dims["candidate"]),
        "chosen": torch.zeros(1, m),
        "step": torch.zeros(1, 1),
        "state": torch.zeros(1, dims["state"]),
        "query": torch.zeros(1, dims["query"]),
    }
    inputs = (*(example[k] for k in keys), torch.ones(1, m, dtype=torch.bool))
    names = [*keys, "action_mask"]
    axes: dict[str, dict[int, str]] = {name: {0: "batch"} for name in names}
    for name in ("candidates", "chosen", "action_mask"):
        axes[name][1] = "candidates"
    axes["scores"] = {0: "batch", 1: "candidates"}
    wrapper = OnnxPolicy(module, keys).eval()
    with torch.no_grad():
        torch.onnx.export(
            wrapper,
            inputs,
            str(path),
            input_names=names,
            output_names=["scores"],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
        )
    return names


class MeanPooledEncoder(nn.Module):
    """A sentence-transformers model as one graph: transformer, mean pooling over the mask, L2 normalisation."""

    def __init__(self, transformer: nn.Module) -> None:
        super().__init__()
        self.transformer = transformer

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Unit sentence embeddings."""
        hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return nn.functional.normalize(pooled, dim=-1)


def _mean_pooling(pooling: Any) -> bool:
    """Whether a sentence-transformers Pooling module averages token embeddings and nothing else."""
    mode = getattr(pooling, "pooling_mode", None)
    if isinstance(mode, str):  # sentence-transformers >= 5
        return mode in ("mean", "mean_tokens")
    others = ("cls_token", "max_tokens", "lasttoken", "mean_sqrt_len_tokens", "weightedmean_tokens")
    return bool(getattr(pooling, "pooling_mode_mean_tokens", False)) and not any(
        getattr(pooling, f"pooling_mode_{name}", False) for name in others
    )


def export_embedder_onnx(embedder: Any, directory: Path, probe_texts: list[str]) -> OnnxEmbedderExport | None:
    """Export a mean-pooling sentence-transformers embedder; None when it cannot be (then the runtime uses it)."""
    model = getattr(embedder, "model", None)
    if not isinstance(model, nn.Module):
        return None
    modules = list(model.children())
    names = [type(m).__name__ for m in modules]
    pooling = modules[1] if len(modules) > 1 else None
    if names[:2] != ["Transformer", "Pooling"] or names[2:] not in ([], ["Normalize"]):
        logger.info("embedder modules %s: not exported to ONNX", names)
        return None
    if not _mean_pooling(pooling):
        logger.info("embedder pooling is not a plain mean: not exported to ONNX")
        return None
    transformer = modules[0].auto_model.float().cpu().eval()
    encoder = MeanPooledEncoder(transformer)
    tokenizer = modules[0].tokenizer
    path = directory / fmt.EMBEDDER_ONNX
    ids = torch.tensor([[101, 2023, 102]])
    with torch.no_grad():
        torch.onnx.export(
            encoder,
            (ids, torch.ones_like(ids)),
            str(path),
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            opset_version=17,
            dynamo=False,
            dynamic_axes={
                "input_ids": {0: "batch", 1: "tokens"},
                "attention_mask": {0: "batch", 1: "tokens"},
                "embedding": {0: "batch"},
            },
        )
    tokenizer.backend_tokenizer.save(str(directory / fmt.EMBEDDER_TOKENIZER))
    max_length = int(getattr(model, "max_seq_length", 256) or 256)

    onnx_vectors = OnnxEmbedder(path, directory / fmt.EMBEDDER_TOKENIZER, max_length, embedder.id).embed(probe_texts)
    torch_vectors = embedder.embed(probe_texts)
    error = float(np.abs(onnx_vectors - torch_vectors).max())
    if error > 1e-4:
        logger.warning("ONNX embedder differs from the original by %.2g; the runtime will use the original", error)
        path.unlink()
        (directory / fmt.EMBEDDER_TOKENIZER).unlink()
        return None
    return OnnxEmbedderExport(max_length=max_length, onnx_max_abs_error=error)


@dataclass(frozen=True)
class OnnxEmbedderExport:
    """The query embedder exported to ONNX: the tokens it reads, and its largest difference to the original."""

    max_length: int
    onnx_max_abs_error: float


def export_policy(
    run_dir: str | Path,
    out: str | Path,
    *,
    task: str | None = None,
    data_dir: str | None = None,
    pool: str | Path | None = None,
    seed: int = 0,
    progress: ProgressFactory | None = None,
) -> fmt.Manifest:
    """Export a trained run.

    Args:
        run_dir: A finished training run.
        out: New directory for the artifact.
        task: Task whose pool and format to export (default: the run's first task).
        data_dir: Data directory (default: the run's).
        pool: A JSONL/CSV pool to export instead of the task's (features computed for it).
        seed: Seed of the task-mode candidate draw.
        progress: A front end's progress factory (embedding the pool, the task-level proposer's search).

    Returns:
        The manifest.
    """
    from rl_select.envs import FeatureBank  # deferred: loads gymnasium
    from rl_select.runs.dirs import read_rule_choice  # deferred: loads gymnasium
    from rl_select.runs.policy import load_policy  # deferred: loads gymnasium

    run_dir, out = Path(run_dir), Path(out)
    policy = load_policy(run_dir)
    config = policy.config
    if config.env.features.step_features:
        raise ArtifactError(
            "this policy uses step features (the LLM scores candidates at every step); it cannot "
            "run without the LLM and is not exportable"
        )
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} already exists and is not empty; choose a new --out")
    loaded = _export_task(config, task, data_dir, pool)
    resources = _export_resources(config, loaded, progress)
    bank = FeatureBank(resources, config.env.features)
    out.mkdir(parents=True, exist_ok=True)
    try:
        layout = bank_layout(config)
        dims = {"candidate": len(layout.candidate), "state": len(layout.state), "query": len(layout.query)}
        inputs = export_policy_onnx(policy.module, config.env.mode, dims, out / fmt.POLICY_ONNX)
        _write_pool(out, loaded, bank)
        embedder = _embedder_spec(resources, config)
        extra: JsonObject = {}
        if config.env.mode == "task":
            extra["task_candidates"] = _task_candidates(out, run_dir, config, loaded, bank, seed, pool is None)
        else:
            onnx = export_embedder_onnx(resources.embedder, out, [e.input_text for e in loaded.dev[:8]])
            if onnx is not None:
                embedder = embedder.model_copy(update={"onnx": True, **asdict(onnx)})
        verified = read_rule_choice(run_dir, loaded.name) if config.env.mode == "query" else None
        proposers = config.env.for_cost(verified is not None and verified.zero_cost).proposers  # as its rule was judged
        if proposers is not None:
            extra["proposers"] = proposers.to_dict()
            extra["task_proposals"] = _task_proposals(resources, proposers, config.env)
        if verified is not None:
            extra["rule"] = verified.rule
        manifest = _manifest(run_dir, config, resources, loaded, layout, inputs, embedder, seed, extra)
        return fmt.write_manifest(out, manifest)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # never leave a half-written artifact behind
        raise


def _export_task(config: Any, task: str | None, data_dir: str | None, pool: str | Path | None) -> Any:
    """The task whose format (and pool, or the given one) the artifact carries."""
    loaded = load_task(task or config.tasks[0], data_dir or config.data_dir).subset_pool(
        config.pool_size, seed=config.seed
    )
    if pool is not None:
        rows = read_split(Path(pool), "train", loaded.template)
        loaded = Task(
            name=loaded.name,
            template=loaded.template,
            splits={**loaded.splits, "train": rows},
            source=f"{loaded.source} with pool {pool}",
            description=loaded.description,
        )
    config.env.check_pool(len(loaded.train))
    return loaded


def _export_resources(config: Any, loaded: Any, progress: ProgressFactory | None) -> Any:
    """The run's model, scoring and embedder, on the exported task."""
    return Resources(
        loaded,
        lm=shared_language_model(config.model, config.device, config.dtype),
        scoring=ScoringConfig(calibrate=config.env.calibrate),
        embedder=config.env.features.embedder,
        data_seed=config.env.data_seed,
        progress=progress,
    )


def _write_pool(out: Path, loaded: Any, bank: Any) -> None:
    """The pool, its embeddings, static features, projection and similarity index."""
    np.save(out / fmt.POOL_EMBEDDINGS, bank.pool_vectors.astype(np.float32), allow_pickle=False)
    np.save(out / fmt.POOL_STATIC, bank.static(range(len(loaded.train))).astype(np.float32), allow_pickle=False)
    arrays = (bank.projection.matrix, bank.projection.mean, bank.projection.scale)
    for name, array in zip(fmt.PROJECTION_FILES, arrays, strict=True):
        np.save(out / name, array, allow_pickle=False)
    with open(out / fmt.POOL_JSONL, "w") as f:
        for example in loaded.train:
            f.write(json.dumps(example.to_dict(), ensure_ascii=False) + "\n")
    VectorIndex(bank.space_pool, use_gpu=False).save(out / fmt.POOL_INDEX)


def _embedder_spec(resources: Any, config: Any) -> fmt.EmbedderSpec:
    """How the runtime gets the query embedder back."""
    embedder = resources.embedder
    if embedder.id.startswith("lm:"):
        dtype = str(resources.lm.dtype).removeprefix("torch.")
        return fmt.EmbedderSpec(
            id=embedder.id, spec=config.env.features.embedder, kind="lm", model=config.model, dtype=dtype
        )
    return fmt.EmbedderSpec(id=embedder.id, spec=config.env.features.embedder, kind="sentence-transformers")


def _task_candidates(
    out: Path, run_dir: Path, config: Any, loaded: Any, bank: Any, seed: int, own_pool: bool
) -> list[int]:
    """Task mode: the anchor file, and the M candidates (held out from training where the pool is the run's)."""
    from rl_select.runs.dirs import read_trained_on  # deferred: loads gymnasium
    from rl_select.runs.setup import training_candidates  # deferred: loads gymnasium

    anchor = bank.anchor(loaded.sample("dev", config.env.reward_rows, seed=config.env.data_seed))
    np.save(out / fmt.ANCHOR, anchor.astype(np.float32), allow_pickle=False)
    seen = own_pool and read_trained_on(run_dir).get(loaded.name) == loaded.fingerprint("train")
    candidate_pool = training_candidates(loaded, config)[1] if seen else np.arange(len(loaded.train))
    rng = np.random.default_rng(seed)
    return sorted(int(i) for i in rng.choice(candidate_pool, size=config.env.num_candidates, replace=False))


def _task_proposals(resources: Any, proposers: Any, env: Any) -> list[int]:
    """The task proposer's list on the exported pool (best-of-N on dev; none when the policy does not use it)."""
    from rl_select.envs import task_proposals  # deferred: loads gymnasium

    if not proposers.task:
        return []
    return task_proposals(resources, proposers, env.k, env.data_seed).ids


def _manifest(
    run_dir: Path,
    config: Any,
    resources: Any,
    loaded: Any,
    layout: Any,
    inputs: list[str],
    embedder: fmt.EmbedderSpec,
    seed: int,
    extra: JsonObject,
) -> fmt.Manifest:
    """The artifact's manifest (its files' checksums are added when it is written)."""
    run_record = json.loads((run_dir / "config.json").read_text()).get("provenance", {})
    template = loaded.template.to_dict()
    return fmt.Manifest(
        format_version=fmt.FORMAT_VERSION,
        algo=config.algo,
        mode=config.env.mode,
        k=config.env.k,
        num_candidates=config.env.num_candidates,
        prompt_order=config.env.prompt_order,
        stop_action=config.env.stop,
        seed=seed,
        features=config.env.features.to_dict(),
        layout=layout.to_dict(),
        onnx_inputs=inputs,
        embedder=embedder,
        scoring={
            "model": config.model,
            "dtype": str(resources.lm.dtype).removeprefix("torch."),
            "calibrate": config.env.calibrate,
            "value": config.env.value_kind,
        },
        task=fmt.TaskFormat(name=loaded.name, **template, pool_size=len(loaded.train), pool_source=loaded.source),
        provenance={
            "trained_on": list(config.tasks),
            "training_config": config.to_dict(),
            "commit": run_record.get("commit"),
            "training_command": run_record.get("command"),
            "export": provenance().to_dict(),
        },
        files={},
        **extra,
    )


def bank_layout(config: Any) -> Any:
    """The observation layout of a run's features and mode."""
    return feature_layout(config.env.features, config.env.mode, config.env.proposers is not None, config.env.stop)
