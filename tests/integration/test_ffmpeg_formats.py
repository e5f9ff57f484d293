"""m4a/aac in folders: batch jobs and the folder metrics decode them with ffmpeg like any other
audio, and report the ones they cannot read (corrupt, or no ffmpeg) instead of leaving them
out without a word."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from auralens.audio import write
from auralens.io import read_jsonl
from auralens.scene.caption.base import CaptionResult
from auralens.scene.pipeline import ImagineConfig, imagine_batch
from auralens.scene.separate.base import Separator
from auralens.scene.separate.run import separate_batch

pytestmark = pytest.mark.skipif(shutil.which("ffmpeg") is None, reason="ffmpeg is not installed")
SR = 16000
NO_FFMPEG = "reading .m4a audio needs ffmpeg, which is not on PATH; install ffmpeg or convert " \
            "the file to wav or flac"


class Halves(Separator):
    name = "halves"
    sample_rate = SR
    num_sources = 2

    def separate(self, mix: np.ndarray) -> np.ndarray:
        return np.stack([mix / 2, mix / 2])


class Captioner:
    name = "dog"
    sample_rate = SR

    def describe(self, wave: np.ndarray) -> CaptionResult:
        return CaptionResult("the sound of a dog", "dog", 0.9)


@pytest.fixture
def clips(tmp_path: Path) -> Path:
    """``a.wav``, ``b.m4a`` (the same tone), ``bad.m4a`` (not audio), ``notes.txt``."""
    folder = tmp_path / "clips"
    tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(SR // 2) / SR)).astype(np.float32)
    write(folder / "a.wav", tone, SR)
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-i", str(folder / "a.wav"), "-c:a", "aac",
                    str(folder / "b.m4a")], check=True)
    (folder / "bad.m4a").write_bytes(b"this is not audio\n" * 10)
    (folder / "notes.txt").write_text("not an audio file, not listed")
    return folder


def _no_ffmpeg(monkeypatch: pytest.MonkeyPatch) -> None:
    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None if name == "ffmpeg" else real(name, *a, **k))


def test_separate_batch_decodes_m4a_and_reports_the_unreadable(clips, tmp_path, monkeypatch):
    lines = separate_batch(clips, tmp_path / "out", Halves())
    assert [ln["id"] for ln in lines] == ["a", "b"]
    errors = read_jsonl(tmp_path / "out" / "errors.jsonl")
    assert [e["item"] for e in errors] == ["bad"]
    assert errors[0]["error"].startswith(f"{clips / 'bad.m4a'}: unreadable or corrupt audio (ffmpeg: ")
    _no_ffmpeg(monkeypatch)
    lines = separate_batch(clips, tmp_path / "none", Halves())
    assert [ln["id"] for ln in lines] == ["a"]
    assert [(e["item"], e["error"]) for e in read_jsonl(tmp_path / "none" / "errors.jsonl")] == [
        ("b", f"{clips / 'b.m4a'}: {NO_FFMPEG}"), ("bad", f"{clips / 'bad.m4a'}: {NO_FFMPEG}")]


def test_imagine_batch_decodes_m4a_and_reports_the_unreadable(clips, tmp_path, monkeypatch):
    cfg = ImagineConfig(separator=Halves(), captioner=Captioner())
    lines = imagine_batch(clips, tmp_path / "out", cfg)
    assert [ln["id"] for ln in lines] == ["a", "b"]
    assert [e["item"] for e in read_jsonl(tmp_path / "out" / "errors.jsonl")] == ["bad"]
    _no_ffmpeg(monkeypatch)
    lines = imagine_batch(clips, tmp_path / "none", cfg)
    assert [ln["id"] for ln in lines] == ["a"]
    errors = read_jsonl(tmp_path / "none" / "errors.jsonl")
    assert [(e["item"], e["error"]) for e in errors] == [
        ("b", f"{clips / 'b.m4a'}: {NO_FFMPEG}"), ("bad", f"{clips / 'bad.m4a'}: {NO_FFMPEG}")]


def test_folder_metrics_embed_m4a_and_list_the_unreadable_as_skipped(clips, monkeypatch):
    from auralens.evaluate.folders import kad_folders

    _no_ffmpeg(monkeypatch)  # first: embeddings are cached by file content
    result = kad_folders(clips, clips, embedder="logmel")
    assert [(s["file"], s["error"]) for s in result["skipped"]][:2] == [
        (str(clips / "b.m4a"), f"{clips / 'b.m4a'}: {NO_FFMPEG}"),
        (str(clips / "bad.m4a"), f"{clips / 'bad.m4a'}: {NO_FFMPEG}")]
    wav_only = result["n_ref_frames"]
    monkeypatch.undo()
    result = kad_folders(clips, clips, embedder="logmel")
    assert result["n_ref_frames"] == result["n_eval_frames"] > wav_only
    assert [s["file"] for s in result["skipped"]] == [str(clips / "bad.m4a")] * 2
