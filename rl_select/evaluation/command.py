"""``rl-select evaluate`` as a library call: which selectors, in which order, on which rows, written where."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rl_select.errors import ConfigError
from rl_select.evaluation.core import (
    EvaluationLog,
    SelectorReport,
    evaluation_key,
    evaluation_rows,
    run_evaluation,
)
from rl_select.evaluation.dump import write_dump
from rl_select.evaluation.tables import evaluation_markdown
from rl_select.provenance import provenance
from rl_select.reproducibility import pin_determinism
from rl_select.resources import Resources
from rl_select.retrieval.embed import default_embedder
from rl_select.scoring import CacheStats, ScoringConfig, load_language_model
from rl_select.scoring.model import resolve_device
from rl_select.selectors import SELECTORS, check_k, device_defaults, make_selector
from rl_select.selectors.base import ReversedOrder
from rl_select.tasks import SPLITS, load_task

ORDER_CHOICES = ("selected", "reversed", "both")
DEFAULT_SEEDS = 5
CPU_SEEDS = 3
"""Seeds of an evaluation unless ``--seeds`` says: fewer when the scoring model runs on a CPU, where the
LLM-scored baselines' search dominates the time (seed-independent selectors cost one seed whatever the count)."""
ProgressFactory = Callable[[str, int], Callable[[int], None]]


@dataclass(frozen=True)
class EvaluateRequest:
    """What to evaluate (the options of ``rl-select evaluate``).

    Attributes:
        task: Task name, ``hub:<name>`` or a path.
        selectors: Baseline names (``all``: every one); empty with ``policies``: only those.
        policies: Trained run directories, evaluated like baselines.
        k: Demonstrations per prompt.
        seeds: Seeds (0 … N-1); None: :data:`DEFAULT_SEEDS` on a GPU, :data:`CPU_SEEDS` when scoring on a CPU.
        rows: Evaluation rows (a seeded subsample; None: the whole split).
        split: Split evaluated.
        order: ``selected``, ``reversed`` or ``both`` (the order ablation).
        options: Selector options (``num_sets``, ``dev_size``, ``num_candidates``; None: the selector's default).
        calibrate: Primary metric calibrated (else raw).
        max_prompt_tokens: Cap on prompt length.
        embedder: Embedder spec of retrieval (None: MiniLM where the model runs on a CPU and the packaged MiniLM is
            installed, else the scoring LLM's hidden states).
        data_seed: Seed of the evaluation and dev subsamples.
        data_dir: Task data directory.
        model: Scoring LLM.
        device: Scoring device.
        dtype: Scoring dtype.
        deterministic: Pin threads and kernels.
        out: Result file (None: ``runs/evaluate/<task>-k<k>-<selectors>.json``).
        dump: Also write every query's demonstrations, prediction and label distribution here (JSONL).
    """

    task: str
    selectors: tuple[str, ...] = ("random",)
    policies: tuple[Path, ...] = ()
    k: int = 4
    seeds: int | None = None
    rows: int | None = None
    split: str = "test"
    order: str = "selected"
    options: dict[str, int | None] = field(default_factory=dict)
    calibrate: bool = True
    max_prompt_tokens: int | None = None
    embedder: str | None = None
    data_seed: int = 0
    data_dir: str | None = None
    model: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    deterministic: bool = False
    out: Path | None = None
    dump: Path | None = None


@dataclass
class EvaluateOutcome:
    """What an evaluation produced (``dumped``: lines written to the request's dump file)."""

    reports: list[SelectorReport]
    path: Path
    task: str
    scorer_stats: CacheStats
    resumed: int
    dumped: int = 0


def selectors_for(request: EvaluateRequest, device_type: str | None = None) -> list[Any]:
    """The selectors of a request, policies included, in the requested prompt order(s).

    With ``device_type`` (the scoring model's), options the request leaves open get that device's defaults
    (:data:`~rl_select.selectors.CPU_DEFAULTS` on a CPU).
    """
    from rl_select.runs.policy import PolicySelector  # deferred: loads gymnasium

    if request.order not in ORDER_CHOICES:
        raise ConfigError(f"unknown --order '{request.order}' (choose from: {', '.join(ORDER_CHOICES)})")
    names = list(SELECTORS) if request.selectors == ("all",) else list(request.selectors)
    given = {key: value for key, value in request.options.items() if value is not None}
    selectors = [
        make_selector(name, strict=False, **{**device_defaults(name, device_type or ""), **given}) for name in names
    ]
    selectors += [PolicySelector.from_run(run_dir) for run_dir in request.policies]
    if request.order == "selected":
        return selectors
    pairs = [(s, ReversedOrder(s)) for s in selectors]
    return [r for _, r in pairs] if request.order == "reversed" else [x for pair in pairs for x in pair]


