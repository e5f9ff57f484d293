"""Aggregation: known-answer rates/means per method and #sources, missing counts, files."""

from __future__ import annotations

import csv

import pytest

from auralens.evaluate.aggregate import pivot, row_problem, summarize, to_markdown, write_report

ROWS = [
    # method a: counts vs truth → ES, US, OS, missing
    {"method": "a", "n_sources": 1, "count": 1, "recognition": True, "coherence": 8, "clapscore": 0.2},
    {"method": "a", "n_sources": 2, "count": 1, "recognition": False, "coherence": None, "clapscore": 0.4},
    {"method": "a", "n_sources": 2, "count": 3, "recognition": True, "coherence": 6},
    {"method": "a", "n_sources": 3, "count": None, "recognition": None, "coherence": 4},
    {"method": "b", "n_sources": 1, "count": 1, "recognition": True, "coherence": 9},
    {"method": "b", "n_sources": 2, "count": 2, "recognition": True, "coherence": 7},
    {"method": "b", "n_sources": 2, "status": "skipped", "skip_reason": "no model"},
]


def test_summary_known_values() -> None:
    a, b = summarize(ROWS)
    assert a["method"] == "a" and a["n"] == 4
    assert a["US"] == pytest.approx(1 / 3) and a["ES"] == pytest.approx(1 / 3)
    assert a["OS"] == pytest.approx(1 / 3) and a["count_missing"] == 1
    assert a["label_acc"] == pytest.approx(2 / 3) and a["recognition_missing"] == 1
    assert a["coherence"] == pytest.approx(6.0) and a["coherence_missing"] == 1
    assert a["clapscore"] == pytest.approx(0.3) and a["clapscore_missing"] == 2
    assert b["n"] == 2 and b["ES"] == 1.0 and b["skipped"] == 1 and b["coherence"] == 8.0


def test_by_sources_and_pivot() -> None:
    by = summarize(ROWS, ("method", "n_sources"))
    assert [(t["method"], t["n_sources"]) for t in by] == [("a", 1), ("a", 2), ("a", 3),
                                                          ("b", 1), ("b", 2)]
    a2 = by[1]
    assert a2["ES"] == 0.0 and a2["US"] == 0.5 and a2["OS"] == 0.5 and a2["label_acc"] == 0.5
    es = pivot(by, "ES")
    assert es[0] == {"method": "a", "n_sources=1": 1.0, "n_sources=2": 0.0, "n_sources=3": None}
    assert es[1]["n_sources=3"] is None
    md = to_markdown(es, "ES")
    assert "| a | 1.000 | 0.000 | – |" in md


def test_write_report_files(tmp_path) -> None:
    written = write_report(ROWS, tmp_path, title="demo")
    for name in ("summary", "by_sources", "es_by_sources", "accuracy_by_sources", "missing"):
        assert f"tables/{name}.csv" in written["tables"]
        assert (tmp_path / "tables" / f"{name}.md").read_text().startswith("### demo")
    for name in ("perception", "label_accuracy", "quality", "es_by_sources",
                 "accuracy_by_sources", "scores"):
        png = tmp_path / "figures" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
    with open(tmp_path / "tables" / "missing.csv") as fh:
        missing = {r["method"]: r for r in csv.DictReader(fh)}
    assert missing["a"]["count"] == "1" and missing["a"]["coherence"] == "1"
    assert missing["b"]["skipped"] == "1"


def test_pivot_orders_sources_whatever_the_first_method_has() -> None:
    # the first method lacks a 1-source group (its 1-source items failed)
    rows = [{"method": "a", "n_sources": 2, "count": 2},
            {"method": "c", "n_sources": 1, "count": 1},
            {"method": "c", "n_sources": 4, "count": 4},
            {"method": "c", "n_sources": 3, "count": 1}]
    es = pivot(summarize(rows, ("method", "n_sources")), "ES")
    want = ["method", "n_sources=1", "n_sources=2", "n_sources=3", "n_sources=4"]
    assert [list(line) for line in es] == [want, want]
    assert es[0] == {"method": "a", "n_sources=1": None, "n_sources=2": 1.0,
                     "n_sources=3": None, "n_sources=4": None}
    md = to_markdown(es)
    assert md.splitlines()[0] == "| method | n_sources=1 | n_sources=2 | n_sources=3 | n_sources=4 |"
    assert "| a | – | 1.000 | – | – |" in md


def test_source_chart_legend_in_source_order(tmp_path, monkeypatch) -> None:
    import auralens.evaluate.aggregate as agg

    seen = []
    real = agg.bar_chart

    def spy(table, keys, path, **kw):
        seen.append((path.name, list(keys)))
        return real(table, keys, path, **kw)

    monkeypatch.setattr(agg, "bar_chart", spy)
    rows = [{"method": "a", "n_sources": 2, "count": 2, "recognition": True},
            {"method": "c", "n_sources": 1, "count": 1, "recognition": False}]
    write_report(rows, tmp_path)
    for name in ("es_by_sources.png", "accuracy_by_sources.png"):
        assert (name, ["n_sources=1", "n_sources=2"]) in seen
    header = (tmp_path / "tables" / "es_by_sources.csv").read_text().splitlines()[0]
    assert header == "method,n_sources=1,n_sources=2"


