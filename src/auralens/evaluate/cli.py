"""CLI for auralens.evaluate (kept light: heavy imports happen inside commands)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Evaluate sonifications and scene descriptions.", no_args_is_help=True)
