"""CLI for auralens.data (kept light: heavy imports happen inside commands)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Datasets: synthesize, mix and split.", no_args_is_help=True)
