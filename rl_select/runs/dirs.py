"""Run directories: what a training run keeps where, and the checks around creating and resuming one.

A run directory holds::

    config.json          the TrainConfig, format version and provenance (checked on --resume)
    checkpoints/         resumable checkpoints (SB3 zips with RNG and env state; cql.pt for cql)
    episodes/            cql and fqi: the episodes they learn from (unless existing data were given)
    tb/                  TensorBoard logs
    curve.csv            learning curve (step, metric, value)
    rewards.sqlite       reward cache, so a resumed run does not score prompts twice
    policy/              the final policy (model.zip, cql.pt or fqi.pt) and the pools it trained on
    evaluation/          the final evaluation, per task, written as it goes
    results.json/.md     final test-split comparison with baselines, with provenance
    learning_curve.png
"""

from __future__ import annotations

import json
from pathlib import Path

from rl_select.errors import ConfigError
from rl_select.provenance import provenance
from rl_select.runs.config import TrainConfig, config_differences, read_run_config, write_run_config
from rl_select.tasks import Task
from rl_select.types import Overrides

POLICY_DIR = "policy"


def policy_files(run_dir: Path, algo: str) -> Path:
    """Where a run keeps its final policy."""
    return Path(run_dir) / POLICY_DIR / (f"{algo}.pt" if algo in ("cql", "fqi") else "model.zip")


def resumed_config(run_dir: Path, overrides: Overrides | None) -> TrainConfig:
    """The stored config of a run to resume; any override that changes it is an error."""
    stored = read_run_config(run_dir)
    diffs = config_differences(stored, overrides or {})
    if diffs:
        raise ConfigError(
            f"--resume of a run with a different config ({'; '.join(diffs)}); drop those options or start a new run"
        )
    return stored


def create_run_dir(config: TrainConfig, run_dir: Path) -> None:
    """Create a new run directory with its ``config.json``; an existing non-empty one is refused."""
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(f"run directory {run_dir} already exists; use --resume {run_dir} or a new --out")
    run_dir.mkdir(parents=True, exist_ok=True)

    write_run_config(run_dir, config, provenance(seeds=[config.seed]))


def write_trained_on(run_dir: Path, tasks: list[Task]) -> dict[str, str]:
    """``policy/trained_on.json``: the pools the policy trained on (task mode then draws held-out candidates)."""
    trained_on = {t.name: t.fingerprint("train") for t in tasks}
    path = Path(run_dir) / POLICY_DIR / "trained_on.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(trained_on, indent=2) + "\n")
    return trained_on


def read_trained_on(run_dir: Path) -> dict[str, str]:
    """The pools a run's policy trained on (empty for a policy copied without them)."""
    path = Path(run_dir) / POLICY_DIR / "trained_on.json"
    return json.loads(path.read_text()) if path.is_file() else {}
