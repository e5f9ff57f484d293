"""Record ids and input manifests: ids that would name folders outside --out, repeated or
numeric ids, malformed manifest lines, strict JSON output and atomic writes of long names."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from auralens.cli import main
from auralens.data import DatasetError
from auralens.io import (
    JsonLinesError,
    append_jsonl,
    read_jsonl,
    read_jsonl_numbered,
    to_jsonable,
    write_json,
    write_jsonl,
    write_text,
)
from auralens.types import load_scenes, record_id

SR = 16000
NMF = "nmf@n_iter=5"


def _manifest(root: Path, ids: list[object]) -> Path:
    """``root/manifest.jsonl`` with one reference-free mixture per id (one shared wav)."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    sf.write(root / "mix.wav", (0.1 * rng.standard_normal(SR // 2)).astype(np.float32), SR)
    lines = [json.dumps({"id": i, "mixture": "mix.wav", "sources": []}) for i in ids]
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return root / "manifest.jsonl"


def _strict_json(text: str) -> object:
    def refuse(name: str) -> None:
        raise AssertionError(f"{name} in written JSON")

    return json.loads(text, parse_constant=refuse)


@pytest.mark.parametrize("bad", ["../../ESCAPED", "/tmp/ABS", "", " ", "a/../b", "a//b", "./a",
                                 "a/", "..\\x", "a\0b"])
def test_load_scenes_refuses_ids_that_name_no_folder_inside_out(tmp_path, bad):
    path = _manifest(tmp_path, ["ok", bad])
    with pytest.raises(DatasetError) as info:
        load_scenes(path)
    msg = str(info.value)
    assert msg.startswith(f"{path} line 2: id ") and "\n" not in msg


@pytest.mark.parametrize("bad", [[1], {"a": 1}, True, float("nan")])
def test_load_scenes_refuses_ids_that_are_not_text_or_a_number(tmp_path, bad):
    path = _manifest(tmp_path, ["ok", bad])
    with pytest.raises(DatasetError, match=r"line 2: id .* is not (text or a|a finite) number"):
        load_scenes(path)


def test_load_scenes_keeps_folder_ids_and_makes_numbers_text(tmp_path):
    path = _manifest(tmp_path, ["train/example00000", 7, 2.5, "b"])
    assert [r.id for r in load_scenes(path)] == ["train/example00000", "7", "2.5", "b"]
    assert record_id("validation/example00001") == "validation/example00001"


def test_load_scenes_refuses_a_repeated_id_where_ids_name_folders(tmp_path):
    path = _manifest(tmp_path, ["a", "b", 1, "a"])
    with pytest.raises(DatasetError, match=r"manifest.jsonl line 4: id 'a' repeats line 1"):
        load_scenes(path, unique=True)
    assert [r.id for r in load_scenes(path)] == ["a", "b", "1", "a"]  # the caller checks
    path = _manifest(tmp_path, [1, "1"])  # the same folder items/1
    with pytest.raises(DatasetError, match=r"line 2: id '1' repeats line 1"):
        load_scenes(path, unique=True)


