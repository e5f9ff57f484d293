"""Small record types shared by every stage, with JSONL round trips."""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

from auralens.io import read_jsonl, read_jsonl_numbered, write_jsonl

T = TypeVar("T")


def _from_dict(cls: type[T], data: dict[str, Any]) -> T:
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class Clip:
    """One labelled audio file in a dataset.

    Attributes:
        id: unique clip id within the dataset (file stem for ESC-50).
        path: audio file.
        labels: class names (ESC-50: one; FUSS mixtures: one per source).
        fold: cross-validation fold (ESC-50 1–5) or None.
        split: "train" / "val" / "test" / "eval" … or None.
        duration: seconds, when known without decoding.
        target: integer class id when the dataset has one.
        meta: anything else the dataset provides.
    """

    id: str
    path: Path
    labels: list[str] = field(default_factory=list)
    fold: int | None = None
    split: str | None = None
    duration: float | None = None
    target: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    @property
    def label(self) -> str | None:
        return self.labels[0] if self.labels else None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Clip:
        return _from_dict(cls, data)


@dataclass
class Source:
    """One (reverberated) source inside a mixture.

    Attributes:
        path: the source's wav file.
        label: its class name.
        role: "background" or "foreground".
        onset: start in seconds inside the mixture.
        offset: end in seconds inside the mixture.
        gain_db: gain applied before mixing.
        origin: id or path of the dry clip it came from.
    """

    path: Path
    label: str
    role: str = "foreground"
    onset: float = 0.0
    offset: float | None = None
    gain_db: float = 0.0
    origin: str = ""

    def __post_init__(self) -> None:
        self.path = Path(self.path)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["path"] = str(self.path)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Source:
        return _from_dict(cls, data)


@dataclass
class SceneRecord:
    """A mixture with its sources: one line of a FUSS-style manifest.

    Attributes:
        id: mixture id.
        mixture: the mixture wav.
        sources: its sources (they sum to the mixture).
        sample_rate: Hz.
        duration: seconds.
        split: "train" / "validation" / "eval" …
        meta: room parameters, seed and so on.
    """

    id: str
    mixture: Path
    sources: list[Source] = field(default_factory=list)
    sample_rate: int = 16000
    duration: float = 10.0
    split: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.mixture = Path(self.mixture)
        self.sources = [s if isinstance(s, Source) else Source.from_dict(s) for s in self.sources]

    @property
    def n_sources(self) -> int:
        return len(self.sources)

    @property
    def labels(self) -> list[str]:
        return [s.label for s in self.sources]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "mixture": str(self.mixture),
            "sources": [s.to_dict() for s in self.sources],
            "n_sources": self.n_sources,
            "labels": self.labels,
            "sample_rate": self.sample_rate,
            "duration": self.duration,
            "split": self.split,
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SceneRecord:
        return _from_dict(cls, data)


def save_records(path: str | Path, records: list[Any]) -> Path:
    """Write Clip / SceneRecord objects to JSONL (atomic)."""
    return write_jsonl(path, [r.to_dict() for r in records])


def load_clips(path: str | Path) -> list[Clip]:
    return [Clip.from_dict(d) for d in read_jsonl(path, strict=True)]


_ID_PARTS = re.compile(r"[/\\]")


def id_text(value: Any) -> str:
    """``value`` as an id's text: numbers become text (sorting needs one type).

    Raises:
        ValueError: a list, mapping, bool, null or non-finite number, or an empty id.
    """
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError(f"id {value!r} is not text or a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"id {value!r} is not a finite number")
    rid = str(value)
    if not rid.strip():
        raise ValueError("id is empty")
    return rid


def record_id(value: Any) -> str:
    """``value`` as a record id: text that names a folder inside an output folder.

    Batch jobs write ``<out>/items/<id>/``; ``/`` is kept (``train/example00000``) but an id
    must stay below that folder. Numbers become text (a path needs text, sorting needs one type).

    Raises:
        ValueError: what :func:`id_text` refuses; an absolute id or one with an empty, ``.`` or
            ``..`` part (the message says which).
    """
    rid = id_text(value)
    if "\0" in rid or any(part in ("", ".", "..") for part in _ID_PARTS.split(rid)):
        raise ValueError(f"id {rid!r} is not a relative folder name (no leading /, no empty, "
                         "'.' or '..' parts)")
    return rid


def check_record_ids(records: list[Any], where: str) -> None:
    """Make every record's ``id`` a :func:`record_id` and refuse repeated ids (their items
    would overwrite each other). ``where`` names the input in messages.

    Raises:
        ValueError: ``f"{where}: …"`` naming the id.
    """
    seen: set[str] = set()
    for rec in records:
        try:
            rec.id = record_id(rec.id)
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
        if rec.id in seen:
            raise ValueError(f"{where}: id {rec.id!r} is repeated (ids must be unique)")
        seen.add(rec.id)


def load_scenes(path: str | Path, *, unique: bool = False) -> list[SceneRecord]:
    """Read a scene manifest (one :class:`SceneRecord` per line, as ``data mix`` writes).

    Ids are checked with :func:`record_id`; with ``unique`` (jobs that write one folder per
    id) a repeated id is refused too.

    Raises:
        auralens.data.DatasetError: a line is not JSON or not a scene record, or its id is
            bad or repeated (one line naming the file and the line).
    """
    from auralens.data import DatasetError
    from auralens.io import JsonLinesError

    try:
        lines = read_jsonl_numbered(path, strict=True)
    except JsonLinesError as exc:
        raise DatasetError(str(exc)) from None
    records = []
    first: dict[str, int] = {}
    for number, data in lines:
        try:
            if not isinstance(data, dict) or not isinstance(data.get("sources", []), list):
                raise TypeError("not a mapping with a list of sources")
            rec = SceneRecord.from_dict(data)
            if rec.id is None:
                raise TypeError("no id")
        except (TypeError, KeyError, ValueError, AttributeError) as exc:
            raise DatasetError(f"{path} line {number}: not a scene manifest record (needs id, "
                               "mixture and sources with path and label)") from exc
        try:
            rec.id = record_id(rec.id)
        except ValueError as exc:
            raise DatasetError(f"{path} line {number}: {exc}") from None
        if unique and rec.id in first:  # a second item would overwrite the first one's outputs
            raise DatasetError(f"{path} line {number}: id {rec.id!r} repeats line "
                               f"{first[rec.id]} (ids must be unique)")
        first.setdefault(rec.id, number)
        records.append(rec)
    return records
