"""The procedural library: layout, determinism, class count and separable classes."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from auralens.data import DatasetError, load_dataset
from auralens.data.esc50 import load_esc50
from auralens.data.synth import SYNTH_CLASSES, generate_clip, synthesize


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synthesize(tmp_path_factory.mktemp("lib") / "synth", clips_per_class=5, seed=7,
                      sample_rate=16000, duration=2.0)


def test_layout_and_classes(library: Path) -> None:
    rows = list(csv.DictReader((library / "meta" / "esc50.csv").open()))
    assert len(SYNTH_CLASSES) >= 10 and len(set(SYNTH_CLASSES)) == len(SYNTH_CLASSES)
    assert len(rows) == 5 * len(SYNTH_CLASSES)
    assert {r["category"] for r in rows} == set(SYNTH_CLASSES)
    assert {int(r["fold"]) for r in rows} == {1, 2, 3, 4, 5}
    for r in rows:
        fold, _src, take, target = Path(r["filename"]).stem.split("-")
        assert int(fold) == int(r["fold"]) and take == "A"
        assert SYNTH_CLASSES[int(target)] == r["category"]
        info = sf.info(str(library / "audio" / r["filename"]))
        assert info.samplerate == 16000 and info.frames == 32000
    clips = load_esc50(library)
    assert len(clips) == len(rows)
    assert load_dataset(library)[0].labels  # auto-detected as ESC-50


def test_clips_are_sane(library: Path) -> None:
    for clip in load_esc50(library):
        x, _ = sf.read(str(clip.path))
        assert np.all(np.isfinite(x))
        peak, rms = np.abs(x).max(), np.sqrt(np.mean(x**2))
        assert 0.01 < peak < 1.0, clip.id
        assert rms > 1e-3, clip.id


def test_determinism(tmp_path: Path) -> None:
    kw = dict(clips_per_class=1, sample_rate=8000, duration=1.0, classes=["siren", "voice", "rain"])
    a = synthesize(tmp_path / "a", seed=3, **kw)
    b = synthesize(tmp_path / "b", seed=3, **kw)
    c = synthesize(tmp_path / "c", seed=4, **kw)
    names = sorted(p.name for p in (a / "audio").iterdir())
    assert len(names) == 3
    for name in names:
        assert (a / "audio" / name).read_bytes() == (b / "audio" / name).read_bytes()
        assert (a / "audio" / name).read_bytes() != (c / "audio" / name).read_bytes()
    assert (a / "meta" / "esc50.csv").read_text() == (b / "meta" / "esc50.csv").read_text()


def test_clip_independent_of_other_classes(tmp_path: Path) -> None:
    kw = dict(clips_per_class=1, sample_rate=8000, duration=0.5, seed=1)
    one = synthesize(tmp_path / "one", classes=["rain"], **kw)
    two = synthesize(tmp_path / "two", classes=["siren", "rain"], **kw)
    f = next((one / "audio").iterdir()).name
    assert (one / "audio" / f).read_bytes() == (two / "audio" / f).read_bytes()


def test_within_class_variation() -> None:
    a = generate_clip("siren", np.random.default_rng(0), sample_rate=8000, duration=1.0)
    b = generate_clip("siren", np.random.default_rng(1), sample_rate=8000, duration=1.0)
    assert a.shape == b.shape == (8000,)
    assert not np.allclose(a, b)


def test_unknown_class(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="unknown synth class"):
        synthesize(tmp_path, classes=["unicorn"])


def test_repeated_class_is_refused_naming_it(tmp_path: Path, capsys) -> None:
    """`--classes rain,rain` used to write each rain clip twice to meta/esc50.csv."""
    from auralens.cli import main

    with pytest.raises(DatasetError, match=r"^synth class\(es\) rain given more than once; name each class once$"):
        synthesize(tmp_path / "a", classes=["rain", "siren", "rain"], clips_per_class=1, duration=0.1)
    assert not (tmp_path / "a").exists()
    capsys.readouterr()
    assert main(["data", "synth", "--out", str(tmp_path / "b"), "--classes", "rain, rain",
                 "--clips-per-class", "1", "--duration", "0.1"]) == 1
    err = capsys.readouterr().err
    assert err == "error: synth class(es) rain given more than once; name each class once\n"
    assert not (tmp_path / "b").exists()


def _logmel_stats(x: np.ndarray, sr: int) -> np.ndarray:
    import librosa
    from scipy import signal

    _, _, z = signal.stft(x, fs=sr, nperseg=512, noverlap=384)
    mel = librosa.filters.mel(sr=sr, n_fft=512, n_mels=40) @ (np.abs(z) ** 2)
    logmel = np.log(mel + 1e-8)
    # mean spectrum plus frame-to-frame fluctuation (temporal signature)
    return np.concatenate([logmel.mean(1), logmel.std(1)])


def test_classes_are_distinguishable(library: Path) -> None:
    """A nearest-centroid classifier on log-mel statistics beats chance by far on a held-out fold."""
    clips = load_esc50(library)
    feats = {c.id: _logmel_stats(sf.read(str(c.path))[0], 16000) for c in clips}
    train = [c for c in clips if c.fold != 5]
    test = [c for c in clips if c.fold == 5]
    mu = np.mean([feats[c.id] for c in train], 0)
    sd = np.std([feats[c.id] for c in train], 0) + 1e-6
    centroids = {lab: np.mean([(feats[c.id] - mu) / sd for c in train if c.label == lab], 0)
                 for lab in SYNTH_CLASSES}
    correct = 0
    for c in test:
        z = (feats[c.id] - mu) / sd
        pred = min(centroids, key=lambda lab: np.sum((z - centroids[lab]) ** 2))
        correct += pred == c.label
    acc = correct / len(test)
    assert acc >= 0.7, acc  # chance is 1/11


@pytest.mark.parametrize(("kw", "match"), [
    ({"duration": 0}, "duration must be a positive"),
    ({"duration": -1.0}, "duration must be a positive"),
    ({"duration": float("nan")}, "duration must be a positive"),
    ({"duration": 1e-6, "sample_rate": 8000}, "shorter than one sample"),
    ({"sample_rate": 0}, "sample rate must be an integer from 1000 to 768000"),
    ({"sample_rate": 100}, "sample rate must be an integer from 1000 to 768000"),
    ({"sample_rate": 800_000}, "sample rate must be an integer from 1000 to 768000"),
])
def test_bad_rate_or_duration_is_refused_before_writing(tmp_path: Path, kw: dict, match: str) -> None:
    out = tmp_path / "lib"
    with pytest.raises(DatasetError, match=match):
        synthesize(out, clips_per_class=1, classes=["rain"], **kw)
    assert not out.exists()
    with pytest.raises(DatasetError, match=match):
        generate_clip("rain", np.random.default_rng(0), **{"sample_rate": 8000, "duration": 1.0, **kw})


def test_rate_limits_are_loadable(tmp_path: Path) -> None:
    from auralens.audio import MIN_SAMPLE_RATE, load_sr

    lib = synthesize(tmp_path / "lib", clips_per_class=1, classes=["rain"], sample_rate=MIN_SAMPLE_RATE,
                     duration=0.5)
    wave, sr = load_sr(next((lib / "audio").glob("*.wav")))
    assert sr == MIN_SAMPLE_RATE and wave.shape == (MIN_SAMPLE_RATE // 2,)


@pytest.mark.parametrize(("kw", "match"), [
    ({"duration": 100_000.0}, "longer than the 600 s limit"),
    ({"duration": 600.0, "sample_rate": 96_000}, "57600000 samples, more than the limit"),
    ({"clips_per_class": 100_000_000}, "clips_per_class must be an integer from 1 to 1000"),
    ({"clips_per_class": 0}, "clips_per_class must be an integer from 1 to 1000"),
])
def test_absurd_sizes_are_refused_before_any_work(tmp_path: Path, kw: dict, match: str) -> None:
    """A mistyped size used to exhaust memory (every job listed up front, a 16 GiB buffer)."""
    out = tmp_path / "lib"
    with pytest.raises(DatasetError, match=match):
        synthesize(out, **{"clips_per_class": 1, "classes": ["rain"], **kw})
    assert not out.exists()
    if "duration" in kw:
        with pytest.raises(DatasetError, match=match):
            generate_clip("church_bells", np.random.default_rng(0),
                          **{"sample_rate": 22050, **{k: v for k, v in kw.items() if k != "clips_per_class"}})


def test_a_library_that_cannot_fit_on_the_disk_is_refused(tmp_path: Path, monkeypatch) -> None:
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**6, 10**6 - 40_000, 40_000))
    out = tmp_path / "lib"
    # 3 clips of 1 s at 8 kHz, 16-bit: 48 kB of samples (plus headers and csv lines) > 40 kB free
    with pytest.raises(DatasetError, match=r"3 clips of 1 s need about 47.2 KiB but only 39.1 KiB is free"):
        synthesize(out, clips_per_class=3, classes=["rain"], sample_rate=8000, duration=1.0)
    assert not out.exists()
    synthesize(out, clips_per_class=2, classes=["rain"], sample_rate=8000, duration=1.0)  # 32 kB fits
    assert len(list((out / "audio").glob("*.wav"))) == 2


SMALL = dict(clips_per_class=2, sample_rate=8000, duration=0.5, classes=["rain", "siren"])


def _snapshot(lib: Path) -> dict[str, bytes]:
    return {str(p.relative_to(lib)): p.read_bytes() for p in sorted(lib.rglob("*"))
            if p.is_file() and p.name != "run.json"}


def test_rerun_with_other_settings_is_refused_naming_the_setting(tmp_path: Path) -> None:
    lib = synthesize(tmp_path / "lib", seed=1, **SMALL)
    before = _snapshot(lib)
    with pytest.raises(DatasetError, match=r"made with other settings \(seed 1 → 2\); use another --out"):
        synthesize(lib, seed=2, **SMALL)
    with pytest.raises(DatasetError, match=r"\(clips_per_class 2 → 3\)"):
        synthesize(lib, seed=1, **{**SMALL, "clips_per_class": 3})
    assert _snapshot(lib) == before  # nothing rewritten: wavs and csv still agree
    (lib / "synth_config.json").write_text("{not json")
    with pytest.raises(DatasetError, match="synth_config.json: unreadable settings record"):
        synthesize(lib, seed=1, **SMALL)


def test_same_settings_rerun_resumes(tmp_path: Path) -> None:
    from auralens.io import read_json

    lib = synthesize(tmp_path / "lib", seed=1, **SMALL)
    before = _snapshot(lib)
    wavs = sorted((lib / "audio").glob("*.wav"))
    mtimes = {p.name: p.stat().st_mtime_ns for p in wavs}
    wavs[1].unlink()  # an interrupted run
    (lib / "meta" / "esc50.csv").unlink()
    synthesize(lib, seed=1, **SMALL)
    assert _snapshot(lib) == before
    assert read_json(lib / "run.json")["n_new"] == 1
    assert all(p.stat().st_mtime_ns == mtimes[p.name] for p in wavs if p != wavs[1])  # kept, not rewritten


def test_a_dataset_synth_did_not_make_is_not_overwritten(tmp_path: Path) -> None:
    esc = tmp_path / "esc"
    (esc / "meta").mkdir(parents=True)
    (esc / "audio").mkdir()
    csv_text = "filename,fold,target,category,esc10,src_file,take\n1-1-A-0.wav,1,0,dog,True,1,A\n"
    (esc / "meta" / "esc50.csv").write_text(csv_text)
    (esc / "audio" / "1-1-A-0.wav").write_bytes(b"user audio")
    with pytest.raises(DatasetError, match=r"holds files that data synth does not write \(audio/1-1-A-0.wav\)"):
        synthesize(esc, **SMALL)
    assert (esc / "meta" / "esc50.csv").read_text() == csv_text
    assert sorted(p.name for p in (esc / "audio").iterdir()) == ["1-1-A-0.wav"]
    loose = tmp_path / "loose"
    (loose / "audio").mkdir(parents=True)
    (loose / "audio" / "mine.wav").write_bytes(b"x")
    with pytest.raises(DatasetError, match="does not write"):
        synthesize(loose, **SMALL)
    assert not (loose / "meta").exists()


@pytest.mark.parametrize("own", ["dog/bark.wav", "take1.wav", "notes.txt"])
def test_a_folder_of_other_files_is_not_written_into(tmp_path: Path, own: str) -> None:
    # labelled class folders or loose recordings used to get audio/ and meta/ beside them
    out = tmp_path / "mine"
    (out / own).parent.mkdir(parents=True, exist_ok=True)
    (out / own).write_bytes(b"the user's")
    with pytest.raises(DatasetError, match=rf"^{re.escape(str(out))}: holds files that data synth "
                                           rf"does not write \({re.escape(own)}\); choose an empty or new --out$"):
        synthesize(out, **SMALL)
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == [own]


def test_empty_folders_and_leftover_temp_files_are_no_dataset(tmp_path: Path) -> None:
    out = tmp_path / "lib"
    (out / "audio").mkdir(parents=True)
    (out / ".synth_config.123.abcdefgh.tmp.json").write_bytes(b"{")  # a write cut short
    lib = synthesize(out, **SMALL)
    assert (lib / "meta" / "esc50.csv").is_file() and any((lib / "audio").iterdir())


def test_a_library_of_an_older_version_is_checked_by_its_run_json(tmp_path: Path) -> None:
    lib = synthesize(tmp_path / "lib", seed=1, **SMALL)
    (lib / "synth_config.json").unlink()  # versions before the config recorded only run.json
    with pytest.raises(DatasetError, match=r"\(seed 1 → 5\)"):
        synthesize(lib, seed=5, **SMALL)
    synthesize(lib, seed=1, **SMALL)  # the same settings resume and record the config
    assert (lib / "synth_config.json").is_file()
