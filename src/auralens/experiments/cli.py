"""CLI for auralens.experiments (kept light: heavy imports happen inside commands)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Run YAML experiment definitions that regenerate the studies' tables.", no_args_is_help=True)
