"""Dataset sharding for array jobs: ``--shard i/n`` selects every n-th item, ``merge`` joins.

Shards are taken over the items sorted by id, so each of ``n`` independent processes
(SLURM array tasks, separate machines) gets a disjoint, deterministic slice whatever order
the dataset was listed in; the union of all shards is the whole dataset. Each shard writes
its own output directory; :func:`merge_jsonl` joins their ``results.jsonl`` files.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from auralens.errors import AuralensError
from auralens.io import read_jsonl_numbered, write_jsonl
from auralens.types import id_text

T = TypeVar("T")
log = logging.getLogger(__name__)

_SHARD_RE = re.compile(r"^\s*(\d+)\s*/\s*(\d+)\s*$")


class ShardError(AuralensError, ValueError):
    """A malformed ``--shard`` value."""


def _shard_from_env() -> str:
    """``"i/n"`` for a SLURM array task: ``i = SLURM_ARRAY_TASK_ID``, ``n = SLURM_ARRAY_TASK_COUNT``.

    The array must be the whole 0-based range ``--array=0-(n-1)``: the task id is the shard
    index. An array that does not look like one (``--array=1-4``, a step, or a part submitted
    again that does not start at 0, such as ``--array=2``) is refused, since its task count is
    not the number of shards. A part that starts at 0 (``--array=0-1`` of 4) cannot be told
    from a whole array of 2: it writes ``part-i-of-2`` folders, which ``merge`` refuses to
    join with the ``part-i-of-4`` ones. ``--shard $SLURM_ARRAY_TASK_ID/N`` states both
    numbers and is what a part submitted again needs. Without ``SLURM_ARRAY_TASK_MIN`` (another scheduler setting the
    same names) the id and count are taken as they are.
    """
    env = os.environ
    try:
        task = int(env["SLURM_ARRAY_TASK_ID"])
        count = int(env["SLURM_ARRAY_TASK_COUNT"])
        low = int(env["SLURM_ARRAY_TASK_MIN"]) if env.get("SLURM_ARRAY_TASK_MIN") else None
        high = int(env["SLURM_ARRAY_TASK_MAX"]) if env.get("SLURM_ARRAY_TASK_MAX") else None
        step = int(env.get("SLURM_ARRAY_TASK_STEP") or 1)
    except (KeyError, ValueError) as exc:
        raise ShardError("--shard env needs SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT "
                         "(whole numbers)") from exc
    if low is not None and (low != 0 or step != 1 or (high is not None and high != count - 1)):
        span = f"{low}-{high}" if high is not None else f"from {low}"
        raise ShardError(f"--shard env needs an array of every shard from 0 (--array=0-{count - 1}); "
                         f"this task is {task} of an array {span}"
                         f"{f' in steps of {step}' if step != 1 else ''}: use "
                         "--shard $SLURM_ARRAY_TASK_ID/N with N the number of shards")
    return f"{task}/{count}"


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """Parse ``"i/n"`` (0-based ``i``, ``0 <= i < n``); ``None``/``""`` means no sharding.

    ``"env"`` takes the shard from a SLURM array task's environment (see
    :func:`_shard_from_env`): the array must be ``--array=0-(n-1)``.
    """
    if text is None or not str(text).strip():
        return None
    if str(text).strip().lower() == "env":
        text = _shard_from_env()
    m = _SHARD_RE.match(str(text))
    if not m:
        raise ShardError(f"--shard {text!r} is not of the form i/n (for example 0/4)")
    index, count = int(m.group(1)), int(m.group(2))
    if count < 1 or not 0 <= index < count:
        raise ShardError(f"--shard {text!r}: need 0 <= i < n")
    return index, count


def shard_items(items: Iterable[T], shard: tuple[int, int] | str | None,
                key: Callable[[T], Any] | None = None) -> list[T]:
    """Return this shard's items: position ``i, i+n, i+2n, …`` in id order.

    Args:
        items: the full dataset.
        shard: ``(i, n)``, an ``"i/n"`` string, or None for everything.
        key: sort key (default: ``item.id`` when present, else the item itself).
    """
    parsed = parse_shard(shard) if isinstance(shard, str) or shard is None else shard
    items = list(items)
    if parsed is None:
        return items
    index, count = parsed
    if key is None:
        def key(x: Any) -> Any:
            return getattr(x, "id", x)
    ordered = sorted(items, key=key)
    return ordered[index::count]


def part_name(shard: tuple[int, int]) -> str:
    """``(0, 4)`` → ``"part-0-of-4"`` (the folder name of one shard's outputs)."""
    return f"part-{shard[0]}-of-{shard[1]}"


def shard_dir(out: str | Path, shard: tuple[int, int] | None) -> Path:
    """Where a shard writes its own files: ``out/shards/part-i-of-n`` (``out`` unsharded)."""
    return Path(out) if shard is None else Path(out) / "shards" / part_name(shard)


_PART_RE = re.compile(r"^part-(\d+)-of-(\d+)$")


def shard_owner(folder: Path) -> Path:
    """The run folder ``OUT`` a shard's folder ``OUT/shards/part-i-of-n`` belongs to (the
    inverse of :func:`shard_dir`); any other folder is its own."""
    if folder.parent.name == "shards" and _PART_RE.match(folder.name):
        return folder.parent.parent
    return folder


def _check_one_set(where: object, parts: dict[Path, tuple[int, int]], missing_hint: str) -> int:
    """Check that ``parts`` (folder → ``(i, n)``) form one set of shards, none missing; return ``n``.

    Raises:
        ShardError: shards of different counts, an index not below its count, or some shard
            missing (``missing_hint`` says what to do).
    """
    odd = [d.name for d, (i, n) in parts.items() if i >= n]
    if odd:
        raise ShardError(f"{where}: {', '.join(odd)} is not a shard folder name (part-i-of-n needs i < n)")
    counts = sorted({n for _, n in parts.values()})
    if len(counts) > 1:
        names = ", ".join(sorted({d.name for d in parts}))
        raise ShardError(f"{where}: shards of different counts {counts} ({names}); remove the stale ones")
    (count,) = counts
    have = {i for i, _ in parts.values()}
    missing = [i for i in range(count) if i not in have]
    if missing:
        raise ShardError(f"{where}: shard(s) {', '.join(f'{i}/{count}' for i in missing)} {missing_hint}")
    return count


def find_parts(out: str | Path) -> list[Path]:
    """The shard folders under ``out/shards``, checked to form one complete set.

    Raises:
        ShardError: no shards, shards of different counts, or some shard missing.
    """
    root = Path(out) / "shards"
    parts: dict[Path, tuple[int, int]] = {}
    for d in sorted(root.glob("part-*-of-*")) if root.is_dir() else []:
        m = _PART_RE.match(d.name)
        if m and d.is_dir():
            parts[d] = (int(m.group(1)), int(m.group(2)))
    if not parts:
        raise ShardError(f"{root}: no shard outputs (part-i-of-n folders) to merge")
    count = _check_one_set(root, parts, "not run yet")
    found = {i: d for d, (i, _) in parts.items()}
    return [found[i] for i in range(count)]


def _check_shard_parts(files: Sequence[Path]) -> None:
    """When results files lie in ``part-i-of-n`` folders, check that those form one complete set.

    Plain JSONL files elsewhere are merged as they are; a stale ``part-1-of-3`` beside a
    ``part-0-of-2``, or a shard left out, would otherwise merge into a silently partial file.
    """
    parts: dict[Path, tuple[int, int]] = {}
    for f in files:
        m = _PART_RE.match(f.parent.name)
        if m:
            parts[f.parent] = (int(m.group(1)), int(m.group(2)))
    if not parts:
        return
    parents = sorted({str(d.parent) for d in parts})
    where = parents[0] if len(parents) == 1 else ", ".join(sorted(str(d) for d in parts))
    _check_one_set(where, parts, "not among the parts given; merge every part of one run")


def _read_part(path: Path) -> list[tuple[int, Any]]:
    """``(line number, record)`` of a results file; lines that are not a JSON object (unparsable,
    or valid JSON of another kind such as ``[1, 2]``) are skipped with a warning naming them
    (:func:`~auralens.io.read_jsonl_numbered` tells a last line cut short from a corrupt one).
    """
    out = []
    for line, rec in read_jsonl_numbered(path):
        if not isinstance(rec, dict):
            log.warning("skipping corrupt line %d of %s (valid JSON but not a record object: %s)",
                        line, path, json.dumps(rec, ensure_ascii=False)[:40])
            continue
        out.append((line, rec))
    return out


def _part_settings(part: Path, rec: dict[str, Any]) -> dict[str, Any] | None:
    """The settings behind ``rec`` for naming what differs: its own, or its ``run.json``'s config."""
    if isinstance(rec.get("settings"), dict):
        return rec["settings"]
    try:
        run = json.loads((part.parent / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    cfg = run.get("config") if isinstance(run, dict) else None
    if not isinstance(cfg, dict) or cfg.get("fingerprint", run.get("fingerprint")) != rec.get("fingerprint"):
        return None  # that run.json describes another run than these lines
    return {k: v for k, v in cfg.items() if k != "fingerprint"}


def _record_id(value: Any, part: Path, line: int, key: str) -> str:
    """A record's id as text, by the rule every manifest and batch job uses
    (:func:`auralens.types.id_text`): 1 and "1" (one shard writing ids as numbers, another as
    text) name one item, as they do in file names and the sorted output.

    Raises:
        AuralensError: an id :func:`~auralens.types.id_text` refuses (empty, true, null, a
            list …), which would merge unrelated records or not merge at all.
    """
    try:
        return id_text(value)
    except ValueError as exc:
        raise AuralensError(f"{part}:{line}: {key!r} is {json.dumps(value)[:60]}: {exc}") from None


def merge_jsonl(parts: Sequence[str | Path], out: str | Path, *, key: str = "id") -> int:
    """Merge shard ``results.jsonl`` files into ``out``, one record per ``key`` (last wins;
    ids are non-empty text or finite numbers, compared as text, see
    :func:`auralens.types.id_text`).

    Records that carry a settings ``fingerprint`` (``separate batch``, ``imagine batch``) must
    all carry the same one: shards run with different settings are not one result set.
    Records without one are merged as they are. Parts in shard folders (``part-i-of-n``, what
    ``--shard`` writes) must be one complete set of shards, as :func:`find_parts` checks.

    Returns:
        the number of merged records.

    Raises:
        AuralensError: a part missing or holding no shard results, an id that is empty or
            not text or a number, parts made with different settings, shard folders (``part-i-of-n``) that are not one complete set, or ``out``
            naming a directory or one of the parts (nothing is written then).
    """
    from auralens.config import changed_keys

    out = Path(out)
    if out.is_dir():
        raise AuralensError(f"{out}: is a directory; --out names the merged JSONL file to write "
                            f"(e.g. {out / 'results.jsonl'})")
    files = []
    for part in parts:
        part = Path(part)
        if part.is_dir():
            part = part / "results.jsonl"
        if not part.exists():
            raise AuralensError(f"{part}: shard results not found")
        if part.is_dir():
            raise AuralensError(f"{part}: is a directory, not a results file")
        files.append(part)
    _check_shard_parts(files)
    for part in files:
        if out.resolve() == part.resolve() or (out.exists() and os.path.samefile(out, part)):
            same = "" if str(part) == str(out) else f" ({part})"
            raise AuralensError(f"{out}: --out is one of the parts being merged{same}; "
                                "write the merged results to another file")
    merged: dict[Any, Any] = {}
    first: tuple[Path, int, dict[str, Any]] | None = None  # the first fingerprinted record
    for part in files:
        for line, rec in _read_part(part):
            # a record without its key could not be told apart from another shard's copy
            if key not in rec:
                raise AuralensError(f"{part}:{line}: record has no {key!r} field (see --key)")
            stamp = rec.get("fingerprint")
            if stamp is not None:
                if first is None:
                    first = (part, line, rec)
                elif stamp != first[2].get("fingerprint"):
                    a, b = _part_settings(first[0], first[2]), _part_settings(part, rec)
                    keys = changed_keys(a, b) if a is not None and b is not None else []
                    what = (f"{', '.join(keys)} differ{'s' if len(keys) == 1 else ''}" if keys
                            else f"fingerprints {first[2].get('fingerprint')} and {stamp}")
                    raise AuralensError(f"{first[0]}:{first[1]} and {part}:{line} were made with different "
                                        f"settings ({what}); merge only the parts of one run (rerun the odd "
                                        "shard with the others' settings)")
            merged[_record_id(rec[key], part, line, key)] = rec
    if not merged:
        raise AuralensError(f"no result records in {', '.join(str(p) for p in parts)}; nothing to merge")
    records = [merged[k] for k in sorted(merged)]
    try:
        write_jsonl(out, records)
    except OSError as exc:  # name --out, not the temporary file beside it
        raise AuralensError(f"{out}: cannot write the merged results ({exc.strerror or exc})") from None
    return len(records)
