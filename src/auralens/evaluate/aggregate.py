"""Aggregate per-description results into the study's tables and bar charts.

Input rows are the lines of an experiment's ``results.jsonl``: one per (item, method) with
at least ``method`` and ``n_sources`` and any of the metric keys below (None = missing).
Every metric is summarised per method and per (method, number of sources), and the number
of missing values is reported next to each mean — a missing judge answer is never a 0.
Rows whose ``status`` is not ``ok`` (an item that failed or was skipped for a method) are
left out of the means and counted in the ``skipped`` column; when methods end up with
results for different items, every table says so in a note below it. A value of the wrong
kind (``count: "many"``, ``recognition: "false"``, an infinite score; see :func:`row_problem`)
counts as missing, and the tables say so in a note. A whole-valued float count (``1.0``, as
pandas writes a column holding a null) is the whole number.

Outputs of :func:`write_report`:
    ``summary.csv/.md``            every metric per method (+ ``<metric>_missing`` columns)
    ``by_sources.csv/.md``         the same per method × number of sources (1–4)
    ``es_by_sources.csv/.md``      ES rate, methods × #sources
    ``accuracy_by_sources.csv/.md`` label accuracy, methods × #sources
    ``missing.csv/.md``            missing values per method and metric
    figures/ ``perception.png`` (US/ES/OS), ``label_accuracy.png``, ``quality.png``
    (coherence / visual detail / imagination / appropriateness), ``es_by_sources.png``,
    ``accuracy_by_sources.png``, ``scores.png`` (CLAP/CLIP scores, when present).
"""

from __future__ import annotations

import csv
import html
import io
import logging
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from auralens.checks import as_whole, is_number
from auralens.io import atomic_path, write_text

log = logging.getLogger(__name__)

SCORE_METRICS = ("coherence", "visual_detail", "imagination", "appropriateness")
EMBED_METRICS = ("clapscore", "clip_generated", "clip_reference", "clip_generated_cos",
                 "clip_reference_cos")
PRETTY = {
    "US": "US", "ES": "ES", "OS": "OS", "label_acc": "label accuracy",
    "coherence": "coherence", "visual_detail": "visual detail", "imagination": "imagination",
    "appropriateness": "appropriateness", "clapscore": "CLAPScore",
    "clip_generated": "CLIPScore (generated image)", "clip_reference": "CLIPScore (reference frame)",
}


#: What each checked key of a row must hold when not None (NaN scores count as missing).
EXPECTED = {"n_sources": "a whole number ≥ 0", "count": "a whole number ≥ 0",
            "recognition": "true or false",
            **{m: "a finite number" for m in (*SCORE_METRICS, *EMBED_METRICS)}}
#: Figure files :func:`write_report` writes (others in ``figures/`` are never touched).
FIGURES = ("perception.png", "label_accuracy.png", "quality.png", "es_by_sources.png",
           "accuracy_by_sources.png", "scores.png")


def _usable(key: str, value: Any) -> bool:
    if key in ("n_sources", "count"):
        return as_whole(value) is not None
    if key == "recognition":
        return isinstance(value, bool)  # bool("false") would be True
    return is_number(value)


def _value(row: dict[str, Any], key: str) -> Any:
    """``row[key]`` when the tables can use it (counts as ``int``), else None (missing)."""
    value = row.get(key)
    if value is None or not _usable(key, value):
        return None
    return as_whole(value) if key in ("n_sources", "count") else value


def row_problem(row: dict[str, Any]) -> str | None:
    """The first value of ``row`` the tables cannot use, as ``key value is not …``, or None
    (NaN scores are missing values, not problems)."""
    for key, expected in EXPECTED.items():
        value = row.get(key)
        if value is None or _usable(key, value) or (
                key not in ("n_sources", "count", "recognition")
                and isinstance(value, float) and math.isnan(value)):
            continue
        return f"{key} {value!r} is not {expected}"
    return None


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _present(rows: Sequence[dict[str, Any]], key: str) -> bool:
    return any(key in r for r in rows)


