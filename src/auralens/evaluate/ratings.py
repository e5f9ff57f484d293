"""Listener ratings of sonifications: a 1–5 *visual* mark and a 1–5 *audio* mark per item.

Plain functions, shared by ``auralens sonify rate`` and the web UI:

* :func:`save_rating` appends one rating to a CSV atomically (file lock + rewrite through a
  temporary file + rename, so concurrent raters never interleave or truncate rows); the lock
  file (``ratings.csv.lock``) is removed again after each rating;
* :func:`load_ratings` reads one or more CSVs;
* :func:`aggregate_ratings` gives mean, sample standard deviation and n per version (the
  std of a single rating is undefined: ``None``, shown as ``± –`` / an empty CSV cell);
* :func:`ratings_markdown` / :func:`ratings_csv` format the aggregate.

CSV columns: ``timestamp, rater, run, version, clip, visual, audio, comment``. A *version* is
what is compared (``run/post``, or ``run/ceiling`` for the codec ceiling). The latest rating of
a rater for one (run, version, clip), by its ``timestamp``, replaces earlier ones when
aggregating (``latest_only``); equal timestamps go by order (a later file or row wins), and a
rating with an empty timestamp counts as older than any dated one.
"""

from __future__ import annotations

import contextlib
import csv
import io
import math
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from auralens.checks import as_whole
from auralens.errors import AuralensError
from auralens.evaluate.plots import md_cell
from auralens.io import atomic_path

MARKS = (1, 2, 3, 4, 5)
#: Longest stored comment, in characters.
MAX_COMMENT = 500
#: First characters that make a spreadsheet read a CSV cell as a formula (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@")


class RatingError(AuralensError, ValueError):
    """An invalid rating or ratings file."""


@dataclass
class Rating:
    """One listener's marks for one item."""

    timestamp: str
    rater: str
    run: str
    version: str
    clip: str
    visual: int
    audio: int
    comment: str = ""


COLUMNS = [f.name for f in fields(Rating)]
#: Columns :func:`aggregate_ratings` can group by.
GROUP_COLUMNS = ("version", "run", "rater", "clip")


def _mark(value: Any, what: str) -> int:
    """A 1–5 mark from an int, a whole float or CSV text; a bool (JSON ``true``) is refused,
    not stored as 1."""
    mark: int | None = None
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            mark = int(value)
    else:
        mark = as_whole(value)
    if mark not in MARKS:
        raise RatingError(f"{what} mark must be an integer 1–5, got {value!r}")
    return mark


def make_rating(*, rater: str, run: str, version: str, clip: str, visual: Any, audio: Any,
                comment: str = "", timestamp: str | None = None) -> Rating:
    """Validate and build a :class:`Rating`.

    The rater and the comment go through :func:`safe_cell` (one line, never read as a
    spreadsheet formula), whichever way the rating arrives: the web UI, the report's rating
    server or a CSV being read back.

    Raises:
        RatingError: empty rater/version/clip or marks outside 1–5.
    """
    rater = safe_cell(rater)
    if not rater:
        raise RatingError("a rater name is required")
    if not str(version or "").strip() or not str(clip or "").strip():
        raise RatingError("version and clip are required")
    return Rating(timestamp or time.strftime("%Y-%m-%dT%H:%M:%S"), rater,
                  str(run or ""), str(version), str(clip), _mark(visual, "visual"),
                  _mark(audio, "audio"), safe_cell(comment)[:MAX_COMMENT])


