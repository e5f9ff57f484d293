"""Datasets: ESC-50 / plain-folder loaders, a procedural sound library and a FUSS-recipe mixer.

Modules:
    esc50:  ``load_esc50``, ``make_splits``, ``write_splits``, ``read_splits``.
    folder: ``load_folder`` (any audio files; label = parent folder).
    synth:  ``synthesize`` a labelled ESC-50-layout library from parameterised generators.
    mix:    ``build_mixtures`` (FUSS recipe: background + foreground events, shoebox rooms).
    fuss:   ``load_fuss`` (the official FUSS release and what ``build_mixtures`` writes).

Submodules are imported lazily so ``import auralens.data`` stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from auralens.errors import AuralensError

if TYPE_CHECKING:
    from auralens.types import Clip

__all__ = ["DatasetError", "detect_layout", "load_dataset"]


class DatasetError(AuralensError):
    """A dataset directory or metadata file that cannot be used (message names the path)."""


def detect_layout(path: str | Path) -> str:
    """Return ``"esc50"`` when ``path/meta/esc50.csv`` exists, else ``"folder"``.

    Raises:
        DatasetError: ``path`` does not exist or is not a directory.
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: dataset directory not found")
    if not path.is_dir():
        raise DatasetError(f"{path}: not a directory")
    if (path / "meta" / "esc50.csv").is_file():
        return "esc50"
    return "folder"


def load_dataset(path: str | Path) -> list[Clip]:
    """Load an ESC-50-layout dataset or a plain folder of audio files, detected automatically.

    Args:
        path: dataset root.

    Returns:
        the clips (ESC-50: one label per clip; folder: parent folder name as label).

    Raises:
        DatasetError: missing directory, malformed metadata, or no audio found.
    """
    layout = detect_layout(path)
    if layout == "esc50":
        from auralens.data.esc50 import load_esc50

        return load_esc50(Path(path))
    from auralens.data.folder import load_folder

    return load_folder(Path(path))
