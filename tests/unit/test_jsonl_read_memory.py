"""``io.read_jsonl_numbered`` reads a JSONL file a line at a time: neither the file's bytes nor
its text are held whole (a text with one character outside the BMP would take four bytes a
character). A :class:`io.NotTextError` holds the bytes around the bad ones, not the file, and
still counts the byte from the file's start."""

from __future__ import annotations

import pickle
import tracemalloc
from pathlib import Path

import pytest

from auralens import io

BOM = b"\xef\xbb\xbf"
#: a record of a few bytes, padded to 4 KB of line: what is parsed is small beside what is read
PADDED = b'{"n": 1}' + b" " * 4088 + b"\n"


def _peak_bytes(path: Path) -> tuple[int, int]:
    """(records, peak bytes traced) of reading ``path``."""
    tracemalloc.start()
    try:
        records = io.read_jsonl_numbered(path)
        return len(records), tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("first", [b'{"text": "dog \xf0\x9f\x90\x95"}\n', b'{"text": "dog"}\n'])
def test_a_jsonl_file_is_not_held_whole(tmp_path: Path, first: bytes) -> None:
    path = tmp_path / "big.jsonl"
    data = first + PADDED * 1000
    path.write_bytes(data)
    records, peak = _peak_bytes(path)
    assert records == 1001
    assert peak < len(data) // 4, peak  # the records and a line or so, not the file


def _bad_at_end(tmp_path: Path) -> tuple[Path, int]:
    path = tmp_path / "m.jsonl"
    head = BOM + b'{"id": 0}\r\n' + PADDED * 300
    path.write_bytes(head + b'{"id": "\xff"}\n{"id": 2}\n')
    return path, len(head) + 8


@pytest.mark.parametrize("read", [io.read_jsonl_numbered, io.read_user_text])
def test_a_not_text_error_holds_the_bytes_around_the_bad_one(tmp_path: Path, read) -> None:
    path, byte = _bad_at_end(tmp_path)
    with pytest.raises(io.NotTextError) as err:
        read(path)
    exc = err.value
    assert str(exc) == f"{path}: not UTF-8 text (invalid start byte at byte {byte})"
    assert (exc.start, exc.end) == (byte, byte + 1)
    assert len(exc.object) <= 200  # not the file's 1.2 MB
    assert exc.object[exc.start - exc.offset:exc.end - exc.offset] == b"\xff"
    assert path.read_bytes()[exc.offset:exc.offset + len(exc.object)] == exc.object
    again = pickle.loads(pickle.dumps(exc))
    assert (str(again), again.object, again.offset) == (str(exc), exc.object, exc.offset)


@pytest.mark.parametrize("strict", [False, True])
def test_a_file_that_is_not_text_raises_only_that(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                  strict: bool) -> None:
    """A corrupt line before the bad byte: no warning, no JsonLinesError, as if the whole file
    had been decoded before any line was parsed."""
    path = tmp_path / "m.jsonl"
    data = b'{"id": 1}\nnot json\n{"id": 3}\n{"id": "\xe2\x82"}\n{"id": 5, "v"'
    path.write_bytes(data)
    byte = data.index(b"\xe2")
    with caplog.at_level("WARNING", logger="auralens.io"), pytest.raises(io.NotTextError) as err:
        io.read_jsonl_numbered(path, strict=strict)
    assert str(err.value).endswith(f"(invalid continuation byte at byte {byte})")
    assert not caplog.records


@pytest.mark.parametrize("data, numbers", [
    (BOM + b'{"id": 1}\r\n\r{"id": 3}\r', [1, 3]),
    (BOM + b'{"id": 1}\r{"id": 2}\n\r\n{"id": 4}', [1, 2, 4]),
    (BOM, []),
    (BOM + b"\n", []),
])
def test_lines_end_at_newlines_carriage_returns_and_both(tmp_path: Path, data: bytes,
                                                         numbers: list[int]) -> None:
    path = tmp_path / "m.jsonl"
    path.write_bytes(data)
    assert [n for n, _ in io.read_jsonl_numbered(path, strict=True)] == numbers


def test_the_bad_byte_counts_every_byte_before_it(tmp_path: Path) -> None:
    """The mark and each line end (two bytes, or one) count."""
    path = tmp_path / "m.jsonl"
    data = BOM + b'{"id": 1}\r\n{"id": 2}\r{"id": 3}\n\n{"id": "\xc3"}\n'
    path.write_bytes(data)
    with pytest.raises(io.NotTextError, match=r"\(invalid continuation byte at byte 43\)$"):
        io.read_jsonl_numbered(path)
    assert data.index(b"\xc3") == 43
