"""Ratings: validation, atomic append, round trip and aggregation."""

from __future__ import annotations

import threading

import pytest

from auralens.evaluate.ratings import (
    COLUMNS,
    RatingError,
    aggregate_ratings,
    load_ratings,
    ratings_csv,
    ratings_markdown,
    save_rating,
)


def test_round_trip_and_aggregate(tmp_path) -> None:
    csv_path = tmp_path / "ratings.csv"
    marks = {("ann", "c1"): (4, 5), ("ann", "c2"): (2, 3), ("bob", "c1"): (3, 4)}
    for (rater, clip), (v, a) in marks.items():
        save_rating(csv_path, rater=rater, run="r", version="r/minmax", clip=clip, visual=v, audio=a,
                    comment="nice, \"quoted\"\nline")
    save_rating(csv_path, rater="ann", run="r", version="r/none", clip="c1", visual=1, audio=1)
    loaded = load_ratings(csv_path)
    assert len(loaded) == 4 and loaded[0].comment == 'nice, "quoted" line'
    rows = {r["version"]: r for r in aggregate_ratings(loaded, by=("version",))}
    assert rows["r/minmax"]["n"] == 3
    assert rows["r/minmax"]["visual_mean"] == pytest.approx(3.0)
    assert rows["r/minmax"]["visual_std"] == pytest.approx(1.0)  # sample std of 4, 2, 3
    assert rows["r/minmax"]["audio_mean"] == pytest.approx(4.0)
    # One rating has no spread: undefined, not a perfect-agreement 0.
    assert rows["r/none"]["n"] == 1 and rows["r/none"]["audio_std"] is None
    md = ratings_markdown(list(rows.values()))
    assert "3.00 ± 1.00" in md and "r/none" in md
    assert ratings_csv(list(rows.values())).splitlines()[0].startswith("version,n,")


def test_single_rating_shows_no_spread(tmp_path) -> None:
    p = tmp_path / "ratings.csv"
    save_rating(p, rater="ann", run="r", version="r/one", clip="c", visual=5, audio=4)
    for rater, v in (("ann", 3), ("bob", 3)):  # two identical marks: a real std of 0
        save_rating(p, rater=rater, run="r", version="r/two", clip="c", visual=v, audio=v)
    rows = aggregate_ratings(load_ratings(p), by=("version",))
    md = ratings_markdown(rows)
    assert "| r/one | 5.00 ± – | 4.00 ± – | 1 |" in md
    assert "| r/two | 3.00 ± 0.00 | 3.00 ± 0.00 | 2 |" in md
    lines = ratings_csv(rows).splitlines()
    assert lines[0] == "version,n,visual_mean,visual_std,audio_mean,audio_std"
    assert lines[1] == "r/one,1,5.0000,,4.0000,"
    assert lines[2] == "r/two,2,3.0000,0.0000,3.0000,0.0000"


def test_unknown_grouping_column_is_refused(tmp_path) -> None:
    from auralens.cli import main

    p = tmp_path / "ratings.csv"
    save_rating(p, rater="ann", run="r", version="r/v", clip="c", visual=5, audio=4)
    with pytest.raises(RatingError, match=r"unknown grouping column 'foo'.*version, run, rater, clip"):
        aggregate_ratings(load_ratings(p), by=("version", "foo"))
    assert [r["rater"] for r in aggregate_ratings(load_ratings(p), by=("rater", "clip"))] == ["ann"]
    assert main(["sonify", "ratings", str(p), "--by", "foo"]) == 1
    assert main(["sonify", "ratings", str(p), "--by", "rater,clip"]) == 0


def test_latest_rating_of_a_rater_wins(tmp_path) -> None:
    p = tmp_path / "ratings.csv"
    save_rating(p, rater="ann", run="r", version="v", clip="c", visual=1, audio=1)
    save_rating(p, rater="ann", run="r", version="v", clip="c", visual=5, audio=5)
    latest = aggregate_ratings(load_ratings(p), by=("version",))
    both = aggregate_ratings(load_ratings(p), by=("version",), latest_only=False)
    assert latest[0]["n"] == 1 and latest[0]["visual_mean"] == 5
    assert both[0]["n"] == 2 and both[0]["visual_mean"] == 3


