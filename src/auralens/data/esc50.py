"""ESC-50 layout: ``root/meta/esc50.csv`` + ``root/audio/*``, and train/val/test split files.

The same loader reads ESC-50 (folds 1–5), ESC-10 subsets (any folds present) and the
procedural library written by :func:`auralens.data.synth.synthesize`.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import zlib
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from auralens.data import DatasetError
from auralens.io import NotTextError, read_user_text, write_text
from auralens.types import Clip

log = logging.getLogger(__name__)

#: Columns every ESC-50 metadata file has.
ESC50_COLUMNS = ("filename", "fold", "target", "category", "esc10", "src_file", "take")
#: Split names in the order they are written.
SPLITS = ("train", "val", "test")


def _int_field(csv_path: Path, line: int, row: dict[str, str], key: str) -> int:
    value = (row.get(key) or "").strip()
    try:
        return int(value)
    except ValueError:
        raise DatasetError(
            f"{csv_path}: line {line}: column {key!r} must be an integer, got {value!r}"
        ) from None


def _check_target_category(csv_path: Path, line: int, target: int, category: str,
                           by_target: dict[int, tuple[int, str]],
                           by_category: dict[str, tuple[int, int]]) -> None:
    """Refuse a row whose target already names another category, or whose category already has
    another target: the classes would differ by which column a reader trusts."""
    first, other = by_target.setdefault(target, (line, category))
    if other != category:
        raise DatasetError(f"{csv_path}: lines {first} and {line} give target {target} two categories "
                           f"({other!r} and {category!r}); use one category per target")
    first, other_target = by_category.setdefault(category, (line, target))
    if other_target != target:
        raise DatasetError(f"{csv_path}: lines {first} and {line} give category {category!r} two targets "
                           f"({other_target} and {target}); use one target per category")


def load_esc50(root: Path, folds: Sequence[int] | None = None) -> list[Clip]:
    """Read an ESC-50-layout dataset.

    Args:
        root: directory holding ``meta/esc50.csv`` and ``audio/``.
        folds: keep only these folds (None: all folds present).

    Returns:
        One :class:`Clip` per csv row whose audio file exists, in csv order:
        ``id`` = file stem, ``labels`` = ``[category]``, ``fold``, ``target``,
        ``meta`` = ``{"esc10", "src_file", "take"}``. A row repeated word for word is read
        once (with a warning).

    Raises:
        DatasetError: the csv is missing, empty, lacks a column or has a non-integer
            fold/target; two rows that differ list one file (or files with one stem, the
            clip id); rows giving one target two categories or one category two targets;
            or, with ``folds`` None, no listed audio file exists (one line naming
            the file).
    """
    root = Path(root)
    csv_path = root / "meta" / "esc50.csv"
    if not csv_path.is_file():
        raise DatasetError(f"{csv_path}: ESC-50 metadata file not found")
    wanted = None if folds is None else {int(f) for f in folds}
    try:
        text = read_user_text(csv_path)
    except NotTextError as exc:
        raise DatasetError(str(exc)) from None
    except OSError as exc:
        raise DatasetError(f"{csv_path}: cannot read ({exc})") from None
    reader = csv.DictReader(text.splitlines())
    header = reader.fieldnames or []
    missing = [c for c in ("filename", "fold", "target", "category") if c not in header]
    if missing:
        raise DatasetError(f"{csv_path}: malformed ESC-50 csv, missing column(s) {', '.join(missing)}")
    clips: list[Clip] = []
    n_missing = n_rows = 0
    # clip id → (line, filename, row) of its first row: a repeated clip would otherwise land
    # in two splits (train and val) or be counted twice
    seen: dict[str, tuple[int, str, dict[str, str]]] = {}
    by_target: dict[int, tuple[int, str]] = {}  # target → (first line, its category)
    by_category: dict[str, tuple[int, int]] = {}  # category → (first line, its target)
    for row in reader:
        line = reader.line_num  # the physical line, right after blank lines too
        filename = (row.get("filename") or "").strip()
        if not filename:
            raise DatasetError(f"{csv_path}: line {line}: empty filename")
        fold = _int_field(csv_path, line, row, "fold")
        target = _int_field(csv_path, line, row, "target")
        fields = {str(k): v.strip() if isinstance(v, str) else repr(v) for k, v in row.items()}
        clip_id = Path(filename).stem
        if clip_id in seen:
            first, first_name, first_fields = seen[clip_id]
            if first_name == filename and first_fields == fields:
                log.warning("%s: lines %d and %d list %s identically; using line %d",
                            csv_path, first, line, filename, first)
                continue
            what = (f"list {filename} with different values" if first_name == filename
                    else f"list {first_name} and {filename}, one clip id {clip_id!r}")
            raise DatasetError(f"{csv_path}: lines {first} and {line} {what}; keep one row per clip")
        seen[clip_id] = (line, filename, fields)
        category = (row.get("category") or "").strip()
        _check_target_category(csv_path, line, target, category, by_target, by_category)
        n_rows += 1
        if wanted is not None and fold not in wanted:
            continue
        path = root / "audio" / filename
        if not path.is_file():
            n_missing += 1
            log.warning("%s: listed in %s but missing; skipped", path, csv_path.name)
            continue
        clips.append(Clip(
            id=Path(filename).stem,
            path=path,
            labels=[(row.get("category") or "").strip()],
            fold=fold,
            target=target,
            duration=None,
            meta={k: (row.get(k) or "").strip() for k in ("esc10", "src_file", "take") if k in row},
        ))
    if n_missing:
        log.warning("%s: %d listed audio file(s) missing", root, n_missing)
    if not clips and folds is None:  # callers asking for some folds name them in their own error
        if not n_rows:
            raise DatasetError(f"{csv_path}: lists no clips (only a header)")
        raise DatasetError(f"{csv_path}: none of the {n_rows} listed audio files exists in "
                           f"{root / 'audio'}")
    return clips


def _label_seed(seed: int, label: str) -> np.random.Generator:
    # crc32 is stable across processes (unlike hash()), so splits are reproducible.
    return np.random.default_rng([seed, zlib.crc32(label.encode("utf-8"))])


def _apportion(sizes: Sequence[int], target: int, seed: int) -> list[int]:
    """Per-stratum counts proportional to ``sizes`` that sum to ``target`` (largest remainder).

    Rounding each small class on its own can leave a split empty (3 clips × 10% → 0 per
    class); apportioning the total keeps the overall 80/10/10 while staying stratified.
    """
    total = sum(sizes)
    target = max(0, min(target, total))
    exact = [n * target / total if total else 0.0 for n in sizes]
    counts = [int(x) for x in exact]
    tie = np.random.default_rng(seed).random(len(sizes))  # seeded tie-break between classes
    order = sorted(range(len(sizes)), key=lambda i: (-(exact[i] - counts[i]), tie[i]))
    for i in order:
        if sum(counts) >= target:
            break
        if counts[i] < sizes[i]:
            counts[i] += 1
    return counts


def _half_up(x: float) -> int:
    return int(np.floor(x + 0.5))


def make_splits(
    clips: Sequence[Clip], seed: int = 42, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
) -> dict[str, list[Clip]]:
    """Deterministic train/val/test split, stratified by label.

    Each label's clips (sorted by id, so input order does not matter) are shuffled with a
    generator seeded by ``(seed, label)`` and cut by ``ratios``; val and test get
    clips apportioned so that the totals are ``N * ratio`` rounded half up (largest remainder
    over labels) and train the rest.

    Args:
        clips: clips to split (unlabelled clips form their own stratum).
        seed: split seed.
        ratios: train/val/test fractions (normalised to sum 1).

    Returns:
        ``{"train": [...], "val": [...], "test": [...]}`` of copies with ``split`` set,
        each list sorted by clip id.
    """
    if len(ratios) != 3 or not all(math.isfinite(r) and r >= 0 for r in ratios) or sum(ratios) <= 0:
        raise DatasetError(f"ratios must be three non-negative numbers, got {ratios}")
    total = float(sum(ratios))
    r_val, r_test = ratios[1] / total, ratios[2] / total
    groups: dict[str, list[Clip]] = defaultdict(list)
    for clip in clips:
        groups[clip.label or ""].append(clip)
    out: dict[str, list[Clip]] = {name: [] for name in SPLITS}
    labels = sorted(groups)
    sizes = [len(groups[label]) for label in labels]
    n_total = sum(sizes)
    quota_val = _apportion(sizes, _half_up(n_total * r_val), seed)
    rest = [n - v for n, v in zip(sizes, quota_val, strict=True)]
    quota_test = _apportion(rest, _half_up(n_total * r_test), seed + 1)
    for label, n_val, n_test in zip(labels, quota_val, quota_test, strict=True):
        members = sorted(groups[label], key=lambda c: c.id)
        order = _label_seed(seed, label).permutation(len(members))
        cuts = {"val": order[:n_val], "test": order[n_val:n_val + n_test],
                "train": order[n_val + n_test:]}
        for name, idx in cuts.items():
            out[name].extend(dataclasses.replace(members[i], split=name) for i in idx)
    for name in out:
        out[name].sort(key=lambda c: c.id)
    return out


def _entry(clip: Clip) -> str:
    return clip.path.name if clip.id == clip.path.stem else clip.id


def write_splits(splits: dict[str, list[Clip]], out_dir: Path) -> None:
    """Write ``train.txt``, ``val.txt``, ``test.txt`` (one entry per line) atomically.

    An entry is the audio filename (ESC-50 style) when the clip id is the file stem, else
    the clip id (e.g. ``dog/bark1`` for folder datasets, where filenames may repeat).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, members in splits.items():
        write_text(out_dir / f"{name}.txt", "".join(f"{_entry(c)}\n" for c in members))


