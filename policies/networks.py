"""Networks shared by the learned selectors: one network scores every candidate.

Each candidate's input is its feature row, its chosen flag and the episode's global features (step, state and,
in query mode, the query). The same weights score every candidate, so a policy is permutation-equivariant over
the M candidates and runs unchanged for any M and any task with the same feature layout.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

GLOBAL_KEYS = ("step", "state", "query")
MASKED_SCORE = -1.0e4
"""Score given to chosen (masked) candidates by Q-networks: below any reachable value, finite for the TD math."""


def candidate_inputs(obs: dict[str, torch.Tensor]) -> torch.Tensor:
    """``[B, M, F + 1 + G]``: candidate features, chosen flag and broadcast global features."""
    candidates = obs["candidates"]
    parts = [candidates, obs["chosen"].unsqueeze(-1)]
    global_parts = [obs[key] for key in GLOBAL_KEYS if key in obs]
    if global_parts:
        glob = torch.cat(global_parts, dim=-1)
        parts.append(glob.unsqueeze(1).expand(-1, candidates.shape[1], -1))
    return torch.cat(parts, dim=-1)


def candidate_input_dim(observation_space: object) -> int:
    """Width of :func:`candidate_inputs` for a Dict observation space."""
    spaces = observation_space.spaces  # type: ignore[attr-defined]
    width = spaces["candidates"].shape[-1] + 1
    for key in GLOBAL_KEYS:
        if key in spaces:
            width += spaces[key].shape[-1]
    return width


def mlp(sizes: list[int], activation: type[nn.Module] = nn.ReLU, dropout: float = 0.0) -> nn.Sequential:
    """Linear layers of ``sizes`` with ``activation`` (and dropout) between them, none after the last."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation())
            if dropout:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class CandidateEncoder(nn.Module):
    """Shared MLP over each candidate's input row: ``[B, M, in] → [B, M, hidden]``.

    Args:
        input_dim: Width of :func:`candidate_inputs`.
        hidden: Width of the hidden layers and the output.
        layers: Number of linear layers.
    """

    def __init__(self, input_dim: int, hidden: int = 64, layers: int = 2) -> None:
        super().__init__()
        sizes = [input_dim] + [hidden] * layers
        self.net = nn.Sequential(mlp(sizes, nn.Tanh), nn.Tanh())

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Per-candidate embeddings."""
        return self.net(candidate_inputs(obs))
