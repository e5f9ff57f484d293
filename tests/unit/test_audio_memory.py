"""Memory of loading audio: a one-channel file is held as one float32 array, channels are
mixed down and levels measured block by block (no float64 copy of the whole wave), and the
samples and levels are those the whole-wave float64 computation gives."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from auralens import audio
from auralens.audio import AudioError, inspect_wave, load_with_info

SR = 16000
BLOCK = 2**16  # audio.BLOCK: values are checked across block edges


def _peak(fn: Callable[[], Any]) -> tuple[Any, int]:
    """``(fn(), bytes numpy and Python allocated at the peak of the call beyond what was held
    before it)``."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        out = fn()
        return out, tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def _float_wav(path: Path, seconds: float, channels: int, sr: int = SR, seed: int = 0) -> Path:
    """Noise over a sine and a DC offset (so resampling's centring matters), as a float WAV."""
    n = int(seconds * sr)
    rng = np.random.default_rng(seed)
    t = np.arange(n) / sr
    cols = [0.3 * np.sin(2 * np.pi * (220 + 110 * c) * t) + 0.1 * rng.standard_normal(n) + 0.05 * (c + 1)
            for c in range(channels)]
    sf.write(str(path), np.stack(cols, 1).astype(np.float32), sr, subtype="FLOAT")
    load_with_info(path)  # imports and first-call buffers are not part of the measured peak
    return path


def _old_load(path: Path, sample_rate: int | None, mono: bool) -> tuple[np.ndarray, float, float]:
    """``(wave, peak, rms)`` as computed over the whole wave in float64."""
    import soxr

    data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    wave = np.ascontiguousarray(data.mean(axis=1, dtype=np.float64) if mono else data.T, dtype=np.float32)
    if sample_rate and sample_rate != sr:
        mean = wave.mean(axis=-1, keepdims=True, dtype=np.float64)
        centred = (wave - mean).astype(np.float32)
        if wave.ndim == 1:
            out = soxr.resample(centred, sr, sample_rate)
        else:
            out = soxr.resample(np.ascontiguousarray(centred.T), sr, sample_rate).T
        wave = np.ascontiguousarray(out + mean, dtype=np.float32)
    mix = wave if mono else wave.mean(0, dtype=np.float64)
    return wave, float(np.max(np.abs(mix))), float(np.sqrt(np.mean(np.square(mix, dtype=np.float64))))


def test_loading_one_channel_holds_one_float32_array(tmp_path: Path) -> None:
    path = _float_wav(tmp_path / "long.wav", 60, 1)
    wave, peak = _peak(lambda: load_with_info(path)[0])
    # a float64 mix-down and float64 squares would take 4x the samples
    assert wave.dtype == np.float32 and peak < 1.6 * wave.nbytes, f"{peak / wave.nbytes:.2f}x"


def test_mixing_down_holds_no_float64_copy(tmp_path: Path) -> None:
    path = _float_wav(tmp_path / "stereo.wav", 60, 2)
    wave, peak = _peak(lambda: load_with_info(path)[0])
    # the [T, 2] read (2x the result) and the result itself; a float64 mix would add 2x
    assert peak < 3.6 * wave.nbytes, f"{peak / wave.nbytes:.2f}x"


def test_resampling_holds_no_float64_copy(tmp_path: Path) -> None:
    path = _float_wav(tmp_path / "long.wav", 60, 1)
    size = int(60 * SR) * 4
    _, peak = _peak(lambda: load_with_info(path, 8000))
    # the samples and their centred float32 copy; float64 centring would add 2x
    assert peak < 2.6 * size, f"{peak / size:.2f}x"


def test_inspect_wave_measures_in_blocks() -> None:
    wave = (0.1 * np.random.default_rng(0).standard_normal(60 * SR)).astype(np.float32)
    info, peak = _peak(lambda: inspect_wave("x.wav", wave, SR))
    assert peak < 0.5 * wave.nbytes, f"{peak / wave.nbytes:.2f}x"  # not |x| nor float64 x²
    assert info.peak == float(np.max(np.abs(wave)))
    assert info.rms == pytest.approx(float(np.sqrt(np.mean(np.square(wave, dtype=np.float64)))), rel=1e-9)
    assert info.duration == 60.0 and not info.flags


@pytest.mark.parametrize("channels,sample_rate,mono", [
    (1, None, True), (2, None, True), (1, 16000, True), (2, 16000, True), (2, None, False),
    (2, 16000, False)])
def test_samples_and_levels_match_whole_wave_float64(tmp_path: Path, channels: int,
                                                     sample_rate: int | None, mono: bool) -> None:
    path = _float_wav(tmp_path / "a.wav", 5, channels, sr=22050)  # several blocks long
    wave, info = load_with_info(path, sample_rate, mono=mono)
    old_wave, old_peak, old_rms = _old_load(path, sample_rate, mono)
    assert wave.dtype == np.float32 and wave.flags.c_contiguous
    np.testing.assert_array_equal(wave, old_wave)
    assert info.peak == pytest.approx(old_peak, rel=1e-6)
    assert info.rms == pytest.approx(old_rms, rel=1e-6)
    assert (info.channels, info.orig_sample_rate, info.sample_rate) == (channels, 22050, sample_rate or 22050)
    assert info.duration == wave.shape[-1] / info.sample_rate


def test_resample_matches_whole_wave_float64() -> None:
    import soxr

    rng = np.random.default_rng(1)
    for wave in ((0.2 + 0.1 * rng.standard_normal(3 * BLOCK + 5)).astype(np.float32),
                 (0.1 * rng.standard_normal((3, 2 * BLOCK + 7)) + [[0.3], [-0.2], [0.0]]).astype(np.float32)):
        mean = wave.mean(axis=-1, keepdims=True, dtype=np.float64)
        centred = (wave - mean).astype(np.float32)
        out = soxr.resample(centred if wave.ndim == 1 else np.ascontiguousarray(centred.T), 16000, 22050)
        old = np.ascontiguousarray((out if wave.ndim == 1 else out.T) + mean, dtype=np.float32)
        new = audio.resample(wave, 16000, 22050)
        assert new.dtype == np.float32 and new.flags.c_contiguous
        np.testing.assert_array_equal(new, old)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_sample_in_a_later_block_is_refused(tmp_path: Path, bad: float) -> None:
    data = np.full((2 * BLOCK + 3, 2), 0.5, np.float32)
    data[BLOCK + 7, 1] = bad  # after a block with larger values than NaN compares to
    data[0, 0] = 0.9
    sf.write(str(tmp_path / "b.wav"), data, SR, subtype="FLOAT")
    with pytest.raises(AudioError, match=r"b\.wav: contains NaN or Inf samples"):
        load_with_info(tmp_path / "b.wav")


def test_sources_are_read_back_once_and_must_be_mono(tmp_path: Path) -> None:
    from auralens.scene.pipeline import ImagineError, _read_source

    path = _float_wav(tmp_path / "source0.wav", 60, 1)
    (wave, sr), peak = _peak(lambda: _read_source(path))
    assert sr == SR and wave.ndim == 1
    np.testing.assert_array_equal(wave, sf.read(str(path), dtype="float32")[0])
    assert peak < 1.6 * wave.nbytes, f"{peak / wave.nbytes:.2f}x"
    with pytest.raises(ImagineError, match=r"stereo\.wav: expected one channel, found 2"):
        _read_source(_float_wav(tmp_path / "stereo.wav", 1, 2))
