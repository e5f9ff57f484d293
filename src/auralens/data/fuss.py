"""Read FUSS-layout separation data: the official release and what ``build_mixtures`` writes.

Layout (both)::

    root/{split}/example00000.wav                              mixture
    root/{split}/example00000_sources/background0_sound.wav    sources: background first,
    root/{split}/example00000_sources/foreground0_sound.wav    then foregrounds by index
    root/{split}/example00000.txt                              "onset\\toffset\\tlabel" lines
    root/{split}_example_list.txt                              tab-separated relative paths

``build_mixtures`` also writes ``root/manifest.jsonl`` (paths relative to ``root``), which is
preferred when present because it carries the true labels, gains and room parameters.
The official release labels every source ``sound``; its ``.txt`` files (scaper annotations,
plus a list of impulse responses in the reverberated version) give onsets and offsets.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from auralens.data import DatasetError
from auralens.io import read_user_text
from auralens.types import SceneRecord, Source

log = logging.getLogger(__name__)

#: Split folders of the official release, in the order they are read.
FUSS_SPLITS = ("train", "validation", "eval")
_SOURCE_RE = re.compile(r"^(background|foreground)(\d+)_(.+)\.wav$")
_EXAMPLE_RE = re.compile(r"^example\d+\.wav$")


def _resolve(root: Path, path: str | Path) -> Path:
    path = Path(path)
    return path if path.is_absolute() else root / path


def _from_manifest(root: Path, manifest: Path, split: str | None) -> list[SceneRecord]:
    # the strict reader other manifests get: a bad line or a bad or repeated id names its line
    from auralens.types import load_scenes

    records = []
    for record in load_scenes(manifest, unique=True):
        if split is not None and record.split != split:
            continue
        record.mixture = _resolve(root, record.mixture)
        for s in record.sources:
            s.path = _resolve(root, s.path)
        records.append(record)
    return records


def _source_sort_key(path: Path) -> tuple[int, int, str]:
    m = _SOURCE_RE.match(path.name)
    if not m:
        return (2, 0, path.name)
    return (0 if m.group(1) == "background" else 1, int(m.group(2)), path.name)


def _annotations(txt: Path) -> list[tuple[float, float, str]]:
    """``(onset, offset, label)`` lines of a scaper-style annotation file (other lines ignored)."""
    out = []
    if not txt.is_file():
        return out
    for line in txt.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split("\t")
        if len(parts) != 3:
            continue
        try:
            out.append((float(parts[0]), float(parts[1]), parts[2].strip()))
        except ValueError:
            continue
    return out


def _record(root: Path, split: str, mixture: Path, sources: list[Path]) -> SceneRecord:
    import soundfile as sf

    try:
        info = sf.info(str(mixture))
        sample_rate, duration = int(info.samplerate), info.frames / info.samplerate
    except Exception:  # noqa: BLE001 - report unreadable mixtures later, when they are loaded
        sample_rate, duration = 16000, 10.0
    sources = sorted(sources, key=_source_sort_key)
    notes = _annotations(mixture.with_suffix(".txt"))
    if len(notes) != len(sources):
        notes = []
    out = []
    for k, path in enumerate(sources):
        m = _SOURCE_RE.match(path.name)
        role = m.group(1) if m else "foreground"
        label = notes[k][2] if notes else (m.group(3) if m else path.stem)
        onset, offset = (notes[k][0], notes[k][1]) if notes else (0.0, None)
        if role == "background" and not notes:
            offset = duration
        out.append(Source(path=path, label=label, role=role, onset=onset, offset=offset))
    try:
        rid = mixture.relative_to(root).with_suffix("").as_posix()
    except ValueError:
        rid = f"{split}/{mixture.stem}"
    return SceneRecord(id=rid, mixture=mixture, sources=out, sample_rate=sample_rate,
                       duration=duration, split=split)


def _from_list(root: Path, list_file: Path, split: str) -> list[SceneRecord]:
    records = []
    for line in read_user_text(list_file).splitlines():
        parts = [p for p in line.strip().split("\t") if p]
        if not parts:
            continue
        records.append(_record(root, split, root / parts[0], [root / p for p in parts[1:]]))
    return records


def _from_folder(root: Path, folder: Path, split: str) -> list[SceneRecord]:
    records = []
    for mixture in sorted(p for p in folder.iterdir() if _EXAMPLE_RE.match(p.name)):
        src_dir = mixture.with_name(mixture.stem + "_sources")
        sources = sorted(src_dir.glob("*.wav")) if src_dir.is_dir() else []
        records.append(_record(root, split, mixture, [s for s in sources if not s.name.startswith(".")]))
    return records


def stray_audio(folder: Path) -> list[Path]:
    """Audio files directly in ``folder`` that are not FUSS mixtures (``exampleNNNNN.wav``).

    A FUSS split folder holds nothing else at its top, so such files mean the folder is a
    user's folder of recordings that merely contains ``example*.wav`` names.
    """
    from auralens.data.folder import AUDIO_EXTENSIONS

    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS
                  and not _EXAMPLE_RE.match(p.name))


def load_fuss(root: Path, split: str | None = None) -> list[SceneRecord]:
    """Read FUSS-layout examples.

    Args:
        root: the release root (holding ``train/``, ``validation/``, ``eval/`` …), one split
            folder itself, or a ``build_mixtures`` output directory.
        split: only this split (None: all found).

    Returns:
        Scene records with absolute (root-joined) paths; sources background first. An
        example without a ``_sources`` folder has no sources (mixtures alone can still be
        separated or imagined; a caller that scores against references must check).

    Raises:
        DatasetError: ``root`` is missing or holds no FUSS examples.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: FUSS directory not found")
    manifest = root / "manifest.jsonl"
    if manifest.is_file():
        records = _from_manifest(root, manifest, split)
        if records or split is not None:
            return records
    if any(_EXAMPLE_RE.match(p.name) for p in root.iterdir()):  # root is a split folder
        if split is not None and split != root.name:
            return []
        return _from_folder(root.parent, root, root.name)
    found = [d.name for d in sorted(root.iterdir()) if d.is_dir() and any(d.glob("example*.wav"))]
    names = [s for s in FUSS_SPLITS if s in found] + [s for s in found if s not in FUSS_SPLITS]
    if split is not None:
        names = [split] if split in found else []
    records: list[SceneRecord] = []
    for name in names:
        list_file = root / f"{name}_example_list.txt"
        if list_file.is_file():
            records.extend(_from_list(root, list_file, name))
        else:
            records.extend(_from_folder(root, root / name, name))
    if not records and split is None:
        raise DatasetError(f"{root}: no FUSS examples found (expected {'/'.join(FUSS_SPLITS)}/example*.wav)")
    return records
