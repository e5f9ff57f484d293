"""Listener ratings of sonifications: a 1–5 *visual* mark and a 1–5 *audio* mark per item.

Plain functions, shared by ``auralens sonify rate`` and the web UI:

* :func:`save_rating` appends one rating to a CSV atomically (file lock + rewrite through a
  temporary file + rename, so concurrent raters never interleave or truncate rows); the lock
  file (``ratings.csv.lock``) is removed again after each rating;
* :func:`load_ratings` reads one or more CSVs;
* :func:`aggregate_ratings` gives mean, sample standard deviation and n per version (the
  std of a single rating is undefined: ``None``, shown as ``± –`` / an empty CSV cell);
* :func:`ratings_markdown` / :func:`ratings_csv` format the aggregate;
* :func:`render_id` names the renders of a run folder, for the ``render`` column.

CSV columns: ``timestamp, rater, run, version, clip, visual, audio, comment, render``. A
*version* is what is compared (``run/post``, or ``run/ceiling`` for the codec ceiling). The
*render* names the audio that was rated: the first :data:`RENDER_ID_DIGITS` hex digits of the
SHA-256 of the checkpoint that ``sonify render`` made it with (its ``renders/run.json``), so
it changes exactly when the run is rendered from another checkpoint (trained again) and stays
when it is rendered again from the same one. It is empty for renders that record no checkpoint
and in files written before the column existed (those still load).

Aggregating, ratings of different renders of one (run, version) are never pooled: only the
*latest rated* render of each counts (the render of its latest rating, by ``timestamp``), as
a comparison of versions means the audio they have now; the ratings left out are logged
(:func:`latest_renders`). Grouping by ``render`` keeps every render, each in its own row.
Ratings with an empty render are always kept (they cannot be told apart). Then the latest
rating of a rater for one (run, version, clip) — and render, when grouping by it —, by its
``timestamp``, replaces earlier ones (``latest_only``); equal timestamps go by order (a later
file or row wins), and a rating with an empty timestamp counts as older than any dated one.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import os
import time
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, fields
from datetime import datetime
from pathlib import Path
from typing import Any

from auralens.checks import as_whole
from auralens.errors import AuralensError
from auralens.evaluate.plots import md_cell
from auralens.io import atomic_path, open_user_text, read_run_record

log = logging.getLogger(__name__)

MARKS = (1, 2, 3, 4, 5)
#: Longest stored comment, in characters.
MAX_COMMENT = 500
#: First characters that make a spreadsheet read a CSV cell as a formula (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@")
#: Hex digits of the checkpoint SHA-256 that name a render (short enough for a table column,
#: long enough never to confuse two checkpoints of one run).
RENDER_ID_DIGITS = 12


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
    render: str = ""


COLUMNS = [f.name for f in fields(Rating)]
#: Columns :func:`aggregate_ratings` can group by.
GROUP_COLUMNS = ("version", "run", "rater", "clip", "render")


def checkpoint_render_id(checkpoint_sha256: Any) -> str:
    """The render id of renders made with the checkpoint of this SHA-256 ("" for none)."""
    if not isinstance(checkpoint_sha256, str):
        return ""
    return safe_cell(checkpoint_sha256)[:RENDER_ID_DIGITS]


def render_id(renders: str | Path) -> str:
    """The render id of the audio in a ``RUN/renders`` folder: from the checkpoint SHA-256 its
    ``run.json`` records ("" when it records none, e.g. renders of an older version).

    Every writer of ratings names the render it rates through this function.
    """
    record = read_run_record(Path(renders))
    config = record.get("config") if isinstance(record, dict) else None
    return checkpoint_render_id(config.get("checkpoint_sha256") if isinstance(config, dict) else None)


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
                comment: str = "", timestamp: str | None = None, render: str | None = "") -> Rating:
    """Validate and build a :class:`Rating`.

    The rater, the comment and the render go through :func:`safe_cell` (one line, never read
    as a spreadsheet formula), whichever way the rating arrives: the web UI, the report's
    rating server or a CSV being read back.

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
                  _mark(audio, "audio"), safe_cell(comment)[:MAX_COMMENT], safe_cell(render))


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
    file keeps its column order; one written before the ``render`` column existed gets it
    (its rows an empty render); one whose header does not hold exactly the rating columns
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
            if sorted(header) not in (sorted(COLUMNS), sorted(c for c in COLUMNS if c != "render")):
                raise RatingError(f"{path}: not a ratings CSV (its header is {','.join(header)!r}; "
                                  f"expected the columns {','.join(COLUMNS)}); choose another file")
            if old.count('"') % 2:  # CSV doubles quotes inside fields: an odd count is an open one
                raise RatingError(f"{path}: ends inside a quoted field (an unfinished row would "
                                  "swallow the new rating); mend the file or choose another")
            if "render" not in header:
                old, header = _add_render_column(path, old, header)
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


