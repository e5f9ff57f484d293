"""ESC-50 / folder loaders, dataset auto-detection and train/val/test split files."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from auralens.audio import write
from auralens.data import DatasetError, detect_layout, load_dataset
from auralens.data.esc50 import load_esc50, make_splits, read_splits, write_splits
from auralens.data.folder import load_folder
from auralens.types import Clip

HEADER = "filename,fold,target,category,esc10,src_file,take\n"


def _tiny_esc(root: Path, rows: list[tuple[str, int, int, str]], make_audio: bool = True) -> Path:
    (root / "meta").mkdir(parents=True)
    lines = [HEADER] + [f"{f},{fold},{t},{cat},False,1,A\n" for f, fold, t, cat in rows]
    (root / "meta" / "esc50.csv").write_text("".join(lines))
    if make_audio:
        for f, *_ in rows:
            write(root / "audio" / f, np.zeros(160, np.float32) + 0.1, 16000)
    return root


def test_esc10_fixture(esc10: Path) -> None:
    clips = load_esc50(esc10)
    assert len(clips) == 320
    assert len({c.label for c in clips}) == 10
    assert {c.fold for c in clips} == {1, 2, 3, 4}
    c = clips[0]
    assert c.id == c.path.stem and c.path.is_file() and c.duration is None
    assert c.target is not None and c.labels == [c.label]
    assert len(load_esc50(esc10, folds=[2, 3])) == 160
    assert detect_layout(esc10) == "esc50" and len(load_dataset(esc10)) == 320


def test_missing_audio_rows_are_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = _tiny_esc(tmp_path / "d", [("1-1-A-0.wav", 1, 0, "dog"), ("2-2-A-1.wav", 2, 1, "cat")])
    (root / "audio" / "2-2-A-1.wav").unlink()
    with caplog.at_level(logging.WARNING):
        clips = load_esc50(root)
    assert [c.id for c in clips] == ["1-1-A-0"]
    assert "2-2-A-1.wav" in caplog.text


@pytest.mark.parametrize("csv_text, match", [
    (None, "not found"),
    ("filename,fold\n1-1-A-0.wav,1\n", "missing column"),
    (HEADER + "1-1-A-0.wav,one,0,dog,False,1,A\n", "line 2: column 'fold'"),
])
def test_bad_csv_is_one_line_error(tmp_path: Path, csv_text: str | None, match: str) -> None:
    root = tmp_path / "d"
    (root / "meta").mkdir(parents=True)
    if csv_text is not None:
        (root / "meta" / "esc50.csv").write_text(csv_text)
    with pytest.raises(DatasetError, match=match) as info:
        load_esc50(root)
    msg = str(info.value)
    assert "\n" not in msg and "esc50.csv" in msg


def test_folder_loader(tmp_path: Path) -> None:
    for rel in ["dog/a.wav", "dog/b.flac", "cat/a.wav", "loose.wav"]:
        write(tmp_path / rel, np.full(100, 0.1, np.float32), 8000)
    (tmp_path / "notes.txt").write_text("not audio")
    (tmp_path / "dog" / ".a.tmp.wav").write_bytes(b"partial")
    clips = load_folder(tmp_path)
    assert [(c.id, c.labels) for c in clips] == [
        ("cat/a", ["cat"]), ("dog/a", ["dog"]), ("dog/b", ["dog"]), ("loose", [])]
    assert detect_layout(tmp_path) == "folder" and len(load_dataset(tmp_path)) == 4


def test_folder_ids_stay_unique_when_only_the_suffix_differs(tmp_path: Path) -> None:
    for rel in ("dog/a.wav", "dog/a.flac", "cat/b.wav", "cat/c.wav"):
        write(tmp_path / "data" / rel, np.full(100, 0.1, np.float32), 8000)
    clips = load_folder(tmp_path / "data")
    assert [c.id for c in clips] == ["cat/b", "cat/c", "dog/a.flac", "dog/a.wav"]
    # Both files survive a split, each in exactly one part.
    write_splits(make_splits(clips, ratios=(0.5, 0.0, 0.5), seed=0), tmp_path / "s")
    parts = read_splits(tmp_path / "s", clips)
    paths = sorted(str(c.path.relative_to(tmp_path / "data")) for part in parts.values() for c in part)
    assert paths == ["cat/b.wav", "cat/c.wav", "dog/a.flac", "dog/a.wav"]


def test_missing_and_empty_dirs(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not found"):
        load_dataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no audio files"):
        load_dataset(tmp_path / "empty")


def _clips(n_per: int = 20, labels: tuple[str, ...] = ("a", "b", "c")) -> list[Clip]:
    return [Clip(id=f"{lab}{i:03d}", path=Path(f"/x/{lab}{i:03d}.wav"), labels=[lab])
            for lab in labels for i in range(n_per)]


def test_splits_deterministic_disjoint_stratified() -> None:
    clips = _clips()
    s1 = make_splits(clips, seed=42)
    s2 = make_splits(list(reversed(clips)), seed=42)  # input order does not matter
    s3 = make_splits(clips, seed=43)
    ids = {k: [c.id for c in v] for k, v in s1.items()}
    assert ids == {k: [c.id for c in v] for k, v in s2.items()}
    assert ids != {k: [c.id for c in v] for k, v in s3.items()}
    sets = [set(v) for v in ids.values()]
    assert sum(map(len, sets)) == 60 and set.union(*sets) == {c.id for c in clips}
    assert not (sets[0] & sets[1] or sets[0] & sets[2] or sets[1] & sets[2])
    assert [len(ids[k]) for k in ("train", "val", "test")] == [48, 6, 6]
    for name, members in s1.items():
        assert all(c.split == name for c in members)
        assert set(Counter(c.label for c in members).values()) == {len(members) // 3}
    assert all(c.split is None for c in clips)  # inputs untouched


@pytest.mark.parametrize("ratios", [(float("nan"), 0.5, 0.5), (0.8, float("inf"), 0.1), (0.8, -0.1, 0.3),
                                    (0.0, 0.0, 0.0), (0.5, 0.5)])
def test_split_ratios_must_be_finite_non_negative(ratios) -> None:
    with pytest.raises(DatasetError, match="ratios must be three non-negative numbers"):
        make_splits(_clips(), ratios=ratios)


def test_split_files_round_trip(tmp_path: Path, esc10: Path) -> None:
    clips = load_esc50(esc10)
    splits = make_splits(clips, seed=1)
    write_splits(splits, tmp_path)
    lines = (tmp_path / "train.txt").read_text().splitlines()
    assert lines[0].endswith(".ogg") and len(lines) == len(splits["train"]) == 256  # exactly 80 % of 320
    back = read_splits(tmp_path, clips)
    assert {k: [c.id for c in v] for k, v in back.items()} == {
        k: [c.id for c in v] for k, v in splits.items()}
    assert all(c.split == "test" for c in back["test"])


def test_split_files_folder_ids(tmp_path: Path) -> None:
    clips = [Clip(id=f"{lab}/x{i}", path=Path(f"/d/{lab}/x{i}.wav"), labels=[lab])
             for lab in ("a", "b") for i in range(10)]
    splits = make_splits(clips, seed=0)
    write_splits(splits, tmp_path / "s")
    assert "/" in (tmp_path / "s" / "val.txt").read_text()
    back = read_splits(tmp_path / "s", clips)
    assert sorted(c.id for c in back["train"]) == sorted(c.id for c in splits["train"])
    with pytest.raises(DatasetError, match="no split files"):
        read_splits(tmp_path, clips)


def test_small_classes_still_fill_val_and_test():
    """3 clips × 11 classes: per-class rounding would give empty val/test; totals are kept."""
    from auralens.types import Clip

    clips = [Clip(f"{label}{i}", f"{label}{i}.wav", [label]) for label in "abcdefghijk" for i in range(3)]
    splits = make_splits(clips, seed=42)
    assert {k: len(v) for k, v in splits.items()} == {"train": 27, "val": 3, "test": 3}
    assert len({c.label for c in splits["test"]}) == 3  # spread over classes
    assert make_splits(clips, seed=42) == splits
