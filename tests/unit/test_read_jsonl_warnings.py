"""``io.read_jsonl_numbered`` says which a skipped line is: a last line a writer cut short, or a
corrupt line (named by number); lines end at newlines only."""

from __future__ import annotations

from pathlib import Path

import pytest

from auralens.io import JsonLinesError, read_jsonl, read_jsonl_numbered


def _read(path: Path, text: str, caplog: pytest.LogCaptureFixture, *,
          strict: bool = False) -> tuple[list[int], list[str]]:
    path.write_text(text, encoding="utf-8")
    caplog.clear()
    with caplog.at_level("WARNING", logger="auralens.io"):
        numbers = [n for n, _ in read_jsonl_numbered(path, strict=strict)]
    return numbers, [r.getMessage() for r in caplog.records]


def test_a_corrupt_middle_line_and_a_cut_short_last_line_are_told_apart(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "r.jsonl"
    numbers, messages = _read(path, '{"id": 1}\nnot json\n{"id": 3}\n{"id": 4, "v"', caplog)
    assert numbers == [1, 3]
    assert messages == [f"skipping corrupt line 2 of {path} (not valid JSON)",
                        f"{path}: skipping an incomplete last line 4"]


@pytest.mark.parametrize("text", [
    '{"id": 1}\n{"id": 2, "v"\n',  # the writer ended it: not cut short
    '{"id": 1}\n{"id": 2}}',  # no newline, but its JSON is not open: a mistake
])
def test_a_bad_last_line_that_was_not_cut_short_is_corrupt(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, text: str) -> None:
    path = tmp_path / "r.jsonl"
    numbers, messages = _read(path, text, caplog)
    assert numbers == [1]
    assert messages == [f"skipping corrupt line 2 of {path} (not valid JSON)"]


def test_strict_reading_warns_of_the_cut_short_last_line_it_skips(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "m.jsonl"
    numbers, messages = _read(path, '{"id": 1}\n{"id": 2, "mixt', caplog, strict=True)
    assert numbers == [1] and messages == [f"{path}: skipping an incomplete last line 2"]
    with pytest.raises(JsonLinesError, match=r"m\.jsonl:2: not a JSON line"):
        _read(path, '{"id": 1}\nnot json\n{"id": 3}\n', caplog, strict=True)


def test_records_whose_text_holds_line_separators_are_whole(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "r.jsonl"
    texts = ["one\u2028two", "three\u2029four", "five\x85six"]
    lines = "".join(f'{{"id": {i}, "text": "{t}"}}\r\n' for i, t in enumerate(texts))
    numbers, messages = _read(path, lines, caplog)
    assert numbers == [1, 2, 3] and not messages
    assert [r["text"] for r in read_jsonl(path)] == texts
