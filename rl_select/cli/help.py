"""``--help`` in sections: what a user needs first, then the other options, then each settings group.

A command names its first screen (parameter names, in order); every other option stays where the schema puts it,
under ``Options`` or under its group's heading (``env.*``, ``evaluation.*``, …), derived from its dotted path.
"""

from __future__ import annotations

import click
from typer.core import TyperCommand

START_HERE = "Start here"


class SectionedCommand(TyperCommand):
    """A typer command whose help starts with :attr:`first`, then ``Options``, then one section per group."""

    first: tuple[str, ...] = ()

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Arguments, the first screen, the other options, then each settings group."""
        for title, rows in help_sections(self, ctx):
            with formatter.section(title):
                formatter.write_dl([(fit_flags(flags, formatter.width), text) for flags, text in rows])


def help_sections(command: click.Command, ctx: click.Context) -> list[tuple[str, list[tuple[str, str]]]]:
    """``(title, [(flags, help)])`` per section, in the order ``--help`` shows them."""
    first = getattr(command, "first", ())
    arguments, start, groups = [], {}, {"": []}
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None:
            continue
        name = param.name or ""
        if param.param_type_name == "argument":
            arguments.append(record)
        elif name in first:
            start[name] = record
        else:
            groups.setdefault(name.split("__")[0] if "__" in name else "", []).append(record)
    sections = [("Arguments", arguments), (START_HERE, [start[n] for n in first if n in start])]
    sections.append(("Options" if not start else "Other options", groups.pop("")))
    sections += [(f"{group}.* settings", rows) for group, rows in groups.items()]
    return [(title, rows) for title, rows in sections if rows]


def fit_flags(flags: str, width: int) -> str:
    """A flag list too wide for the terminal breaks before its ``--no-`` forms (``--x, --a.x / --no-x, …``)."""
    if len(flags) + 2 <= width or " / " not in flags:
        return flags
    positive, negative = flags.split(" / ", 1)
    return f"{positive} /\n    {negative}"


def first_screen(*names: str) -> type[SectionedCommand]:
    """A command class whose help shows the parameters ``names`` first, in this order."""
    return type("FirstScreenCommand", (SectionedCommand,), {"first": names})


__all__ = ["START_HERE", "SectionedCommand", "first_screen", "fit_flags", "help_sections"]