def default_path(request: EvaluateRequest, task_name: str) -> Path:
    """``runs/evaluate/<task>-k<k>-<selectors>[-<order>-order].json`` under the working directory."""
    label = (
        "all" if request.selectors == ("all",) else "+".join([*request.selectors, *(p.name for p in request.policies)])
    )
    label += "" if request.order == "selected" else f"-{request.order}-order"
    return Path("runs") / "evaluate" / f"{task_name}-k{request.k}-{label}.json"


def projected_work(request: EvaluateRequest, selectors: list[Any], resources: Any) -> tuple[Any, Any]:
    """The evaluation's projected LLM work per selector, and this machine's measured throughput."""
    from rl_select.budget import TokenProfile, measure_throughput, project_evaluation  # deferred: loads gymnasium

    n_rows = len(evaluation_rows(resources, request.split, request.rows))
    profile = TokenProfile.of(resources.task, resources.lm.tokenizer)
    projection = project_evaluation(selectors, resources.task, profile, request.k, n_rows, request.seeds)
    return projection, measure_throughput(resources.lm)


def evaluate(
    request: EvaluateRequest,
    *,
    progress: ProgressFactory | None = None,
    load_model: Callable[[], Any] | None = None,
    on_resume: Callable[[Path, int], None] | None = None,
    on_start: Callable[[Path], None] | None = None,
    on_budget: Callable[[Any, Any], None] | None = None,
) -> EvaluateOutcome:
    """Evaluate every selector of ``request`` on the same rows; the result file is written as it goes.

    Args:
        request: What to evaluate.
        progress: Progress factory of the front end.
        load_model: Loads the scoring model (a front end shows a status while it does).
        on_resume: Told the file and how many results an earlier run of the same evaluation left.
        on_start: Told the file the results go to, once the model is loaded and before any scoring.
        on_budget: Told the projected LLM work (a :class:`~rl_select.budget.Projection`) and this machine's measured
            throughput before any scoring (measuring it costs two forwards).
    """
    if request.seeds is not None and request.seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {request.seeds}")
    task = load_task(request.task, request.data_dir)
    check_k(request.k, len(task.train))
    if request.split not in SPLITS:
        raise ConfigError(f"unknown split '{request.split}' (choose from {', '.join(SPLITS)})")
    if request.rows is not None and request.rows <= 0:
        raise ConfigError(f"--n-test must be positive, got {request.rows}")
    device_type = resolve_device(request.device).type
    request = replace(request, seeds=request.seeds or (CPU_SEEDS if device_type == "cpu" else DEFAULT_SEEDS))
    selectors = selectors_for(request, device_type)  # bad ones fail before the model loads
    path = request.out or default_path(request, task.name)
    pinned = pin_determinism(request.deterministic)
    lm = (load_model or (lambda: load_language_model(request.model, device=request.device, dtype=request.dtype)))()
    scoring = ScoringConfig(calibrate=request.calibrate, max_prompt_tokens=request.max_prompt_tokens)
    embedder = request.embedder if request.embedder is not None else default_embedder(lm)
    resources = Resources(
        task, lm=lm, scoring=scoring, embedder=embedder, data_seed=request.data_seed, progress=progress
    )
    if on_start is not None:
        on_start(path)
    if on_budget is not None:
        on_budget(*projected_work(request, selectors, resources))
    seeds = list(range(request.seeds))
    header = {
        "provenance": provenance(seeds=seeds, model=lm.info(), reproducibility=pinned),
        "task": task.summary(),
        "scoring": scoring.to_dict(),
    }
    key = evaluation_key(resources, k=request.k, split=request.split, n_rows=request.rows, seeds=seeds)
    log = EvaluationLog(path, key, header, render=evaluation_markdown)
    if log.resumed and on_resume is not None:
        on_resume(path, log.resumed)
    reports = run_evaluation(
        selectors,
        resources,
        log,
        k=request.k,
        seeds=seeds,
        n_rows=request.rows,
        split=request.split,
        progress=progress,
        keep_probs=request.dump is not None,
    )
    dumped = 0
    if request.dump is not None:
        rows = evaluation_rows(resources, request.split, request.rows)
        dumped = write_dump(request.dump, reports, rows, resources.task)
    return EvaluateOutcome(reports, path, task.name, resources.scorer.cache_stats(), log.resumed, dumped)


__all__: Sequence[str] = ("ORDER_CHOICES", "EvaluateOutcome", "EvaluateRequest", "evaluate", "selectors_for")
