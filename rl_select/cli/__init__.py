"""The ``rl-select`` command line.

Every user error (:class:`~rl_select.errors.RLSelectError`) is printed as one ``error: …`` line on stderr and
exits with status 2, like a usage error; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import sys

import typer

from rl_select.cli.bench import bench_app
from rl_select.cli.evaluate import evaluate_command, tasks_command
from rl_select.cli.serve import export_command, select_command, serve_command
from rl_select.cli.train import collect_command, sweep_command, train_command
from rl_select.errors import RLSelectError

app = typer.Typer(
    name="rl-select",
    help="Learn which in-context demonstrations to put in an LLM prompt, with reinforcement learning.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("tasks")(tasks_command)
app.command("evaluate")(evaluate_command)
app.command("train")(train_command)
app.command("collect")(collect_command)
app.command("sweep")(sweep_command)
app.command("export")(export_command)
app.command("select")(select_command)
app.command("serve")(serve_command)
app.add_typer(bench_app, name="bench")


def main() -> None:
    """Entry point of the ``rl-select`` console script."""
    try:
        app()
    except RLSelectError as exc:
        message = " ".join(str(exc).split("\n")).strip() or type(exc).__name__
        print(f"error: {message}", file=sys.stderr, flush=True)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr, flush=True)
        sys.exit(130)


__all__ = ["app", "main"]
