"""A plain folder of audio files: label = parent folder name when files sit in subfolders."""

from __future__ import annotations

import logging
from pathlib import Path

from auralens.data import DatasetError
from auralens.types import Clip

log = logging.getLogger(__name__)

#: File extensions treated as audio (anything libsndfile, or the mp3 fallback, reads).
AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif"})


def is_audio_file(path: Path) -> bool:
    """True for a visible regular file with an audio extension (temp files start with '.')."""
    return path.suffix.lower() in AUDIO_EXTENSIONS and not path.name.startswith(".") and path.is_file()


def load_folder(root: Path) -> list[Clip]:
    """List every audio file under ``root`` (recursively, sorted).

    Args:
        root: a directory.

    Returns:
        One :class:`Clip` per file: ``id`` = path relative to ``root`` without suffix
        (POSIX separators), ``labels`` = ``[parent folder name]`` for files in a
        subfolder, ``[]`` for files directly in ``root``.

    Raises:
        DatasetError: ``root`` is missing, not a directory, or holds no audio.
    """
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"{root}: dataset directory not found")
    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory")
    clips: list[Clip] = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not is_audio_file(path):
            continue
        labels = [path.parent.name] if len(rel.parts) > 1 else []
        clips.append(Clip(id=rel.with_suffix("").as_posix(), path=path, labels=labels))
    if not clips:
        raise DatasetError(
            f"{root}: no audio files found (looked for {', '.join(sorted(AUDIO_EXTENSIONS))})"
        )
    return clips
