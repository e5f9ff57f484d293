"""Sonify data identity: PREP and its clips are found from any directory, a PREP is not
prepared again with other settings under its runs, split files of DATA are complete, and
clips of different lengths are flagged at prepare time."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest
from factories.sonify import mixed_length_library, write_library
from typer.testing import CliRunner

from auralens.errors import CheckpointMismatchError
from auralens.io import read_json, read_jsonl, write_jsonl
from auralens.sonify.cli import app
from auralens.sonify.prepare import PrepareError, prepare
from auralens.sonify.render import RenderError, render_split
from auralens.sonify.train import TrainConfig, TrainError, train

ENC, COD = "toyband", "toyband"

pytestmark = pytest.mark.usefixtures("torch_single_thread")


def _cfg(**kw) -> TrainConfig:
    return TrainConfig(**(dict(gate="lin", lr=1e-2, epochs=1, batch_size=4, tensorboard=False) | kw))


def _prepare(data: Path | str, out: Path | str, cache: Path, **kw):
    return prepare(data, ENC, COD, 1, out, **(dict(duration=1.0, cache_dir=cache) | kw))


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def trained(tmp_path: Path, cache: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``a/lib`` prepared into ``a/prep`` and trained into ``a/run``, every path typed relative
    to ``a``."""
    home = tmp_path / "a"
    home.mkdir()
    write_library(home / "lib", per_class=4, seed=0)
    monkeypatch.chdir(home)
    _prepare("lib", "prep", cache)
    train("prep", "run", _cfg())
    return home


# --- paths: PREP and its clips are found from any directory ---------------------------------

