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
