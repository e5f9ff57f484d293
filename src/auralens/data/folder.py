"""A plain folder of audio files: label = parent folder name when files sit in subfolders."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path

from auralens.audio import FFMPEG_SUFFIXES
from auralens.data import DatasetError
from auralens.shard import shard_owner
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


#: Settings files a resumable data job writes first (before its run.json): a folder holding one
#: is that job's output even when the job was interrupted.
_OUTPUT_MARKERS = ("*_mix_config.json", "synth_config.json")


def recorded_command(folder: Path) -> str | None:
    """The command an auralens ``run.json`` in ``folder`` records, else None (no run.json, or
    one auralens did not write)."""
    from auralens.io import read_run_record

    record = read_run_record(folder)
    if not (isinstance(record, dict) and isinstance(record.get("command"), str)
            and isinstance(record.get("versions"), dict) and "auralens" in record["versions"]):
        return None
    return record["command"]


def auralens_outputs(root: Path) -> list[Path]:
    """Folders strictly below ``root`` that hold an auralens job's output (``data mix``,
    ``data synth``, ``separate batch``, ``imagine batch``, ``sonify …``: a ``run.json`` auralens
    wrote, or the settings file an interrupted data job wrote first), resolved and sorted.
    A shard's record (``OUT/shards/part-i-of-n``) stands for ``OUT``. Their audio is not a
    dataset's clips."""
    root = Path(root)
    top = root.resolve()
    found: set[Path] = set()
    for pattern in ("run.json", *_OUTPUT_MARKERS):
        for marker in root.rglob(pattern):
            rel = marker.relative_to(root)
            if any(part.startswith(".") for part in rel.parts) or not marker.is_file():
                continue
            if pattern == "run.json" and recorded_command(marker.parent) is None:
                continue
            found.add(shard_owner(marker.parent).resolve())
    return sorted(f for f in found if f != top and f.is_relative_to(top))


def check_out_owner(out_dir: Path, command: str, owned: Callable[[Path], bool],
                    error: type[Exception], *, scan_own: bool = False) -> None:
    """Refuse an existing ``out_dir`` that holds another command's output, or files ``command``
    does not write (``owned(path relative to out_dir)`` is False): they must not be written
    over or mixed in.

    A ``run.json`` of ``command`` marks the folder as its own; its files are then checked
    only with ``scan_own``. Hidden files (a file browser's) and unfinished temporary files
    are passed over.
    """
    from auralens.io import is_temp_name, read_run_record

    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        return
    hint = "; choose an empty or new --out"
    if (out_dir / "run.json").is_file():
        run = read_run_record(out_dir)
        recorded = run.get("command") if isinstance(run, dict) else None
        if not isinstance(recorded, str):  # cannot tell what made it: never write over it
            raise error(f"{out_dir}: its run.json is unreadable, so what made the folder is unknown{hint}")
        if recorded != command:
            raise error(f"{out_dir}: holds the output of {recorded!r}, not of {command}{hint}")
        if not scan_own:
            return
    # any other file: a folder of the user's own files must not get outputs written beside them
    for path in _sorted_files(out_dir):
        rel = path.relative_to(out_dir)
        if is_temp_name(path.name) or rel.name == "run.json" and len(rel.parts) == 1:
            continue
        if not owned(rel):
            raise error(f"{out_dir}: holds files that {command} does not write ({rel}){hint}")


def _sorted_files(folder: Path) -> Iterator[Path]:
    """The files below ``folder``, hidden ones and hidden folders left out, in the order of
    ``sorted(folder.rglob("*"))``, listed one folder at a time: a check that stops at the
    first foreign file does not walk a whole tree (an ``--out`` of ``.`` or ``~``) first."""
    entries = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    for path in entries:
        if path.is_dir() and not path.is_symlink():
            yield from _sorted_files(path)
        elif path.is_file():
            yield path


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
            The outputs of auralens jobs below ``root`` (see :func:`auralens_outputs`) are
            always left out.

    Returns:
        One :class:`Clip` per file: ``id`` = path relative to ``root`` without suffix
        (POSIX separators; see :func:`file_ids`), ``labels`` = ``[parent folder name]`` for files in a
        subfolder, ``[]`` for files directly in ``root``. When every clip sits directly in
        ``root`` (no class subfolders), one warning says that every clip is unlabelled.

    Raises:
        DatasetError: ``root`` is missing, not a directory, or holds no audio.
    """
    root = Path(root)
    if not root.exists():
        raise DatasetError(f"{root}: dataset directory not found")
    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory")
    paths = audio_files(root, (*exclude, *auralens_outputs(root)))
    clips = [Clip(id=cid, path=path, labels=[path.parent.name] if path.parent != root else [])
             for cid, path in zip(file_ids(root, paths), paths, strict=True)]
    if not clips:
        raise DatasetError(
            f"{root}: no audio files found (looked for {', '.join(sorted(AUDIO_EXTENSIONS))})"
        )
    if all(not c.labels for c in clips):
        log.warning("%s: every audio file sits directly in the folder (no class subfolders), so "
                    "every clip is unlabelled ('sound'); put each class in its own subfolder to "
                    "label them", root)
    return clips
