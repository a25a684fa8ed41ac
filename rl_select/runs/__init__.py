"""The run-setup core: a run's configuration, what it builds (tasks, resources, envs), its directory, its policy.

``config`` (TrainConfig), ``setup`` (tasks, resources, feature banks, env factories), ``dirs`` (run directories)
and ``policy`` (a trained run read back as a selector).
"""
