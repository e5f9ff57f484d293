"""The experiment tables cover exactly the current run: a rerun with another limit or subset
leaves older items out, failed (item, method) pairs count in the ``skipped`` column and are
retried, and a missing video folder is a one-line error. NMF + the committed classifier +
the template composer + the keyword judge on three short synthetic mixtures."""

from __future__ import annotations

import copy
import csv
from pathlib import Path

import pytest

import auralens.experiments.runner as runner
from auralens.cli import main
from auralens.experiments.runner import Item, run_experiment, table_rows
from auralens.io import read_jsonl

ROOT = Path(__file__).resolve().parents[2]
LOOSE = {"rule": "relative_db", "min_db": -60}


@pytest.fixture(scope="module")
def lib(tmp_path_factory) -> Path:
    from auralens.data.synth import synthesize

    return synthesize(tmp_path_factory.mktemp("exp-tables") / "lib", clips_per_class=1, seed=3,
                      duration=1.0)


def _cfg(lib: Path, names: tuple[str, ...] = ("m",), **data) -> dict:
    methods = [{"name": n, "type": "pipeline", "separator": "nmf@n_iter=10",
                "captioner": "classifier", "composer": "template", "activity": LOOSE}
               for n in names]
    return copy.deepcopy({
        "name": "t", "kind": "pipeline", "_source": "t.yaml",
        "data": {"source": "esc50", "path": str(lib), "n": 3, "duration": 1.5,
                 "reverb": False, "seed": 0, "max_sources": 2, **data},
        "methods": methods, "judge": {"spec": "keyword", "metrics": ["count", "recognition"]},
        "clap": {"model": None}})


def _rows(out: Path, name: str) -> list[dict[str, str]]:
    with open(out / "tables" / f"{name}.csv") as fh:
        return list(csv.DictReader(fh))


def _table(out: Path, name: str) -> dict[str, dict[str, str]]:
    return {r["method"]: r for r in _rows(out, name)}


def test_rerun_with_a_smaller_selection_tables_only_current_items(lib: Path,
                                                                  tmp_path: Path) -> None:
    out = tmp_path / "e"
    first = run_experiment(_cfg(lib), out)
    assert first["new"] == 3 and _table(out, "summary")["m"]["n"] == "3"
    ids = [r["id"] for r in read_jsonl(out / "results.jsonl")]

    limited = run_experiment(_cfg(lib, limit=2), out)
    assert limited["new"] == 0 and limited["in_tables"] == 2 and limited["outside_tables"] == 1
    assert len(read_jsonl(out / "results.jsonl")) == 3  # kept for a later run
    assert _table(out, "summary")["m"]["n"] == "2"
    assert _table(out, "missing")["m"]["skipped"] == "0"
    assert sum(int(r["n"]) for r in _rows(out, "by_sources")) == 2

    sub = _cfg(lib)
    sub["subset"] = {"n": 1, "seed": 1}
    one = run_experiment(sub, out)
    assert one["new"] == 0 and one["in_tables"] == 1 and _table(out, "summary")["m"]["n"] == "1"

    again = run_experiment(_cfg(lib), out)  # the full selection again: reused, all back
    assert again["new"] == 0 and again["outside_tables"] == 0
    assert _table(out, "summary")["m"]["n"] == "3"
    assert sorted(r["id"] for r in read_jsonl(out / "results.jsonl")) == sorted(ids)


def test_failed_pairs_count_as_skipped_and_are_retried(lib: Path, tmp_path: Path,
                                                       monkeypatch) -> None:
    out = tmp_path / "e"
    real = runner.Describer.describe
    failing: set[tuple[str, str]] = set()

    def describe(self, method, item):
        if (item.id, method["name"]) in failing:
            raise RuntimeError("captioner crashed")
        return real(self, method, item)

    monkeypatch.setattr(runner.Describer, "describe", describe)
    items = runner.load_items(_cfg(lib), tmp_path / "probe")
    failing.add((items[0].id, "b"))
    first = run_experiment(_cfg(lib, ("a", "b")), out)
    assert first["errors"] == 1 and first["lacking"] == 1
    records = [r for r in read_jsonl(out / "results.jsonl") if r.get("status") == "error"]
    assert [(r["id"], r["method"]) for r in records] == [(items[0].id, "b")]
    assert "captioner crashed" in records[0]["error"]
    summary = _table(out, "summary")
    assert (summary["a"]["n"], summary["a"]["skipped"]) == ("3", "0")
    assert (summary["b"]["n"], summary["b"]["skipped"]) == ("2", "1")
    assert {m: r["skipped"] for m, r in _table(out, "missing").items()} == {"a": "0", "b": "1"}
    assert sum(int(r["skipped"]) for r in _rows(out, "by_sources") if r["method"] == "b") == 1
    md = (out / "tables" / "summary.md").read_text()
    assert "compared over different items" in md and "b 2 of 3" in md

    failing.clear()  # the next run retries the failed pair only
    second = run_experiment(_cfg(lib, ("a", "b")), out)
    assert second["new"] == 1 and second["errors"] == 0 and second["lacking"] == 0
    rows = read_jsonl(out / "results.jsonl")
    assert len(rows) == 6 and all(r["status"] == "ok" for r in rows)
    assert {m: r["skipped"] for m, r in _table(out, "missing").items()} == {"a": "0", "b": "0"}
    assert "different items" not in (out / "tables" / "summary.md").read_text()


def test_table_rows_selects_current_pairs_and_marks_lacking_ones() -> None:
    items = [Item("x", Path("x.wav"), [], 1), Item("y", Path("y.wav"), [], 2)]
    rows = [{"id": "x", "method": "a", "status": "error", "error": "boom"},
            {"id": "x", "method": "a", "n_sources": 1, "count": 1},  # ok wins over the record
            {"id": "y", "method": "a", "n_sources": 2, "count": 2},
            {"id": "old", "method": "a", "n_sources": 3, "count": 3},  # another subset
            {"id": "x", "method": "gone", "n_sources": 1, "count": 1},  # no longer configured
            {"id": "y", "method": "b", "n_sources": 2, "count": 2}]
    got = table_rows(rows, items, ["a", "b", "never-ran"])
    assert [(r["id"], r["method"], r.get("status", "ok")) for r in got] == [
        ("x", "a", "ok"), ("y", "a", "ok"), ("x", "b", "missing"), ("y", "b", "ok")]
    assert got[2]["n_sources"] == 1


def test_missing_video_folder_is_one_line(tmp_path: Path, capsys) -> None:
    for path in (tmp_path / "no-videos", ROOT / "README.md"):
        code = main(["experiment", "run", str(ROOT / "configs" / "experiments" / "video.yaml"),
                     "--set", "variant=study", "--set", f"data.path={path}",
                     "--out", str(tmp_path / "o")])
        err = capsys.readouterr().err.strip()
        assert code == 1 and err.startswith("error:") and len(err.splitlines()) == 1, err
        assert str(path) in err and "video directory" in err and "(data.path)" in err
