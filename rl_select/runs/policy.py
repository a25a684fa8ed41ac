"""Trained policies as selectors: load a run directory, choose demonstrations greedily on any task."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rl_select.envs import DemoSelectionEnv, EnvConfig
from rl_select.errors import ArtifactError, ConfigError
from rl_select.policies.cql import CQL
from rl_select.policies.fqi import FQI
from rl_select.resources import Resources
from rl_select.rules import POLICY_RULE, check_rule, rule_action
from rl_select.runs.config import TrainConfig, read_run_config
from rl_select.runs.dirs import RuleChoice, dense_stores, policy_files, read_rule_choices, read_trained_on
from rl_select.runs.episode_store import best_scored_prompts
from rl_select.runs.setup import training_candidates
from rl_select.selectors.base import PromptWork, Selector, check_k
from rl_select.selectors.candidates import Candidates, Prompt
from rl_select.tasks.task import Example, Task
from rl_select.types import JsonObject, Selection


@dataclass
class LoadedPolicy:
    """A trained candidate scorer: ``scores(obs) -> [B, M]`` (higher is better, unmasked).

    Attributes:
        algo: ``cql``, ``dqn`` or ``ppo``.
        module: torch module mapping observation tensors to scores (what gets exported).
        config: The run's configuration.
    """

    algo: str
    module: torch.nn.Module
    config: TrainConfig

    @torch.no_grad()
    def scores(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """Scores of a single or batched observation."""
        batched = obs["chosen"].ndim > 1
        tensors = {k: torch.as_tensor(np.asarray(v, dtype=np.float32) if batched else v[None]) for k, v in obs.items()}
        self.module.eval()
        out = self.module(tensors).numpy()
        return out if batched else out[0]

    def choose(self, obs: dict[str, np.ndarray], mask: np.ndarray) -> int:
        """The best unmasked candidate."""
        return self.best(obs, mask)[0]

    def best(self, obs: dict[str, np.ndarray], mask: np.ndarray) -> tuple[int, float]:
        """The best unmasked candidate and its score (a Q-function's: the return it predicts)."""
        scores = np.where(mask, self.scores(obs), -np.inf)
        action = int(np.argmax(scores))
        return action, float(scores[action])


class CandidateScores(torch.nn.Module):
    """Wraps an algorithm's network as ``obs -> unmasked scores``."""

    def __init__(self, network: torch.nn.Module, method: str) -> None:
        super().__init__()
        self.network = network
        self.method = method

    def forward(self, obs: dict[str, torch.Tensor]) -> torch.Tensor:
        """``[B, M]`` unmasked candidate scores."""
        return getattr(self.network, self.method)(obs)


def load_policy(run_dir: str | Path) -> LoadedPolicy:
    """Load the final policy of a training run (any algorithm)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ArtifactError(f"run directory {run_dir} does not exist")
    config = read_run_config(run_dir)
    path = policy_files(run_dir, config.algo)
    if not path.is_file():
        raise ArtifactError(f"{run_dir} has no trained policy ({path.name} missing): the run did not finish")
    try:
        if config.algo == "cql":
            module: torch.nn.Module = CQL.load(path).q
        elif config.algo == "fqi":
            module = FQI.load(path).q
        elif config.algo == "dqn":
            from rl_select.policies.dqn import MaskedDQN  # deferred: loads stable-baselines3 and sb3-contrib

            model = MaskedDQN.load(path, device="cpu")
            module = CandidateScores(model.q_net, "candidate_scores")
        else:
            from sb3_contrib import MaskablePPO  # deferred: loads stable-baselines3 and sb3-contrib

            model = MaskablePPO.load(path, device="cpu")
            module = CandidateScores(model.policy, "candidate_scores")
    except (ValueError, KeyError, RuntimeError, OSError) as exc:
        raise ArtifactError(f"cannot load the policy in {run_dir}: {str(exc).splitlines()[0]}") from None
    module.eval()
    return LoadedPolicy(algo=config.algo, module=module, config=config)


@dataclass(frozen=True)
class KnnComparison:
    """How far a query-mode policy's prompts are from kNN's over the same candidates (nothing scored).

    Attributes:
        queries: Queries compared.
        same_as_knn: Share whose prompt is exactly kNN's (the k nearest, nearest last).
        mean_rank_by_position: Mean similarity rank (0 = nearest) of the demonstration at each prompt position.
        mean_prompt_length: Mean demonstrations per prompt (below k only with the stop action).
        zero_shot_share: Share of zero-shot prompts.
    """

    queries: int
    same_as_knn: float
    mean_rank_by_position: list[float]
    mean_prompt_length: float
    zero_shot_share: float

    @classmethod
    def from_dict(cls, data: JsonObject) -> KnnComparison:
        """From a result file (fields of older files read as 0)."""
        known = {name: data.get(name, 0.0) for name in ("mean_prompt_length", "zero_shot_share")}
        return cls(int(data["queries"]), float(data["same_as_knn"]), list(data["mean_rank_by_position"]), **known)


def policy_choice_work(proposals: int, verify_rows: int, task: Task, k: int) -> list[PromptWork]:
    """A policy's LLM work to choose: with propose and verify, each proposed prompt scored on the dev rows."""
    return [PromptWork(proposals, k, min(verify_rows, len(task.dev)))] if proposals > 1 else []


def policy_seeded(query_level: bool) -> bool:
    """Whether a policy's choice depends on the seed: in task mode (its candidate draws), not in query mode.

    A query-mode policy offers each query the same proposers' candidates and picks greedily, so every seed
    would choose the same prompts: it is chosen and scored once (:func:`~rl_select.evaluation.core.evaluate_selector`).
    """
    return not query_level


@dataclass(frozen=True)
class PlannedPolicy:
    """A policy a run or study will learn, as its evaluation will see it, before it exists (for projections).

    It has what :func:`~rl_select.budget.project_evaluation` reads of a selector; like a :class:`PolicySelector`,
    it chooses once per seed from features, with LLM calls only to propose and verify.
    """

    name: str
    query_level: bool
    proposals: int = 1
    verify_rows: int = 64

    @property
    def seeded(self) -> bool:
        """As :attr:`PolicySelector.seeded`."""
        return policy_seeded(self.query_level)

    def choice_work(self, task: Task, k: int, rows: int) -> list[PromptWork]:
        """As :meth:`PolicySelector.choice_work`."""
        return policy_choice_work(self.proposals, self.verify_rows, task, k)


class PolicySelector(Selector):
    """A trained policy behind the selector interface, so it is evaluated exactly like a baseline.

    On a task it trained on (same name and pool), task mode draws its M candidates from the held-out part of
    the pool ("new examples"); on any other task, from the whole pool. Query mode offers each query its M
    nearest pool neighbours. The policy then picks greedily.

    Args:
        policy: The loaded policy.
        name: Name in result tables (default ``<algo>-<mode>``).
        trained_on: ``{task name: pool fingerprint}`` of the training tasks.
        proposals: Task mode, propose and verify: the policy's greedy prompts over this many candidate draws, each
            scored on ``verify_rows`` seeded dev rows (as best-of-N scores its prompts), the best kept. 1: its one
            greedy prompt, no LLM calls.
        verify_rows: Dev rows each proposed prompt is scored on.
        scored_prompts: Task mode, propose and verify, on a task the policy trained on: of the ``proposals``
            prompts verified, this many are the best the learner scored on the task while learning
            (:func:`~rl_select.runs.episode_store.best_scored_prompts` over ``episodes``; no LLM calls to find them),
            the rest its greedy proposals.
        ranked_draws: Task mode: the greedy proposals are the greedy prompts of this many candidate draws with the
            highest value the Q-function predicts for their first choice (no LLM calls to rank); 0: the greedy
            prompts of as many draws as proposals.
        episodes: The learner's episode stores (``from_run``: its dense data).
        zero_cost: Query mode: leave the task-level proposer out (it costs LLM calls on a new task); its slots go
            to embedding neighbours.
        rule: Query mode: follow the Q-function (``policy``) or a rule it can reproduce (:mod:`rl_select.rules`):
            one proposer's own top k, or zero-shot.
        verified: Query mode: task name → the rule verified on that task's dev rows (``rl-select verify``),
            followed there instead of ``rule`` (a choice made by labels also leaves the task-level proposer out).
    """

    uses_resources = True

    def __init__(
        self,
        policy: LoadedPolicy,
        name: str | None = None,
        trained_on: dict[str, str] | None = None,
        *,
        proposals: int = 1,
        verify_rows: int = 64,
        scored_prompts: int = 0,
        ranked_draws: int = 0,
        episodes: Sequence[Path] = (),
        zero_cost: bool = False,
        rule: str = POLICY_RULE,
        verified: Mapping[str, RuleChoice] | None = None,
    ) -> None:
        super().__init__()
        self.policy = policy
        self.name = name or f"{policy.algo}-{policy.config.env.mode}"  # type: ignore[misc]
        self.query_level = policy.config.env.mode == "query"  # type: ignore[misc]
        self.seeded = policy_seeded(self.query_level)  # type: ignore[misc]
        self.trained_on = trained_on or {}
        if proposals < 1 or verify_rows < 1:
            raise ConfigError("proposals and verify_rows must be positive")
        if not 0 <= scored_prompts <= proposals or (scored_prompts and self.query_level):
            raise ConfigError("scored_prompts is for task mode and at most proposals")
        if ranked_draws and (self.query_level or ranked_draws < proposals - scored_prompts):
            raise ConfigError("ranked_draws is for task mode and at least its greedy proposals")
        self.proposals = proposals
        self.verify_rows = verify_rows
        self.scored_prompts = scored_prompts
        self.ranked_draws = ranked_draws
        self.episodes = list(episodes)
        self._scored: list[Selection] = []
        self.zero_cost = zero_cost
        self.rule = rule
        self.verified = dict(verified or {})
        self._following = (rule, zero_cost)  # the rule and zero-cost setting on the task built for
        self.uses_llm = proposals > 1  # type: ignore[misc]
        self._env: Any = None

    @classmethod
    def from_run(cls, run_dir: str | Path, name: str | None = None, **options: Any) -> PolicySelector:
        """Load from a run directory.

        Its ``trained_on.json`` says which pools it trained on; its verified rules (``rl-select verify``) which
        rule it follows on each task verified, unless ``rule`` is given.
        """
        run_dir = Path(run_dir)
        policy = load_policy(run_dir)
        trained_on = read_trained_on(run_dir)
        default = f"{policy.algo}-{policy.config.env.mode} ({run_dir.name})"
        if "rule" not in options:  # the rules dev chose for it, task by task
            options = {"verified": read_rule_choices(run_dir), **options}
        if options.get("scored_prompts"):
            options = {"episodes": dense_stores(policy.config, run_dir), **options}
        return cls(policy, name=name or default, trained_on=trained_on, **options)

    @property
    def following(self) -> str:
        """The rule followed on the task built for: the one verified there, else ``rule``."""
        return self._following[0]

    def choice_work(self, task: Task, k: int, rows: int) -> list[PromptWork]:
        """The LLM work of choosing: what propose and verify and the task-level proposer score on dev.

        Propose and verify: each proposed prompt scored on the dev rows. Query mode with the task-level proposer:
        its search on dev, once per task (a cached search makes it less). Otherwise no LLM calls.
        """
        work = policy_choice_work(self.proposals, self.verify_rows, task, k)
        proposers = self.policy.config.env.for_cost(self._follows(task.name)[1]).proposers
        if self.query_level and proposers is not None and proposers.task:
            work.append(PromptWork(proposers.task_sets, k, min(proposers.task_dev_rows, len(task.dev))))
        return work

    def _follows(self, task_name: str) -> tuple[str, bool]:
        """The rule and zero-cost setting followed on ``task_name``: those verified there, else this selector's."""
        choice = self.verified.get(task_name)
        return (self.rule, self.zero_cost) if choice is None else (choice.rule, choice.zero_cost or self.zero_cost)

    def options(self) -> JsonObject:
        """The policy's algorithm and MDP settings."""
        env = self.policy.config.env
        found = {"algo": self.policy.algo, "mode": env.mode, "num_candidates": env.num_candidates, "k": env.k}
        if self.proposals > 1:
            found.update(proposals=self.proposals, verify_rows=self.verify_rows)
        if self.scored_prompts:
            found["scored_prompts"] = self.scored_prompts
        if self.ranked_draws:
            found["ranked_draws"] = self.ranked_draws
        if self.zero_cost:
            found["zero_cost"] = True
        if self.rule != POLICY_RULE:
            found["rule"] = self.rule
        if self.verified:
            found["verified"] = {task: f"{c.rule} by {c.measure}" for task, c in sorted(self.verified.items())}
        return found

    def build(self, resources: Resources) -> PolicySelector:
        """Build the feature environment for ``resources.task``."""
        super().build(resources)
        task = resources.task
        config = self.policy.config
        if config.env.features.step_features and not resources.scoring.prefix_perplexity:
            raise ConfigError("this policy uses step features: evaluate it with prefix perplexity enabled")
        seen = self.trained_on.get(task.name) == task.fingerprint("train")
        candidates = training_candidates(task, config)[1] if seen else None
        env_config = EnvConfig.from_dict({**config.env.to_dict(), "calibrate": resources.scoring.calibrate})
        rule, zero_cost = self._following = self._follows(task.name)
        env_config = env_config.for_cost(zero_cost)
        if rule != POLICY_RULE:
            proposers = None if env_config.proposers is None else env_config.proposers.counts()
            check_rule(rule, proposers if self.query_level else None, env_config.stop)
        self._env = DemoSelectionEnv(task, config=env_config, resources=resources, candidate_ids=candidates)
        if self.scored_prompts and seen:  # elsewhere the learner scored nothing: every proposal is greedy
            order = env_config.prompt_order
            self._scored = best_scored_prompts(self.episodes, task.name, config.env.k, order, self.scored_prompts)
        return self

    def select(self, task: Task, query: Example | None, k: int, rng: np.random.Generator) -> Selection:
        """Greedy episode of the policy over this task's candidates."""
        self.resources_for(task)
        env = self._env
        env_k = self.policy.config.env.k
        if k != env_k:
            env.config = type(env.config).from_dict({**env.config.to_dict(), "k": k})
        check_k(k, len(task.train))
        if self.query_level:
            if query is None:
                raise ConfigError(f"'{self.name}' is a query-mode policy; it selects per query")
            options: dict[str, Any] = {"query": query}
        elif self.proposals > 1 or self.ranked_draws:
            return self._propose_and_verify(env, rng)
        else:
            options = {"candidate_ids": rng.choice(env.candidate_pool, size=env.config.num_candidates, replace=False)}
        return env.run_greedy(self._chooser(env), options)

    def _chooser(self, env: Any) -> Callable[[dict, np.ndarray], int]:
        """``choose(obs, mask) -> action``: the Q-function's greedy action, or the rule's."""
        rule = self.following
        if rule == POLICY_RULE:
            return self.policy.choose
        columns, order = env.layout.candidate, env.config.prompt_order
        return lambda obs, mask: rule_action(obs["candidates"], mask, columns, rule, order)

    def _propose_and_verify(self, env: Any, rng: np.random.Generator) -> Selection:
        """The best on dev of ``proposals`` prompts (first best on ties).

        First the learner's best scored prompts (at the trained k), then its greedy prompts over candidate draws
        (:meth:`_greedy_proposals`). One prompt is kept unscored.
        """
        scored = self._scored if env.config.k == self.policy.config.env.k else []
        prompts = [*scored, *self._greedy_proposals(rng, self.proposals - len(scored))]
        if len(prompts) == 1:
            return prompts[0]
        resources = self.resources_for(env.task)
        dev = resources.dev_sample(self.verify_rows)
        best: tuple[float, Selection] = (-np.inf, [])
        for prompt in prompts:
            value = resources.scorer.score([env.task.train[i] for i in prompt], dev).accuracy
            if value > best[0]:
                best = (value, prompt)
        return best[1]

    def _greedy_proposals(self, rng: np.random.Generator, count: int) -> list[Selection]:
        """The greedy prompts of ``count`` candidate draws.

        With ``ranked_draws``: of that many draws, the ``count`` whose first choice the Q-function values highest
        (the first drawn first on ties).
        """
        valued = self.valued_greedy_prompts(max(count, self.ranked_draws), rng)
        if self.ranked_draws:
            valued.sort(key=lambda pair: -pair[0])  # stable
        return [prompt for _, prompt in valued[:count]]

    def valued_greedy_prompts(self, draws: int, rng: np.random.Generator) -> list[tuple[float, Selection]]:
        """Task mode: the greedy prompts of ``draws`` candidate draws, in draw order, each with its value.

        The value is the score of the prompt's first choice: the return the Q-function predicts for it. No LLM
        calls (without step features). The selector must be built.
        """
        if self.query_level or self._env is None:
            raise ConfigError(f"'{self.name}' values task-level prompts once built (a task-mode policy)")
        return [self._valued_greedy(self._env, rng) for _ in range(draws)]

    def _valued_greedy(self, env: Any, rng: np.random.Generator) -> tuple[float, Selection]:
        """One candidate draw's greedy prompt and the score of its first choice."""
        values: list[float] = []

        def choose(obs: dict[str, np.ndarray], mask: np.ndarray) -> int:
            action, value = self.policy.best(obs, mask)
            values.append(value)
            return action

        draw = rng.choice(env.candidate_pool, size=env.config.num_candidates, replace=False)
        prompt = env.run_greedy(choose, {"candidate_ids": draw})
        return (values[0] if values else 0.0), prompt

    def choose(self, candidates: Candidates, k: int, rng: np.random.Generator) -> Prompt:
        """A task-mode policy's greedy prompt over given pool candidates (exactly M of them)."""
        if self.query_level:
            raise ConfigError(f"'{self.name}' is a query-mode policy: it chooses among its query's neighbours")
        if self._env is None:
            raise ConfigError(f"selector '{self.name}' must be built with build(resources) before choose()")
        ids = [example.id for example in candidates.examples]
        selection = self._env.run_greedy(self.policy.choose, {"candidate_ids": ids})
        return [ids.index(pool_id) for pool_id in selection]

    def compare_with_knn(self, task: Task, queries: list[Example]) -> KnnComparison:
        """How far a query-mode policy's greedy prompts are from kNN over the same candidates.

        Returns the share of ``queries`` whose prompt equals the kNN prompt (the k candidates nearest the query,
        nearest last), the mean similarity rank (0 = nearest) of the demonstration at each prompt position, and
        (a policy with the stop action) the mean prompt length and the share of zero-shot prompts. Nothing is
        scored: this is about choices, not accuracy.
        """
        if not self.query_level:
            raise ConfigError("compare_with_knn is for query-mode policies")
        self.resources_for(task)
        env, k = self._env, self._env.config.k
        same, ranks = 0, []
        for query in queries:
            prompt = env.run_greedy(self._chooser(env), {"query": query})
            episode = env.episode
            order = episode.nearest_first
            rank = {int(episode.candidates[i]): r for r, i in enumerate(order)}
            knn_prompt = [int(episode.candidates[i]) for i in order[:k][::-1]]
            same += prompt == knn_prompt
            ranks.append([rank[i] for i in prompt])
        by_position = [[r[p] for r in ranks if len(r) > p] for p in range(k)]  # with a stop action, prompts vary
        return KnnComparison(
            queries=len(queries),
            same_as_knn=same / max(len(queries), 1),
            mean_rank_by_position=[round(float(np.mean(p)), 2) for p in by_position if p],
            mean_prompt_length=float(np.mean([len(r) for r in ranks])) if ranks else 0.0,
            zero_shot_share=float(np.mean([not r for r in ranks])) if ranks else 0.0,
        )
