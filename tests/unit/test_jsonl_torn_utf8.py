"""A JSONL file whose writer was killed in the middle of a multi-byte UTF-8 character ends in a
line that is not UTF-8: it is an incomplete last line like any other (skipped with a warning,
cut off by the next append), so the job that writes the file can resume. Invalid UTF-8 anywhere
else still refuses the file, naming it; JSON that Python cannot hold is a corrupt line."""

from __future__ import annotations

from pathlib import Path

import pytest

from auralens.io import (
    JsonLinesError,
    NotTextError,
    append_jsonl,
    read_jsonl,
    read_jsonl_numbered,
)

WHOLE = '{"id": 1, "text": "café"}\n{"id": 2, "text": "naïve"}\n'.encode()
TORN = b'{"id": 3, "text": "caf' + "é".encode()[:1]  # killed inside the é
EURO = "€".encode()  # three bytes


def _read(path: Path, caplog: pytest.LogCaptureFixture, *,
          strict: bool = False) -> tuple[list[int], list[str]]:
    caplog.clear()
    with caplog.at_level("WARNING", logger="auralens.io"):
        numbers = [n for n, _ in read_jsonl_numbered(path, strict=strict)]
    return numbers, [r.getMessage() for r in caplog.records]


@pytest.mark.parametrize("strict", [False, True])
@pytest.mark.parametrize("tail, number", [
    (TORN, 3),
    (b'{"id": 3, "text": "' + EURO[:2], 3),  # two of its three bytes written
    (EURO[:1], 3),  # the cut character is all the last line holds
    (b"\r" + EURO[:2], 4),  # after a line ended by a lone carriage return
])
def test_a_last_line_cut_inside_a_character_is_an_incomplete_last_line(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, strict: bool, tail: bytes,
        number: int) -> None:
    path = tmp_path / "results.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + WHOLE + tail)
    numbers, messages = _read(path, caplog, strict=strict)
    assert numbers == [1, 2]
    assert messages == [f"{path}: skipping an incomplete last line {number}"]


def test_a_file_of_only_a_cut_character_has_no_records(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "results.jsonl"
    path.write_bytes(EURO[:2])
    assert _read(path, caplog) == ([], [f"{path}: skipping an incomplete last line 1"])


@pytest.mark.parametrize("data, byte", [
    (WHOLE[:10] + b"\xff" + WHOLE[10:] + TORN, 10),  # a complete line: not a cut write
    (WHOLE + b'{"id": 3, "text": "\xff"}', len(WHOLE) + 19),  # the last line, but not cut mid-character
    (WHOLE + b'{"id": 3, "\xff' + EURO[:2], len(WHOLE) + 11),  # cut mid-character after a bad byte
    (WHOLE + TORN + b"\n", len(WHOLE) + len(TORN) - 1),  # cut, then ended: not the end of a killed write
    (b"\x89PNG\x1a\x00\x00\xe2\x82", 0),  # a binary file of one "line"
])
def test_invalid_utf8_anywhere_else_names_the_file(tmp_path: Path, data: bytes, byte: int) -> None:
    path = tmp_path / "results.jsonl"
    path.write_bytes(data)
    for strict in (False, True):
        with pytest.raises(NotTextError) as err:
            read_jsonl_numbered(path, strict=strict)
        assert str(err.value).startswith(f"{path}: not UTF-8 text (")
        assert str(err.value).endswith(f" at byte {byte})")


def test_an_append_after_a_cut_character_resumes_the_file(tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    """What a resumable job does: read what is done, then append the next record."""
    path = tmp_path / "results.jsonl"
    path.write_bytes(WHOLE + TORN)
    assert [r["id"] for r in read_jsonl(path)] == [1, 2]
    with caplog.at_level("WARNING", logger="auralens.io"):
        append_jsonl(path, {"id": 3, "text": "café"})
    assert f"{path}: removed an incomplete last line ({len(TORN)} bytes) left by an interrupted write" in caplog.messages
    assert path.read_bytes() == WHOLE + '{"id": 3, "text": "café"}\n'.encode()
    assert read_jsonl(path, strict=True) == [{"id": 1, "text": "café"}, {"id": 2, "text": "naïve"},
                                             {"id": 3, "text": "café"}]


HUGE = '{"id": 2, "n": ' + "1" * 5000 + "}"  # JSON, but no Python int holds it
DEEP = "[" * 100_000 + "]" * 100_000  # JSON nested deeper than the parser follows


@pytest.mark.parametrize("bad, problem", [
    (HUGE, "Exceeds the limit (4300 digits) for integer string conversion"),
    (DEEP, "nested too deeply"),
])
def test_json_python_cannot_hold_is_a_corrupt_line(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                   bad: str, problem: str) -> None:
    path = tmp_path / "m.jsonl"
    for text in (f'{{"id": 1}}\n{bad}\n{{"id": 3}}\n', f'{{"id": 1}}\n{{"id": 3}}\n{bad}'):
        path.write_text(text, encoding="utf-8")
        numbers, messages = _read(path, caplog)
        line = 2 if text.endswith("\n") else 3
        assert len(numbers) == 2 and line not in numbers
        assert messages == [f"skipping corrupt line {line} of {path} (not valid JSON)"]
        with pytest.raises(JsonLinesError) as err:
            read_jsonl_numbered(path, strict=True)
        assert str(err.value).startswith(f"{path}:{line}: not a JSON line ({problem}")
    # cut short while still open: an incomplete last line, not a corrupt one
    path.write_text('{"id": 1}\n' + HUGE[:-1], encoding="utf-8")
    assert _read(path, caplog, strict=True) == ([1], [f"{path}: skipping an incomplete last line 2"])


def test_separate_batch_resumes_after_a_kill_inside_a_character(tmp_path: Path, capsys) -> None:
    """The results of clips with accented names: the rerun redoes the cut item."""
    import json

    from factories.audio_files import noise_wav

    from auralens.cli import main

    data = tmp_path / "data"
    for k in range(3):
        noise_wav(data / f"café{k}.wav", k)
    out = tmp_path / "out"
    args = ["separate", "batch", str(data), "--out", str(out), "-s", "nmf@n_iter=5"]
    assert main(args) == 0
    results = out / "results.jsonl"
    raw = results.read_bytes()
    lines = raw.splitlines(keepends=True)
    assert len(lines) == 3 and "é".encode() in lines[-1]
    cut = lines[-1].index("é".encode()) + 1  # inside the é
    results.write_bytes(b"".join(lines[:-1]) + lines[-1][:cut])
    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert f"{results}: skipping an incomplete last line 3" in err
    assert f"{results}: removed an incomplete last line ({cut} bytes)" in err
    done = [json.loads(line)["id"] for line in results.read_text(encoding="utf-8").splitlines()]
    assert sorted(done) == sorted(json.loads(line)["id"] for line in lines)
