"""Batch outputs shared by the unsharded run and its shards, evaluation of mixtures without
reference sources, and batch inputs that would be misread (--out as the input folder, a list
whose file names repeat)."""

from __future__ import annotations

import csv
import shutil
from pathlib import Path

import pytest
from factories.audio_files import fuss_folder, noise_wav

from auralens.cli import main
from auralens.io import read_json, read_jsonl

SR = 16000
NMF = "nmf@n_iter=5"


_wav = noise_wav


_fuss = fuss_folder


def _folder(root: Path, n: int) -> Path:
    for k in range(n):
        _wav(root / f"rec{k}.wav", k)
    return root


def _err(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def _items(out: Path, name: str) -> dict[str, str]:
    return {str(p.relative_to(out)): p.read_text() for p in sorted((out / "items").rglob(name))}


# ----------------------------------------------------------------------------- shards


def test_separate_batch_shard_with_other_settings_leaves_recorded_items_alone(tmp_path, capsys):
    data = _folder(tmp_path / "data", 2)
    out = tmp_path / "S"
    base = ["separate", "batch", str(data), "--out", str(out), "-s", NMF]
    assert main(base) == 0
    before = _items(out, "activity.json")
    assert len(before) == 2
    capsys.readouterr()
    # a shard of other settings would write over the unsharded run's items
    assert main([*base, "--shard", "0/1", "--rule", "frames"]) == 1
    err = _err(capsys)
    assert f"{out / 'results.jsonl'}: holds results made with other settings" in err
    assert _items(out, "activity.json") == before and not (out / "shards").exists()
    # the same settings from a shard still run beside it
    assert main([*base, "--shard", "1/2"]) == 0
    assert len(read_jsonl(out / "shards" / "part-1-of-2" / "results.jsonl")) == 1

    # a shard's run is guarded against the unsharded run and other shards alike
    out2 = tmp_path / "S2"
    base2 = ["separate", "batch", str(data), "--out", str(out2), "-s", NMF]
    assert main([*base2, "--shard", "0/2"]) == 0
    before = _items(out2, "activity.json")
    capsys.readouterr()
    for extra in ([], ["--shard", "0/1"], ["--shard", "1/2"]):
        assert main([*base2, *extra, "--rule", "frames"]) == 1, extra
        assert "part-0-of-2/results.jsonl: holds results made with other settings" in _err(capsys)
    assert _items(out2, "activity.json") == before
    assert sorted(p.name for p in (out2 / "shards").iterdir()) == ["part-0-of-2"]
    assert not (out2 / "results.jsonl").exists()
    assert main([*base2, "--shard", "1/2"]) == 0  # the rest of the run, as before
    parts = sorted(map(str, (out2 / "shards").iterdir()))
    assert main(["data", "merge", *parts, "--out", str(out2 / "results.jsonl")]) == 0
    assert len(read_jsonl(out2 / "results.jsonl")) == 2


def test_imagine_batch_shard_with_other_settings_leaves_recorded_items_alone(tmp_path):
    from auralens.scene.pipeline import ImagineError, imagine_batch

    data = _folder(tmp_path / "data", 2)
    out = tmp_path / "I"
    cfg = {"separator": NMF, "report": False}
    frames = {**cfg, "activity": {"rule": "frames"}}
    assert len(imagine_batch(data, out, cfg)) == 2
    before = _items(out, "activity.json")
    assert len(before) == 2
    with pytest.raises(ImagineError, match=r"results.jsonl holds results made with different "
                                           r"settings \(activity\)"):
        imagine_batch(data, out, frames, shard="0/1")
    assert _items(out, "activity.json") == before and not (out / "shards").exists()
    assert len(imagine_batch(data, out, cfg, shard="1/2")) == 1  # same settings: as before
    out2 = tmp_path / "I2"
    imagine_batch(data, out2, cfg, shard="1/2")
    before = _items(out2, "activity.json")
    for shard in (None, "0/2"):  # the unsharded run and another shard are guarded alike
        with pytest.raises(ImagineError, match=r"part-1-of-2: results.jsonl holds results made"):
            imagine_batch(data, out2, frames, shard=shard)
    assert _items(out2, "activity.json") == before and len(before) == 1


# ----------------------------------------------------------------------------- torn results


@pytest.mark.parametrize("command", ["separate", "imagine"])
def test_batch_resume_cuts_off_a_torn_last_results_line(tmp_path, capsys, command):
    """A results line cut short at the end of the file (a kill, a full disk) is removed
    when the rerun redoes its item: the file parses line by line, each item once."""
    import json

    data = _folder(tmp_path / "data", 3)
    out = tmp_path / "out"
    sep = ["-s", NMF] if command == "separate" else ["--separator", NMF]
    args = [command, "batch", str(data), "--out", str(out), *sep]
    assert main(args) == 0
    results = out / "results.jsonl"
    lines = results.read_text().splitlines()
    assert len(lines) == 3
    torn = json.loads(lines[-1])["id"]
    results.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][: len(lines[-1]) // 2])
    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err
    text = results.read_text()
    assert text.endswith("\n")
    ids = [json.loads(line)["id"] for line in text.splitlines()]  # every line is whole JSON
    assert sorted(ids) == sorted(json.loads(line)["id"] for line in lines) and ids[-1] == torn
    assert f"{results}: removed an incomplete last line" in err


# ----------------------------------------------------------------------------- eval


def test_separate_eval_leaves_out_a_mixture_without_references(tmp_path, capsys):
    data = _fuss(tmp_path / "data", 3)
    shutil.rmtree(data / "train" / "example00001_sources")
    out = tmp_path / "E"
    assert main(["separate", "eval", str(data), "--out", str(out), "-s", NMF, "--no-bss"]) == 0
    (error,) = read_jsonl(out / "errors.jsonl")
    assert error["item"] == "train/example00001" and "no reference sources" in error["error"]
    summary = read_json(out / "summary.json")
    assert summary["n_mixtures"] == 2 and summary["errors"] == 1
    with open(out / "by_count.csv", newline="") as fh:
        assert [row["n_sources"] for row in csv.DictReader(fh)] == ["2"]


def test_separate_eval_of_mixtures_alone_is_one_line_error(tmp_path, capsys):
    data = tmp_path / "loose"
    for k in range(2):
        _wav(data / f"example{k:05d}.wav", k)
    out = tmp_path / "E"
    assert main(["separate", "eval", str(data), "--out", str(out), "-s", NMF]) == 1
    assert "no mixture has reference sources" in _err(capsys)
    assert not out.exists()


# ----------------------------------------------------------------------------- inputs


@pytest.mark.parametrize("command", ["separate", "imagine"])
def test_batch_out_equal_to_the_input_folder_is_named(tmp_path, capsys, command):
    data = tmp_path / "recordings"
    _wav(data / "a.wav", 0)
    _wav(data / "b.wav", 1)
    sep = ["-s", NMF] if command == "separate" else ["--separator", NMF]
    assert main([command, "batch", str(data), "--out", str(data), *sep]) == 1
    assert _err(capsys) == f"error: {data}: --out is the input folder; use an --out outside the input folder"
    assert sorted(p.name for p in data.iterdir()) == ["a.wav", "b.wav"]
    # an --out inside the input folder is refused too: a later run over the folder would
    # read its outputs back as mixtures
    assert main([command, "batch", str(data), "--out", str(data / "out"), *sep]) == 1
    assert _err(capsys) == (f"error: {data}: --out {(data / 'out').resolve()} is inside the input "
                            "folder; use an --out outside the input folder")
    assert sorted(p.name for p in data.iterdir()) == ["a.wav", "b.wav"]


def test_batch_list_with_repeated_file_names_gets_folder_ids(tmp_path, capsys):
    from auralens.scene.separate.run import batch_inputs

    root = tmp_path / "dupf"
    _wav(root / "s1" / "x.wav", 0)
    _wav(root / "s2" / "x.wav", 1)
    listing = tmp_path / "list.txt"
    listing.write_text("dupf/s1/x.wav\ndupf/s2/x.wav\n")
    ids = [rid for rid, _ in batch_inputs(listing)]
    assert ids == ["s1/x", "s2/x"] == [rid for rid, _ in batch_inputs(root)]  # as a folder scan
    out = tmp_path / "o"
    assert main(["separate", "batch", str(listing), "--out", str(out), "-s", NMF]) == 0
    assert sorted(r["id"] for r in read_jsonl(out / "results.jsonl")) == ["s1/x", "s2/x"]
    assert (out / "items" / "s1" / "x" / "summary.json").is_file()
    # names that do not repeat keep their ids
    listing.write_text(f"dupf/s1/x.wav\n{_wav(tmp_path / 'y.flac', 2)}\n")
    assert [rid for rid, _ in batch_inputs(listing)] == ["x", "y"]
    capsys.readouterr()
    listing.write_text("dupf/s1/x.wav\n./dupf/s1/x.wav\n")  # one file twice: no id can help
    assert main(["separate", "batch", str(listing), "--out", str(tmp_path / "o2"), "-s", NMF]) == 1
    assert _err(capsys) == f"error: {listing}: lists {root / 's1' / 'x.wav'} twice"


def test_separate_batch_of_a_fuss_folder_without_manifest_takes_only_mixtures(tmp_path):
    """A FUSS release has no manifest.jsonl: its reference sources used to be separated too."""
    root = _fuss(tmp_path / "fuss", 2)
    assert main(["separate", "batch", str(root), "--out", str(tmp_path / "o"), "-s", NMF]) == 0
    assert [r["id"] for r in read_jsonl(tmp_path / "o" / "results.jsonl")] == [
        "train/example00000", "train/example00001"]
    # a folder of recordings that merely holds example*.wav names stays a plain folder
    _wav(root / "train" / "recording.wav", 99)
    assert main(["separate", "batch", str(root / "train"), "--out", str(tmp_path / "p"), "-s", NMF]) == 0
    assert len(read_jsonl(tmp_path / "p" / "results.jsonl")) == 7
