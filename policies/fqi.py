"""Fitted Q-iteration on dense action rows, and its conservative (CQL) variant. One readable file.

The data are episodes from :func:`~rl_select.rollouts.behaviour.run_dense_episode`: at every state ``s_t`` an
episode visited, the value of ``s_t + a`` for *every* candidate ``a``. So the reward
``r(s_t, a) = row_t[a] − V(s_t)`` is known for every action, not only the one taken, and the next state
``s_t + a`` of any action can be rebuilt without the LLM (observations are LLM-free once an episode's candidates
are known). Fitted Q-iteration (Ernst et al. 2005; Riedmiller 2005) with γ = 1 over the k steps:

    y(s_t, a) = r(s_t, a) + max_{a' unchosen} Q_target(s_t + a, a')     (y = r at the last step)
    loss      = mean over labelled (s_t, a) of huber(Q(s_t, a) − y)
              + α · mean_t (logsumexp_{a unchosen} Q(s_t, a) − Q(s_t, a_t))     (CQL's conservative term)

α = 0 is plain fitted Q (an offline DQN whose every action is labelled); α > 0 adds the conservative term of
Kumar et al. (2020) / Zhang et al. (2022), which pushes Q down on actions the behaviour did not take. Each
round recomputes the targets with the network of the round before, then fits ``epochs`` passes; k rounds carry
values from the last step back to the first. The network is the per-candidate Q-network of :mod:`cql`, so a
policy from either learner is used and exported the same way.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from rl_select.errors import ArtifactError
from rl_select.observation import OBS_KEYS, build_observation
from rl_select.policies.cql import CandidateQ, GreedyCandidateQ, masked
from rl_select.policies.networks import candidate_input_dim
from rl_select.policies.settings import FQIConfig
from rl_select.types import JsonObject


@dataclass
class DenseRows:
    """Dense action-row episodes as tensors: every visited state, every labelled action, every next state.

    Attributes:
        obs: Observations of the visited states, ``[N, ...]`` per key.
        rewards: ``[N, M]`` reward of each action (0 where unlabelled).
        labelled: ``[N, M]`` whether the action's value was scored (unchosen candidates).
        taken: ``[N]`` the behaviour's action.
        next_index: ``[N]`` row of each state in ``next_obs`` (-1 where every action ends the episode: step k).
        next_obs: Observations of ``s_t + a`` for every such state and action: ``[N', M, ...]``.
        final: ``[N, M]`` actions that end the episode (the stop action; every action at step k): no bootstrap.
    """

    obs: dict[str, torch.Tensor]
    rewards: torch.Tensor
    labelled: torch.Tensor
    taken: torch.Tensor
    next_index: torch.Tensor
    next_obs: dict[str, torch.Tensor]
    final: torch.Tensor

    @classmethod
    def from_episodes(cls, episodes: Sequence[dict[str, np.ndarray]], k: int, label_vote: bool) -> DenseRows:
        """Flatten episodes (``action_values`` required) into tensors, rebuilding every next state."""
        if not episodes:
            raise ArtifactError("the action-row data set is empty; collect episodes first")
        if any("action_values" not in e for e in episodes):
            raise ArtifactError("these episodes have no action rows: collect them with dense rows")
        keys = [key for key in OBS_KEYS if f"obs_{key}" in episodes[0]]
        obs: dict[str, list[np.ndarray]] = {key: [] for key in keys}
        next_obs: dict[str, list[np.ndarray]] = {key: [] for key in keys}
        rewards, labelled, taken, next_index, final = [], [], [], [], []
        for episode in episodes:
            rows, values, actions = episode["action_values"], episode["values"], episode["actions"]
            stop = len(episode["static"]) if bool(episode.get("stop", False)) else None
            for t in range(len(actions)):  # an episode that stopped early has fewer than k steps
                for key in keys:
                    obs[key].append(episode[f"obs_{key}"][t])
                valid = np.isfinite(rows[t])
                rewards.append(np.where(valid, rows[t] - values[t], 0.0))
                labelled.append(valid)
                taken.append(actions[t])
                ends = np.full(len(valid), t == k - 1)
                if stop is not None:
                    ends[stop] = True
                final.append(ends)
                if t == k - 1:
                    next_index.append(-1)
                    continue
                next_index.append(len(next_obs[keys[0]]))
                successors = [_successor(episode, actions[:t], a, k, label_vote, stop) for a in range(len(valid))]
                for key in keys:
                    next_obs[key].append(np.stack([s[key] for s in successors]))
        as_tensor = lambda arrays: torch.from_numpy(np.stack(arrays).astype(np.float32))  # noqa: E731
        return cls(
            obs={key: as_tensor(v) for key, v in obs.items()},
            rewards=as_tensor(rewards),
            labelled=torch.from_numpy(np.stack(labelled)),
            taken=torch.as_tensor(np.asarray(taken, dtype=np.int64)),
            next_index=torch.as_tensor(np.asarray(next_index, dtype=np.int64)),
            next_obs={key: as_tensor(v) for key, v in next_obs.items()} if next_obs[keys[0]] else {},
            final=torch.from_numpy(np.stack(final)),
        )

    def __len__(self) -> int:
        return len(self.taken)


def _successor(
    episode: dict[str, np.ndarray], chosen: np.ndarray, action: int, k: int, label_vote: bool, stop: int | None
) -> dict:
    """The observation after ``chosen + [action]`` in ``episode`` (any action, taken or not).

    The stop action ends the episode, so its successor is never bootstrapped from: the current state stands in.
    """
    picks = [int(c) for c in chosen]
    if action != stop and action not in picks:  # a chosen (unlabelled) action: any valid state will do
        picks = [*picks, action]
    return build_observation(
        static=episode["static"],
        vectors=episode["vectors"],
        label_ids=episode["labels"],
        num_labels=int(episode["num_labels"]),
        chosen=picks,
        k=k,
        anchor=episode["anchor"],
        query=episode.get("query_features"),
        label_vote=label_vote,
        proposer_features=episode.get("proposer_features"),
        stop=stop is not None,
    )


class FQI(GreedyCandidateQ):
    """Fitted Q-iteration on dense rows, with an SB3-like interface (``learn``, ``predict``, ``save``, ``load``).

    Args:
        input_dim: Width of the per-candidate input (:func:`candidate_input_dim`).
        config: Hyperparameters.
        seed: Seed of initialisation, dropout and batch order.
    """

    def __init__(self, input_dim: int, config: FQIConfig | None = None, seed: int = 0) -> None:
        self.config = config or FQIConfig()
        self.input_dim = input_dim
        self.seed = seed
        torch.manual_seed(seed)
        self.q = CandidateQ(input_dim, self.config.hidden, self.config.dropout)
        self.rng = np.random.default_rng(seed)
        self.rounds_done = 0

    @classmethod
    def for_space(cls, observation_space: Any, config: FQIConfig | None = None, seed: int = 0) -> FQI:
        """A learner for an env's observation space."""
        return cls(candidate_input_dim(observation_space), config, seed)

    def learn(self, data: DenseRows, log: Callable[[int, dict[str, float]], None] | None = None) -> FQI:
        """Run the remaining rounds (resumable: ``rounds_done`` counts on)."""
        cfg = self.config
        optimizer = torch.optim.AdamW(self.q.parameters(), lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        while self.rounds_done < cfg.rounds:
            targets = self._targets(data)
            self.q.train()
            losses = []
            for _ in range(cfg.epochs):
                for batch in np.array_split(self.rng.permutation(len(data)), max(len(data) // cfg.batch_size, 1)):
                    index = torch.from_numpy(batch)
                    q = self.q({key: value[index] for key, value in data.obs.items()})
                    labelled = data.labelled[index]
                    # value loss: every labelled action, not only the one taken
                    td = F.huber_loss(q[labelled], targets[index][labelled], delta=cfg.huber_delta)
                    # conservative term: Q of untaken actions pushed below the taken one's
                    taken = q.gather(1, data.taken[index][:, None]).squeeze(1)
                    conservative = (torch.logsumexp(q.masked_fill(~labelled, -torch.inf), dim=1) - taken).mean()
                    loss = td + cfg.alpha * conservative
                    optimizer.zero_grad()
                    loss.backward()
                    nn.utils.clip_grad_norm_(self.q.parameters(), 1.0)
                    optimizer.step()
                    losses.append((float(td.detach()), float(conservative.detach())))
            self.rounds_done += 1
            if log is not None:
                td_loss, cql_loss = np.mean(losses, axis=0)
                log(self.rounds_done, {"train/td_loss": float(td_loss), "train/cql_loss": float(cql_loss)})
        return self

    @torch.no_grad()
    def _targets(self, data: DenseRows) -> torch.Tensor:
        """``[N, M]`` targets: reward plus, before the last step, the best next value under the current network."""
        targets = data.rewards.clone()
        if not data.next_obs or self.rounds_done == 0:
            return targets  # round 1: one-step values (the network knows nothing yet)
        self.q.eval()
        rows = torch.nonzero(data.next_index >= 0).squeeze(1)
        for chunk in torch.split(rows, 256):
            nxt = {key: value[data.next_index[chunk]] for key, value in data.next_obs.items()}
            flat = {key: value.flatten(0, 1) for key, value in nxt.items()}  # [chunk * M, ...]
            q_next = self.q(flat).view(len(chunk), -1, flat["chosen"].shape[-1])
            chosen_next = nxt["chosen"]
            best = masked(q_next, chosen_next, -torch.inf).max(dim=2).values
            bootstrap = torch.isfinite(best) & ~data.final[chunk]
            targets[chunk] += torch.where(bootstrap, best, torch.zeros_like(best))
        return targets

    def save(self, path: str | Path) -> None:
        """Weights (torch tensors only) and a JSON config, each written atomically, the weights last."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = {"input_dim": self.input_dim, "seed": self.seed, "config": asdict(self.config)}
        meta["rounds_done"] = self.rounds_done
        meta_path = path.with_suffix(".json")
        tmp_meta = meta_path.with_name(f".{meta_path.name}.tmp")
        tmp_meta.write_text(json.dumps(meta, indent=2) + "\n")
        tmp_meta.replace(meta_path)
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save({"q": self.q.state_dict()}, tmp)
        tmp.replace(path)

    @classmethod
    def load(cls, path: str | Path) -> FQI:
        """Inverse of :meth:`save` (weights-only unpickling)."""
        path = Path(path)
        try:
            meta = json.loads(path.with_suffix(".json").read_text())
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, json.JSONDecodeError, RuntimeError) as exc:
            raise ArtifactError(f"cannot read FQI policy {path}: {str(exc).splitlines()[0]}") from None
        agent = cls(meta["input_dim"], FQIConfig(**meta["config"]), meta["seed"])
        agent.q.load_state_dict(state["q"])
        agent.rounds_done = int(meta.get("rounds_done", agent.config.rounds))
        return agent

    def describe(self) -> JsonObject:
        """Settings for result files."""
        return {"algo": "fqi", "rounds": self.rounds_done, **asdict(self.config)}