def test_markdown_escapes_pipes_and_line_breaks() -> None:
    table = summarize([{"method": "a|b", "count": 1, "n_sources": 1},
                       {"method": "two\nlines", "count": 2, "n_sources": 2}])
    md = to_markdown(table).splitlines()
    header, rows = md[0], md[2:]
    assert "| a\\|b |" in md[2] and "| two lines |" in md[3]

    def cells(line: str) -> int:  # cell separators: pipes that are not escaped
        return len(line.replace("\\|", "")) - len(line.replace("\\|", "").replace("|", ""))

    assert all(cells(r) == cells(header) for r in rows)
    assert to_markdown([{"x|y": "p|q"}]).splitlines()[0] == "| x\\|y |"
    # texts from language models: HTML shown as text, a trailing backslash keeps the row intact
    row = to_markdown([{"method": "<b>m</b> & co\\"}]).splitlines()[2]
    assert row == "| &lt;b&gt;m&lt;/b&gt; &amp; co\\\\ |"


def test_failures_are_counted_and_flagged(tmp_path) -> None:
    rows = [{"id": "i1", "method": "a", "n_sources": 1, "count": 1},
            {"id": "i2", "method": "a", "n_sources": 2, "count": 2},
            {"id": "i1", "method": "b", "n_sources": 1, "count": 1},
            {"id": "i2", "method": "b", "n_sources": 2, "status": "error", "error": "boom"}]
    a, b = summarize(rows)
    assert (a["n"], a["skipped"]) == (2, 0) and (b["n"], b["skipped"]) == (1, 1)
    by = {(t["method"], t["n_sources"]): t for t in summarize(rows, ("method", "n_sources"))}
    assert by[("b", 2)]["skipped"] == 1 and by[("b", 1)]["skipped"] == 0
    write_report(rows, tmp_path, title="t")
    with open(tmp_path / "tables" / "missing.csv") as fh:
        missing = {r["method"]: r["skipped"] for r in csv.DictReader(fh)}
    assert missing == {"a": "0", "b": "1"}
    for name in ("summary", "es_by_sources", "missing"):
        md = (tmp_path / "tables" / f"{name}.md").read_text()
        assert "compared over different items" in md and "b 1 of 2" in md, name
        assert "a 2 of 2" not in md
    # the same item failed for every method: the same items, but fewer than in the run
    both = [*rows[:3], {**rows[1], "method": "b", "status": "error"},
            {**rows[1], "method": "a", "status": "error"}]
    both = [r for r in both if not (r["id"] == "i2" and r.get("status", "ok") == "ok")]
    write_report(both, tmp_path / "both")
    md = (tmp_path / "both" / "tables" / "summary.md").read_text()
    assert "1 of 2 items have no result" in md and "different items" not in md
    # every method has every item: no note
    write_report(rows[:3] + [{**rows[3], "status": "ok", "count": 2}], tmp_path / "ok")
    assert "different items" not in (tmp_path / "ok" / "tables" / "summary.md").read_text()


def test_values_of_the_wrong_kind_count_as_missing(tmp_path) -> None:
    rows = [{"method": "a", "n_sources": 2, "count": 2, "recognition": True, "visual_detail": 6},
            {"method": "a", "n_sources": 2, "count": "many", "recognition": "false",
             "visual_detail": float("inf")},
            {"method": "a", "n_sources": "3", "count": 1, "recognition": False,
             "visual_detail": "high"},
            {"method": "a", "n_sources": 1, "count": 1, "recognition": None,
             "visual_detail": float("nan")}]
    (a,) = summarize(rows)
    assert a["ES"] == 1.0 and a["count_missing"] == 2  # "many", and an unusable true count
    assert a["label_acc"] == 0.5 and a["recognition_missing"] == 2  # "false" is not True
    assert a["visual_detail"] == 6.0 and a["visual_detail_missing"] == 3
    by = summarize(rows, ("method", "n_sources"))
    assert [t["n_sources"] for t in by] == [1, 2, None]
    write_report(rows, tmp_path)
    md = (tmp_path / "tables" / "summary.md").read_text()
    assert "inf" not in md and "| 6.000 |" in md
    assert ("Note: 2 rows hold values the tables cannot use, counted as missing (e.g. "
            "count 'many' is not a whole number ≥ 0).") in md


def test_a_rerun_removes_figures_it_did_not_draw(tmp_path) -> None:
    write_report(ROWS, tmp_path)
    own = tmp_path / "figures" / "mine.png"
    own.write_bytes(b"not ours")
    counts = [{"method": "a", "n_sources": 1, "count": 1}]
    written = write_report(counts, tmp_path)
    assert written["figures"] == ["figures/perception.png", "figures/es_by_sources.png"]
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == [
        "es_by_sources.png", "mine.png", "perception.png"]
    assert write_report([], tmp_path)["figures"] == []
    assert [p.name for p in (tmp_path / "figures").iterdir()] == ["mine.png"]


def test_whole_valued_float_counts_are_whole_numbers() -> None:
    # pandas writes a column holding a null as floats: 1.0 is the whole number 1
    rows = [{"method": "a", "n_sources": 1.0, "count": 1.0},
            {"method": "a", "n_sources": 1, "count": 2},
            {"method": "a", "n_sources": 2.0, "count": 2.0}]
    assert [row_problem(r) for r in rows] == [None, None, None]
    by = summarize(rows, ("method", "n_sources"))
    assert [(t["n_sources"], t["n"], t["ES"]) for t in by] == [(1, 2, 0.5), (2, 1, 1.0)]
    assert all(type(t["n_sources"]) is int for t in by)
    assert list(pivot(by, "ES")[0]) == ["method", "n_sources=1", "n_sources=2"]
    for bad in (1.5, "3", True, -1.0):
        assert row_problem({"n_sources": bad}) == f"n_sources {bad!r} is not a whole number ≥ 0"
        assert row_problem({"count": bad}) == f"count {bad!r} is not a whole number ≥ 0"
    assert summarize([{"method": "a", "n_sources": 1, "count": 1.5}])[0]["count_missing"] == 1
