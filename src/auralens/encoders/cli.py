"""CLI commands that belong to encoders (``auralens train-classifier``)."""

from __future__ import annotations

import typer

app = typer.Typer(help="Train the compact AST-architecture classifier (the offline model to explain).")
