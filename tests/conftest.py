"""Shared fixtures: tiny tasks, a tiny random-initialised llama with a tiny BPE tokenizer, the real data.

The tiny model is a real transformers model saved to disk and loaded through ``load_language_model`` (the
code path users take); only its weights are random. Its tokenizer is a byte-level BPE trained here on the
fixture texts, with a BOS token, so answers like " Abbreviation" span several tokens.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import (
    NEGATIVE,
    PAIR_SPEC,
    POSITIVE,
    QUESTION_SPEC,
    QUESTIONS,
    SENTIMENT_SPEC,
    pair_rows,
    question_rows,
    sentiment_rows,
    write_task,
)

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = Path(os.environ.get("RL_SELECT_DATA") or REPO.parent / "shared" / "data")


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory with three small tasks: sentiment, questions (multi-token labels), pairs."""
    root = tmp_path_factory.mktemp("data")
    write_task(root, "tiny_sst", SENTIMENT_SPEC, sentiment_rows())
    write_task(root, "tiny_trec", QUESTION_SPEC, question_rows())
    write_task(root, "tiny_rte", PAIR_SPEC, pair_rows())
    return root


def _train_tokenizer(path: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = POSITIVE + NEGATIVE + [q for qs in QUESTIONS.values() for q in qs]
    corpus += [
        "Review: Sentiment: negative positive",
        "Question: Answer Type:",
        "question: True or False? answer:",
        "N/A [MASK]",
        "The critic wrote: The critic liked it.",
    ]
    tokenizer = Tokenizer(models.BPE(unk_token=None))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<s>", "</s>", "<pad>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(corpus * 5, trainer=trainer)
    tokenizer.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 0)])
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    fast.save_pretrained(path)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-initialised 2-layer llama and its BPE tokenizer, saved like any HF model directory."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    path = tmp_path_factory.mktemp("tiny-llama")
    _train_tokenizer(path)
    vocab = len(AutoTokenizer.from_pretrained(path))
    config = LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=2,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    with torch.no_grad():  # larger weights than the default init, so label distributions are far from uniform
        for parameter in model.parameters():
            parameter.mul_(8.0)
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_lm(tiny_model_dir: Path):
    from rl_select.scoring import load_language_model

    return load_language_model(str(tiny_model_dir), device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def real_lm():
    """The embedded SmolLM2-135M (converted once into the cache directory)."""
    from rl_select.scoring import load_language_model

    return load_language_model(None, device="cpu", dtype="float32")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The benchmark data beside the repository (``../shared/data``) or ``$RL_SELECT_DATA``."""
    if not (SHARED_DATA / "sst2" / "task.json").is_file():
        pytest.fail(f"benchmark data not found at {SHARED_DATA}; set RL_SELECT_DATA")
    return SHARED_DATA


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory):
    """Embedding and index caches per test session; the converted default model is shared with the user cache."""
    user_models = Path(os.environ.get("RL_SELECT_CACHE") or Path.home() / ".cache" / "rl-select") / "models"
    user_models.mkdir(parents=True, exist_ok=True)
    cache = tmp_path_factory.mktemp("rl-select-cache")
    (cache / "models").symlink_to(user_models, target_is_directory=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RL_SELECT_CACHE", str(cache))
        yield cache


@pytest.fixture(scope="session")
def ray_cluster(isolated_cache):
    """One local Ray cluster (2 CPUs) for the whole test session."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def requested_queries(monkeypatch, tmp_path):
    """A callable giving the LLM queries every scorer created from now on was asked to score (hits included).

    The cache directory starts empty, so every step's scoring is requested (none is skipped by a feature file).
    """
    from rl_select.scoring import Scorer

    monkeypatch.setenv("RL_SELECT_CACHE", str(tmp_path / "cold-cache"))
    created: list[Scorer] = []
    original = Scorer.__init__

    def recording(self, *args, **kwargs):
        original(self, *args, **kwargs)
        created.append(self)

    monkeypatch.setattr(Scorer, "__init__", recording)
    return lambda: sum(scorer.stats.requested for scorer in created)
