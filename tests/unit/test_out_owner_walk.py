"""The check that an --out folder holds only a command's own files stops at the first foreign
file instead of walking a whole tree first (an --out of ``.`` or ``~``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from auralens.data.folder import check_out_owner


class Refused(Exception):
    pass


def _owned(rel: Path) -> bool:
    return rel.suffix == ".wav"


def test_a_foreign_file_is_found_without_listing_later_folders(tmp_path, monkeypatch):
    (tmp_path / "a_notes.txt").write_text("mine")
    deep = tmp_path / "zz" / "deeper" / "deepest"
    deep.mkdir(parents=True)
    (deep / "x.wav").write_bytes(b"")
    listed: list[str] = []
    real_scandir, real_listdir = os.scandir, os.listdir

    def scandir(path=".", *a, **k):
        listed.append(os.fspath(path))
        return real_scandir(path, *a, **k)

    def listdir(path=".", *a, **k):
        listed.append(os.fspath(path))
        return real_listdir(path, *a, **k)

    monkeypatch.setattr(os, "scandir", scandir)
    monkeypatch.setattr(os, "listdir", listdir)
    with pytest.raises(Refused, match=r"a_notes\.txt"):
        check_out_owner(tmp_path, "separate", _owned, Refused)
    assert not [p for p in listed if "zz" in Path(p).parts], listed


def test_the_walk_checks_nested_files_in_sorted_order_and_skips_hidden_ones(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "ok.wav").write_bytes(b"")
    (tmp_path / "a" / "b.txt").write_text("foreign")
    (tmp_path / "a.txt").write_text("foreign too")
    (tmp_path / ".hidden").mkdir()
    (tmp_path / ".hidden" / "c.txt").write_text("a file browser's")
    # sorted(rglob) order: a/b.txt comes before a.txt (paths compare part by part)
    with pytest.raises(Refused, match=r"\(a/b\.txt\)"):
        check_out_owner(tmp_path, "separate", _owned, Refused)
    (tmp_path / "a" / "b.txt").unlink()
    (tmp_path / "a.txt").unlink()
    check_out_owner(tmp_path, "separate", _owned, Refused)  # only owned and hidden files left
