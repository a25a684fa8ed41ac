"""Offline Q-learning with conservative Q-learning (CQL), as in Zhang, Feng & Tan (2022).

One readable file, CleanRL style. The Q-network follows the paper's: per candidate, ``[candidate features ‖
chosen ‖ state]`` is normalised with running statistics, passed through dropout and two small hidden layers
(16 units, leaky ReLU) to one Q-value, so one network scores every candidate. It learns from logged episodes of
a random policy (``rl-select collect``):

    loss = |Q(s, a) − (r + max_{a' unchosen} Q_target(s', a'))|           (L1 TD error, γ = 1)
         + α · (logsumexp_{a unchosen} Q(s, a) − Q(s, a_logged))            (CQL regulariser)

The paper's grid: lr {1e-4, 3e-4, 5e-4}, α {0, 0.1, 0.2}, target update {100, 200, 400}, dropout {0, 0.25},
batch 16, hidden 16, 8000 steps.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from rl_select.errors import ArtifactError
from rl_select.observation import OBS_KEYS
from rl_select.policies.networks import MASKED_SCORE, candidate_inputs
from rl_select.policies.settings import CQLConfig
from rl_select.types import JsonObject


class RunningNorm(nn.Module):
    """Feature standardisation with running mean/variance (Welford), updated in training mode only."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.register_buffer("count", torch.zeros(()))
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("m2", torch.zeros(width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Standardise ``x`` (``[..., width]``)."""
        if self.training:
            flat = x.detach().reshape(-1, x.shape[-1])
            n = flat.shape[0]
            batch_mean = flat.mean(0)
            delta = batch_mean - self.mean
            total = self.count + n
            self.mean += delta * n / total
            self.m2 += ((flat - batch_mean) ** 2).sum(0) + delta**2 * self.count * n / total
            self.count.copy_(total)
        if self.count < 2:
            return x
        return (x - self.mean) / torch.sqrt(self.m2 / self.count + 1e-5)


class CandidateQ(nn.Module):
    """Zhang et al.'s Q-network, applied to every candidate: ``[B, M]`` Q-values (unmasked)."""

    def __init__(self, input_dim: int, hidden: int = 16, dropout: float = 0.25) -> None:
        super().__init__()
        self.norm = RunningNorm(input_dim)
        self.net = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(input_dim, hidden), nn.LeakyReLU(),
            nn.Dropout(dropout), nn.Linear(hidden, hidden), nn.LeakyReLU(),
            nn.Linear(hidden, 1),
        )  # fmt: skip

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Unmasked Q-values of every candidate."""
        return self.net(self.norm(candidate_inputs(obs))).squeeze(-1)


class Transitions:
    """Logged episodes flattened to ``(s, a, r, s', done)`` tensors."""

    def __init__(self, episodes: list[dict[str, np.ndarray]]) -> None:
        if not episodes:
            raise ArtifactError("the episode data set is empty; collect episodes first")
        keys = [k for k in OBS_KEYS if f"obs_{k}" in episodes[0]]
        shapes = {k: episodes[0][f"obs_{k}"].shape[1:] for k in keys}
        for episode in episodes:
            if any(episode[f"obs_{k}"].shape[1:] != shapes[k] for k in keys):
                raise ArtifactError("episodes have different observation shapes (mixed k, M or features?)")
        self.obs = {k: torch.from_numpy(np.concatenate([e[f"obs_{k}"][:-1] for e in episodes])) for k in keys}
        self.next_obs = {k: torch.from_numpy(np.concatenate([e[f"obs_{k}"][1:] for e in episodes])) for k in keys}
        self.actions = torch.from_numpy(np.concatenate([e["actions"] for e in episodes]))
        self.rewards = torch.from_numpy(np.concatenate([e["rewards"] for e in episodes]))
        done = [np.arange(len(e["actions"])) == len(e["actions"]) - 1 for e in episodes]
        self.dones = torch.from_numpy(np.concatenate(done).astype(np.float32))
        self.num_episodes = len(episodes)

    def __len__(self) -> int:
        return len(self.actions)

    def sample(self, indices: np.ndarray) -> tuple[dict, torch.Tensor, torch.Tensor, dict, torch.Tensor]:
        """A batch ``(obs, actions, rewards, next_obs, dones)``."""
        idx = torch.from_numpy(indices)
        return (
            {k: v[idx] for k, v in self.obs.items()},
            self.actions[idx],
            self.rewards[idx],
            {k: v[idx] for k, v in self.next_obs.items()},
            self.dones[idx],
        )


def masked(q: torch.Tensor, chosen: torch.Tensor, fill: float) -> torch.Tensor:
    """``q`` with chosen candidates set to ``fill``."""
    return q.masked_fill(chosen > 0.5, fill)


class GreedyCandidateQ:
    """Acts greedily on a per-candidate Q-network ``q``: what the Q-learners share once fitted."""

    q: CandidateQ

    @torch.no_grad()
    def candidate_scores(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B, M]`` unmasked Q-values (eval mode)."""
        self.q.eval()
        return self.q(obs)

    def predict(
        self,
        obs: dict[str, np.ndarray],
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, None]:
        """Greedy unchosen candidate for a single or batched observation (SB3's ``predict`` signature)."""
        batched = obs["chosen"].ndim > 1
        tensors = {k: torch.as_tensor(v if batched else v[None]) for k, v in obs.items()}
        action = masked(self.candidate_scores(tensors), tensors["chosen"], -torch.inf).argmax(dim=1).numpy()
        return (action if batched else action[0]), None


class CQL(GreedyCandidateQ):
    """Offline CQL learner with an SB3-like interface (``learn``, ``predict``, ``save``, ``load``).

    Args:
        input_dim: Width of the per-candidate input (:func:`candidate_input_dim`).
        config: Hyperparameters.
        seed: Seed of initialisation, dropout and batch sampling.
    """

    def __init__(self, input_dim: int, config: CQLConfig | None = None, seed: int = 0) -> None:
        self.config = config or CQLConfig()
        self.input_dim = input_dim
        self.seed = seed
        torch.manual_seed(seed)
        self.q = CandidateQ(input_dim, self.config.hidden, self.config.dropout)
        self.q_target = CandidateQ(input_dim, self.config.hidden, self.config.dropout)
        self.q_target.load_state_dict(self.q.state_dict())
        self.optimizer = torch.optim.AdamW(
            self.q.parameters(), lr=self.config.learning_rate, weight_decay=self.config.weight_decay
        )
        self.rng = np.random.default_rng(seed)
        self.num_steps = 0

    def learn(
        self,
        data: Transitions,
        total_steps: int,
        *,
        log: Callable[[int, dict[str, float]], None] | None = None,
        log_every: int = 100,
        on_step: Callable[[int], bool] | None = None,
    ) -> CQL:
        """Run gradient steps until ``num_steps == total_steps`` (resumable: counts continue).

        Args:
            data: The transitions.
            total_steps: Target number of gradient steps.
            log: Receives ``(step, {"train/loss": …, "train/td_loss": …, "train/cql_loss": …, "train/q": …})``.
            log_every: Steps between log calls.
            on_step: Called after every step; returning False stops training (checkpoints, progress bars).
        """
        cfg = self.config
        self.q.train()
        running: dict[str, list[float]] = {"train/loss": [], "train/td_loss": [], "train/cql_loss": [], "train/q": []}
        while self.num_steps < total_steps:
            obs, actions, rewards, next_obs, dones = data.sample(self.rng.integers(len(data), size=cfg.batch_size))
            # Q of the logged actions, and of every unchosen candidate (for the CQL term)
            q_all = self.q(obs)
            q_taken = q_all.gather(1, actions[:, None]).squeeze(1)
            with torch.no_grad():
                self.q_target.eval()
                next_q = masked(self.q_target(next_obs), next_obs["chosen"], MASKED_SCORE).max(dim=1).values
                target = rewards + (1.0 - dones) * next_q
            td_loss = F.l1_loss(q_taken, target)
            cql_loss = (torch.logsumexp(masked(q_all, obs["chosen"], -torch.inf), dim=1) - q_taken).mean()
            loss = td_loss + cfg.alpha * cql_loss

            self.optimizer.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(self.q.parameters(), cfg.max_grad_norm)
            self.optimizer.step()
            self.num_steps += 1
            if self.num_steps % cfg.target_update == 0:
                self.q_target.load_state_dict(self.q.state_dict())

            for key, value in (
                ("train/loss", loss),
                ("train/td_loss", td_loss),
                ("train/cql_loss", cql_loss),
                ("train/q", q_taken.mean()),
            ):
                running[key].append(float(value.detach()))
            if log is not None and self.num_steps % log_every == 0:
                log(self.num_steps, {k: float(np.mean(v)) for k, v in running.items()})
                running = {k: [] for k in running}
            if on_step is not None and not on_step(self.num_steps):
                break
        return self

    def save(self, path: str | Path) -> None:
        """Weights, optimizer, target network and step count (torch tensors only) plus a JSON config."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {
            "q": self.q.state_dict(),
            "q_target": self.q_target.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "num_steps": torch.tensor(self.num_steps),
            "torch_rng": torch.get_rng_state(),
        }
        meta = {
            "input_dim": self.input_dim,
            "seed": self.seed,
            "config": asdict(self.config),
            "batch_rng": self.rng.bit_generator.state,
        }
        # the JSON first, the weights last: the pair is complete when the weights file is (both are renamed in)
        meta_path = path.with_suffix(".json")
        tmp_meta = meta_path.with_name(f".{meta_path.name}.tmp")
        tmp_meta.write_text(json.dumps(meta, indent=2) + "\n")
        tmp_meta.replace(meta_path)
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save(state, tmp)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> CQL:
        """Inverse of :meth:`save` (weights-only unpickling)."""
        path = Path(path)
        try:
            meta = json.loads(path.with_suffix(".json").read_text())
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, json.JSONDecodeError, RuntimeError) as exc:
            raise ArtifactError(f"cannot read CQL checkpoint {path}: {str(exc).splitlines()[0]}") from None
        agent = cls(meta["input_dim"], CQLConfig(**meta["config"]), meta["seed"])
        agent.q.load_state_dict(state["q"])
        agent.q_target.load_state_dict(state["q_target"])
        agent.optimizer.load_state_dict(state["optimizer"])
        agent.num_steps = int(state["num_steps"])
        if "batch_rng" in meta:  # batches and dropout continue exactly where the saved run was
            agent.rng.bit_generator.state = meta["batch_rng"]
            torch.set_rng_state(state["torch_rng"])
        else:  # a checkpoint from before RNG states were saved: batches differ from an uninterrupted run's
            agent.rng = np.random.default_rng(meta["seed"] + agent.num_steps)
        return agent

    def describe(self) -> JsonObject:
        """Settings for result files."""
        return {"algo": "cql", "steps": self.num_steps, **asdict(self.config)}
