"""Helpers for the typer CLI: a group with a default command and one-line error exits."""

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


def fail(message: str, code: int = 1) -> None:
    """Print ``error: message`` on one line to stderr and exit with ``code``."""
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def echo(*args: Any) -> None:
    click.echo(" ".join(str(a) for a in args))
