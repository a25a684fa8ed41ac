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


@dataclass(frozen=True)
class RolloutRow:
    """``bench rollouts``: one (scorer placement, worker count), its rate against the fewest workers'."""

    placement: str
    workers: int
    episodes: int
    seconds: float
    episodes_per_s: float
    speedup: float = 1.0
    parallel_efficiency: float = 1.0


@dataclass(frozen=True)
class RolloutBench:
    """``bench rollouts``: every configuration, the fastest, and the cluster it ran on."""

    rows: list[RolloutRow]
    fastest: RolloutRow
    cluster_cpus: float
    cluster_gpus: float

    def to_dict(self) -> JsonObject:
        """JSON form (the result file; ``fastest`` as its placement and worker count, as before)."""
        data = asdict(self)
        data["fastest"] = {"placement": self.fastest.placement, "workers": self.fastest.workers}
        return data


@dataclass(frozen=True)
class Latency:
    """Requests sent over ``seconds``: their rate, latency percentiles (ms, end to end) and non-200 answers."""

    requests: int
    seconds: float
    requests_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    errors: int


@dataclass(frozen=True)
class ConcurrencyRow(Latency):
    """``bench service``: one concurrency level, with the time spent choosing inside the service."""

    concurrency: int
    server_p50_ms: float
    server_p99_ms: float


@dataclass(frozen=True)
class ServiceBench:
    """``bench service``: the served policy's summary and one row per concurrency level."""

    policy: JsonObject
    rows: list[ConcurrencyRow]

    def to_dict(self) -> JsonObject:
        """JSON form (the result file)."""
        return asdict(self)


@dataclass(frozen=True)
class LoadPhase(Latency):
    """Valid selections from ``clients`` threads."""

    clients: int


@dataclass(frozen=True)
class SlowLoris:
    """Connections that never finish their body: how many the server answered 408, closed, or left open."""

    clients: int
    answered_408: int
    closed_by_server: int
    still_open: int


@dataclass(frozen=True)
class MalformedLoad:
    """Malformed requests sent, those not refused, and every kind's answers (status → count; 0: dropped)."""

    requests: int
    failures: int
    statuses: dict[str, dict[str, int]]


@dataclass(frozen=True)
class UnderAbuse:
    """The valid clients that kept selecting while the abuse ran."""

    clients: int
    seconds: float
    requests: int
    errors: int
    p99_ms: float


@dataclass(frozen=True)
class AbuseBench:
    """``bench service --abuse``: load, then slow-loris and malformed requests under load, then a health check."""

    load: LoadPhase
    under_abuse: UnderAbuse
    slow_loris: SlowLoris
    malformed: MalformedLoad
    healthy_after: bool

    @property
    def failed(self) -> bool:
        """Whether any phase failed: errors, requests not refused, connections left open, or unhealthy after."""
        return bool(
            self.load.errors
            or self.under_abuse.errors
            or self.malformed.failures
            or self.slow_loris.still_open
            or not self.healthy_after
        )

    def to_dict(self) -> JsonObject:
        """JSON form (the result file)."""
        return asdict(self)


__all__ = [
    "AbuseBench",
    "ConcurrencyRow",
    "EnvThroughput",
    "Latency",
    "LoadPhase",
    "MalformedLoad",
    "ScorerBench",
    "ServiceBench",
    "SlowLoris",
    "TimingRow",
    "UnderAbuse",
]
