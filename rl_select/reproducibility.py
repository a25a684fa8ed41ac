"""What makes two runs give the same numbers, and the switch that pins what can be pinned.

* Same machine, same seed, same settings: identical results. Scores do not depend on what a cache held
  (prefixes are always computed whole, zero-shot features in fixed blocks), episodes are functions of their
  seeds, and resumed runs restore every RNG and episode.
* Another CPU (say AMD instead of Intel): the LLM's matrix products run other kernels and round differently in
  the last bits. Accuracies of fixed prompts almost never move (a prediction flips only when two labels are
  within ~1e-6), so baseline rows are identical; training follows rewards and sampled actions whose tiny
  differences compound, so a learned row can differ by a few points over a few seeds.
* ``--deterministic`` pins the number of torch threads to 1 and asks torch for deterministic kernels (and
  cuBLAS for a fixed workspace on GPUs). It makes runs on different thread counts agree and removes the last
  sources of run-to-run variation on GPUs; it cannot make two different CPU instruction sets round alike.
"""

from __future__ import annotations

import os


def pin_determinism(enabled: bool) -> dict[str, bool | int]:
    """Apply ``--deterministic`` (when ``enabled``); return what is in force, for result files."""
    import torch  # deferred: loads torch and numpy

    if enabled:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.set_num_threads(1)
        torch.use_deterministic_algorithms(True, warn_only=True)
    return {"deterministic": enabled, "torch_threads": torch.get_num_threads()}
