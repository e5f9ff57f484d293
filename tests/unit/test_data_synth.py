"""The procedural library: layout, determinism, class count and separable classes."""

from __future__ import annotations

import csv
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
