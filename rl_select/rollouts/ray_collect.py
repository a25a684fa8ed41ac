"""Fault-tolerant episode collection with Ray.

The driver hands episode ids to workers (two in flight per worker) and is the only writer of the data set.
Workers are restartable actors: if one dies, Ray restarts it (reloading the model) and the episodes it had in
flight go back to the queue. Because an episode is a pure function of its id, a re-run episode is identical
to the lost one, and because the driver writes each id once (atomically), the data set ends with every id
exactly once, whatever died when.
"""

from __future__ import annotations

import logging
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from rl_select.errors import RLSelectError
from rl_select.rollouts.episodes import EpisodeStore
from rl_select.rollouts.ray_runtime import ensure_ray, require_ray
from rl_select.rollouts.workers import start_workers

logger = logging.getLogger(__name__)
IN_FLIGHT_PER_WORKER = 2
MAX_ATTEMPTS = 4
RESTART_WAIT_S = 120.0
"""How long an episode waits, in all, for its restarting worker to come back before the collection gives up."""


def worker_failure_types(ray: Any) -> tuple[type[BaseException], ...]:
    """Exceptions meaning "the worker process went away" (as opposed to an error in the episode)."""
    exceptions = ray.exceptions
    names = ("RayActorError", "ActorUnavailableError", "WorkerCrashedError", "ObjectLostError")
    return tuple(getattr(exceptions, n) for n in names if hasattr(exceptions, n))


def run_on_workers(
    workers: list[Any],
    episode_ids: list[int],
    on_record: Callable[[dict], None],
    advance: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Run episodes on Ray workers (two in flight each), re-running those a dying worker had in flight.

    Args:
        workers: :class:`~rl_select.rollouts.workers.RolloutWorker` handles (restartable actors).
        episode_ids: Episodes to run.
        on_record: Receives each finished episode's record exactly once.
        advance: Progress callback.

    Returns:
        ``{"episodes": finished, "retried": episodes re-run after a worker died}``.
    """
    ray = require_ray()
    failures = worker_failure_types(ray)
    unavailable = getattr(ray.exceptions, "ActorUnavailableError", ())
    queue = deque(episode_ids)
    pending: dict[Any, tuple[int, int]] = {}
    attempts: Counter[int] = Counter()
    waited: Counter[int] = Counter()
    finished = 0

    def submit(worker: int) -> None:
        if queue:
            episode_id = queue.popleft()
            attempts[episode_id] += 1
            pending[workers[worker].run_episode.remote(episode_id)] = (worker, episode_id)

    for worker in range(len(workers)):
        for _ in range(IN_FLIGHT_PER_WORKER):
            submit(worker)
    while pending:
        (ref,), _ = ray.wait(list(pending), num_returns=1)
        worker, episode_id = pending.pop(ref)
        try:
            record = ray.get(ref)
        except failures as exc:
            restarting = bool(unavailable) and isinstance(exc, unavailable)
            if restarting and waited[episode_id] < RESTART_WAIT_S:  # still coming back: wait, not another death
                if not waited[episode_id]:
                    logger.warning("worker %d is restarting; episode %d re-runs once it is back", worker, episode_id)
                attempts[episode_id] -= 1
                pause = min(2.0 ** (attempts[episode_id] + len(pending)), 8.0, RESTART_WAIT_S - waited[episode_id])
                time.sleep(pause)
                waited[episode_id] += pause
            elif attempts[episode_id] >= MAX_ATTEMPTS or restarting:
                raise RLSelectError(
                    f"episode {episode_id} failed {attempts[episode_id]} times (worker keeps dying): {_cause(exc)}"
                ) from None
            else:
                logger.warning(
                    "worker %d died during episode %d; it restarts and the episode re-runs", worker, episode_id
                )
            queue.appendleft(episode_id)
            submit(worker)
            continue
        except ray.exceptions.RayTaskError as exc:
            raise RLSelectError(f"episode {episode_id} failed in a worker: {_cause(exc)}") from None
        on_record(record)
        finished += 1
        if advance is not None:
            advance(1)
        submit(worker)
    return {"episodes": finished, "retried": sum(n - 1 for n in attempts.values())}


def stop_workers(workers: list[Any], central: Any = None) -> None:
    """Kill rollout workers (and the central scorer) for good."""
    ray = require_ray()
    for actor in [*workers, *([central] if central is not None else [])]:
        ray.kill(actor, no_restart=True)


def collect_with_ray(
    config: Any,
    store: EpisodeStore,
    todo: list[int],
    advance: Callable[[int], None] | None = None,
) -> dict[str, int]:
    """Run episodes ``todo`` on ``config.parallel.workers`` Ray workers; the driver alone writes them to ``store``."""
    ensure_ray(config.parallel.address)
    workers, central = start_workers(config, store.path, config.parallel.workers)
    try:
        return run_on_workers(workers, todo, store.write, advance)
    finally:
        stop_workers(workers, central)


def _cause(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None) or exc
    text = str(cause).strip().splitlines()
    return text[-1] if text else type(cause).__name__
