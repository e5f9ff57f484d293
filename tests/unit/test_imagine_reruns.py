"""``imagine`` reruns into a folder that already holds results: a run that cannot start (no
audio LLM offline, an unreachable composer server, an image model that is not there, a
video without sound) leaves the earlier result as it was; a one-file ``separate`` folder is
replaced cleanly; other commands' folders are refused; ``report=false`` prints no report
path. Offline stand-ins only: NMF, the classifier captioner on a tiny random-weight AST and
the template composer."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from auralens.audio import write
from auralens.cli import main
from auralens.io import read_json

NMF = "nmf@n_iter=5"


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    rng = np.random.default_rng(3)
    return write(tmp_path / "mix.wav", (0.2 * rng.standard_normal(16000)).astype(np.float32),
                 16000)


@pytest.fixture
def captioner(tiny_model) -> str:
    return f"classifier:{tiny_model('ast_classifier')}"


def _imagine(clip: Path, out: Path, captioner: str, *extra: str) -> int:
    return main(["imagine", str(clip), "--out", str(out), "--separator", NMF,
                 "--captioner", captioner, *extra])


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _error_lines(err: str) -> list[str]:
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("error:")]


@pytest.fixture
def done(clip: Path, captioner: str, tmp_path: Path, capsys) -> Path:
    """A folder holding a finished imagine run of ``clip``."""
    out = tmp_path / "D"
    assert _imagine(clip, out, captioner) == 0
    assert read_json(out / "run.json")["status"] == "ok"
    assert (out / "report.html").is_file() and (out / "description.txt").is_file()
    capsys.readouterr()
    return out


@pytest.mark.parametrize(("extra", "message"), [
    (["--mode", "allm", "--allm", "qwen2-audio:auralens-test/no-such-audio-llm"],
     "--mode allm needs an audio LLM (--allm), and it cannot be loaded:"),
    (["--composer", "openai:foo@base_url=http://127.0.0.1:9/v1,retries=0"],
     "--composer openai:foo: http://127.0.0.1:9/v1: the server cannot be reached"),
    (["--image", "diffusers:auralens-test/no-such-pipeline"], "auralens-test/no-such-pipeline"),
], ids=["allm-offline", "composer-unreachable", "image-offline"])
def test_a_rerun_that_cannot_start_keeps_the_earlier_result(
        done: Path, clip: Path, captioner: str, capsys, monkeypatch, extra, message) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = _snapshot(done)
    assert _imagine(clip, done, captioner, *extra) == 1
    errors = _error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and message in errors[0], errors
    assert _snapshot(done) == before  # outputs and run.json of the good run, byte for byte


def test_a_backend_that_cannot_load_is_recorded_in_a_fresh_folder(
        clip: Path, tmp_path: Path, monkeypatch) -> None:
    from auralens.scene.pipeline import ImagineError, imagine

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "fresh"
    with pytest.raises(ImagineError, match="needs an audio LLM"):
        imagine(clip, out, {"mode": "allm", "allm": "qwen2-audio:auralens-test/no-such-model"})
    run = read_json(out / "run.json")  # nothing to keep: the failure is the folder's record
    assert run["status"] == "failed" and "auralens-test/no-such-model" in run["error"]
    assert sorted(p.name for p in out.iterdir()) == ["run.json"]


def test_imagine_replaces_the_outputs_of_separate(clip: Path, captioner: str,
                                                   tmp_path: Path) -> None:
    from auralens.scene.pipeline import imagine
    from auralens.scene.separate.run import separate_file

    out = tmp_path / "S"
    separate_file(clip, out, NMF)  # four sources, summary.json, activity.json, run.json
    assert sorted(p.name for p in (out / "sources").iterdir()) == [
        f"source{k}.wav" for k in range(4)]
    own = shutil.copy(clip, out / "mix.wav")  # the input lies in the folder: kept
    (out / "notes.txt").write_text("mine")
    (out / "sources" / "mine.wav").write_bytes(b"mine")
    res = imagine(own, out, {"separator": f"{NMF},num_sources=2", "captioner": captioner})
    assert res.n_estimates == 2
    assert not (out / "summary.json").exists()
    assert sorted(p.name for p in (out / "sources").iterdir()) == [
        "mine.wav", "source0.wav", "source1.wav"]
    assert (out / "notes.txt").read_text() == "mine" and Path(own).is_file()
    run = read_json(out / "run.json")
    assert run["command"] == "imagine --mode pipeline" and run["status"] == "ok"
    activity = read_json(out / "activity.json")
    assert activity["n_estimates"] == 2  # imagine's own, not separate's


@pytest.mark.parametrize("command", ["separate eval", "separate train", "separate batch",
                                     "data mix", "experiment run exp.yaml", "sonify train",
                                     "imagine batch --mode pipeline"])
def test_another_commands_folder_is_refused(clip: Path, captioner: str, tmp_path: Path,
                                            capsys, command: str) -> None:
    out = tmp_path / "other"
    (out / "sources").mkdir(parents=True)
    (out / "run.json").write_text(json.dumps({"command": command, "config": {}}))
    (out / "summary.json").write_text("{}")
    (out / "sources" / "source0.wav").write_bytes(b"theirs")
    before = _snapshot(out)
    assert _imagine(clip, out, captioner) == 1
    errors = _error_lines(capsys.readouterr().err)
    assert errors == [f"error: {out}: holds the outputs of '{command}' (its run.json); imagine "
                      "would mix its files with them; use another --out"]
    assert _snapshot(out) == before


def test_report_false_prints_no_report_path(clip: Path, captioner: str, tmp_path: Path,
                                            capsys) -> None:
    out = tmp_path / "R"
    assert _imagine(clip, out, captioner, "--set", "report=false") == 0
    printed = capsys.readouterr().out
    assert not (out / "report.html").exists()
    assert "report:" not in printed and "description:" in printed
    assert _imagine(clip, out, captioner) == 0
    assert f"report: {out / 'report.html'}" in capsys.readouterr().out.splitlines()
    assert (out / "report.html").is_file()


def test_an_unreadable_input_creates_no_folder_and_keeps_a_result(
        done: Path, captioner: str, tmp_path: Path, capsys) -> None:
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"not audio at all")
    fresh = tmp_path / "fresh"
    assert _imagine(broken, fresh, captioner) == 1
    errors = _error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and errors[0].startswith(f"error: {broken}: unreadable")
    assert not fresh.exists()
    before = _snapshot(done)
    assert _imagine(broken, done, captioner) == 1
    assert _snapshot(done) == before


def test_a_too_short_input_creates_no_folder(captioner: str, tmp_path: Path, capsys) -> None:
    tiny = write(tmp_path / "tiny.wav", np.full(100, 0.3, np.float32), 16000)
    fresh = tmp_path / "fresh"
    assert _imagine(tiny, fresh, captioner) == 1
    errors = _error_lines(capsys.readouterr().err)
    assert len(errors) == 1 and "too short to describe" in errors[0]
    assert not fresh.exists()


@pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
def test_a_video_without_sound_has_no_audio_track(done: Path, captioner: str, tmp_path: Path,
                                                  capsys) -> None:
    video = tmp_path / "silent.mp4"
    subprocess.run(["ffmpeg", "-nostdin", "-y", "-v", "error", "-f", "lavfi", "-i",
                    "testsrc=size=64x48:rate=5", "-t", "1", str(video)], check=True)
    fresh = tmp_path / "fresh"
    assert _imagine(video, fresh, captioner) == 1
    assert _error_lines(capsys.readouterr().err) == [f"error: {video}: no audio track"]
    assert not fresh.exists()  # no folder holding only a failed run.json
    before = _snapshot(done)
    assert _imagine(video, done, captioner) == 1
    assert _error_lines(capsys.readouterr().err) == [f"error: {video}: no audio track"]
    assert _snapshot(done) == before
