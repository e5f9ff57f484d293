"""A plain folder of audio files: label = parent folder name when files sit in subfolders."""

from __future__ import annotations

import logging
from pathlib import Path

from auralens.audio import FFMPEG_SUFFIXES
from auralens.data import DatasetError
from auralens.types import Clip

log = logging.getLogger(__name__)

#: File extensions treated as audio (anything libsndfile, or the mp3 fallback, reads; m4a and
#: aac through ffmpeg). A listed file that cannot be read is reported by the job, not dropped.
AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aiff", ".aif",
                              *FFMPEG_SUFFIXES})


def is_audio_file(path: Path) -> bool:
    """True for a visible regular file with an audio extension (temp files start with '.')."""
    return path.suffix.lower() in AUDIO_EXTENSIONS and not path.name.startswith(".") and path.is_file()


def audio_files(root: Path, exclude: tuple[Path, ...] = ()) -> list[Path]:
    """Every audio file below ``root``, sorted; hidden files and folders are left out, and so
    are files below a folder in ``exclude`` (e.g. a job's own output folder inside ``root``)."""
    skip = tuple(Path(x).resolve() for x in exclude)
    out = []
    for path in sorted(Path(root).rglob("*")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or not is_audio_file(path):
            continue
        if skip and any(path.resolve().is_relative_to(x) for x in skip):
            continue
        out.append(path)
    return out


def file_ids(root: Path, paths: list[Path]) -> list[str]:
    """Ids of files below ``root``: the relative POSIX path without its suffix, except where
    two files differ only by suffix (``a.wav``, ``a.flac``): those keep it, so ids stay unique."""
    bare = [p.relative_to(root).with_suffix("").as_posix() for p in paths]
    seen: dict[str, int] = {}
    for b in bare:
        seen[b] = seen.get(b, 0) + 1
    return [b if seen[b] == 1 else p.relative_to(root).as_posix() for b, p in zip(bare, paths, strict=True)]


def load_folder(root: Path, exclude: tuple[Path, ...] = ()) -> list[Clip]:
    """List every audio file under ``root`` (recursively, sorted).

    Args:
        root: a directory.
        exclude: folders whose files are left out (a job's output folder inside ``root``).

    Returns:
        One :class:`Clip` per file: ``id`` = path relative to ``root`` without suffix
        (POSIX separators; see :func:`file_ids`), ``labels`` = ``[parent folder name]`` for files in a
        subfolder, ``[]`` for files directly in ``root``.

    Raises:
        DatasetError: ``root`` is missing, not a directory, or holds no audio.
    """
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"{root}: dataset directory not found")
    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory")
    paths = audio_files(root, exclude)
    clips = [Clip(id=cid, path=path, labels=[path.parent.name] if path.parent != root else [])
             for cid, path in zip(file_ids(root, paths), paths, strict=True)]
    if not clips:
        raise DatasetError(
            f"{root}: no audio files found (looked for {', '.join(sorted(AUDIO_EXTENSIONS))})"
        )
    return clips
