"""What ``rl-select headroom`` analyses: one settings schema (flags, YAML keys and the recorded form derive from it).

Light to import: the command line builds its options from it at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass

from rl_select.settings import DataAndModel, build, check_fields, setting
from rl_select.types import JsonObject


@dataclass(frozen=True)
class HeadroomRequest(DataAndModel):
    """Headroom over kNN on one task: the greedy choice among the query's M nearest neighbours."""

    task: str = setting(help="Task name, hub:<name>, or path to a task folder.", flags=("--task",))
    queries: int = setting(100, help="Test queries analysed (a seeded subsample).", flags=("--n-test",), minimum=1)
    k: int = setting(4, help="Demonstrations per prompt.", flags=("--k",), minimum=1)
    num_candidates: int = setting(8, help="Nearest neighbours offered (M).", flags=("-M",), minimum=1)
    dev_neighbours: int = setting(4, help="Dev rows the transferable greedy scores on.", minimum=1)
    embedder: str = setting("minilm", help="Embedder of the neighbours.")
    data_seed: int = setting(0, help="Seed of the test subsample.")
    out: str | None = setting(None, help="Result JSON (.md beside it; none: experiments/results/headroom_<task>.json).")

    def __post_init__(self) -> None:
        check_fields(self)

    @classmethod
    def from_dict(cls, data: JsonObject) -> HeadroomRequest:
        """A request from its mapping form (options, YAML)."""
        return build(cls, data)


__all__ = ["HeadroomRequest"]
