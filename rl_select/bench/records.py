"""What the scorer benchmark measures, as records (written as JSON by their ``to_dict``, read by its report)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from rl_select.types import JsonObject


@dataclass
class TimingRow:
    """One scoring path's timing: the naive loop, rl-select at one dtype, or llama.cpp.

    Rates and shares are filled in once every path is timed (:attr:`ratio_vs_naive`, :attr:`achieved_tflops`,
    :attr:`share_of_gemm_peak`: None where no GEMM peak was measured for the path's dtype).
    """

    path: str
    dtype: str
    seconds: float
    queries_per_s: float
    agreement_with_naive: float
    default: bool = False
    attention: str | None = None
    seconds_each: list[float] = field(default_factory=list)
    max_abs_logprob_diff: float | None = None
    tokens: int | None = None
    stats: dict[str, int | float] = field(default_factory=dict)
    ratio_vs_naive: float | None = None
    achieved_tflops: float | None = None
    share_of_gemm_peak: float | None = None


@dataclass(frozen=True)
class EnvThroughput:
    """Rewards/s of the vectorised env, with one prefix at a time or batched prefixes."""

    batch_prefixes: bool
    n_envs: int
    steps: int
    reward_rows: int
    batch_tokens: int
    seconds: float
    rewards_per_s: float
    forwards: int
    tokens: int
    reward_cache_hit_rate: float


@dataclass(frozen=True)
class ScorerBench:
    """A scorer benchmark run: its setting, every path's row, the headline numbers and the env's rewards/s.

    Attributes:
        ratio: The default dtype's queries/s over the naive loop's.
        ratio_same_dtype: rl-select at the naive loop's dtype over the naive loop.
        identical_predictions_same_dtype: Whether every prediction at the naive loop's dtype is the same.
        agreement_across_dtypes: Prediction agreement with the naive loop of rl-select at the other dtypes.
        default_vs_llama_cpp: The default path's queries/s over llama.cpp's (None when llama.cpp did not run).
    """

    task: str
    k: int
    queries: int
    seed: int
    device: str
    cpu: str
    cpu_flags: list[str]
    naive_batch: int
    batch_tokens: int
    prefix_tokens: int
    mean_query_tokens: float
    label_tokens: list[int]
    runs: list[TimingRow]
    ratio: float
    ratio_same_dtype: float
    identical_predictions_same_dtype: bool
    mismatches_same_dtype: int
    agreement_across_dtypes: dict[str, float]
    default_dtype: str
    default_share_of_gemm_peak: float | None
    default_vs_llama_cpp: float | None
    gemm_peak_tflops: dict[str, float]
    gemm_peak_samples: dict[str, list[float]]
    repeats: int
    dtype_reason: str
    gpu_max_memory_gb: float | None
    env: list[EnvThroughput]
    model: JsonObject

    def to_dict(self) -> JsonObject:
        """JSON form (the result file)."""
        return asdict(self)


__all__ = ["EnvThroughput", "ScorerBench", "TimingRow"]
