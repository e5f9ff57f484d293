"""Aggregation: known-answer rates/means per method and #sources, missing counts, files."""

from __future__ import annotations

import csv

import pytest

from auralens.evaluate.aggregate import pivot, summarize, to_markdown, write_report

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
