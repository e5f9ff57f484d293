"""Text files a user names (configs, lists, CSVs, JAMS, JSONL manifests, split files) are read through
``io.read_user_text``: a binary one is one error line naming it and the first bad byte, counted
from the file's start; a byte-order mark is dropped."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from auralens import io
from auralens.audio import write
from auralens.cli import main

NOT_TEXT = b"\xff\xfe\x00\x01 not text\n"
BOM = b"\xef\xbb\xbf"


def _error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    capsys.readouterr()
    assert main(list(argv)) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err


# ----------------------------------------------------------------------------- io readers


def test_read_user_text_names_the_file_and_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "list.txt"
    path.write_bytes(BOM + b"ab\n" + NOT_TEXT)  # the mark counts: byte 6 of the file
    with pytest.raises(io.NotTextError) as exc:
        io.read_user_text(path)
    assert str(exc.value) == f"{path}: not UTF-8 text (invalid start byte at byte 6)"
    # still a UnicodeDecodeError (callers that catch one keep doing so), and it pickles
    assert isinstance(exc.value, UnicodeDecodeError) and exc.value.start == 6
    assert str(pickle.loads(pickle.dumps(exc.value))) == str(exc.value)


def test_read_user_text_drops_a_bom_and_reads_line_ends(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_bytes(BOM + b'a,b\r\n"x\r\ny",z\rlast')
    assert io.read_user_text(path) == 'a,b\n"x\ny",z\nlast'
    with io.open_user_text(path) as fh:  # line ends as in the file, for csv
        assert fh.read() == 'a,b\r\n"x\r\ny",z\rlast'


# ----------------------------------------------------------------------------- FUSS


def test_a_binary_fuss_manifest_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "fuss"
    write(root / "eval" / "example00000.wav", 0.1 * np.ones(8000, np.float32), 16000)
    manifest = root / "manifest.jsonl"
    manifest.write_bytes(b'{"id": "a"}\n' * 1000 + NOT_TEXT)  # past a text stream's first chunk
    err = _error(capsys, "imagine", "batch", str(root), "--out", str(tmp_path / "o"),
                 "--separator", "nmf")
    assert err == f"error: {manifest}: not UTF-8 text (invalid start byte at byte 12000)\n"


def test_a_fuss_example_list_with_a_bom_is_read(tmp_path: Path) -> None:
    from auralens.data.fuss import load_fuss

    root = tmp_path / "fuss"
    write(root / "eval" / "example00000.wav", 0.1 * np.ones(800, np.float32), 16000)
    (root / "eval_example_list.txt").write_bytes(BOM + b"eval/example00000.wav\n")
    [record] = load_fuss(root)
    assert record.mixture == root / "eval" / "example00000.wav"


def _fuss_with_labels(root: Path) -> Path:
    """One FUSS eval example (with its JAMS annotation) and an FSD50K eval.csv."""
    split = root / "ssdata" / "eval"
    (split / "example0_sources").mkdir(parents=True)
    sf.write(split / "example0.wav", np.zeros(160, np.float32), 16000)
    sf.write(split / "example0_sources" / "background0_sound.wav", np.zeros(160, np.float32), 16000)
    event = {"value": {"role": "background", "source_file": "/fsd/1001.wav"}}
    (split / "example0.jams").write_text(json.dumps({"annotations": [{"data": [event]}]}))
    (root / "eval.csv").write_text("fname,labels,mids\n1001,Rain,/m/a\n")
    return root


@pytest.mark.parametrize("bad", ["fsd50k", "labels-csv", "jams"])
def test_binary_fuss_manifest_inputs_name_the_file(bad: str, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    root = _fuss_with_labels(tmp_path)
    labels = tmp_path / "labels.csv"
    labels.write_text("id,labels\nexample0,Rain\n")
    target = {"fsd50k": root / "eval.csv", "labels-csv": labels,
              "jams": root / "ssdata" / "eval" / "example0.jams"}[bad]
    # the bad byte lies past the first 8 KiB a text stream decodes at a time
    target.write_bytes(b"id,labels\n" + b"x,y\n" * 2500 + NOT_TEXT)
    flag = ["--labels-csv", str(labels)] if bad == "labels-csv" else ["--fsd50k", str(root / "eval.csv")]
    out = tmp_path / "m.jsonl"
    err = _error(capsys, "experiment", "fuss-manifest", str(out), "--fuss", str(root / "ssdata"), *flag)
    assert err == f"error: {target}: not UTF-8 text (invalid start byte at byte 10010)\n"
    assert not out.exists()


def test_fuss_manifest_csvs_with_a_bom_are_read(tmp_path: Path) -> None:
    from auralens.experiments.fussmanifest import fuss_manifest

    root = _fuss_with_labels(tmp_path)
    (root / "eval.csv").write_bytes(BOM + b"fname,labels,mids\n1001,Rain,/m/a\n")
    stats = fuss_manifest(root / "ssdata", tmp_path / "m.jsonl", fsd50k_ground_truth=root / "eval.csv")
    assert stats["unlabelled"] == 0
    labels = tmp_path / "labels.csv"
    labels.write_bytes(BOM + b"id,labels\nexample0,Wind\n")
    stats = fuss_manifest(root / "ssdata", tmp_path / "m2.jsonl", labels_csv=labels)
    assert stats["unlabelled"] == 0


# ----------------------------------------------------------------------------- ESC-50 and PREP

HEADER = "filename,fold,target,category,esc10,src_file,take\n"


def _tiny_esc(root: Path) -> Path:
    rows = [(f"1-{i}-A-0.wav", 1, i % 2, "dog" if i % 2 == 0 else "rain") for i in range(6)]
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "esc50.csv").write_text(
        HEADER + "".join(f"{f},{fold},{t},{cat},False,1,A\n" for f, fold, t, cat in rows))
    for f, *_ in rows:
        write(root / "audio" / f, 0.1 * np.ones(800, np.float32), 8000)
    return root


@pytest.mark.parametrize("bad", ["train.txt", "meta/esc50.csv"])
def test_binary_esc50_inputs_of_prepare_name_the_file(bad: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    import factories.sonify  # noqa: F401 - registers the toyband extractor and codec

    data = _tiny_esc(tmp_path / "esc")
    (data / "train.txt").write_text("1-0-A-0.wav\n1-1-A-0.wav\n")
    (data / bad).write_bytes(b"1-0-A-0.wav\n" + NOT_TEXT)
    err = _error(capsys, "sonify", "prepare", str(data), "--encoder", "toyband", "--codec", "toyband",
                 "--layer", "1", "--out", str(tmp_path / "p"))
    assert err == f"error: {data / bad}: not UTF-8 text (invalid start byte at byte 12)\n"


def test_split_files_with_a_bom_are_read(tmp_path: Path) -> None:
    from auralens.data.esc50 import load_esc50, read_splits

    data = _tiny_esc(tmp_path / "esc")
    (data / "train.txt").write_bytes(BOM + b"1-0-A-0.wav\n1-1-A-0.wav\n")
    splits = read_splits(data, load_esc50(data))
    assert [c.path.name for c in splits["train"]] == ["1-0-A-0.wav", "1-1-A-0.wav"]


def test_prep_split_files_are_read_naming_a_damaged_one(tmp_path: Path) -> None:
    from auralens.sonify.prepare import _filter_split_files

    index = [{"id": "a", "path": "/d/a.wav"}, {"id": "b", "path": "/d/b.wav"}]
    (tmp_path / "train.txt").write_bytes(BOM + b"a.wav\nc.wav\nb.wav\n")
    _filter_split_files(tmp_path, index)
    assert (tmp_path / "train.txt").read_text(encoding="utf-8") == "a.wav\nb.wav\n"
    (tmp_path / "val.txt").write_bytes(b"a.wav\n" + NOT_TEXT)
    with pytest.raises(io.NotTextError, match=r"val\.txt: not UTF-8 text \(invalid start byte at byte 6\)$"):
        _filter_split_files(tmp_path, index)


def test_a_long_binary_ratings_csv_names_the_byte_of_the_file(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    ratings = tmp_path / "ratings.csv"
    ratings.write_bytes(b"run,clip\n" + b"r,c\n" * 3000 + NOT_TEXT)  # past a text stream's first chunk
    err = _error(capsys, "sonify", "ratings", str(ratings))
    assert err == f"error: {ratings}: not UTF-8 text (invalid start byte at byte 12009)\n"


# ----------------------------------------------------------------------------- through the CLI

def test_a_binary_config_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_bytes(NOT_TEXT)
    err = _error(capsys, "experiment", "run", str(config))
    assert err.startswith(f"error: {config}: ") and "not UTF-8" in err


def test_a_binary_ratings_csv_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ratings = tmp_path / "ratings.csv"
    ratings.write_bytes(b"run,clip\n" + NOT_TEXT)
    err = _error(capsys, "sonify", "ratings", str(ratings))
    assert err == f"error: {ratings}: not UTF-8 text (invalid start byte at byte 9)\n"


def test_a_binary_example_list_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "fuss"
    write(root / "eval" / "example00000.wav", 0.1 * np.ones(8000, np.float32), 16000)
    listing = root / "eval_example_list.txt"
    listing.write_bytes(b"eval/example00000.wav\n" + NOT_TEXT)
    err = _error(capsys, "imagine", "batch", str(root), "--out", str(tmp_path / "o"),
                 "--separator", "nmf")
    assert err == f"error: {listing}: not UTF-8 text (invalid start byte at byte 22)\n"
