"""Agreement of the LLM judge with human annotations.

The study checked its judge against its own annotations: 89 % agreement on source counts and
84 % on label inclusion. Give the annotations as a CSV with columns ``id``, ``count`` (1–4)
and ``labels_included`` (yes/no, true/false, 1/0), optionally ``method`` when several methods
were annotated, and the experiment's ``results.jsonl``.

The judge counts on a 1–4 scale where 4 means four or more, so an annotated count above 4 is
clipped to 4 (as :func:`~auralens.evaluate.judge.perception_rates` clips true counts); a count
below 1 is refused.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from pathlib import Path
from typing import Any

from auralens.checks import as_whole
from auralens.errors import AuralensError
from auralens.evaluate.aggregate import row_problem
from auralens.io import read_jsonl_numbered

_TRUE = {"yes", "y", "true", "1"}
_FALSE = {"no", "n", "false", "0"}
#: ``recognition_source`` values that are a judge's verdict.
_JUDGED_RECOGNITION = {"judge", "per_caption"}


class ValidationError(AuralensError):
    """Annotation or results files that cannot be matched."""


def _bool(value: str, where: str) -> bool | None:
    v = value.strip().lower()
    if not v:
        return None
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ValidationError(f"{where}: labels_included must be yes/no, got {value!r}")


def read_annotations(path: str | Path) -> list[dict[str, Any]]:
    """Rows ``{"id", "method"?, "count": int|None, "labels_included": bool|None}``.

    Counts above 4 are clipped to 4 (the judge's "four or more").

    Raises:
        ValidationError: a missing file or column, a count that is not a whole number ≥ 1, a
            bad ``labels_included`` or a repeated annotation (file and line named).
    """
    path = Path(path)
    if not path.exists():
        raise ValidationError(f"{path}: annotation file not found")
    if path.is_dir():
        raise ValidationError(f"{path}: is a directory; expected the annotations CSV file "
                              "(columns id, count, labels_included)")
    try:
        return _read_annotations(path)
    except UnicodeDecodeError as exc:  # a binary file, or a spreadsheet not saved as CSV
        raise ValidationError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); "
                              "expected the annotations CSV file (columns id, count, "
                              "labels_included)") from None


def _read_annotations(path: Path) -> list[dict[str, Any]]:
    """:func:`read_annotations` on an existing file."""
    # utf-8-sig: a spreadsheet's CSV export often starts with a byte-order mark
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        cols = set(reader.fieldnames or [])
        if "id" not in cols or not cols & {"count", "labels_included"}:
            raise ValidationError(f"{path}: expected columns id, count, labels_included")
        out = []
        seen: dict[tuple[str, str | None], int] = {}
        for i, row in enumerate(reader, start=2):
            where = f"{path}:{i}"
            count = (row.get("count") or "").strip()
            if count and not re.fullmatch(r"[0-9]+", count):
                raise ValidationError(f"{where}: count must be an integer, got {count!r}")
            if count and int(count) < 1:
                raise ValidationError(f"{where}: count must be at least 1 (the scale is 1–4, "
                                      f"4 = four or more), got {count!r}")
            ann = {"id": (row["id"] or "").strip(),
                   "method": (row.get("method") or "").strip() or None,
                   # the judge answers 1–4 with 4 = four or more: clip as perception_rates does
                   "count": min(int(count), 4) if count else None,
                   "labels_included": _bool(row.get("labels_included") or "", where)}
            key = (ann["id"], ann["method"])
            if key in seen:  # it would count twice in the agreement
                what = f"id {key[0]!r}" + (f", method {key[1]!r}" if key[1] else "")
                raise ValidationError(f"{path}: lines {seen[key]} and {i} both annotate {what}; "
                                      "keep one")
            seen[key] = i
            out.append(ann)
    return out


def results_file(path: str | Path) -> Path:
    """The ``results.jsonl`` that ``path`` names: the file itself, or ``DIR/results.jsonl``
    when ``path`` is an experiment's output folder.

    Raises:
        ValidationError: the path does not exist, or is a folder without ``results.jsonl``.
    """
    path = Path(path)
    if not path.exists():
        raise ValidationError(f"{path}: results file not found (expected an experiment's "
                              "results.jsonl)")
    if path.is_dir():
        inner = path / "results.jsonl"
        if inner.is_file():
            return inner
        raise ValidationError(f"{path}: is a directory without results.jsonl; expected an "
                              "experiment's results.jsonl (or the --out folder holding it)")
    return path


def _no_value(key: str, source: str) -> str:
    """The left-out reason of an annotated row whose result has no ``key`` value."""
    return f"no {key} from the judge" if source != "unknown" else f"no {key} in the result row"


def judge_agreement(annotations: str | Path, results: str | Path,
                    method: str | None = None) -> dict[str, Any]:
    """Agreement of judged ``count`` / ``recognition`` with the annotations.

    Args:
        annotations: CSV (see the module docstring).
        results: an experiment's ``results.jsonl`` (or its output folder holding one).
        method: use only this method's rows (needed when several methods share ids and
            the CSV has no ``method`` column).

    Only the judge's own verdicts are compared: counts with ``count_source == "judge"``
    (not the number of kept sources of a pipeline row) and recognition judged on the
    description or per caption (not the ``False`` given to a row that kept nothing). Rows
    left out are counted with the reason.

    Returns:
        ``{"count": {"agreement", "n", "confusion", "left_out"}, "labels": {"agreement",
        "n", "left_out"}, "matched", "unmatched", "judges", "judge_is_llm"}``; agreement is
        None when nothing could be compared; ``left_out`` maps a reason to a row count;
        ``judge_is_llm`` is False when any compared row was scored by a heuristic judge
        and None when no row names its judge.

    Raises:
        ValidationError: a missing, binary or folder input (named), a result line that is
            not a row with an id, or an annotated row
            whose ``count`` or ``recognition`` is of the wrong kind (``count: "many"``; see
            :func:`~auralens.evaluate.aggregate.row_problem`), named by ``file:line``.
    """
    ann = read_annotations(annotations)
    results = results_file(results)
    try:
        lines = read_jsonl_numbered(results)
    except UnicodeDecodeError as exc:
        raise ValidationError(f"{results}: not UTF-8 text ({exc.reason} at byte {exc.start}); "
                              "expected an experiment's results.jsonl") from None
    rows = []
    for line, r in lines:
        if not isinstance(r, dict):
            raise ValidationError(f"{results}:{line}: a result row must be a JSON object")
        if r.get("status", "ok") != "ok" or (method is not None and r.get("method") != method):
            continue
        if r.get("id") is None:
            raise ValidationError(f"{results}:{line}: result row has no id")
        rows.append((line, r))
    if not rows:
        raise ValidationError(f"{results}: no result rows" + (f" for method {method!r}" if method else ""))
    by_key: dict[tuple, tuple[int, dict[str, Any]]] = {}
    for line, r in rows:
        by_key[(str(r["id"]), str(r.get("method")))] = (line, r)
    per_id = Counter(str(r["id"]) for _, r in rows)
    count_pairs, label_pairs, unmatched = [], [], []
    count_left: Counter[str] = Counter()
    label_left: Counter[str] = Counter()
    judges: dict[str, bool | None] = {}
    for a in ann:
        if a["method"] is not None:
            match = by_key.get((a["id"], a["method"]))
        else:
            if per_id.get(a["id"], 0) > 1:
                raise ValidationError(f"{results}: several methods for id {a['id']!r}; "
                                      "pass --method or add a method column")
            match = next((v for (i, _), v in by_key.items() if i == a["id"]), None)
        if match is None:
            unmatched.append(a["id"])
            continue
        line, r = match
        # only the values compared here, read as the runner does ("count": "many" is refused)
        problem = row_problem({key: r.get(key) for key in ("count", "recognition")})
        if problem:
            raise ValidationError(f"{results}:{line}: {problem}; fix or remove the line")
        used = False
        if a["count"] is not None:
            source = r.get("count_source") or "unknown"
            if r.get("count") is None:  # e.g. a judge answer with no readable count
                count_left[_no_value("count", source)] += 1
            elif source == "judge":
                count_pairs.append((a["count"], as_whole(r["count"])))
                used = True
            else:
                count_left[f"count from {source}, not the judge"] += 1
        if a["labels_included"] is not None:
            source = r.get("recognition_source") or "unknown"
            if r.get("recognition") is None:
                label_left[_no_value("recognition", source)] += 1
            elif source in _JUDGED_RECOGNITION:
                label_pairs.append((a["labels_included"], r["recognition"]))
                used = True
            else:
                label_left[f"recognition from {source}, not the judge"] += 1
        if used and r.get("judge"):
            judges[str(r["judge"])] = r.get("judge_is_llm")

    if ann and len(unmatched) == len(ann):
        shown = ", ".join(repr(i) for i in unmatched[:3]) + (" …" if len(unmatched) > 3 else "")
        raise ValidationError(f"{results}: none of the {len(ann)} annotated ids of {annotations} "
                              f"({shown}) has a result row" + (f" for method {method!r}" if method else ""))

    def agree(pairs: list[tuple[Any, Any]]) -> float | None:
        return sum(x == y for x, y in pairs) / len(pairs) if pairs else None

    confusion: dict[str, int] = Counter(f"{h}->{j}" for h, j in count_pairs)
    is_llm = None if not judges else all(v is not False for v in judges.values())
    return {"count": {"agreement": agree(count_pairs), "n": len(count_pairs),
                      "confusion": dict(sorted(confusion.items())),
                      "left_out": dict(count_left)},
            "labels": {"agreement": agree(label_pairs), "n": len(label_pairs),
                       "left_out": dict(label_left)},
            "matched": len(ann) - len(unmatched), "unmatched": unmatched,
            "judges": sorted(judges), "judge_is_llm": is_llm}
