"""A label file given to ``clap-zeroshot@labels=`` is read as user text: one that is not UTF-8
is refused in one line naming the file, a byte-order mark is not part of the first label."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from auralens.io import NotTextError
from auralens.scene.caption.base import CAPTIONERS
from auralens.scene.caption.clap_zeroshot import read_labels


def test_a_label_file_that_is_not_utf8_is_named(tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_bytes(b"dog\n\xff\xfe cat\n")
    with pytest.raises(NotTextError) as err:
        read_labels(labels)
    assert str(err.value) == f"{labels}: not UTF-8 text (invalid start byte at byte 4)"


def test_a_label_file_keeps_its_lines_without_a_byte_order_mark(tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_bytes(b"\xef\xbb\xbfdog\r\n# a comment\r\n\r\n  church bells \r\nrain")
    assert read_labels(labels) == ["dog", "church bells", "rain"]


def test_the_captioner_names_a_label_file_that_is_not_text(tiny_model, tmp_path: Path) -> None:
    labels = tmp_path / "labels.txt"
    labels.write_bytes(b"\x00\x01\x80 not text")
    with pytest.raises(NotTextError, match=f"^{re.escape(str(labels))}: not UTF-8 text "):
        CAPTIONERS.build(f"clap-zeroshot:{tiny_model('clap_tiny')}@labels={labels}")
