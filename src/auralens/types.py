"""Small record types shared by every stage, with JSONL round trips."""

from __future__ import annotations

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
    return [Clip.from_dict(d) for d in read_jsonl(path)]


def load_scenes(path: str | Path) -> list[SceneRecord]:
    """Read a scene manifest (one :class:`SceneRecord` per line, as ``data mix`` writes).

    Raises:
        auralens.data.DatasetError: a line is not a scene record (one line naming the file
            and the line).
    """
    from auralens.data import DatasetError

    records = []
    for number, data in read_jsonl_numbered(path):
        try:
            if not isinstance(data, dict) or not isinstance(data.get("sources", []), list):
                raise TypeError("not a mapping with a list of sources")
            rec = SceneRecord.from_dict(data)
            if not isinstance(rec.id, (str, int)) or isinstance(rec.id, bool):
                raise TypeError("bad id")
        except (TypeError, KeyError, ValueError, AttributeError) as exc:
            raise DatasetError(f"{path} line {number}: not a scene manifest record (needs id, "
                               "mixture and sources with path and label)") from exc
        records.append(rec)
    if not records and Path(path).is_file() and Path(path).read_bytes().strip():
        # every line was malformed JSON (skipped with a warning): not a manifest at all
        raise DatasetError(f"{path}: no scene records (no line is valid JSON)")
    return records
