"""CLI for auralens.sonify (kept light: heavy imports happen inside commands)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Sonify: listen to what an audio model's hidden states keep.", no_args_is_help=True)


def _mount_evaluation() -> None:
    from auralens.evaluate.sonify_cli import add_commands

    add_commands(app)
_mount_evaluation()
