"""Scoring prompts with an LLM: label distributions, calibration, caches."""

from rl_select.scoring.cache import PrefixCache, PrefixState, RewardCache
from rl_select.scoring.config import ScoringConfig
from rl_select.scoring.model import (
    DEFAULT_MODEL,
    LanguageModel,
    load_language_model,
    resolve_device,
    resolve_dtype,
)
from rl_select.scoring.naive import naive_log_scores
from rl_select.scoring.prompts import CONTENT_FREE_INPUTS, PromptEncoder, TruncationReport
from rl_select.scoring.results import (
    CacheStats,
    LLMCost,
    RewardCacheStats,
    ScoreResult,
    ScorerStats,
    accuracy_interval,
)
from rl_select.scoring.scorer import Scorer

__all__ = [
    "CONTENT_FREE_INPUTS",
    "DEFAULT_MODEL",
    "CacheStats",
    "LLMCost",
    "LanguageModel",
    "PrefixCache",
    "PrefixState",
    "PromptEncoder",
    "RewardCache",
    "RewardCacheStats",
    "ScoreResult",
    "Scorer",
    "ScorerStats",
    "ScoringConfig",
    "TruncationReport",
    "accuracy_interval",
    "load_language_model",
    "naive_log_scores",
    "resolve_device",
    "resolve_dtype",
]
