"""Tasks: labels, prompt template, verbalizer and train/dev/test splits."""

from rl_select.tasks.hub import HUB_TASKS, HubTaskSpec, load_hub_task
from rl_select.tasks.registry import DATA_ENV, TaskInfo, list_tasks, load_task, resolve_data_dir
from rl_select.tasks.task import SPLITS, Example, Task
from rl_select.tasks.template import PromptTemplate

__all__ = [
    "DATA_ENV",
    "HUB_TASKS",
    "SPLITS",
    "Example",
    "HubTaskSpec",
    "PromptTemplate",
    "Task",
    "TaskInfo",
    "list_tasks",
    "load_hub_task",
    "load_task",
    "resolve_data_dir",
]