def test_runs_record_absolute_paths_and_render_the_same_clips_elsewhere(
        trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    index = read_jsonl(trained / "prep" / "index.jsonl")
    assert all(Path(r["path"]).is_absolute() and r["sha256"] for r in index)
    assert read_json(trained / "run" / "run.json")["config"]["prepared"] == str(trained / "prep")
    render_split(trained / "run", "test")
    originals = {p.name: p.read_bytes() for p in (trained / "run" / "renders" / "original").glob("*.wav")}
    assert originals
    # Another directory holding a library and a PREP of the same names but other audio.
    assert _render_from_elsewhere(trained, tmp_path, monkeypatch) == originals
    # Resuming from the parent directory keeps the absolute record.
    monkeypatch.chdir(tmp_path)
    train(Path("a") / "prep", Path("a") / "run", _cfg(epochs=2), resume=True)
    assert read_json(trained / "run" / "run.json")["config"]["prepared"] == str(trained / "prep")


def _render_from_elsewhere(trained: Path, tmp_path: Path,
                           monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """Render the test split again from a directory holding a library of the same names but
    other audio; the originals it wrote, by file name."""
    other = tmp_path / "b"
    other.mkdir()
    write_library(other / "lib", per_class=4, seed=7)
    monkeypatch.chdir(other)
    render_split(trained / "run", "test", overwrite=True)
    return {p.name: p.read_bytes() for p in (trained / "run" / "renders" / "original").glob("*.wav")}


def test_relative_clip_paths_of_older_versions_resolve_against_data(
        trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from auralens.sonify.prepare import resolve_clip_path

    prep = trained / "prep"
    render_split(trained / "run", "test")
    originals = {p.name: p.read_bytes() for p in (trained / "run" / "renders" / "original").glob("*.wav")}
    index = read_jsonl(prep / "index.jsonl")
    # What older versions wrote: the path as typed, relative to the directory prepare ran in.
    legacy = [r | {"path": str(Path(r["path"]).relative_to(trained))} for r in index]
    write_jsonl(prep / "index.jsonl", legacy)
    assert legacy[0]["path"].startswith("lib/")
    assert resolve_clip_path(legacy[0], prep) == Path(index[0]["path"])
    assert _render_from_elsewhere(trained, tmp_path, monkeypatch) == originals


def test_missing_prep_is_named_in_one_line(trained: Path) -> None:
    shutil.move(trained / "prep", trained / "moved")
    with pytest.raises(RenderError, match="PREP not found") as exc:
        render_split(trained / "run", "test")
    assert "\n" not in str(exc.value)
    with pytest.raises(PrepareError, match="PREP not found"):
        train(trained / "prep", trained / "run2", _cfg())


def test_render_fails_when_every_clip_failed(trained: Path) -> None:
    rec = next(r for r in read_jsonl(trained / "prep" / "index.jsonl") if r["split"] == "test")
    clip = Path(rec["path"])
    data = clip.read_bytes()
    clip.unlink()
    res = CliRunner().invoke(app, ["render", "--run", str(trained / "run"), "--split", "test"])
    assert res.exit_code == 1 and "none of the 1 clips of the test split" in str(res.exception)
    assert "file not found" in read_jsonl(trained / "run" / "renders" / "errors.jsonl")[0]["error"]
    # A file changed since it was prepared is not rendered against its cached embedding.
    clip.write_bytes(data[:-2000])
    with pytest.raises(RenderError, match="none of the 1 clips"):
        render_split(trained / "run", "test", overwrite=True)
    assert "changed since it was prepared" in read_jsonl(trained / "run" / "renders" / "errors.jsonl")[0]["error"]


# --- reruns: a PREP under runs keeps its settings --------------------------------------------

@pytest.mark.parametrize(("change", "named"), [
    ({"seed": 7}, "--seed 42 → 7"), ({"limit": 9}, "--limit none → 9"),
    ({"duration": 0.5}, "--duration 1.0 → 0.5"), ({"dtype": "float16"}, "--dtype float32 → float16"),
    ({"layer": 2}, "extractor layer 1 → 2"),
], ids=["seed", "limit", "duration", "dtype", "layer"])
def test_prepare_refuses_a_rerun_with_other_settings(trained: Path, cache: Path, change: dict,
                                                     named: str) -> None:
    prep = trained / "prep"
    before = (prep / "index.jsonl").read_bytes(), (prep / "train.txt").read_bytes()
    layer = change.pop("layer", 1)
    with pytest.raises(PrepareError, match="already holds data prepared with other settings") as exc:
        prepare(trained / "lib", ENC, COD, layer, prep, **(dict(duration=1.0, cache_dir=cache) | change))
    assert named in str(exc.value) and "\n" not in str(exc.value)
    assert ((prep / "index.jsonl").read_bytes(), (prep / "train.txt").read_bytes()) == before


def test_identical_rerun_resumes_from_another_directory(trained: Path, cache: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(trained.parent)
    res = _prepare(Path("a") / "lib", trained / "prep", cache, batch_size=3)
    assert (res.computed_embeddings, res.computed_latents) == (0, 0) and res.n_ok == 12


def test_render_and_resume_refuse_data_prepared_again(trained: Path, cache: Path) -> None:
    _prepare(trained / "lib", trained / "prep", cache, seed=7, overwrite=True)
    with pytest.raises(RenderError, match=r"changed since it was trained \(prepared again with --seed 42 → 7\)"):
        render_split(trained / "run", "test")
    assert not (trained / "run" / "renders").exists()
    with pytest.raises(CheckpointMismatchError, match=r"prepared data .*prepared again with --seed 42 → 7"):
        train(trained / "prep", trained / "run", _cfg(epochs=2), resume=True)


def test_prepare_refuses_changed_split_files_of_data(tmp_path: Path, cache: Path) -> None:
    data = write_library(tmp_path / "lib", per_class=4)
    names = sorted(p.name for p in (data / "audio").glob("*.wav"))
    (data / "train.txt").write_text("".join(f"{n}\n" for n in names[2:]))
    (data / "test.txt").write_text("".join(f"{n}\n" for n in names[:2]))
    _prepare(data, tmp_path / "prep", cache)
    (data / "train.txt").write_text("".join(f"{n}\n" for n in names[3:]))
    (data / "test.txt").write_text("".join(f"{n}\n" for n in names[:3]))
    with pytest.raises(PrepareError, match=r"split of 1 clip changed \(.* train → test\)"):
        _prepare(data, tmp_path / "prep", cache)


# --- split files of DATA ------------------------------------------------------------------

def test_partial_split_files_are_refused(tmp_path: Path, cache: Path) -> None:
    data = write_library(tmp_path / "lib", per_class=4)
    names = sorted(p.name for p in (data / "audio").glob("*.wav"))
    (data / "test.txt").write_text(f"{names[0]}\n")
    with pytest.raises(PrepareError, match=r"has split files \(test.txt\) but no train.txt") as exc:
        _prepare(data, tmp_path / "prep", cache)
    assert "\n" not in str(exc.value) and not (tmp_path / "prep").exists()
    (data / "train.txt").write_text("".join(f"{n}\n" for n in names[2:]))
    with pytest.raises(PrepareError, match=r"leave 1 of 12 clips in no split \(") as exc:
        _prepare(data, tmp_path / "prep", cache)
    assert "\n" not in str(exc.value)
    (data / "train.txt").write_text("".join(f"{n}\n" for n in names))
    with pytest.raises(PrepareError, match="is in both train.txt and test.txt"):
        _prepare(data, tmp_path / "prep", cache)


def test_split_files_say_the_seed_does_not_apply(tmp_path: Path, cache: Path,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    data = write_library(tmp_path / "lib", per_class=4)
    names = sorted(p.name for p in (data / "audio").glob("*.wav"))
    (data / "train.txt").write_text("".join(f"{n}\n" for n in names[2:]))
    (data / "test.txt").write_text("".join(f"{n}\n" for n in names[:2]))
    with caplog.at_level(logging.WARNING):
        res = _prepare(data, tmp_path / "prep", cache, seed=3)
    assert res.split_files == ["train.txt", "test.txt"] and res.splits == {"train": 10, "test": 2}
    assert "--seed does not apply" in caplog.text
    info = read_json(tmp_path / "prep" / "run.json")
    assert info["config"]["split_files"] == ["train.txt", "test.txt"]
    assert info["prepared"]["splits_from"] == "DATA split files"
    # Another seed changes nothing here, so it is no reason to refuse.
    assert _prepare(data, tmp_path / "prep", cache, seed=5).n_ok == 12


# --- clips that keep their own length ---------------------------------------------------------

def test_clips_of_different_lengths_are_flagged_at_prepare(tmp_path: Path, cache: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    mixed_length_library(tmp_path / "var")
    with caplog.at_level(logging.WARNING):
        res = _prepare(tmp_path / "var", tmp_path / "p0", cache, duration=None)
    assert res.warnings and "0.5–1 s" in res.warnings[0] and "cannot be trained on together" in res.warnings[0]
    assert "cannot be trained on together" in caplog.text
    info = read_json(tmp_path / "p0" / "run.json")["prepared"]
    assert info["shapes_vary"] and info["warnings"] == res.warnings
    assert {r["seconds"] for r in read_jsonl(tmp_path / "p0" / "index.jsonl")} == {0.5, 1.0}
    with pytest.raises((PrepareError, TrainError), match="different lengths cannot be trained on together"):
        train(tmp_path / "p0", tmp_path / "r0", _cfg())
    # One length: no warning.
    for label in ("a", "b"):
        (tmp_path / "var" / label / "c0.wav").unlink()
    assert _prepare(tmp_path / "var", tmp_path / "p1", cache, duration=None).warnings == []



@pytest.mark.parametrize("text", ["[]", "{\"prepared\": 5}", "{"])
def test_prep_run_json_of_the_wrong_shape_is_one_line(tmp_path, capsys, text):
    from auralens.cli import main

    prep = tmp_path / "prep"
    prep.mkdir()
    (prep / "run.json").write_text(text)
    capsys.readouterr()
    assert main(["sonify", "train", str(prep), "--out", str(tmp_path / "run"), "--epochs", "1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "run.json" in err, err
