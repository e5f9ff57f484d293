"""CLI for separation: ``auralens separate MIX.wav`` (default ``run``), ``train``, ``eval``."""

from __future__ import annotations

import typer

from auralens.cli_utils import default_group

app = typer.Typer(help="Separate a sound mixture into sources; train and evaluate separators.",
                  cls=default_group("run"), no_args_is_help=True)
