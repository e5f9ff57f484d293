"""Helpers for the typer CLI: a group with a default command, help that shows what the parser
takes, and one-line error exits."""

from __future__ import annotations

import sys
from typing import Any

import click
from typer.core import TyperGroup


class DefaultCommandGroup(TyperGroup):
    """A command group that runs ``default_command`` when the first argument is not a
    sub-command name, so ``auralens separate MIX.wav`` and ``auralens separate train DIR``
    both work.

    Subclass or set ``default_command`` via :func:`default_group`.
    """

    default_command: str = "run"

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = [self.default_command, *args]
        return super().parse_args(ctx, args)


def default_group(command: str) -> type[DefaultCommandGroup]:
    """A :class:`DefaultCommandGroup` subclass whose default sub-command is ``command``."""
    return type(f"Default{command.title()}Group", (DefaultCommandGroup,), {"default_command": command})


def plain_help(command: Any) -> None:
    """Make the help of ``command`` and of all its sub-commands show what the parser takes.

    typer's help gives every option a value placeholder, flags and counters included
    (``--quick <bool>``, ``-v <int>``), though these take no value; and names arguments in
    lower case (``{data}``). Here flags, counters and ``--help`` get no placeholder, and
    arguments are named in capitals (``DATA``), as the README writes them.
    """
    import typer

    params = list(command.params)
    help_option = command.get_help_option(typer.Context(command))
    if help_option is not None:
        params.append(help_option)
    for param in params:
        if param.param_type_name == "argument":
            if param.metavar is None and param.name:
                param.metavar = param.name.upper()
        elif getattr(param, "is_flag", False) or getattr(param, "count", False):
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        plain_help(sub)


class PlainHelpGroup(TyperGroup):
    """The root command group: its whole command tree gets :func:`plain_help`."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        plain_help(self)


def fail(message: str, code: int = 1) -> None:
    """Print ``error: message`` on one line to stderr and exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def echo(*args: Any) -> None:
    click.echo(" ".join(str(a) for a in args))
