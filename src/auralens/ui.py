"""Web UI (Gradio)."""

from __future__ import annotations

from pathlib import Path

from auralens.errors import AuralensError


def launch(host: str = "127.0.0.1", port: int = 7860, runs: Path | None = None) -> None:
    raise AuralensError("the web UI is not built yet")
