"""The demonstration-selection MDP as a Gymnasium environment."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from rl_select.envs.config import EnvConfig
from rl_select.envs.episode import EnvState, Episode, ScoreRequest, run_requests
from rl_select.envs.features import FeatureBank
from rl_select.envs.proposers import QueryProposer
from rl_select.errors import ConfigError
from rl_select.observation import (
    arrange_prompt,
    build_observation,
    feature_layout,
    nearest_first,
    query_features,
)
from rl_select.resources import Resources
from rl_select.scoring import ScoreResult, ScoringConfig
from rl_select.scoring.model import shared_language_model
from rl_select.tasks import Task, load_task
from rl_select.tasks.task import Example


class DemoSelectionEnv(gym.Env[dict[str, np.ndarray], np.int64]):
    """Build a k-demonstration prompt one demonstration at a time.

    ## Description
    The MDP of Zhang, Feng & Tan (2022), "Active Example Selection for In-Context Learning". The state is the
    ordered list of demonstrations chosen so far; an action adds one of M candidates to the prompt (after the
    earlier ones, or before them with ``order="prepend"``, the query-mode default); the reward is the change in
    the LLM's performance that the addition causes. In *task mode* an episode samples M candidates
    from the pool and the value of a prompt is its accuracy on a fixed set of dev rows. In *query mode*
    (RetICL-like) an episode takes one query (a dev row, or with ``query_source="pool"`` a pool row, which is
    then never among its own candidates), offers its M nearest pool neighbours, and the value of a prompt is
    the probability (or correctness) of the query's gold label, optionally averaged over its nearest dev
    neighbours. ``value="probability"`` scores prompts by mean gold-label probability in either mode.

    In query mode the M candidates can come from several proposers (``proposers``: embedding and BM25
    neighbours, a label-balanced set, the best task-level prompts' demonstrations; see
    :mod:`rl_select.proposals`), each candidate saying which proposers offered it.

    ## Action Space
    ``Discrete(M)``: the index of a candidate. Chosen candidates are masked out by :meth:`action_masks`.
    With ``stop`` (v1), ``Discrete(M + 1)``: action M ends the episode with the prompt as it is (fewer than k
    demonstrations, zero included), always allowed.

    ## Observation Space
    A ``Dict`` (see :mod:`rl_select.observation`): ``candidates`` ``[M, F]`` per-candidate features,
    ``chosen`` ``[M]``, ``step`` ``[1]``, ``state`` ``[S]`` and, in query mode, ``query`` ``[P + 1]``. With
    ``stop`` both per-candidate blocks have one more row: the stop action's (``is_stop`` = 1).

    ## Rewards
    ``value(prompt after step t) − value(prompt before it)``, with the zero-shot prompt as the start and γ = 1,
    so an episode's rewards sum to the final prompt's value minus the zero-shot value. Stopping earns 0.

    ## Starting State
    No demonstrations; candidates (and, in query mode, the query) drawn with ``self.np_random``.
    ``reset(options={"candidate_ids": [...]})`` fixes the task-mode candidates and
    ``reset(options={"query": example})`` the query-mode query (used for evaluation).

    ## Episode End
    Terminated after k demonstrations, or by the stop action. Never truncated.

    ## Arguments
    ``task`` (name, path or :class:`Task`), ``data_dir``, ``model``, ``device``, ``dtype`` (used when no
    ``resources`` are given), ``config`` (:class:`EnvConfig`) or its fields as keywords, ``resources``
    (shared scorer), ``features`` (shared :class:`FeatureBank`), ``candidate_ids`` (pool ids the env may offer;
    default the whole pool), ``query_ids`` (dev ids query mode draws queries from; default all).

    ## Version History
    * v1: the stop action (``stop=True``); query-mode candidates from several proposers (``proposers``) with
      proposer features. v0's settings still build v0's env.
    * v0: initial version (``query_source`` added later; its default keeps v0's episodes).

    Example:
        >>> import gymnasium as gym, rl_select.envs  # doctest: +SKIP
        >>> env = gym.make("rl_select/DemoSelection-v0", task="sst2", data_dir="../shared/data", k=4)  # doctest: +SKIP
        >>> obs, info = env.reset(seed=0)  # doctest: +SKIP
        >>> obs["candidates"].shape  # doctest: +SKIP
        (64, 40)
    """

    metadata = {"render_modes": ["ansi"]}  # noqa: RUF012 - Gymnasium's convention

    def __init__(
        self,
        task: str | Task = "sst2",
        *,
        config: EnvConfig | None = None,
        resources: Resources | None = None,
        features: FeatureBank | None = None,
        candidate_ids: Sequence[int] | None = None,
        query_ids: Sequence[int] | None = None,
        data_dir: str | None = None,
        model: str | None = None,
        device: str = "auto",
        dtype: str = "auto",
        render_mode: str | None = None,
        **overrides: Any,
    ) -> None:
        config = replace(config or EnvConfig(), **overrides) if overrides else (config or EnvConfig())
        self.config = config
        if resources is None:
            loaded = load_task(task, data_dir) if isinstance(task, str) else task
            scoring = ScoringConfig(calibrate=config.calibrate, prefix_perplexity=config.features.step_features)
            resources = Resources(
                loaded,
                lm=lambda: shared_language_model(model, device, dtype),
                scoring=scoring,
                embedder=config.features.embedder,
                data_seed=config.data_seed,
            )
        elif config.features.step_features and not resources.scoring.prefix_perplexity:
            raise ConfigError("step_features need resources whose ScoringConfig has prefix_perplexity=True")
        self.resources = resources
        self.task = resources.task
        self.features = features or FeatureBank(resources, config.features)
        pool = np.arange(len(self.task.train)) if candidate_ids is None else np.asarray(candidate_ids, dtype=np.int64)
        if pool.size and (pool.min() < 0 or pool.max() >= len(self.task.train)):
            raise ConfigError("candidate_ids must be ids of the task's pool")
        config.check_pool(len(pool))
        self.candidate_pool = pool
        query_split = self.task.train if config.query_source == "pool" else self.task.dev
        self.query_pool = np.arange(len(query_split)) if query_ids is None else np.asarray(query_ids, np.int64)
        self.render_mode = render_mode
        self.layout = feature_layout(config.features, config.mode, config.proposers is not None, config.stop)
        self.proposer = (
            None
            if config.proposers is None
            else QueryProposer(
                self.features, resources, config.proposers, pool, config.num_candidates, config.k, config.data_seed
            )
        )
        rows = config.num_actions  # the M candidates, and the stop action's row
        observation = {
            "candidates": spaces.Box(-np.inf, np.inf, (rows, len(self.layout.candidate)), np.float32),
            "chosen": spaces.Box(0.0, 1.0, (rows,), np.float32),
            "step": spaces.Box(0.0, float(config.k), (1,), np.float32),
            "state": spaces.Box(-np.inf, np.inf, (len(self.layout.state),), np.float32),
        }
        if config.mode == "query":
            observation["query"] = spaces.Box(-np.inf, np.inf, (len(self.layout.query),), np.float32)
        self.observation_space = spaces.Dict(observation)
        self.action_space = spaces.Discrete(config.num_actions)
        self._reward_rows = tuple(self.task.sample("dev", config.reward_rows, seed=config.data_seed))
        self._episode: Episode | None = None

    @property
    def steps_taken(self) -> int:
        """Demonstrations chosen in the current episode (0 before the first reset, too)."""
        return 0 if self._episode is None else len(self._episode.chosen)

    @property
    def episode(self) -> Episode:
        """The current episode (after :meth:`reset`)."""
        if self._episode is None:
            raise RuntimeError("call reset() before using the episode")
        return self._episode

    # ------------------------------------------------------------------ Gymnasium API

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Start an episode: draw candidates (and the query), score the empty prompt."""
        super().reset(seed=seed)
        request = self.begin_episode(options or {})
        return self.finish_reset(run_requests([request])[0])

    def step(self, action: int | np.integer) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Append candidate ``action`` and return the change in value."""
        requests = self.apply_action(action)
        return self.finish_step(run_requests(requests))

    def action_masks(self) -> np.ndarray:
        """``[M]`` booleans (``[M + 1]`` with the stop action, always allowed): True for what can be chosen."""
        mask = np.ones(self.config.num_actions, dtype=bool)
        if self._episode is not None:
            mask[self._episode.chosen] = False
        return mask

    @property
    def stop_action(self) -> int | None:
        """The stop action's index (M), or None without one."""
        return self.config.num_candidates if self.config.stop else None

    def render(self) -> str | None:
        """The current prompt as text (``render_mode="ansi"``)."""
        if self.render_mode != "ansi":
            return None
        demos = self.demonstrations()
        template = self.task.template
        blocks = [template.demonstration(d.text, d.label, d.text_pair) for d in demos]
        return template.separator.join(blocks)

    # ------------------------------------------------------------------ split step (for the vectorised env)

    def begin_episode(self, options: dict[str, Any]) -> ScoreRequest:
        """Draw the episode's candidates; return the scoring request of the empty prompt's value."""
        config = self.config
        query = None
        candidates = None
        if config.mode == "task":
            if "candidate_ids" in options:
                candidates = np.asarray(options["candidate_ids"], dtype=np.int64)
                if len(candidates) != config.num_candidates:
                    raise ConfigError(f"reset needs exactly M={config.num_candidates} candidate_ids")
            else:
                candidates = self.np_random.choice(self.candidate_pool, size=config.num_candidates, replace=False)
        else:
            query = options.get("query")
            if query is None:
                source = self.task.train if config.query_source == "pool" else self.task.dev
                query = source[int(self.np_random.choice(self.query_pool))]
        self._episode = self._new_episode(candidates, query)
        return ScoreRequest(self.resources.scorer, (), self._episode.rows)

    def _new_episode(self, candidates: np.ndarray | None, query: Example | None) -> Episode:
        """The episode offering ``candidates`` (task mode) or ``query``'s nearest neighbours (query mode)."""
        proposer_features = None
        if query is None:
            rows = self._reward_rows
            anchor = self.features.anchor(rows)
            query_block = None
        else:
            anchor = self.features.in_space([query])[0]
            if self.proposer is not None:
                proposal = self.proposer.propose(query, anchor)
                if candidates is not None and not np.array_equal(candidates, proposal.candidates):
                    raise ConfigError("these candidates are not the proposers' for this query")
                candidates, proposer_features = proposal.candidates, proposal.features
            elif candidates is None:
                candidates = self._nearest_candidates(anchor, exclude=query)
            rows = (query, *self._neighbour_rows(query, anchor))
            length = len(query.input_text.split()) / 50.0
            query_block = query_features(self.resources.query_vectors([query])[0], self.features.projection, length)
        candidates = np.asarray(candidates, dtype=np.int64)
        return Episode(
            candidates=candidates,
            static=self.features.static(candidates),
            vectors=self.features.space_pool[candidates],
            labels=self.features.pool_labels[candidates],
            anchor=anchor,
            query=query,
            query_features=query_block,
            rows=tuple(rows),
            proposer_features=proposer_features,
        )

    def state(self) -> EnvState:
        """Everything needed to continue this env exactly where it is: its RNG and its episode."""
        return EnvState(self.np_random.bit_generator.state, None if self._episode is None else self._episode.state())

    def restore(self, state: EnvState) -> dict[str, np.ndarray] | None:
        """Continue from :meth:`state`; returns the current observation (None before the first episode)."""
        self.np_random.bit_generator.state = state.rng
        stored = state.episode
        if stored is None:
            self._episode = None
            return None
        query = None
        if stored.query is not None:
            split, row = stored.query
            query = self.task.split(split)[row]
        self._episode = self._new_episode(np.asarray(stored.candidates, dtype=np.int64), query)
        self._episode.chosen = list(stored.chosen)
        self._episode.values = list(stored.values)
        self._episode.stopped = stored.stopped
        if self.config.features.step_features:
            demos = tuple(self.demonstrations())
            return self._observation(*self._step_features(self._candidate_result(demos), demos))
        return self._observation(None, None)

    def finish_reset(self, result: ScoreResult) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Record the empty prompt's value; return the first observation and info."""
        value = self.value_of(result)
        self.episode.values.append(value)
        step_features, perplexity = None, None
        if self.config.features.step_features:
            step_features, perplexity = self._step_features(self._candidate_result(()), ())
        return self._observation(step_features, perplexity), self._info()

    def apply_action(self, action: int | np.integer) -> list[ScoreRequest]:
        """Append a candidate; return the scoring requests of the new state."""
        if self._episode is None:
            raise RuntimeError("call reset() before step()")
        episode = self._episode
        action = int(action)
        if not 0 <= action < self.config.num_actions:
            raise ValueError(f"action {action} is outside 0..{self.config.num_actions - 1}")
        if action in episode.chosen or self._over():
            raise ValueError(f"action {action} is masked (already chosen, or the episode is over)")
        if action == self.stop_action:  # the prompt stays as it is: nothing to score
            episode.stopped = True
            return []
        episode.chosen.append(action)
        demos = tuple(self.demonstrations())
        requests = [ScoreRequest(self.resources.scorer, demos, episode.rows)]
        if self.config.features.step_features and len(episode.chosen) < self.config.k:
            requests.append(self._candidate_request(demos))
        return requests

    def finish_step(
        self, results: list[ScoreResult]
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Turn the new state's scores into (observation, reward, terminated, truncated, info)."""
        if self.episode.stopped:
            return self._transition(self.episode.values[-1], None)
        return self._transition(self.value_of(results[0]), results[1] if len(results) > 1 else None)

    def action_row(self) -> np.ndarray:
        """``[M]`` values of the prompt with each candidate added (NaN for chosen ones): the state's dense labels.

        With ``append`` order one :meth:`Scorer.score_extensions` call scores every candidate after the
        current prefix; with ``prepend`` each extended prompt is scored on its own (slower).
        """
        episode = self.episode
        valid = np.flatnonzero(self.action_masks()[: self.config.num_candidates])
        scorer = self.resources.scorer
        if self.config.prompt_order == "append":
            extensions = [self.task.train[int(episode.candidates[i])] for i in valid]
            results = scorer.score_extensions(self.demonstrations(), extensions, episode.rows)
        else:
            results = [scorer.score(self.demonstrations(extra=int(i)), episode.rows) for i in valid]
        row = np.full(self.config.num_actions, np.nan)
        row[valid] = [self.value_of(result) for result in results]
        if self.stop_action is not None:
            row[self.stop_action] = episode.values[-1]  # stopping keeps the prompt's value
        return row

    def step_to_known_value(
        self, action: int | np.integer, value: float
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """:meth:`step` when the new prompt's value is already known (from :meth:`action_row`): no scoring."""
        if self.config.features.step_features:
            raise ConfigError("step features score every candidate at every step; use step()")
        self.apply_action(action)
        return self._transition(float(value), None)

    def _transition(
        self, value: float, candidate_scores: ScoreResult | None
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        """Record the new state's value; return (observation, reward, terminated, truncated, info)."""
        episode = self.episode
        reward = value - episode.values[-1]
        episode.values.append(value)
        terminated = self._over()
        step_features, perplexity = None, None
        if self.config.features.step_features:
            if terminated:
                step_features = np.zeros((self.config.num_candidates, 3), dtype=np.float32)
                perplexity = self._log_perplexity(tuple(self.demonstrations()))
            else:
                assert candidate_scores is not None, "step features need the candidates' scores"
                step_features, perplexity = self._step_features(candidate_scores, tuple(self.demonstrations()))
        info = self._info()
        if terminated:
            info["episode_value"] = value
            info["zero_shot_value"] = episode.values[0]
        return self._observation(step_features, perplexity), float(reward), terminated, False, info

    def run_greedy(
        self, choose: Callable[[dict[str, np.ndarray], np.ndarray], int], options: dict[str, Any] | None = None
    ) -> list[int]:
        """Run an episode with ``choose(obs, mask) -> action`` without scoring rewards; return the selection.

        Inference needs no reward: only step features (if enabled) query the LLM.
        """
        self.begin_episode(options or {})
        while not self._over():
            step_features, perplexity = None, None
            if self.config.features.step_features:
                demos = tuple(self.demonstrations())
                step_features, perplexity = self._step_features(self._candidate_result(demos), demos)
            action = int(choose(self._observation(step_features, perplexity), self.action_masks()))
            if not self.action_masks()[action]:
                raise ValueError(f"policy chose masked action {action}")
            if action == self.stop_action:
                self.episode.stopped = True
            else:
                self.episode.chosen.append(action)
        return self.selection()

    # ------------------------------------------------------------------ helpers

    def _over(self) -> bool:
        """Whether the episode has ended: k demonstrations chosen, or stopped."""
        episode = self.episode
        return episode.stopped or len(episode.chosen) >= self.config.k

    def demonstrations(self, extra: int | None = None) -> list[Example]:
        """The chosen demonstrations in prompt order (``config.prompt_order``), with candidate ``extra`` added."""
        if self._episode is None:
            return []
        episode = self._episode
        picks = [*episode.chosen, *([] if extra is None else [extra])]
        ordered = arrange_prompt(picks, self.config.prompt_order)
        return [self.task.train[int(episode.candidates[i])] for i in ordered]

    def selection(self) -> list[int]:
        """Pool ids of the chosen demonstrations, in prompt order."""
        return [d.id for d in self.demonstrations()]

    def value_of(self, result: ScoreResult) -> float:
        """A prompt's value from its scores on the episode's rows (``config.value_kind``)."""
        if self.config.value_kind == "probability":
            return float(result.gold_probs.mean())
        return result.accuracy

    def _nearest_candidates(self, anchor: np.ndarray, exclude: Example | None = None) -> np.ndarray:
        pool = self.candidate_pool
        if exclude is not None and exclude.split == "train":  # a pool query is never its own candidate
            pool = pool[pool != exclude.id]
        top = nearest_first(self.features.space_pool[pool], anchor)[: self.config.num_candidates]
        return pool[top]

    def _neighbour_rows(self, query: Example, anchor: np.ndarray) -> list[Example]:
        if not self.config.neighbour_rows:
            return []
        dev = self.task.dev
        sims = self.features.in_space(dev) @ anchor
        order = [i for i in np.argsort(-sims, kind="stable") if dev[i].key != query.key]
        return [dev[i] for i in order[: self.config.neighbour_rows]]

    def _candidate_request(self, demos: tuple[Example, ...]) -> ScoreRequest:
        candidates = tuple(self.task.train[int(i)] for i in self.episode.candidates)
        return ScoreRequest(self.resources.scorer, demos, candidates)

    def _candidate_result(self, demos: tuple[Example, ...]) -> ScoreResult:
        return run_requests([self._candidate_request(demos)])[0]

    def _step_features(self, candidates: ScoreResult, demos: tuple[Example, ...]) -> tuple[np.ndarray, float]:
        num_labels = self.task.num_labels
        features = np.stack(
            [candidates.entropy / np.log(num_labels), candidates.probs.max(axis=1), candidates.gold_probs], axis=1
        )
        return features.astype(np.float32), self._log_perplexity(demos)

    def _log_perplexity(self, demos: tuple[Example, ...]) -> float:
        value = self.resources.scorer.prefix_log_perplexity(demos)
        return float(value) if np.isfinite(value) else 0.0

    def _observation(self, step_features: np.ndarray | None, perplexity: float | None) -> dict[str, np.ndarray]:
        episode = self.episode
        return build_observation(
            static=episode.static,
            vectors=episode.vectors,
            label_ids=episode.labels,
            num_labels=self.task.num_labels,
            chosen=list(episode.chosen),
            k=self.config.k,
            anchor=episode.anchor,
            query=episode.query_features,
            step_features=step_features,
            prompt_log_perplexity=perplexity,
            label_vote=self.config.features.label_vote,
            proposer_features=episode.proposer_features,
            stop=self.config.stop,
        )

    def _info(self) -> dict[str, Any]:
        episode = self.episode
        return {
            "task": self.task.name,
            "value": episode.values[-1],
            "selection": self.selection(),
            "candidate_ids": [int(i) for i in episode.candidates],
        }
