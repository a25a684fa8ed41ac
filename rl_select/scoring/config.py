"""How prompts are scored: one frozen settings object, part of every reward-cache key."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from rl_select.errors import ConfigError


@dataclass(frozen=True)
class ScoringConfig:
    """How prompts are scored. Fields that change scores are part of every reward-cache key.

    Attributes:
        calibrate: Report contextually calibrated distributions as primary (raw ones are always computed too).
        length_normalize: Divide each label's log-probability by its token count.
        max_prompt_tokens: Cap on prompt length (default: the model's context length).
        prefix_perplexity: Also score the demonstration prefix itself (a feature of the MDP; costs the LM head
            over every prefix token).
        extend_prefixes: Compute a prefix's KV state by extending its longest cached ancestor (one block per MDP
            step) instead of from scratch. Off by default: the two agree only up to float rounding (~1e-5 in a
            log-probability), so with it a score depends on what happened to be cached, and a resumed run or a
            rerun in another order can differ in the last bits. On a CPU, where a forward's cost is mostly
            streaming the weights, it saves little (a few % of an env step).
        batch_tokens: Tokens per forward pass, padding of batched rows included (default: 512 on CPU, 8192 on
            CUDA). Changes scores only by float rounding.
        batch_prefixes: Score the queries of several prefixes in one batched forward (one row per prefix, its
            KV cache left-padded) in :meth:`Scorer.score_many`; default on CUDA, where each forward's launch cost
            dominates at this model size. Changes scores only by float rounding.
        prefix_cache_mb: Memory for cached prefix KV states. Does not change scores.
        reward_cache_size: Scoring results kept in memory. Does not change scores.
        reward_cache_path: SQLite file to share scoring results across processes and runs.
    """

    calibrate: bool = True
    length_normalize: bool = False
    max_prompt_tokens: int | None = None
    prefix_perplexity: bool = False
    extend_prefixes: bool = False
    batch_tokens: int | None = None
    batch_prefixes: bool | None = None
    prefix_cache_mb: int = 512
    reward_cache_size: int = 50_000
    reward_cache_path: str | None = None

    def __post_init__(self) -> None:
        if self.max_prompt_tokens is not None and self.max_prompt_tokens < 8:
            raise ConfigError(f"max_prompt_tokens must be at least 8, got {self.max_prompt_tokens}")
        if self.batch_tokens is not None and self.batch_tokens < 16:
            raise ConfigError(f"batch_tokens must be at least 16, got {self.batch_tokens}")
        if self.prefix_cache_mb < 1:
            raise ConfigError(f"prefix_cache_mb must be at least 1, got {self.prefix_cache_mb}")

    def score_key(self) -> str:
        """The fields that change scores, as a stable string."""
        return json.dumps(
            {
                "length_normalize": self.length_normalize,
                "max_prompt_tokens": self.max_prompt_tokens,
                "prefix_perplexity": self.prefix_perplexity,
            },
            sort_keys=True,
        )

    def to_dict(self) -> dict:
        """JSON form."""
        return asdict(self)
