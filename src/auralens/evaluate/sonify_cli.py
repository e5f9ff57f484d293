"""Evaluation commands mounted under ``auralens sonify`` (report, rate, ratings)."""

from __future__ import annotations

import typer


def add_commands(app: typer.Typer) -> None:
    """Attach the evaluation commands to the ``sonify`` sub-app."""