def summarize_group(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Metrics of one group of rows.

    Returns:
        ``n`` (rows), ``US/ES/OS`` (rates over rows with a count and a true count),
        ``count_missing``, ``label_acc`` + ``recognition_missing``, and for each 1–10 and
        embedding metric present in the rows: its mean and ``<metric>_missing``.
    """
    ok = [r for r in rows if r.get("status", "ok") == "ok"]
    out: dict[str, Any] = {"n": len(ok)}
    if _present(ok, "count"):
        pairs = [(c, min(t, 4)) for r in ok
                 if (c := _value(r, "count")) is not None and (t := _value(r, "n_sources")) is not None]
        k = len(pairs)
        out["US"] = sum(p < t for p, t in pairs) / k if k else None
        out["ES"] = sum(p == t for p, t in pairs) / k if k else None
        out["OS"] = sum(p > t for p, t in pairs) / k if k else None
        out["count_missing"] = len(ok) - k
    if _present(ok, "recognition"):
        vals = [v for r in ok if (v := _value(r, "recognition")) is not None]
        out["label_acc"] = _mean([float(v) for v in vals])
        out["recognition_missing"] = len(ok) - len(vals)
    for metric in (*SCORE_METRICS, *EMBED_METRICS):
        if _present(ok, metric):
            vals = [float(v) for r in ok if (v := _value(r, metric)) is not None]
            out[metric] = _mean(vals)
            out[f"{metric}_missing"] = len(ok) - len(vals)
    skipped = [r for r in rows if r.get("status", "ok") != "ok"]
    if skipped:
        out["skipped"] = len(skipped)
    return out


def summarize(rows: Iterable[dict[str, Any]], by: Sequence[str] = ("method",)) -> list[dict[str, Any]]:
    """Group rows by the ``by`` keys (in first-seen order) and summarise each group (an
    ``n_sources`` the tables cannot use groups as unknown)."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        key = tuple(_value(r, k) if k == "n_sources" else r.get(k) for k in by)
        groups.setdefault(key, []).append(r)
    keys = list(groups)
    if "n_sources" in by:  # methods in first-seen order, sources ascending
        i = list(by).index("n_sources")
        order = {k: n for n, k in enumerate(dict.fromkeys(tuple(x for j, x in enumerate(k)
                                                                 if j != i) for k in keys))}
        keys.sort(key=lambda k: (order[tuple(x for j, x in enumerate(k) if j != i)],
                                 k[i] if k[i] is not None else 99))
    table = [{**dict(zip(by, key, strict=True)), **summarize_group(groups[key])} for key in keys]
    if any("skipped" in t for t in table):  # 0, not "missing", where a group skipped nothing
        for t in table:
            t.setdefault("skipped", 0)
    return table


def _source_order(value: Any) -> tuple[int, float, str]:
    """Sort key for ``n_sources`` values: numbers ascending, anything else after them."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value), "")
    return (1, 0.0, str(value))


def pivot(table: Sequence[dict[str, Any]], value: str, row: str = "method",
          col: str = "n_sources") -> list[dict[str, Any]]:
    """Long table → wide: one line per ``row`` with a column per ``col`` value.

    Lines keep the first-seen order of ``row``; columns are in ascending ``col`` order
    (1, 2, 3, 4 sources) whichever values the first line has.
    """
    cols = sorted({t[col] for t in table if t.get(col) is not None}, key=_source_order)
    out: dict[Any, dict[str, Any]] = {}
    for t in table:
        line = out.setdefault(t[row], {row: t[row], **{f"{col}={c}": None for c in cols}})
        if t.get(col) is not None:
            line[f"{col}={t[col]}"] = t.get(value)
    return list(out.values())


def _columns(table: Sequence[dict[str, Any]]) -> list[str]:
    cols: list[str] = []
    for t in table:
        for k in t:
            if k not in cols:
                cols.append(k)
    return cols


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, float):
        return f"{v:.3f}"
    return str(v)


def md_cell(value: Any) -> str:
    """``value`` safe inside a Markdown table cell.

    Names and texts come from other people's directories and from language models: Markdown
    viewers render HTML in cells, so ``<``, ``>`` and ``&`` are escaped; ``|`` and line breaks
    would split the row, and a trailing backslash would escape the cell's closing ``|``.
    """
    text = html.escape(str(value).replace("\\", "\\\\"), quote=False).replace("|", "\\|")
    return " ".join(text.splitlines())


def to_markdown(table: Sequence[dict[str, Any]], title: str | None = None,
                note: str | None = None) -> str:
    """A GitHub-flavoured Markdown table (None shown as "–"), with ``note`` below it."""
    cols = _columns(table)
    lines = [f"### {title}", ""] if title else []
    if not cols:
        return "\n".join([*lines, "(no rows)", ""])
    lines.append("| " + " | ".join(md_cell(c) for c in cols) + " |")
    lines.append("|" + "|".join("---" for _ in cols) + "|")
    for t in table:
        lines.append("| " + " | ".join(md_cell(_fmt(t.get(c))) for c in cols) + " |")
    if note:
        lines += ["", note]
    return "\n".join(lines) + "\n"


def write_table(table: Sequence[dict[str, Any]], stem: str | Path, title: str | None = None,
                note: str | None = None) -> list[Path]:
    """Write ``stem.csv`` and ``stem.md`` (atomic); empty cells for missing values in CSV;
    ``note`` goes below the Markdown table."""
    stem = Path(stem)
    cols = _columns(table)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    writer.writeheader()
    for t in table:
        writer.writerow({c: ("" if t.get(c) is None else t.get(c)) for c in cols})
    csv_path = write_text(stem.with_suffix(".csv"), buf.getvalue())
    md_path = write_text(stem.with_suffix(".md"), to_markdown(table, title, note))
    return [csv_path, md_path]


def bar_chart(table: Sequence[dict[str, Any]], keys: Sequence[str], path: str | Path, *,
              group: str = "method", title: str = "", ylabel: str = "",
              ylim: tuple[float, float] | None = None) -> Path | None:
    """Grouped bars: one group per ``table`` line, one bar per key (missing → no bar).

    Returns the PNG path, or None when there is nothing to draw.
    """
    keys = [k for k in keys if any(t.get(k) is not None for t in table)]
    if not table or not keys:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [str(t.get(group)) for t in table]
    width = 0.8 / len(keys)
    fig, ax = plt.subplots(figsize=(max(4.0, 0.9 * len(names) * max(1, len(keys)) / 2 + 2), 3.6))
    for j, key in enumerate(keys):
        xs = [i + (j - (len(keys) - 1) / 2) * width for i in range(len(names))]
        ys = [t.get(key) for t in table]
        ax.bar([x for x, y in zip(xs, ys, strict=True) if y is not None],
               [y for y in ys if y is not None], width, label=PRETTY.get(key, key))
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=30 if max(len(n) for n in names) > 8 else 0, ha="right"
                       if max(len(n) for n in names) > 8 else "center", fontsize=8)
    if ylim:
        ax.set_ylim(*ylim)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    if len(keys) > 1:
        ax.legend(fontsize=7, ncol=min(4, len(keys)))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path


def coverage_note(rows: Sequence[dict[str, Any]]) -> str | None:
    """A warning when some method lacks a result for some item of ``rows``, else None.

    Rows without an ``id`` are not counted. An item counts for a method only with an ``ok``
    row; failed or skipped rows (``status`` other than ``ok``) show who lacks what.
    """
    items: set[str] = set()
    done: dict[Any, set[str]] = {}
    for r in rows:
        if r.get("id") is None:
            continue
        items.add(str(r["id"]))
        ok = done.setdefault(r.get("method"), set())
        if r.get("status", "ok") == "ok":
            ok.add(str(r["id"]))
    short = [f"{m} {len(ok)} of {len(items)}" for m, ok in done.items() if ok != items]
    if not short:
        return None
    sets = list(done.values())
    if any(ok != sets[0] for ok in sets):
        return ("Note: methods are compared over different items — not every method has a "
                "result for every item (failed or skipped: see the skipped column of "
                "summary/missing). Items with a result: " + "; ".join(short) + ".")
    return (f"Note: {len(items) - len(sets[0])} of {len(items)} items have no result (failed "
            "or skipped: see the skipped column of summary/missing); every method covers the "
            f"same {len(sets[0])}.")


def write_report(rows: Sequence[dict[str, Any]], out_dir: str | Path,
                 title: str = "results", notes: Sequence[str] = ()) -> dict[str, list[str]]:
    """Write every table and figure for ``rows`` into ``out_dir``.

    A figure of :data:`FIGURES` that has nothing to draw this time is removed, so no figure
    of an earlier report stays beside these tables.

    Args:
        notes: more notes for below every table (after the coverage note).

    Returns:
        ``{"tables": [...], "figures": [...]}`` relative paths that were written.
    """
    out_dir = Path(out_dir)
    tables_dir, fig_dir = out_dir / "tables", out_dir / "figures"
    written: dict[str, list[str]] = {"tables": [], "figures": []}

    bad = [p for r in rows if r.get("status", "ok") == "ok" and (p := row_problem(r))]
    bad_note = (f"Note: {len(bad)} rows hold values the tables cannot use, counted as missing "
                f"(e.g. {bad[0]})." if bad else None)
    if bad_note:
        log.warning("%s", bad_note)
    coverage = coverage_note(rows)
    if coverage:
        log.warning("%s", coverage)
    note = "\n\n".join(n for n in (coverage, bad_note, *notes) if n) or None

    def tab(table: Sequence[dict[str, Any]], name: str, caption: str) -> None:
        for p in write_table(table, tables_dir / name, f"{title}: {caption}", note):
            written["tables"].append(str(p.relative_to(out_dir)))

    def fig(path: Path | None) -> None:
        if path is not None:
            written["figures"].append(str(path.relative_to(out_dir)))

    summary = summarize(rows, ("method",))
    by_src = summarize(rows, ("method", "n_sources"))
    tab(summary, "summary", "every metric per method")
    tab(by_src, "by_sources", "every metric per method and number of sources")
    es = pivot(by_src, "ES")
    acc = pivot(by_src, "label_acc")
    tab(es, "es_by_sources", "ES (perceived count = true count) per number of sources")
    tab(acc, "accuracy_by_sources", "label accuracy per number of sources")
    missing = [{"method": s["method"], **{k[: -len("_missing")]: v for k, v in s.items()
                                          if k.endswith("_missing")}, "skipped": s.get("skipped", 0)}
               for s in summary]
    tab(missing, "missing", "missing (unparseable or unavailable) values per metric")

    fig(bar_chart(summary, ("US", "ES", "OS"), fig_dir / "perception.png",
                  title=f"{title}: source perception", ylabel="rate", ylim=(0, 1)))
    fig(bar_chart(summary, ("label_acc",), fig_dir / "label_accuracy.png",
                  title=f"{title}: label recognition", ylabel="accuracy", ylim=(0, 1)))
    fig(bar_chart(summary, SCORE_METRICS, fig_dir / "quality.png",
                  title=f"{title}: judge scores (1–10)", ylabel="mean score", ylim=(0, 10)))
    src_cols = [k for k in _columns(es) if k.startswith("n_sources=")]
    fig(bar_chart(es, src_cols, fig_dir / "es_by_sources.png",
                  title=f"{title}: ES per number of sources", ylabel="ES rate", ylim=(0, 1)))
    fig(bar_chart(acc, src_cols, fig_dir / "accuracy_by_sources.png",
                  title=f"{title}: label accuracy per number of sources", ylabel="accuracy",
                  ylim=(0, 1)))
    fig(bar_chart(summary, ("clapscore", "clip_generated_cos", "clip_reference_cos"),
                  fig_dir / "scores.png", title=f"{title}: embedding similarity",
                  ylabel="cosine"))
    drawn = {out_dir / f for f in written["figures"]}
    for name in FIGURES:  # one drawn earlier would contradict these tables
        if fig_dir / name not in drawn and (fig_dir / name).is_file():
            (fig_dir / name).unlink()
    return written