def read_splits(out_dir: Path, clips: Sequence[Clip]) -> dict[str, list[Clip]]:
    """Read split files written by :func:`write_splits` and match them to ``clips``.

    Lines may be clip ids, filenames or paths (matched by file stem). Lines that match no
    clip are skipped with a warning.

    Raises:
        DatasetError: none of train/val/test.txt exists in ``out_dir``.
    """
    out_dir = Path(out_dir)
    files = {name: out_dir / f"{name}.txt" for name in SPLITS}
    if not any(p.is_file() for p in files.values()):
        raise DatasetError(f"{out_dir}: no split files (train.txt, val.txt, test.txt)")
    by_key: dict[str, Clip] = {}
    for clip in clips:
        by_key[clip.id] = clip
        by_key.setdefault(clip.path.stem, clip)
    out: dict[str, list[Clip]] = {}
    for name, path in files.items():
        if not path.is_file():
            continue
        members: list[Clip] = []
        unknown = 0
        for raw in read_user_text(path).splitlines():
            entry = raw.strip()
            if not entry or entry.startswith("#"):
                continue
            clip = by_key.get(entry) or by_key.get(Path(entry).stem)
            if clip is None:
                unknown += 1
                continue
            members.append(dataclasses.replace(clip, split=name))
        if unknown:
            log.warning("%s: %d entries match no clip; skipped", path, unknown)
        out[name] = members
    return out