@pytest.mark.parametrize("visual,audio", [(0, 3), (6, 3), (3, "x"), (2.5, 3), (None, 1),
                                          (True, 3), (4, True), (float("nan"), 3)])
def test_invalid_marks_rejected(tmp_path, visual, audio) -> None:
    with pytest.raises(RatingError, match="mark must be an integer 1–5"):
        save_rating(tmp_path / "r.csv", rater="ann", run="r", version="v", clip="c",
                    visual=visual, audio=audio)
    assert not (tmp_path / "r.csv").exists()


def test_missing_rater_and_bad_file(tmp_path) -> None:
    with pytest.raises(RatingError, match="rater"):
        save_rating(tmp_path / "r.csv", rater=" ", run="r", version="v", clip="c", visual=1, audio=1)
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(RatingError, match="not a ratings CSV"):
        load_ratings(bad)


def test_concurrent_appends_keep_every_row(tmp_path) -> None:
    p = tmp_path / "ratings.csv"

    def worker(name: str) -> None:
        for i in range(15):
            save_rating(p, rater=name, run="r", version="v", clip=f"c{i}", visual=1 + i % 5, audio=3)

    threads = [threading.Thread(target=worker, args=(f"rater{k}",)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(load_ratings(p)) == 60


def test_whole_float_and_csv_text_marks_are_kept(tmp_path) -> None:
    r = save_rating(tmp_path / "r.csv", rater="ann", run="r", version="v", clip="c",
                    visual=4.0, audio=" 2 ")
    assert (r.visual, r.audio) == (4, 2)
    assert [(x.visual, x.audio) for x in load_ratings(tmp_path / "r.csv")] == [(4, 2)]


def test_markdown_escapes_names() -> None:
    rows = [{"version": "<script>alert(1)</script>|x&y", "n": 1, "visual_mean": 3.0,
             "visual_std": None, "audio_mean": 4.0, "audio_std": None}]
    md = ratings_markdown(rows)
    assert "<script>" not in md
    assert "| &lt;script&gt;alert(1)&lt;/script&gt;\\|x&amp;y | 3.00 ± – |" in md



def test_a_ratings_file_with_a_byte_order_mark_is_appended_to_and_read(tmp_path) -> None:
    p = tmp_path / "r.csv"
    # as a spreadsheet saves it: a byte-order mark, the columns in another order
    header = ["rater", *(c for c in COLUMNS if c != "rater")]
    p.write_text(",".join(header) + "\n", encoding="utf-8-sig")
    save_rating(p, rater="ann", run="r", version="v", clip="c1", visual=4, audio=2)
    assert p.read_text(encoding="utf-8").startswith("\ufeff")
    assert [(r.rater, r.clip, r.visual, r.audio) for r in load_ratings(p)] == [("ann", "c1", 4, 2)]


def test_a_file_ending_inside_a_quoted_field_is_not_appended_to(tmp_path) -> None:
    """The new row used to vanish into the open comment of the last one, reported as saved."""
    path = tmp_path / "r.csv"
    save_rating(path, rater="ann", run="r", version="r/raw", clip="c", visual=5, audio=5,
                comment='say "hi", twice')  # doubled quotes inside a field are fine
    save_rating(path, rater="bob", run="r", version="r/raw", clip="c", visual=4, audio=4)
    assert len(load_ratings(path)) == 2
    path.write_text(path.read_text() + '2026-01-01T00:00:00,cy,r,r/raw,c,1,1,"open quote')
    before = path.read_bytes()
    with pytest.raises(RatingError, match="ends inside a quoted field"):
        save_rating(path, rater="dan", run="r", version="r/raw", clip="c", visual=2, audio=2)
    assert path.read_bytes() == before


# --------------------------------------------------------------------------- renders

OLD_HEADER = "timestamp,rater,run,version,clip,visual,audio,comment"


def _renders(run, sha: str | None) -> None:
    """RUN/renders/run.json as ``sonify render`` writes it (None: an older version's, no SHA-256)."""
    import json

    config = {"split": "test"} | ({"checkpoint_sha256": sha} if sha else {})
    (run / "renders").mkdir(parents=True, exist_ok=True)
    (run / "renders" / "run.json").write_text(json.dumps({"command": "sonify render", "config": config}))


def test_render_id_changes_exactly_with_the_checkpoint_of_the_renders(tmp_path) -> None:
    from auralens.evaluate.ratings import RENDER_ID_DIGITS, render_id

    run = tmp_path / "run"
    assert render_id(run / "renders") == ""  # nothing rendered
    _renders(run, None)
    assert render_id(run / "renders") == ""  # renders of an older version name no checkpoint
    _renders(run, "a" * 64)
    first = render_id(run / "renders")
    assert first == "a" * RENDER_ID_DIGITS
    _renders(run, "a" * 64)  # rendered again from the same checkpoint: the same audio
    assert render_id(run / "renders") == first
    _renders(run, "b" * 64)  # trained again and rendered: other audio
    assert render_id(run / "renders") not in ("", first)


def test_a_ratings_file_without_the_render_column_loads_and_is_appended_to(tmp_path) -> None:
    p = tmp_path / "old.csv"
    p.write_text(f"{OLD_HEADER}\n2025-01-01T10:00:00,ann,r,r/raw,c1,4,2,\"a, b\"\n"
                 "2025-01-01T10:01:00,bob,r,r/raw,c1,2,2,\n", encoding="utf-8")
    old = load_ratings(p)
    assert [(r.rater, r.comment, r.render) for r in old] == [("ann", "a, b", ""), ("bob", "", "")]
    assert aggregate_ratings(old, by=("version",))[0]["n"] == 2  # as before the column existed
    save_rating(p, rater="cy", run="r", version="r/raw", clip="c1", visual=5, audio=5, render="abc")
    lines = p.read_text(encoding="utf-8").splitlines()
    assert lines[0] == f"{OLD_HEADER},render" and len(lines) == 4
    assert [(r.rater, r.comment, r.render) for r in load_ratings(p)] == [
        ("ann", "a, b", ""), ("bob", "", ""), ("cy", "", "abc")]


def test_aggregate_keeps_two_renders_of_a_version_apart(tmp_path, caplog) -> None:
    import logging

    p = tmp_path / "ratings.csv"
    for ts, rater, mark, render in (("2025-01-01T10:00:00", "ann", 1, "old"),
                                    ("2025-01-01T10:00:01", "bob", 1, "old"),
                                    ("2025-01-02T10:00:00", "ann", 5, "new"),  # re-rendered since
                                    ("2025-01-02T10:00:01", "cy", 4, "")):  # an older file's
        save_rating(p, rater=rater, run="r", version="r/raw", clip="c", visual=mark, audio=mark,
                    timestamp=ts, render=render)
    save_rating(p, rater="ann", run="r", version="r/ceiling", clip="c", visual=3, audio=3,
                timestamp="2025-01-01T10:00:00", render="old")
    ratings = load_ratings(p)
    with caplog.at_level(logging.WARNING, logger="auralens.evaluate.ratings"):
        rows = {r["version"]: r for r in aggregate_ratings(ratings, by=("version",))}
    # only the latest rated render of r/raw (plus the rating naming none): 5 and 4, not 1, 1, 5, 4
    assert rows["r/raw"]["n"] == 2 and rows["r/raw"]["visual_mean"] == pytest.approx(4.5)
    assert rows["r/ceiling"]["n"] == 1  # its only render is its latest
    assert "left out 2 rating(s) of earlier renders of r/raw" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="auralens.evaluate.ratings"):
        apart = aggregate_ratings(ratings, by=("version", "render"))
    assert "left out" not in caplog.text
    by_render = {(r["version"], r["render"]): (r["n"], r["visual_mean"]) for r in apart}
    # ann's later rating is of another render: it does not replace her rating of the old one
    assert by_render == {("r/raw", "old"): (2, 1.0), ("r/raw", "new"): (1, 5.0),
                         ("r/raw", ""): (1, 4.0), ("r/ceiling", "old"): (1, 3.0)}
    assert "| r/raw | old | 1.00 ± 0.00 |" in ratings_markdown(apart)
