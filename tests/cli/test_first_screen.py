"""``--help``: what a user needs first comes first, every command fits a 100-column terminal."""

from __future__ import annotations

import pytest
import typer

from rl_select.cli import app
from rl_select.cli.help import START_HERE, SectionedCommand
from tests.helpers import run_cli

COMMANDS = typer.main.get_command(app)
FIRST_SCREEN = {  # command: flags its first screen must show
    "train": [
        "--config",
        "--task",
        "--data-dir",
        "--model",
        "--algo",
        "--mode",
        "--k",
        "--out",
        "--dry-run",
        "--resume",
    ],
    "evaluate": ["--task", "--selector", "--policy", "--data-dir", "--model", "--k", "--n-test", "--seeds", "--out"],
    "collect": ["--task", "--data-dir", "--model", "--episodes", "--out", "--workers", "--address"],
}


def all_commands() -> list[list[str]]:
    names = []
    for name, command in COMMANDS.commands.items():
        if isinstance(command, typer.core.TyperGroup):
            names += [[name, sub] for sub in command.commands]
        else:
            names.append([name])
    return names


def help_of(args: list[str], capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "100")
    code, out, err = run_cli([*args, "--help"], capsys)
    assert code == 0, err
    return out


@pytest.mark.parametrize("name", sorted(FIRST_SCREEN))
def test_the_first_screen_lists_what_users_need_first(name, capsys, monkeypatch):
    command = COMMANDS.commands[name]
    assert isinstance(command, SectionedCommand)
    assert set(command.first) <= {p.name for p in command.params}, "a first-screen name is not a parameter"
    text = help_of([name], capsys, monkeypatch)
    sections = [line for line in text.splitlines() if line and not line.startswith(" ") and line.endswith(":")]
    assert sections[0] == f"{START_HERE}:", sections
    first = text.split(f"{START_HERE}:", 1)[1].split("\n\n", 1)[0]
    for flag in FIRST_SCREEN[name]:
        assert flag in first, f"{flag} is not on the first screen of {name}"
    assert first.count("\n  -") <= 12, "the first screen is a dozen options at most"


@pytest.mark.parametrize("args", all_commands(), ids=" ".join)
def test_help_fits_a_100_column_terminal(args, capsys, monkeypatch):
    text = help_of(args, capsys, monkeypatch)
    assert max(len(line) for line in text.splitlines()) <= 100, max(text.splitlines(), key=len)


def test_a_table_in_a_log_keeps_every_cell_whole(capsys):
    from rl_select.cli.common import console, print_table

    name, cost, width = "fqi-query (transfer, dev chose policy)", "LLM cost to choose (per seed)", console.width
    print_table("results", ["selector", "accuracy (calibrated)", "raw", cost], [[name, "70.0 ± 0.0", "62.5", "640 q"]])
    out = capsys.readouterr().out
    assert not console.is_terminal and name in out and cost in out and "…" not in out
    assert console.width == width  # the wider width was only for that table
