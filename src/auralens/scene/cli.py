"""CLI for ``auralens imagine INPUT`` (default ``run``) and ``imagine batch``."""

from __future__ import annotations

import typer

from auralens.cli_utils import default_group

app = typer.Typer(help="Imagine: separate → caption → describe → image, or an audio LLM end to end.",
                  cls=default_group("run"), no_args_is_help=True)
