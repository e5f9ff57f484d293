"""Small I/O helpers: atomic writes, JSON/JSONL, run.json, per-item error logs."""

from __future__ import annotations

import codecs
import contextlib
import errno
import io
import json
import logging
import math
import os
import platform
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, is_dataclass
from glob import escape as glob_escape
from pathlib import Path
from typing import Any

from auralens.errors import AuralensError

log = logging.getLogger(__name__)


def _file_mode() -> int:
    """The mode ``open()`` would give a new file (0o666 less the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


#: mkstemp makes 0600 files; the renamed result gets the mode a plain write would give, so
#: reports, renders and checkpoints are as readable as any other file the user writes.
_FILE_MODE = _file_mode()


def check_out_dir(out: str | Path, error: type[Exception],
                  hint: str = " (--out names a folder)") -> None:
    """Refuse an output folder that exists as a file, or lies under one, before any work
    (``mkdir`` would only say 'File exists' or 'Not a directory', after the work):
    ``error(f"{out}: exists and is not a directory{hint}")``, or ``error(f"{out}: lies under
    {ancestor}, which is not a directory{hint}")``."""
    out = Path(out)
    for folder in (out, *out.parents):
        # the nearest existing path decides; a dangling link counts (mkdir fails on it too)
        if folder.exists() or folder.is_symlink():
            if folder.is_dir():
                return
            where = ("exists and is not a directory" if folder == out
                     else f"lies under {folder}, which is not a directory")
            raise error(f"{out}: {where}{hint}")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` on success.

    The temporary name keeps the suffix so libraries that infer formats from it work.
    On any exception the temporary file is removed and ``path`` is left untouched; an
    ``OSError`` about the temporary file is raised naming ``path``.
    """
    path = Path(path)
    if path.is_dir():  # name the user's path, not the temporary file the rename would fail on
        raise IsADirectoryError(errno.EISDIR, "is a directory; expected a file path", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    # The writer's pid in the name lets remove_stale_temps tell a killed writer's leftover
    # from a file being written right now. Stem and suffix are cut short: a final name near
    # the file-system's length limit must not fail for its longer temporary name.
    suffix = path.suffix if len(path.suffix) <= 16 else ""
    tmp: Path | None = None
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem[:40]}.{os.getpid()}.",
                                        suffix=f".tmp{suffix}", dir=path.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        yield tmp
        os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
        if (isinstance(exc, OSError) and exc.errno is not None
                and (tmp is None or exc.filename in (str(tmp), tmp))):
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise


_TEMP_NAME = re.compile(r"^\..*\.(\d+)\.[A-Za-z0-9_]{8}\.tmp[^/]*$")


def is_temp_name(name: str) -> bool:
    """True for the name of an :func:`atomic_path` temporary file (finished or not)."""
    return _TEMP_NAME.match(name) is not None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OverflowError, OSError):
        return True  # exists but not ours, or not checkable: keep its file
    return True


def _stale(age: float, pid: str | None, min_age: float, max_age: float) -> bool:
    """Whether an interrupted write's leftover ``age`` seconds old, of the writer ``pid`` (None:
    not known), is past use: its writer is gone and it is older than ``min_age`` seconds
    (another machine writing to a shared disk has another pid space), or it is older than
    ``max_age`` whatever its pid says."""
    return age > max_age or (pid is not None and age > min_age and not _pid_alive(int(pid)))


def remove_stale_temps(directory: str | Path, *, min_age: float = 60.0,
                       max_age: float = 86400.0, recursive: bool = True) -> list[Path]:
    """Delete what :func:`atomic_path` left behind when its process was killed mid-write.

    A temporary file (``.<stem>.<pid>.<random>.tmp<suffix>``) is removed when its writer is
    no longer running and it is older than ``min_age`` seconds (another machine writing to a
    shared disk has another pid space), or when it is older than ``max_age`` whatever its pid
    says. Resumable jobs call this when they start.

    Args:
        recursive: search every folder below ``directory``; False: ``directory`` itself only
            (for a command that writes only there, whose folder may be a broad one such as
            ``.``).

    Returns:
        The removed paths.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    now = time.time()
    removed = []
    found = directory.rglob(".*.tmp*") if recursive else directory.glob(".*.tmp*")
    for tmp in found:
        match = _TEMP_NAME.match(tmp.name)
        if match is None or not tmp.is_file():
            continue
        try:
            age = now - tmp.stat().st_mtime
        except FileNotFoundError:
            continue  # its writer just renamed it
        if _stale(age, match.group(1), min_age, max_age):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                removed.append(tmp)
    if removed:
        log.info("%s: removed %d unfinished temporary file(s) of interrupted writes", directory, len(removed))
    return removed


def _newest_mtime(folder: Path) -> float:
    """The latest modification time of ``folder`` and anything in it (a writer filling a
    file inside touches only that file)."""
    times = [folder.stat().st_mtime]
    for entry in folder.rglob("*"):
        with contextlib.suppress(FileNotFoundError):
            times.append(entry.lstat().st_mtime)
    return max(times)


def remove_stale_temp_dirs(directory: str | Path, prefix: str, *, min_age: float = 60.0,
                           max_age: float = 86400.0) -> list[Path]:
    """Delete the temporary folders ``directory/<prefix><pid>-<random>`` (see
    :func:`make_temp_dir`) that a killed writer left, by :func:`remove_stale_temps`'s rule:
    the writer is gone and nothing in the folder changed for ``min_age`` seconds, or nothing
    changed for ``max_age`` seconds. A folder named without a pid (``<prefix><random>``, as
    older versions made them) cannot be matched to its writer and waits for ``max_age``.

    Returns:
        The removed folders.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    pattern = re.compile(rf"^{re.escape(prefix)}(?:(\d+)-)?[A-Za-z0-9_]+$")
    now = time.time()
    removed = []
    for folder in sorted(directory.glob(f"{glob_escape(prefix)}*")):
        match = pattern.match(folder.name)
        if match is None or folder.is_symlink() or not folder.is_dir():
            continue
        try:
            age = now - _newest_mtime(folder)
        except FileNotFoundError:
            continue  # its writer just removed it
        if _stale(age, match.group(1), min_age, max_age):
            shutil.rmtree(folder, ignore_errors=True)
            if not folder.exists():
                removed.append(folder)
    if removed:
        log.info("%s: removed %d unfinished temporary folder(s) of interrupted writes", directory, len(removed))
    return removed


def make_temp_dir(directory: str | Path, prefix: str) -> Path:
    """A new empty folder ``directory/<prefix><pid>-<random>``: the pid lets
    :func:`remove_stale_temp_dirs` tell a killed writer's leftover from one in use."""
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=directory))


def write_text(path: str | Path, text: str) -> Path:
    """Atomically write a UTF-8 text file."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes(path: str | Path, data: bytes) -> Path:
    """Atomically write a binary file."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def to_jsonable(obj: Any) -> Any:
    """Convert dataclasses, paths, numpy scalars/arrays and sets into JSON-ready values
    (NaN and ±inf become None)."""
    if is_dataclass(obj) and not isinstance(obj, type):
        return to_jsonable(asdict(obj))
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist") and callable(obj.tolist):  # numpy / torch
        return to_jsonable(obj.tolist())
    if isinstance(obj, float) and not math.isfinite(obj):  # NaN, ±inf → null: strict JSON has neither
        return None
    return obj


#: ``api_key=VALUE`` (also ``apikey``, ``x-api-key``) inside a spec string, an argument or a
#: URL query: the value ends where a spec option (``,``) or a query parameter (``&``, ``;``)
#: does, so what follows it stays visible; ``api_key_env`` names a variable, not a secret.
_SECRET_OPTION = re.compile(r"(api[_-]?key\s*=\s*)[^,\s&;]+", re.IGNORECASE)


def _secret_key(name: Any) -> bool:
    """True for a mapping key that holds an API key: ``api_key``, ``API-Key``, ``apikey``,
    ``x-api-key`` … (not ``api_key_env``, which names a variable)."""
    return re.sub(r"[-_\s]", "", str(name)).lower().endswith("apikey")
#: What a masked secret reads as.
MASK = "***"


def mask_secrets(obj: Any) -> Any:
    """A copy of JSON-ready ``obj`` with API keys replaced by ``***``: the values of
    ``api_key`` entries and of ``api_key=…`` options in spec strings and arguments (so
    records such as ``run.json`` never hold a key in plain text)."""
    if isinstance(obj, dict):
        return {k: MASK if _secret_key(k) and v not in (None, "")
                else mask_secrets(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [mask_secrets(v) for v in obj]
    if isinstance(obj, str):
        return _SECRET_OPTION.sub(lambda m: m.group(1) + MASK, obj)
    return obj


def write_json(path: str | Path, obj: Any, *, indent: int = 2) -> Path:
    """Atomically write JSON."""
    return write_text(path, json.dumps(to_jsonable(obj), indent=indent, ensure_ascii=False,
                                       allow_nan=False) + "\n")


class NotTextError(AuralensError, UnicodeDecodeError):
    """A file read as text that is not UTF-8 text: ``PATH: not UTF-8 text (REASON at byte N)``,
    N counted from the file's first byte.

    A ``UnicodeDecodeError`` (and so a ``ValueError``) too: callers that catch one keep doing
    so; uncaught, the CLI prints the message as one line. ``start`` and ``end`` count from the
    file's first byte; ``object`` holds the file's bytes from byte ``offset`` on, as many as
    were passed (readers here pass a few around the bad ones, not the whole file), so the bad
    bytes are ``object[start - offset:end - offset]``.
    """

    def __init__(self, path: str | Path, data: bytes, start: int, end: int, reason: str,
                 offset: int = 0) -> None:
        UnicodeDecodeError.__init__(self, "utf-8", data, start, end, reason)
        self.path = Path(path)
        self.offset = offset

    def __str__(self) -> str:
        return f"{self.path}: not UTF-8 text ({self.reason} at byte {self.start})"

    def __reduce__(self) -> tuple[Any, ...]:  # the arguments differ from UnicodeDecodeError's
        return type(self), (self.path, self.object, self.start, self.end, self.reason, self.offset)


#: How many bytes either side of the bad ones a :class:`NotTextError` keeps.
_NOT_TEXT_CONTEXT = 64


def _not_text(path: Path, data: bytes | memoryview, exc: UnicodeDecodeError,
              offset: int = 0) -> NotTextError:
    """The :class:`NotTextError` for ``exc``, raised decoding ``data`` (the file's bytes from
    byte ``offset`` on), holding only the bytes around the bad ones."""
    low = max(0, exc.start - _NOT_TEXT_CONTEXT)
    window = bytes(data[low:exc.end + _NOT_TEXT_CONTEXT])
    return NotTextError(path, window, offset + exc.start, offset + exc.end, exc.reason, offset + low)


def read_user_text(path: str | Path, *, newline: str | None = None) -> str:
    """The text of a file a user names (a config, a list, a CSV, a JSONL manifest).

    A leading byte-order mark (some editors and spreadsheets write one) is dropped.

    Args:
        newline: as :func:`open`'s: None reads ``\\r\\n`` and ``\\r`` as ``\\n``; ``""`` keeps
            line ends as they are (what :mod:`csv` wants, see :func:`open_user_text`).

    Raises:
        NotTextError: the file is not UTF-8 text (the message names it).
        OSError: the file cannot be read.
    """
    path = Path(path)
    data = path.read_bytes()
    skip = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
    error = None
    try:
        text = str(memoryview(data)[skip:], "utf-8")  # no copy of the bytes after the mark
    except UnicodeDecodeError as exc:
        error = _not_text(path, memoryview(data)[skip:], exc, skip)
    del data  # the error's traceback keeps this frame: it holds no copy of the file
    if error is not None:
        raise error
    if newline is None and "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def _cut_short(data: bytes) -> bool:
    """Whether ``data``, which is not UTF-8, is so only because it ends inside a multi-byte
    character (what a writer killed mid-character leaves)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        decoder.decode(data, final=False)  # keeps an unfinished last character back
    except UnicodeDecodeError:
        return False
    return True


def open_user_text(path: str | Path) -> io.StringIO:
    """A file a user names, read whole by :func:`read_user_text` and given back as a text
    stream whose lines end as in the file (``open(path, newline="")``: for :mod:`csv`).

    Raises:
        NotTextError: the file is not UTF-8 text (the message names it).
        OSError: the file cannot be read.
    """
    return io.StringIO(read_user_text(path, newline=""), newline="")


def _binary_lines(fh: Any) -> Iterator[tuple[int, bytes]]:
    """The lines of binary file ``fh``, each with its byte offset in the file and its line end
    (``\\n``, ``\\r\\n`` or ``\\r``; a last line without one as it is), a leading byte-order
    mark left out; split at line ends only, not at the U+2028, U+0085 … that
    :meth:`str.splitlines` also splits at and a JSON string may hold unescaped; read one line
    at a time."""
    offset = 0
    for chunk in fh:  # ends at b"\n" only
        pos = len(codecs.BOM_UTF8) if offset == 0 and chunk.startswith(codecs.BOM_UTF8) else 0
        cut = chunk.find(b"\r", pos)
        while cut >= 0:  # a lone "\r" ends a line too; "\r\n" is one line end
            end = cut + 2 if chunk[cut + 1:cut + 2] == b"\n" else cut + 1
            yield offset + pos, chunk[pos:end]
            pos = end
            cut = chunk.find(b"\r", pos)
        if pos < len(chunk):
            yield offset + pos, chunk[pos:]
        offset += len(chunk)


class JSONFileError(AuralensError, ValueError):
    """A JSON file that cannot be parsed (message names the file and what is wrong).

    A ``ValueError`` too, so callers that treat an unreadable record as absent
    (``except (OSError, ValueError)``) keep doing so; uncaught, the CLI prints one line.
    """


def read_json(path: str | Path) -> Any:
    """Read a JSON file.

    Raises:
        JSONFileError: the file is not UTF-8 text or not valid JSON.
        OSError: the file cannot be read.
    """
    path = Path(path)
    try:
        # utf-8-sig: a byte order mark (some editors write one) is not JSON
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise JSONFileError(f"{path}: not valid JSON (line {exc.lineno} column {exc.colno}: "
                            f"{exc.msg})") from None
    except UnicodeDecodeError as exc:
        raise JSONFileError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except ValueError as exc:  # JSON that Python cannot hold (an integer of 5000 digits)
        raise JSONFileError(f"{path}: not valid JSON ({exc})") from None
    except RecursionError:  # nesting deeper than Python's parser can follow
        raise JSONFileError(f"{path}: not valid JSON (nested too deeply)") from None


def read_run_record(folder: str | Path) -> Any:
    """``folder/run.json`` as read, or None when it is missing or cannot be read as JSON."""
    try:
        return read_json(Path(folder) / "run.json")
    except (OSError, ValueError):
        return None


def read_recorded_settings(folder: Path, config_name: str, command: str, unreadable: Any,
                           ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """What a resumable job recorded in ``folder``: ``(settings, None)`` from its settings file
    ``config_name``, else ``(None, run.json)`` when an older version's ``run.json`` of
    ``command`` is there (the caller maps it), else ``(None, None)``.

    Args:
        unreadable: called with a one-line message when the settings file exists but is not a
            JSON object; it must raise (never write over what cannot be identified).
    """
    config = folder / config_name
    if config.is_file():
        try:
            old = read_json(config)
        except (OSError, ValueError):
            old = None
        if not isinstance(old, dict):
            unreadable(f"{config}: unreadable settings record; choose another --out, or remove "
                       f"{folder} to make it again")
        return old, None
    try:
        run = read_json(folder / "run.json") if (folder / "run.json").is_file() else None
    except (OSError, ValueError):
        return None, None
    if isinstance(run, dict) and run.get("command") == command and isinstance(run.get("config"), dict):
        return None, run
    return None, None


def _last_line_start(fh: Any, end: int, chunk: int = 1 << 16) -> int:
    """Offset just past the last newline before ``end`` in binary file ``fh`` (0 if none)."""
    pos = end
    while pos > 0:
        step = min(chunk, pos)
        pos -= step
        fh.seek(pos)
        cut = fh.read(step).rfind(b"\n")
        if cut >= 0:
            return pos + cut + 1
    return 0


def _is_json_line(data: bytes) -> bool:
    try:
        json.loads(data.decode("utf-8-sig"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return False
    return True


def append_jsonl(path: str | Path, record: Any) -> None:
    """Append one JSON line and flush it to disk (crash-safe for resumable jobs).

    A last line without its newline that is not JSON, or not UTF-8 (what a writer killed
    mid-line, even mid-character, or a full disk, leaves) is cut off first, with a warning, so
    the file holds only whole lines again; a broken line before the last one is left to
    :func:`read_jsonl` to skip.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(to_jsonable(record), ensure_ascii=False, allow_nan=False)
    with open(path, "a+b") as fh:
        end = fh.seek(0, os.SEEK_END)
        if end > 0:
            fh.seek(-1, os.SEEK_END)
            if fh.read(1) != b"\n":
                start = _last_line_start(fh, end)
                fh.seek(start)
                if _is_json_line(fh.read(end - start)):
                    fh.write(b"\n")  # a whole record that only lacks its newline stays
                else:
                    # Only this job appends here: dropping the fragment (instead of ending it
                    # with a newline) keeps it from breaking every later parse of the file.
                    fh.truncate(start)
                    os.fsync(fh.fileno())  # the cut is on disk before the new line is
                    log.warning("%s: removed an incomplete last line (%d bytes) left by an "
                                "interrupted write", path, end - start)
        fh.write((line + "\n").encode("utf-8"))
        fh.flush()
        os.fsync(fh.fileno())


class JsonLinesError(AuralensError, ValueError):
    """A line of an input JSONL file that is not JSON (message names the file and line)."""


def read_jsonl(path: str | Path, *, strict: bool = False) -> list[Any]:
    """Read a JSONL file, ignoring a truncated last line left by a killed writer.

    With ``strict`` (inputs such as manifests, which no job of ours is appending to) every
    line must be JSON: a bad one raises :class:`JsonLinesError` instead of being skipped.
    """
    return [record for _, record in read_jsonl_numbered(path, strict=strict)]


def unclosed_json(text: str) -> bool:
    """True when ``text`` is the start of a JSON object or array that never closes (a string
    or bracket still open at its end): what a line or reply cut short looks like."""
    body = text.strip()
    if body[:1] not in ("{", "["):
        return False
    depth, in_string, escaped = 0, False, False
    for ch in body:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
    return in_string or depth > 0


def read_jsonl_numbered(path: str | Path, *, strict: bool = False) -> list[tuple[int, Any]]:
    """Like :func:`read_jsonl`, with each record's 1-based line number (for messages).

    Lines end at newlines only: a JSON string may hold U+2028 or U+0085 unescaped. A line that
    is not JSON is skipped with a warning that says which it is: an incomplete last line (one
    with no newline after it whose JSON is still open, :func:`unclosed_json`, or that ends in
    a multi-byte character cut short: what a writer stopped mid-line, or still appending such
    as ``data mix``, leaves) or a corrupt line (not JSON, or JSON that Python cannot hold
    such as an integer of 5000 digits). With ``strict`` a corrupt line raises
    :class:`JsonLinesError` instead.

    Raises:
        NotTextError: the file is not UTF-8 text (other than in an incomplete last line).
        JsonLinesError: with ``strict``, a corrupt line.
    """
    path = Path(path)
    if not path.exists():
        return []
    # Read line by line, in binary: the file's bytes and text are never held whole. A file
    # that is not UTF-8 text raises only NotTextError, as if it had been decoded first: the
    # warnings and a strict error wait until every line has been decoded.
    out: list[tuple[int, Any]] = []
    warnings: list[tuple[Any, ...]] = []
    corrupt: JsonLinesError | None = None
    try:
        with open(path, "rb") as fh:
            for number, (offset, raw) in enumerate(_binary_lines(fh), 1):
                last = not raw.endswith((b"\n", b"\r"))
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    # a whole line never ends inside a character: this one was cut short
                    if not (last and _cut_short(raw)):
                        raise _not_text(path, raw, exc, offset) from None
                    if corrupt is None:
                        warnings.append(("%s: skipping an incomplete last line %d", path, number))
                    continue
                line = text.strip()
                if not line or corrupt is not None:
                    continue
                try:
                    out.append((number, json.loads(line)))
                except (ValueError, RecursionError) as exc:  # JSONDecodeError is a ValueError
                    # only JSON still open at the end of the file is a line being written
                    if last and unclosed_json(line):
                        warnings.append(("%s: skipping an incomplete last line %d", path, number))
                    elif strict:
                        corrupt = JsonLinesError(f"{path}:{number}: not a JSON line "
                                                 f"({_json_problem(exc)})")
                    else:
                        warnings.append(("skipping corrupt line %d of %s (not valid JSON)",
                                         number, path))
    except NotTextError:
        out.clear()  # the error's traceback keeps this frame: it holds no records
        raise
    for warning in warnings:
        log.warning(*warning)
    if corrupt is not None:
        raise corrupt
    return out


def _json_problem(exc: BaseException) -> str:
    """What :func:`json.loads` found wrong, for a message."""
    if isinstance(exc, json.JSONDecodeError):
        return f"column {exc.colno}: {exc.msg}"
    if isinstance(exc, RecursionError):
        return "nested too deeply"
    return str(exc)  # JSON that Python cannot hold (an integer of 5000 digits)


def write_jsonl(path: str | Path, records: Iterable[Any]) -> Path:
    """Atomically write a whole JSONL file."""
    text = "".join(json.dumps(to_jsonable(r), ensure_ascii=False, allow_nan=False) + "\n"
                   for r in records)
    return write_text(path, text)


class ErrorLog:
    """Collects per-item failures of a batch job into ``errors.jsonl``.

    Usage:
        errors = ErrorLog(out_dir / "errors.jsonl")
        with errors.guard(item_id, path):
            process(item)
        errors.summary()  # logs "2 of 40 items failed, see …/errors.jsonl"
    """

    def __init__(self, path: str | Path, *, reset: bool = False) -> None:
        self.path = Path(path)
        self.items: list[dict[str, Any]] = []
        if reset and self.path.exists():
            self.path.unlink()

    def add(self, item: str, error: BaseException | str, path: str | Path | None = None) -> None:
        record = {"item": str(item), "error": str(error),
                  "type": type(error).__name__ if isinstance(error, BaseException) else "error"}
        if path is not None:
            record["path"] = str(path)
        self.items.append(record)
        append_jsonl(self.path, record)
        # name the file unless the item or the message already does: an item is often an id
        where = (f" ({path})" if path is not None and str(path) != str(item)
                 and str(path) not in str(error) else "")
        log.error("skipped %s%s: %s", item, where, error)

    @contextlib.contextmanager
    def guard(self, item: str, path: str | Path | None = None) -> Iterator[None]:
        """Record an exception raised inside the block instead of propagating it."""
        try:
            yield
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - batch jobs skip any per-item failure
            self.add(item, exc, path)

    def __len__(self) -> int:
        return len(self.items)

    def summary(self, total: int | None = None) -> str:
        if not self.items:
            return "no errors"
        of = f" of {total}" if total is not None else ""
        msg = f"{len(self.items)}{of} items failed; see {self.path}"
        log.warning(msg)
        return msg


def batch_counts(errors: ErrorLog, item_ids: Iterable[str], lines: Iterable[Any],
                 n_tried: int) -> dict[str, Any]:
    """The ``run.json`` counts of a resumable batch job (``separate batch``, ``imagine batch``)
    over the whole job, items an earlier (interrupted) run finished included.

    ``item_ids`` are the job's items, ``lines`` every line of its ``results.jsonl`` (lines of
    items outside the job, such as another ``--limit``'s, are not counted), ``n_tried`` the
    items this run tried and ``errors`` its failures: an item that failed before has no
    result line and was tried again, so these are all the job's failures. Gives ``n_items``,
    ``n_done`` (items with a result), ``n_new`` and ``n_earlier`` (of those, done by this run
    and before it), ``n_tried``, ``n_failed`` and ``errors`` (:meth:`ErrorLog.summary` over the
    job, which logs the ``N of M items failed`` warning).
    """
    ids = list(item_ids)
    finished = {r.get("id") for r in lines}
    n_done = sum(i in finished for i in ids)
    n_new = n_tried - len(errors)
    return {"n_items": len(ids), "n_done": n_done, "n_new": n_new, "n_earlier": n_done - n_new,
            "n_tried": n_tried, "n_failed": len(errors), "errors": errors.summary(len(ids))}


def batch_done_line(dest: Path) -> str:
    """The closing line of a batch job whose ``run.json`` in ``dest`` holds
    :func:`batch_counts`: ``D of N items done (K by this run, E earlier); F failed, see
    DEST/errors.jsonl; results in DEST/results.jsonl``."""
    run = read_json(dest / "run.json")
    failed = f"; {run['n_failed']} failed, see {dest / 'errors.jsonl'}" if run["n_failed"] else ""
    return (f"{run['n_done']} of {run['n_items']} items done ({run['n_new']} by this run, "
            f"{run['n_earlier']} earlier){failed}; results in {dest / 'results.jsonl'}")


def package_versions(names: Iterable[str] = ()) -> dict[str, str | None]:
    """Installed versions of auralens and its main dependencies (None when absent)."""
    from importlib import metadata

    base = ["auralens", "torch", "numpy", "scipy", "transformers", "diffusers", "soundfile",
            "soxr", "librosa"]
    out: dict[str, str | None] = {}
    for name in [*base, *names]:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


class Timer:
    """Accumulates named wall-clock timings: ``with timer("stage"): ...``."""

    def __init__(self) -> None:
        self.timings: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[name] = self.timings.get(name, 0.0) + time.perf_counter() - start


def write_run_json(
    out_dir: str | Path,
    *,
    command: str,
    config: Any,
    models: dict[str, Any] | None = None,
    timings: dict[str, float] | None = None,
    seed: int | None = None,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``out_dir/run.json`` with the resolved config, versions, models and timings
    (API keys masked, see :func:`mask_secrets`).

    A rerun of the same command and config (a resume) keeps the models an earlier run
    recorded and this one did not load (a rerun with nothing left to do loads none), so the
    record still says which models made the outputs beside it.
    """
    models = dict(models or {})
    config = mask_secrets(to_jsonable(config))  # as recorded, so an earlier record compares
    try:
        earlier = read_json(Path(out_dir) / "run.json")
    except (OSError, ValueError):
        earlier = None
    if (isinstance(earlier, dict) and earlier.get("command") == command
            and isinstance(earlier.get("models"), dict)
            and earlier.get("config") == config):
        models = {**earlier["models"], **models}
    record = {
        "command": command,
        "argv": sys.argv,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "config": config,
        "seed": seed,
        "models": models,
        "timings_s": {k: round(v, 4) for k, v in (timings or {}).items()},
        "versions": package_versions(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
    }
    if extra:
        record.update(extra)
    # specs and argv may carry an API key (openai:…@api_key=…)
    return write_json(Path(out_dir) / "run.json", mask_secrets(to_jsonable(record)))