def safe_cell(text: Any) -> str:
    """Free text (a rater name, a comment) made safe for one CSV cell.

    Control characters (line breaks, tabs, NUL, escape sequences) become spaces and the
    ends are trimmed, so the value stays on one line; a value starting with one of
    :data:`FORMULA_PREFIXES` gets a leading ``'`` so that Excel and LibreOffice show it as
    text instead of evaluating it (CSV injection). Applying it twice changes nothing.
    """
    text = "".join(c if c.isprintable() else " " for c in str(text or "")).strip()
    if text.startswith(FORMULA_PREFIXES):
        text = "'" + text
    return text


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Exclusive advisory lock on ``path.lock`` (no-op where fcntl is unavailable); the lock
    file is removed when the lock is released, so none is left beside the ratings.

    Removing a lock file is safe only because every holder checks, once it has the lock, that
    the file it locked is still the one at ``path.lock``: a writer that waited on a file the
    previous holder removed finds it gone (or replaced) and locks the current file instead, so
    two writers never hold locks on different files at once.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # Windows: atomic rename still prevents torn files
        yield
        return
    lock = path.with_name(path.name + ".lock")
    while True:
        fh = open(lock, "a+")  # noqa: SIM115 - closed below, or on the next try
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            held = os.fstat(fh.fileno())
            try:
                current = os.stat(lock)
            except FileNotFoundError:  # removed by the holder we waited for
                current = None
        except BaseException:
            fh.close()
            raise
        if current is not None and (current.st_dev, current.st_ino) == (held.st_dev, held.st_ino):
            break
        fh.close()  # a file no longer at path.lock: its lock excludes nobody; try again
    try:
        yield
    finally:
        with contextlib.suppress(OSError):  # removed while still held: see above
            lock.unlink()
        fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        fh.close()


def save_rating(csv_path: str | Path, rating: Rating | None = None, **fields_: Any) -> Rating:
    """Append one rating to ``csv_path`` atomically.

    Call with a :class:`Rating` or with the keyword fields of :func:`make_rating`. An existing
    file keeps its column order; one whose header does not hold exactly the rating columns
    is refused (it is not a ratings file, and appending would corrupt it).

    Returns:
        the stored rating.

    Raises:
        RatingError: an invalid rating, or an existing file that is not a ratings CSV.
    """
    path = Path(csv_path)
    rating = rating or make_rating(**fields_)
    with _locked(path):
        try:
            old = path.read_text(encoding="utf-8") if path.exists() else ""
        except UnicodeDecodeError:
            raise RatingError(f"{path}: not a ratings CSV (not UTF-8 text); choose another file") from None
        except OSError as exc:
            raise RatingError(f"{path}: cannot read the ratings file ({exc.strerror or exc})") from None
        buf = io.StringIO()
        header = COLUMNS
        if old.strip():
            # Values go under the file's own header: its columns may be in another order.
            header = next(csv.reader(io.StringIO(old.lstrip("\ufeff"))), [])
            if sorted(header) != sorted(COLUMNS):
                raise RatingError(f"{path}: not a ratings CSV (its header is {','.join(header)!r}; "
                                  f"expected the columns {','.join(COLUMNS)}); choose another file")
            if old.count('"') % 2:  # CSV doubles quotes inside fields: an odd count is an open one
                raise RatingError(f"{path}: ends inside a quoted field (an unfinished row would "
                                  "swallow the new rating); mend the file or choose another")
        writer = csv.DictWriter(buf, fieldnames=header, lineterminator="\n")
        if not old.strip():
            writer.writeheader()
            old = ""
        elif not old.endswith("\n"):
            old += "\n"
        writer.writerow(asdict(rating))
        with atomic_path(path) as tmp:
            with open(tmp, "w", encoding="utf-8", newline="") as fh:
                fh.write(old + buf.getvalue())
                fh.flush()
                os.fsync(fh.fileno())
    return rating


def _when(timestamp: str) -> datetime | None:
    """A rating's time as naive local time (as :func:`make_rating` writes it); None for an
    empty or unreadable timestamp."""
    try:
        when = datetime.fromisoformat(timestamp.strip())
    except (TypeError, ValueError):
        return None
    if when.tzinfo is not None:  # written with an offset: compare with the local times
        when = when.astimezone().replace(tzinfo=None)
    return when


