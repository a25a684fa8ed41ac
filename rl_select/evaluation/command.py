"""``rl-select evaluate`` as a library call: which selectors, in which order, on which rows, written where."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rl_select.evaluation.core import (
    EvaluationLog,
    SelectorReport,
    evaluation_key,
    evaluation_rows,
    run_evaluation,
)
from rl_select.evaluation.dump import write_dump
from rl_select.evaluation.request import EvaluateRequest
from rl_select.evaluation.tables import evaluation_markdown
from rl_select.provenance import provenance
from rl_select.reproducibility import pin_determinism
from rl_select.resources import Resources
from rl_select.scoring import CacheStats, ScoringConfig, load_language_model
from rl_select.scoring.model import resolve_device
from rl_select.selectors import SELECTORS, check_k, device_defaults, make_selector
from rl_select.selectors.base import ReversedOrder
from rl_select.settings import fit_to_device, to_mapping
from rl_select.tasks import load_task

ProgressFactory = Callable[[str, int], Callable[[int], None]]


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

    names = list(SELECTORS) if request.selector_names == ("all",) else list(request.selector_names)
    given = request.options.given()
    selectors = [
        make_selector(name, strict=False, **{**device_defaults(name, device_type or ""), **given}) for name in names
    ]
    selectors += [PolicySelector.from_run(Path(run_dir)) for run_dir in request.policies]
    if request.order == "selected":
        return selectors
    pairs = [(s, ReversedOrder(s)) for s in selectors]
    return [r for _, r in pairs] if request.order == "reversed" else [x for pair in pairs for x in pair]


def default_path(request: EvaluateRequest, task_name: str) -> Path:
    """``runs/evaluate/<task>-k<k>-<selectors>[-<order>-order].json`` under the working directory."""
    label = (
        "all"
        if request.selector_names == ("all",)
        else "+".join([*request.selector_names, *(Path(p).name for p in request.policies)])
    )
    label += "" if request.order == "selected" else f"-{request.order}-order"
    return Path("runs") / "evaluate" / f"{task_name}-k{request.k}-{label}.json"


def projected_work(
    request: EvaluateRequest, selectors: list[Any], resources: Any, log: EvaluationLog | None = None
) -> tuple[Any, Any]:
    """The evaluation's projected LLM work per selector, and this machine's measured throughput.

    With ``log`` (a resumed evaluation), the seeds it already holds are left out: what is left to do.
    """
    from rl_select.budget import TokenProfile, measure_throughput, project_evaluation  # deferred: loads gymnasium

    n_rows = len(evaluation_rows(resources, request.split, request.rows))
    profile = TokenProfile.of(resources.task, resources.lm.tokenizer)
    finished = None if log is None else (lambda selector: log.kept_seeds(selector, request.dump is not None))
    projection = project_evaluation(selectors, resources.task, profile, request.k, n_rows, request.seeds, finished)
    return projection, measure_throughput(resources.lm, [resources.task], request.k)


def evaluate(
    request: EvaluateRequest,
    *,
    progress: ProgressFactory | None = None,
    load_model: Callable[[], Any] | None = None,
    on_resume: Callable[[Path, int], None] | None = None,
    on_start: Callable[[Path], None] | None = None,
    on_budget: Callable[[Any, Any], None] | None = None,
    chosen: set[str] | None = None,
    dry_run: bool = False,
) -> EvaluateOutcome | None:
    """Evaluate every selector of ``request`` on the same rows; the result file is written as it goes.

    Args:
        request: What to evaluate.
        progress: Progress factory of the front end.
        load_model: Loads the scoring model (a front end shows a status while it does).
        on_resume: Told the file and how many results an earlier run of the same evaluation left.
        on_start: Told the file the results go to, once the model is loaded and before any scoring.
        on_budget: Told the projected LLM work (a :class:`~rl_select.budget.Projection`) and this machine's measured
            throughput before any scoring (measuring it costs two forwards).
        chosen: The settings the user gave (dotted paths); the others get the scoring device's values (the CPU
            profile declared on :class:`EvaluateRequest`). None: the request is used exactly as it is.
        dry_run: Stop after ``on_budget`` (nothing scored, nothing written); returns None.
    """
    task = load_task(request.task, request.data_dir)
    check_k(request.k, len(task.train))
    device_type = resolve_device(request.device).type
    if chosen is not None:
        request, _ = fit_to_device(request, chosen, device_type)
    selectors = selectors_for(request, device_type)  # bad ones fail before the model loads
    path = request.out_path or default_path(request, task.name)
    pinned = pin_determinism(request.deterministic)
    lm = (load_model or (lambda: load_language_model(request.model, device=request.device, dtype=request.dtype)))()
    scoring = ScoringConfig(calibrate=request.calibrate, max_prompt_tokens=request.max_prompt_tokens)
    resources = Resources(
        task, lm=lm, scoring=scoring, embedder=request.embedder, data_seed=request.data_seed, progress=progress
    )
    if on_start is not None:
        on_start(path)
    if dry_run:  # nothing is read or written: the whole evaluation is projected
        if on_budget is not None:
            on_budget(*projected_work(request, selectors, resources))
        return None
    seeds = list(range(request.seeds))
    header = {
        "provenance": provenance(seeds=seeds, model=lm.info(), reproducibility=pinned),
        "task": task.summary(),
        "scoring": scoring.to_dict(),
        "request": to_mapping(request),
    }
    key = evaluation_key(resources, k=request.k, split=request.split, n_rows=request.rows, seeds=seeds)
    log = EvaluationLog(path, key, header, render=evaluation_markdown)
    if log.resumed and on_resume is not None:
        on_resume(path, log.resumed)
    if on_budget is not None:  # what is left to do
        on_budget(*projected_work(request, selectors, resources, log))
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
        dumped = write_dump(request.dump_path, reports, rows, resources.task)
    return EvaluateOutcome(reports, path, task.name, resources.scorer.cache_stats(), log.resumed, dumped)


__all__: Sequence[str] = ("EvaluateOutcome", "EvaluateRequest", "evaluate", "selectors_for")