def _add_render_column(path: Path, old: str, header: list[str]) -> tuple[str, list[str]]:
    """The text of a ratings file from before the ``render`` column, rewritten with it (its
    rows rate renders nobody recorded: an empty render), and the new header.

    Raises:
        RatingError: a row with more cells than the header (it cannot be rewritten safely).
    """
    bom = "\ufeff" if old.startswith("\ufeff") else ""
    reader = csv.DictReader(io.StringIO(old.lstrip("\ufeff")))
    header = [*header, "render"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=header, restval="", lineterminator="\n")
    writer.writeheader()
    for row in reader:
        if None in row:  # DictReader files surplus cells under None
            raise RatingError(f"{path}:{reader.line_num}: more cells than the header's "
                              f"{len(header) - 1}; mend the file or choose another")
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return bom + buf.getvalue(), header


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
    A file without the ``render`` column (written before it existed) loads with empty renders.

    Raises:
        RatingError: a missing file, missing columns or an invalid row (named by line),
            including a timestamp that is not an ISO date and time.
        NotTextError: a file that is not UTF-8 text (named).
    """
    if isinstance(paths, (str, Path)):
        paths = [paths]
    out: list[Rating] = []
    for p in paths:
        p = Path(p)
        if not p.exists():
            raise RatingError(f"{p}: ratings file not found")
        # a file saved from a spreadsheet starts with a byte-order mark (save_rating keeps it),
        # which open_user_text drops
        with open_user_text(p) as fh:
            reader = csv.DictReader(fh)
            missing = {"rater", "version", "clip", "visual", "audio"} - set(reader.fieldnames or [])
            if missing:
                raise RatingError(f"{p}: not a ratings CSV (missing columns {sorted(missing)})")
            for i, row in enumerate(reader, 2):
                try:
                    # a short row or a file without a column: None / missing, read as ""
                    rating = make_rating(**{k: row.get(k) or "" for k in COLUMNS})
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


def _latest_first(ratings: Sequence[Rating], key: Callable[[Rating], Hashable],
                  ) -> dict[Hashable, Rating]:
    """``key(rating)`` → the latest rating with that key, by timestamp; equal timestamps go by
    order (the later one wins), and an empty timestamp is older than any dated one."""
    latest: dict[Hashable, tuple[datetime, Rating]] = {}
    for r in ratings:
        k, when = key(r), _when(r.timestamp) or datetime.min
        if k not in latest or when >= latest[k][0]:
            latest[k] = (when, r)
    return {k: r for k, (_, r) in latest.items()}


def latest_renders(ratings: Sequence[Rating]) -> tuple[list[Rating], list[Rating]]:
    """The ratings of the latest rated render of each (run, version), and those left out.

    The latest rated render is the one of the latest rating of that (run, version) that names
    a render (see :func:`_latest_first`); ratings with an empty render are always kept, as
    they cannot be told apart. Order is kept.
    """
    current = {k: r.render for k, r in _latest_first([r for r in ratings if r.render],
                                                      lambda r: (r.run, r.version)).items()}
    kept: list[Rating] = []
    left: list[Rating] = []
    for r in ratings:
        (kept if not r.render or current[(r.run, r.version)] == r.render else left).append(r)
    return kept, left


def left_out_note(left: Sequence[Rating]) -> str:
    """One line naming the ratings of earlier renders that :func:`latest_renders` left out."""
    versions = sorted({r.version for r in left})
    return (f"left out {len(left)} rating(s) of earlier renders of {', '.join(versions)}: only "
            "the latest rated render of each version counts; group by render to see each apart")


def aggregate_ratings(ratings: Sequence[Rating], *, by: Sequence[str] = ("run", "version"),
                      latest_only: bool = True) -> list[dict[str, Any]]:
    """Mean ± sample std and n of the visual and audio marks per group.

    Ratings of one (run, version) that rate different renders are never pooled: unless
    ``by`` holds ``render``, only the latest rated render of each counts
    (:func:`latest_renders`) and a warning names the ratings left out.

    Args:
        ratings: loaded ratings.
        by: grouping columns from :data:`GROUP_COLUMNS` (``("version",)``,
            ``("run", "version")``, ``("rater",)``, ``("version", "render")`` …).
        latest_only: keep only a rater's latest rating of each (run, version, clip) — and
            render, when grouping by it —, by timestamp; equal timestamps go by order (the
            later one in ``ratings`` wins), and an empty timestamp is older than any dated one.

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
    apart = "render" in by
    if not apart:  # marks of other audio must not be averaged in
        ratings, left = latest_renders(ratings)
        if left:
            log.warning("%s", left_out_note(left))
    if latest_only:
        # Arguments may come in any order (new.csv old.csv), so the recorded time decides.
        ratings = list(_latest_first(ratings, lambda r: (r.rater, r.run, r.version, r.clip,
                                                         r.render if apart else "")).values())
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
