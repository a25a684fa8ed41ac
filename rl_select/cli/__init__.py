"""The ``rl-select`` command line.

Every user error (:class:`~rl_select.errors.RLSelectError`) is printed as one ``error: …`` line on stderr and
exits with status 2, like a usage error; so is a file that cannot be written (full disk, read-only or missing
directory). Ctrl-C and SIGTERM stop a command after it has saved what it finished: one ``interrupted: …`` line
says where, and the exit status is 130. Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import errno
import signal
import sys
import threading
from types import FrameType

import typer

from rl_select.cli.bench import bench_app
from rl_select.cli.evaluate import EVALUATE_HELP, evaluate_command, tasks_command
from rl_select.cli.serve import export_command, select_command, serve_command
from rl_select.cli.study import headroom_command, study_command
from rl_select.cli.train import COLLECT_HELP, TRAIN_HELP, collect_command, sweep_command, train_command
from rl_select.cli.verify import verify_command
from rl_select.errors import Interrupted, RLSelectError

WRITE_ERRNOS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EROFS,
    errno.EACCES,
    errno.EPERM,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EEXIST,
}
"""OS errors that mean "this path cannot be written here": reported in one line, not as a bug."""

app = typer.Typer(
    name="rl-select",
    help="Learn which in-context demonstrations to put in an LLM prompt, with reinforcement learning.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,  # plain help: flags without a type tag, each value option with its type
    context_settings={"max_content_width": 100},  # as wide as a 100-column terminal, narrower in a narrower one
)
app.command("tasks")(tasks_command)
app.command("evaluate", cls=EVALUATE_HELP)(evaluate_command)
app.command("train", cls=TRAIN_HELP)(train_command)
app.command("collect", cls=COLLECT_HELP)(collect_command)
app.command("sweep")(sweep_command)
app.command("verify")(verify_command)
app.command("export")(export_command)
app.command("select")(select_command)
app.command("serve")(serve_command)
app.command("headroom")(headroom_command)
app.command("study")(study_command)
app.add_typer(bench_app, name="bench")


def _terminate(signum: int, frame: FrameType | None) -> None:
    """SIGTERM stops a command the way Ctrl-C does, so it saves what it finished."""
    raise KeyboardInterrupt


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split("\n")).strip() or type(exc).__name__


def main() -> None:
    """Entry point of the ``rl-select`` console script."""
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    try:
        app()
    except Interrupted as exc:
        print(f"interrupted: {_one_line(exc)}", file=sys.stderr, flush=True)
        sys.exit(130)
    except RLSelectError as exc:
        print(f"error: {_one_line(exc)}", file=sys.stderr, flush=True)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr, flush=True)
        sys.exit(130)
    except OSError as exc:
        if exc.errno not in WRITE_ERRNOS:
            raise
        where = f" {exc.filename}" if exc.filename else ""
        print(f"error: cannot write{where}: {exc.strerror or exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


__all__ = ["app", "main"]
