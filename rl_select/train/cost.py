"""``learning_cost.json``: the LLM work a run's training spent, added to by every process that trains it."""

from __future__ import annotations

import json
from pathlib import Path

from rl_select.scoring import LLMCost

COST_FILE = "learning_cost.json"


def read_learning_cost(run_dir: Path) -> LLMCost:
    """What the run's training processes recorded so far (nothing when none did)."""
    path = run_dir / COST_FILE
    return LLMCost(**json.loads(path.read_text())) if path.is_file() else LLMCost()


def add_learning_cost(run_dir: Path, spent: LLMCost) -> None:
    """Add ``spent`` to the run's recorded learning cost (a resumed run adds to what the first part spent)."""
    total = read_learning_cost(run_dir) + spent
    (run_dir / COST_FILE).write_text(json.dumps(total.to_dict()) + "\n")