def test_separate_batch_writes_nothing_outside_out_for_a_bad_id(tmp_path, capsys):
    data = tmp_path / "deep" / "data"
    path = _manifest(data, ["fine", "../../ESCAPED"])
    out = tmp_path / "deep" / "out"
    assert main(["separate", "batch", str(data), "--out", str(out), "-s", NMF]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {path} line 2: id '../../ESCAPED' is not a relative folder")
    assert not (tmp_path / "ESCAPED").exists() and not out.exists()
    _manifest(data, ["fine", str(tmp_path / "ABS")])
    assert main(["separate", "batch", str(data), "--out", str(out), "-s", NMF]) == 1
    assert not (tmp_path / "ABS").exists() and not out.exists()


def test_separate_batch_repeated_id_is_refused_not_overwritten(tmp_path, capsys):
    data = tmp_path / "data"
    _manifest(data, ["a", "a"])
    assert main(["separate", "batch", str(data), "--out", str(tmp_path / "o"), "-s", NMF]) == 1
    assert "line 2: id 'a' repeats line 1" in capsys.readouterr().err
    assert not (tmp_path / "o" / "results.jsonl").exists()


def test_separate_batch_with_number_and_text_ids(tmp_path):
    data = tmp_path / "data"
    _manifest(data, [1, "b"])
    out = tmp_path / "o"
    assert main(["separate", "batch", str(data), "--out", str(out), "-s", NMF]) == 0
    assert [r["id"] for r in read_jsonl(out / "results.jsonl")] == ["1", "b"]
    assert (out / "items" / "1" / "summary.json").is_file()


@pytest.mark.parametrize("line", ["/", "x/.."])
def test_separate_batch_list_line_that_names_no_file_is_one_line(tmp_path, capsys, line):
    listing = tmp_path / "list.txt"
    listing.write_text(f"# audio\n{line}\n")
    assert main(["separate", "batch", str(listing), "--out", str(tmp_path / "o"), "-s", NMF]) == 1
    assert capsys.readouterr().err.strip() == (f"error: {listing} line 2: {line!r} does not name "
                                               "an audio file")


def test_imagine_batch_folder_manifest_ids_are_checked_and_made_text(tmp_path, capsys):
    from auralens.scene.pipeline import imagine_batch

    data = tmp_path / "data"
    path = _manifest(data, ["fine", "../ESCAPED"])
    out = tmp_path / "o"
    # a folder's manifest.jsonl: refused naming its line, not read as a folder of recordings
    assert main(["imagine", "batch", str(data), "--out", str(out), "--separator", NMF]) == 1
    assert capsys.readouterr().err.strip().startswith(f"error: {path} line 2: id '../ESCAPED'")
    assert not (tmp_path / "ESCAPED").exists() and not out.exists()
    _manifest(data, ["a", "a"])
    assert main(["imagine", "batch", str(data), "--out", str(out), "--separator", NMF]) == 1
    assert "line 2: id 'a' repeats line 1" in capsys.readouterr().err
    _manifest(data, [7])
    lines = imagine_batch(data, out, {"separator": NMF})
    assert [ln["id"] for ln in lines] == ["7"] and (out / "items" / "7").is_dir()
    lines = imagine_batch(path, tmp_path / "o2", {"separator": NMF})  # the manifest itself
    assert [ln["id"] for ln in lines] == ["7"]


def test_input_manifest_with_a_bom_or_a_bad_line(tmp_path, capsys):
    data = tmp_path / "data"
    path = _manifest(data, ["a", "b"])
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())  # what some editors write
    assert [r.id for r in load_scenes(path)] == ["a", "b"]
    text = path.read_text(encoding="utf-8-sig").splitlines()
    path.write_text("\n".join([text[0], text[1][:-5], text[1].replace('"b"', '"c"')]) + "\n")
    assert main(["separate", "batch", str(data), "--out", str(tmp_path / "o"), "-s", NMF]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {path}:2: not a JSON line (column ") and "\n" not in err
    assert not (tmp_path / "o" / "results.jsonl").exists()


def test_read_jsonl_strict_for_inputs_lenient_for_resumable_outputs(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"id": 1}\n{"id": \n{"id": 3}\n{"id"')
    # an output a killed writer left: complete lines are kept (BOM or not)
    assert read_jsonl(path) == [{"id": 1}, {"id": 3}]
    assert [n for n, _ in read_jsonl_numbered(path)] == [1, 3]
    with pytest.raises(JsonLinesError, match=r"r.jsonl:2: not a JSON line \(column 7: Expecting value\)"):
        read_jsonl(path, strict=True)


def test_nan_and_infinity_are_written_as_null(tmp_path):
    import torch

    nan, inf = float("nan"), float("inf")
    obj = {"a": np.float32(nan), "b": inf, "c": np.array([nan, -inf, 1.5]), "d": -inf,
           "e": torch.tensor([inf, 2.0]), "f": [np.float64(inf)], "g": np.int64(3)}
    want = {"a": None, "b": None, "c": [None, None, 1.5], "d": None, "e": [None, 2.0],
            "f": [None], "g": 3}
    assert json.loads(json.dumps(to_jsonable(obj), allow_nan=False)) == want
    write_json(tmp_path / "r.json", obj)
    assert _strict_json((tmp_path / "r.json").read_text()) == want
    write_jsonl(tmp_path / "r.jsonl", [obj])
    append_jsonl(tmp_path / "r.jsonl", obj)
    assert [_strict_json(ln) for ln in (tmp_path / "r.jsonl").read_text().splitlines()] == [want, want]


def test_append_cuts_only_a_torn_last_line(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"id": "a"}\n{"id": "b", "x": [1, \n{"id": "c"}')  # a broken middle line
    append_jsonl(path, {"id": "d"})  # a whole last line lacking its newline stays
    assert path.read_text().endswith('\n{"id": "c"}\n{"id": "d"}\n')
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"id": "e", "descr')  # a writer killed mid-line
    append_jsonl(path, {"id": "e"})
    lines = path.read_text().splitlines()
    assert lines[1] == '{"id": "b", "x": [1, ' and lines[-1] == '{"id": "e"}'  # the middle is read_jsonl's
    assert [r["id"] for r in read_jsonl(path)] == ["a", "c", "d", "e"]
    path.write_text('{"id": "f", "descr')  # the only line, torn
    append_jsonl(path, {"id": "f"})
    assert path.read_text() == '{"id": "f"}\n'


def test_atomic_write_of_a_long_name_and_errors_name_the_final_path(tmp_path):
    path = tmp_path / ("a" * 240 + ".json")  # a plain open of this name works
    assert write_text(path, "x") == path and path.read_text() == "x"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    too_long = tmp_path / ("b" * 300 + ".json")
    with pytest.raises(OSError) as info:
        write_text(too_long, "x")
    assert info.value.filename == str(too_long) and ".tmp" not in str(info.value)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left behind


def test_demo_with_missing_data_records_no_settings(tmp_path):
    from auralens.demo import CONFIG_NAME, DemoPlan, check_demo_dir, demo_settings, run_demo

    out = tmp_path / "dd"
    with pytest.raises(DatasetError, match="dataset directory not found"):
        run_demo(out, data=tmp_path / "missing", quick=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="no audio files found"):
        run_demo(out, data=tmp_path / "empty", quick=True)
    assert not (out / CONFIG_NAME).exists()
    # so the next demo into that folder is not refused as one "made with other settings"
    check_demo_dir(out, demo_settings(None, quick=True, seed=42, plan=DemoPlan.quick()))


@pytest.mark.parametrize(("line", "problem"), [
    ("{not json", r"jsonl:2: not a JSON line"),
    ('{"id": "../../out", "mixture": "m.wav", "sources": []}', "line 2"),
    ('{"id": "a", "mixture": "m.wav", "sources": []}', "repeats line 1"),
])
def test_a_fuss_folders_manifest_is_read_strictly(tmp_path: Path, line: str, problem: str) -> None:
    """A FUSS folder's manifest.jsonl gets the checks every scene manifest gets."""
    from auralens.data.fuss import load_fuss

    first = '{"id": "a", "mixture": "m.wav", "sources": []}'
    (tmp_path / "manifest.jsonl").write_text(f"{first}\n{line}\n", encoding="utf-8")
    with pytest.raises(DatasetError, match=problem) as exc:
        load_fuss(tmp_path)
    assert "manifest.jsonl" in str(exc.value) and "\n" not in str(exc.value)


def test_strict_reading_skips_only_an_unfinished_last_line(tmp_path):
    """A manifest ``data mix`` is still appending to ends mid-line with no newline: its
    complete lines are read. The same bad line followed by a newline is an error."""
    path = tmp_path / "m.jsonl"
    path.write_text('{"id": 1}\n{"id": 2}\n{"id": 3, "mixt')
    assert [n for n, _ in read_jsonl_numbered(path, strict=True)] == [1, 2]
    path.write_text('{"id": 1}\n{"id": 2}\n{"id": 3, "mixt\n')
    with pytest.raises(JsonLinesError, match=r"m.jsonl:3: not a JSON line"):
        read_jsonl_numbered(path, strict=True)


def test_strict_reading_refuses_a_last_line_that_is_closed_but_not_json(tmp_path):
    """No newline at the end, but the JSON is not open: a mistake, not a line being written."""
    path = tmp_path / "m.jsonl"
    path.write_text('{"id": 1}\n{"id": 2, "sources": [],}')
    with pytest.raises(JsonLinesError, match=r"m.jsonl:2: not a JSON line"):
        read_jsonl_numbered(path, strict=True)
