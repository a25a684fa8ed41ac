"""Rollouts of the selection MDP: running episodes, storing them, and running them in parallel with Ray."""

from rl_select.rollouts.collect import collect_episodes, episode_base_seed
from rl_select.rollouts.episodes import EpisodeStore, run_episode

__all__ = ["EpisodeStore", "collect_episodes", "episode_base_seed", "run_episode"]