def load_ratings(paths: str | Path | Iterable[str | Path]) -> list[Rating]:
    """Read ratings from one or more CSVs, in argument and row order.

    A row keeps its file's timestamp; an empty one (or no ``timestamp`` column) stays empty.

    Raises:
        RatingError: a missing file, missing columns or an invalid row (named by line),
            including a timestamp that is not an ISO date and time.
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    out: list[Rating] = []
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise RatingError(f"{p}: ratings file not found")
        # utf-8-sig: a file saved from a spreadsheet starts with a byte-order mark, which
        # save_rating keeps
        with open(p, encoding="utf-8-sig", newline="") as fh:
            reader = csv.DictReader(fh)
            missing = {"rater", "version", "clip", "visual", "audio"} - set(reader.fieldnames or [])
            if missing:
                raise RatingError(f"{p}: not a ratings CSV (missing columns {sorted(missing)})")
            for i, row in enumerate(reader, 2):
                try:
                    rating = make_rating(**{k: row.get(k, "") for k in COLUMNS})
                except RatingError as exc:
                    raise RatingError(f"{p}:{i}: {exc}") from None
                # the recorded time decides which rating is the latest: never make one up
                rating.timestamp = (row.get("timestamp") or "").strip()
                if rating.timestamp and _when(rating.timestamp) is None:
                    raise RatingError(f"{p}:{i}: timestamp {rating.timestamp!r} is not a date and "
                                      "time (YYYY-MM-DDTHH:MM:SS)")
                out.append(rating)
    return out


def _mean_std(xs: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample std; the std of fewer than two values is undefined (None)."""
    n = len(xs)
    mean = sum(xs) / n
    std = math.sqrt(sum((x - mean) ** 2 for x in xs) / (n - 1)) if n > 1 else None
    return mean, std


def aggregate_ratings(ratings: Sequence[Rating], *, by: Sequence[str] = ("run", "version"),
                      latest_only: bool = True) -> list[dict[str, Any]]:
    """Mean ± sample std and n of the visual and audio marks per group.

    Args:
        ratings: loaded ratings.
        by: grouping columns from :data:`GROUP_COLUMNS` (``("version",)``,
            ``("run", "version")``, ``("rater",)`` …).
        latest_only: keep only a rater's latest rating of each (run, version, clip), by
            timestamp; equal timestamps go by order (the later one in ``ratings`` wins), and
            an empty timestamp is older than any dated one.

    Returns:
        rows ``{**group, "n", "visual_mean", "visual_std", "audio_mean", "audio_std"}``
        sorted by group; the std is None for a group of one rating.

    Raises:
        RatingError: a grouping column that is not in :data:`GROUP_COLUMNS`.
    """
    unknown = [b for b in by if b not in GROUP_COLUMNS]
    if unknown:
        raise RatingError(f"unknown grouping column {unknown[0]!r}; use one or more of "
                          f"{', '.join(GROUP_COLUMNS)}")
    if latest_only:
        # Arguments may come in any order (new.csv old.csv), so the recorded time decides.
        latest: dict[tuple[str, str, str, str], tuple[datetime, Rating]] = {}
        for r in ratings:
            key, when = (r.rater, r.run, r.version, r.clip), _when(r.timestamp) or datetime.min
            if key not in latest or when >= latest[key][0]:
                latest[key] = (when, r)
        ratings = [r for _, r in latest.values()]
    groups: dict[tuple[str, ...], list[Rating]] = {}
    for r in ratings:
        groups.setdefault(tuple(str(getattr(r, b)) for b in by), []).append(r)
    rows = []
    for key in sorted(groups):
        rs = groups[key]
        vm, vs = _mean_std([r.visual for r in rs])
        am, ast = _mean_std([r.audio for r in rs])
        rows.append({**dict(zip(by, key, strict=True)), "n": len(rs), "visual_mean": vm,
                     "visual_std": vs, "audio_mean": am, "audio_std": ast})
    return rows


def _mean_cell(mean: float, std: float | None) -> str:
    return f"{mean:.2f} ± " + ("–" if std is None else f"{std:.2f}")


def ratings_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown table: group columns, ``visual`` and ``audio`` as ``mean ± std``, n.

    A group of one rating has no spread: its cells read ``mean ± –``.
    """
    if not rows:
        return "_no ratings_\n"
    keys = [k for k in rows[0] if k not in {"n", "visual_mean", "visual_std", "audio_mean", "audio_std"}]
    lines = ["| " + " | ".join([*keys, "visual (1–5)", "audio (1–5)", "n"]) + " |",
             "|" + "---|" * (len(keys) + 3)]
    for r in rows:
        cells = [md_cell(r[k]) for k in keys]
        cells += [_mean_cell(r["visual_mean"], r["visual_std"]),
                  _mean_cell(r["audio_mean"], r["audio_std"]), str(r["n"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def ratings_csv(rows: Sequence[dict[str, Any]]) -> str:
    """CSV text of :func:`aggregate_ratings` rows (an undefined std is an empty cell)."""
    if not rows:
        return ""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: (f"{v:.4f}" if isinstance(v, float) else "" if v is None else v)
                         for k, v in r.items()})
    return buf.getvalue()
