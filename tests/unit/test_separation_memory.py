"""Memory of a long separation: the activity filter scores block by block (no full-length
float64 copies), chunked separation returns float32 estimates that still sum to the mixture,
and ``separate`` / ``imagine`` peak near what they must hold: the input and its M sources
(imagine's captions and report spectrograms one source at a time, each drawn in blocks, the
report's mixture from the input imagine holds)."""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from factories.audio_files import noise_wav
from factories.separate import micro_config

from auralens.evaluate.spectral import overview_mag
from auralens.scene.caption.base import CaptionResult
from auralens.scene.separate import activity
from auralens.scene.separate.activity import RULES, ActivityConfig, filter_estimates
from auralens.scene.separate.base import Separator
from auralens.scene.separate.run import load_separator, max_sum_error, separate_array
from auralens.scene.separate.tdcnpp import TDCNpp, TDCNppSeparator

SR = 16000


def _peak(fn: Callable[[], Any]) -> tuple[Any, int]:
    """``(fn(), bytes numpy and Python allocated at the peak of the call beyond what was held
    before it)``; torch's own buffers are not traced."""
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        out = fn()
        return out, tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def _scene(t: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(est [4, t], mix [t])`` float32: noise, a quieter copy, a DC offset, silence."""
    rng = np.random.default_rng(seed)
    noise = (0.1 * rng.standard_normal(t)).astype(np.float32)
    est = np.stack([noise, 0.05 * noise, np.full(t, 0.25, np.float32), np.zeros(t, np.float32)])
    return est, est.sum(0)


# ----------------------------------------------------------------------------- activity filter


@pytest.mark.parametrize("rule", RULES)
def test_activity_filter_makes_no_full_length_copies(rule: str) -> None:
    est, mix = _scene(1 << 21)  # 32 MB of estimates
    _, peak = _peak(lambda: filter_estimates(est, mix, ActivityConfig(rule=rule)))
    # float64 copies of [M, T] (and their squares) would be several times est itself
    assert peak < est.nbytes // 4, f"{peak / 2**20:.1f} MB for {est.nbytes / 2**20:.0f} MB of estimates"


@pytest.mark.parametrize("frame", [16, 500, 512, 4096])
def test_block_by_block_scores_match_whole_array_sums(monkeypatch: pytest.MonkeyPatch,
                                                      frame: int) -> None:
    monkeypatch.setattr(activity, "BLOCK", 1024)  # many blocks, some shorter than a frame
    t = 20 * 1024 + 777  # a partial last block and a partial last frame
    est, mix = _scene(t, seed=1)
    est[1, 5000:5100] = 0.0  # silent frames in one estimate
    out = filter_estimates(est, mix, ActivityConfig(frame=frame))
    x, s = mix.astype(np.float64), est.astype(np.float64)
    n = t // frame
    mix_frames = (x[: n * frame].reshape(n, frame) ** 2).sum(-1)
    mix_rms = np.sqrt(np.mean(x**2)) + 1e-12
    for d, row in zip(out, s, strict=True):
        sc = d["scores"]
        rms = np.sqrt(np.mean(row**2))
        assert sc["rms"] == pytest.approx(rms, rel=1e-12, abs=0)
        assert sc["ac_rms"] == pytest.approx(np.sqrt(np.mean((row - row.mean()) ** 2)), rel=1e-9, abs=1e-12)
        assert sc["sum_abs_times_peak"] == pytest.approx(np.abs(row).sum() * np.abs(row).max(), rel=1e-12)
        assert sc["rms_ratio"] == pytest.approx(rms / mix_rms, rel=1e-12)
        frames = (row[: n * frame].reshape(n, frame) ** 2).sum(-1)
        ratio_db = 10 * np.log10(frames / np.maximum(mix_frames, 1e-20) + 1e-20)
        assert sc["active_frame_fraction"] == np.mean(ratio_db >= -6.0)  # frame sums are exact
    assert [d["reason"] for d in out[2:]] == ["constant (no sound)", "silent (all zeros)"]


# ----------------------------------------------------------------------------- chunked separation


def test_long_chunked_separation_is_float32_and_sums_to_the_mixture() -> None:
    torch.manual_seed(0)
    sep = TDCNppSeparator(TDCNpp(micro_config()), chunk_seconds=1.0, overlap_seconds=0.25)
    rng = np.random.default_rng(0)
    mix = (0.3 * rng.standard_normal(30 * SR + 123)).astype(np.float32)  # ≈ 40 chunks
    separate_array(sep, mix[: 3 * SR])  # imports on first use are not the separation's memory
    est, peak = _peak(lambda: separate_array(sep, mix))
    assert est.dtype == np.float32 and est.shape == (4, mix.size)
    whole = float(np.max(np.abs(est.sum(0) - mix)))
    assert whole < 1e-5  # mixture consistency survives the overlap-add to float32 precision
    assert max_sum_error(est, mix, block=1000) == whole  # the blocked summary value is exact
    # the estimates and a few chunks' outputs, never a list of every chunk's output
    assert peak < est.nbytes + 8 * est.shape[0] * sep.chunk * 4, f"{peak / 2**20:.1f} MB"


# ----------------------------------------------------------------------------- whole commands


def _growth(run: Callable[[Path, Path], Any], tmp_path: Path, m: int) -> float:
    """How much more ``run(input, out)`` peaks on 200 s of noise than on 80 s, as a share of
    how much more the input and its ``m`` sources take as float32: fixed costs (imports, a
    model, a spectrogram's block of frames, full from about 8 s on) cancel, what grows with
    the input is left."""
    run(noise_wav(tmp_path / "warm.wav", seed=0, seconds=12), tmp_path / "warm")
    peaks, held = [], []
    for seconds in (80, 200):
        wav = noise_wav(tmp_path / f"{seconds}.wav", seed=seconds, seconds=seconds)
        peaks.append(_peak(lambda wav=wav, out=tmp_path / f"out{seconds}": run(wav, out))[1])
        held.append((1 + m) * seconds * SR * 4)
    return (peaks[1] - peaks[0]) / (held[1] - held[0])


def test_separate_file_grows_with_the_input_and_its_sources_only(tmp_path: Path) -> None:
    from auralens.scene.separate.run import separate_file

    sep = load_separator()  # the committed TDCN++, chunked past 10 s
    growth = _growth(lambda wav, out: separate_file(wav, out, sep), tmp_path, sep.num_sources)
    # no [T] temporaries beside the estimates: not in the filter, not in the summary's sum check
    assert growth < 1.25, f"peak grows {growth:.2f}× as fast as the input and its sources"


class _Captioner:
    """Answers without a model, so the peak measured is the pipeline's own."""

    name = "fixed"
    sample_rate = SR

    def describe(self, wave: np.ndarray) -> CaptionResult:
        return CaptionResult("the sound of rain", "rain", 0.9)


def test_imagine_grows_with_the_input_and_its_sources_only(tmp_path: Path) -> None:
    from auralens.scene.pipeline import ImagineConfig, imagine

    sep = load_separator()
    cfg = ImagineConfig(separator=sep, captioner=_Captioner())  # with its report
    growth = _growth(lambda wav, out: imagine(wav, out, cfg), tmp_path, sep.num_sources)
    # one source at a time while captioning and drawing the report, each read straight into
    # float32 and drawn a block of frames at a time (1.3× when captions held all M sources and
    # the report read each through a float64 copy and drew it from a whole float64 copy)
    assert growth < 1.1, f"peak grows {growth:.2f}× as fast as the input and its sources"


# ----------------------------------------------------------------------------- caption step


class _Shares(Separator):
    """Four unequal shares of the mixture (every one audible), made by numpy, so that
    tracemalloc sees the estimates (a torch model's buffers it would not)."""

    name = "shares"
    num_sources = 4

    def separate(self, mix: np.ndarray) -> np.ndarray:
        return np.stack([np.float32(w) * mix for w in (0.4, 0.3, 0.2, 0.1)])


class _HeldAtCaption(_Captioner):
    """Records how much numpy and Python hold (beyond ``base``) each time it is asked."""

    def __init__(self) -> None:
        self.base = 0
        self.held: list[int] = []

    def describe(self, wave: np.ndarray) -> CaptionResult:
        self.held.append(tracemalloc.get_traced_memory()[0] - self.base)
        return super().describe(wave)


def test_imagine_holds_one_source_at_a_time_while_captioning(tmp_path: Path) -> None:
    from auralens.scene.pipeline import ImagineConfig, imagine

    captioner = _HeldAtCaption()
    cfg = ImagineConfig(separator=_Shares(), captioner=captioner, min_kept=4, report=False)
    imagine(noise_wav(tmp_path / "warm.wav", seed=0, seconds=2), tmp_path / "warm", cfg)
    seconds = 60
    wav = noise_wav(tmp_path / "long.wav", seed=1, seconds=seconds)
    source = seconds * SR * 4  # bytes of one float32 source, and of the input
    captioner.held.clear()
    tracemalloc.start()
    try:
        captioner.base = tracemalloc.get_traced_memory()[0]
        result = imagine(wav, tmp_path / "out", cfg)
    finally:
        tracemalloc.stop()
    assert result.kept == [0, 1, 2, 3] and len(captioner.held) == 4
    # the input and the source being captioned; all four sources would be 5 × source
    assert max(captioner.held) < 3 * source, \
        f"{max(captioner.held) / source:.2f} sources' worth held while captioning"


# ----------------------------------------------------------------------------- report spectrograms


def _plain_overview(x: np.ndarray, n_fft: int, hop: int, max_cols: int) -> np.ndarray:
    """:func:`overview_mag` written out plainly: the whole signal as float64, zero-padded by
    ``n_fft // 2`` on both sides, every frame cut out one by one, periodic Hann window, rfft
    magnitudes of all frames at once, then each column the maximum over its group of frames
    (the last group may be shorter)."""
    half = n_fft // 2
    padded = np.concatenate([np.zeros(half), np.asarray(x, dtype=np.float64), np.zeros(half)])
    n_frames = (padded.size - n_fft) // hop + 1
    frames = np.stack([padded[i * hop:i * hop + n_fft] for i in range(n_frames)])
    mag = np.abs(np.fft.rfft(frames * np.hanning(n_fft + 1)[:-1], axis=1)).T
    group = -(-n_frames // max_cols)
    return np.stack([mag[:, j:j + group].max(axis=1) for j in range(0, n_frames, group)], axis=1)


@pytest.mark.parametrize("n", [100, 512, 700, 128 * 1600, 128 * 1600 + 1, 16000 * 70 + 17])
def test_overview_mag_is_the_plain_computation_in_small_blocks(n: int) -> None:
    x = (0.1 * np.random.default_rng(n).standard_normal(n)).astype(np.float32)
    for max_cols in (1600, 50):
        ref = _plain_overview(x, 512, 128, max_cols)
        for block in (7, 100, 1024):  # blocks shorter than a column's group, partial last blocks
            mag, group = overview_mag(x, 512, 128, max_cols=max_cols, block=block)
            assert group == -(-(n // 128 + 1) // max_cols)
            assert np.array_equal(mag, ref), (max_cols, block)
    # the same numbers for the float64 signal (the float32 samples are exact in float64)
    assert np.array_equal(overview_mag(x.astype(np.float64), 512, 128)[0], _plain_overview(x, 512, 128, 1600))


def test_overview_mag_of_a_sine_on_a_bin_is_known() -> None:
    """A sine of amplitude A on bin k: the periodic Hann window gives |X[k]| = A·N/4 and
    A·N/8 in its neighbours, in every column away from the edges, however many frames a
    column pools."""
    n_fft, k, amp = 512, 32, 0.5
    t = np.arange(16000 * 60)
    x = (amp * np.sin(2 * np.pi * k * t / n_fft)).astype(np.float32)
    mag, group = overview_mag(x, n_fft, 128)
    assert mag.shape == (257, 1501) and group == 5  # 7501 frames
    inner = mag[:, 1:-2]  # the first column and the last two pool zero-padded edge frames
    np.testing.assert_allclose(inner[k], amp * n_fft / 4, rtol=1e-6)
    np.testing.assert_allclose(inner[[k - 1, k + 1]], amp * n_fft / 8, rtol=1e-5)
    assert np.all(np.argmax(inner, axis=0) == k)


def test_overview_mag_memory_does_not_grow_with_the_signal() -> None:
    """Only one block of frames is float64 at a time: 10 minutes (37 MB of float32 samples)
    cost about 14 MB, as 2 minutes do; a float64 copy of the whole signal, its padded copy
    and blocks of 8192 frames took 156 MB."""
    overview_mag(np.zeros(SR, np.float32), 512, 128)
    peaks = []
    for seconds in (120, 600):
        wave = (0.1 * np.random.default_rng(seconds).standard_normal(seconds * SR)).astype(np.float32)
        _, peak = _peak(lambda wave=wave: overview_mag(wave, 512, 128))
        peaks.append(peak)
    mb = [f"{p / 2**20:.1f} MB" for p in peaks]
    assert peaks[1] - peaks[0] < wave.nbytes // 16, f"{mb} for 120 s and 600 s"
    assert peaks[1] < wave.nbytes // 2, f"{mb} for 120 s and 600 s ({wave.nbytes / 2**20:.0f} MB of samples)"


def test_imagine_report_draws_the_input_it_holds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The report draws the mixture from the input imagine holds already: its peak grows
    with the input by about one source (the one being read and drawn), not by a second read
    of the input, whose float64 mono mix took about four times the input's size."""
    from auralens.scene import pipeline
    from auralens.scene.pipeline import ImagineConfig, imagine

    peaks = []
    report = pipeline.write_report

    def measured(*args: Any, **kwargs: Any) -> Path:
        tracemalloc.reset_peak()
        start = tracemalloc.get_traced_memory()[0]
        out = report(*args, **kwargs)
        peaks.append(tracemalloc.get_traced_memory()[1] - start)
        return out

    monkeypatch.setattr(pipeline, "write_report", measured)
    cfg = ImagineConfig(separator=_Shares(), captioner=_Captioner())
    imagine(noise_wav(tmp_path / "warm.wav", seed=0, seconds=12), tmp_path / "warm", cfg)  # imports
    gc.collect()
    gc.disable()  # each figure leaves a few MB to the cycle collector: alike in both runs, not at random
    tracemalloc.start()
    try:
        # long enough for a re-read (4× the input) to outgrow drawing one wave (≈ 30 MB)
        for seconds in (200, 400):
            wav = noise_wav(tmp_path / f"{seconds}.wav", seed=seconds, seconds=seconds)
            imagine(wav, tmp_path / f"out{seconds}", cfg)
    finally:
        tracemalloc.stop()
        gc.enable()
    growth = (peaks[2] - peaks[1]) / ((400 - 200) * SR * 4)
    assert growth < 2, f"the report's peak grows {growth:.2f}× as fast as the input"


def test_report_mixture_picture_is_the_input_as_read(tmp_path: Path) -> None:
    """Drawn from the samples imagine read (a stereo 44.1 kHz 16-bit input: mixed to mono at
    its own rate), the mixture's picture is the one a fresh read of the file gives."""
    import soundfile as sf

    from auralens.audio import load_sr
    from auralens.scene.pipeline import ImagineConfig, _spectrogram_png, imagine

    t = np.arange(int(2.5 * 44100)) / 44100
    rng = np.random.default_rng(0)
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 880 * t), 0.05 * rng.standard_normal(t.size)], 1)
    sf.write(tmp_path / "in.wav", stereo, 44100, subtype="PCM_16")
    imagine(tmp_path / "in.wav", tmp_path / "out", ImagineConfig(separator=_Shares(), captioner=_Captioner()))
    wave, sr = load_sr(tmp_path / "in.wav")
    ref = _spectrogram_png(wave, sr, tmp_path / "ref.png", "mixture")
    assert (tmp_path / "out" / "spectrograms" / "mixture.png").read_bytes() == ref.read_bytes()


def test_report_spectrogram_costs_the_same_for_any_length(tmp_path: Path) -> None:
    from auralens.scene.pipeline import _spectrogram_png

    _spectrogram_png(np.zeros(SR, np.float32), SR, tmp_path / "warm.png", "warm")  # imports
    peaks = []
    for seconds in (120, 600):
        wave = (0.1 * np.random.default_rng(seconds).standard_normal(seconds * SR)).astype(np.float32)
        png, peak = _peak(lambda wave=wave, s=seconds: _spectrogram_png(wave, SR, tmp_path / f"{s}.png", "x"))
        assert png.stat().st_size > 0
        peaks.append(peak)
    # one block of frames and the figure (≈ 30 MB, whatever the length); float64 copies of the
    # whole wave would add 4× its size, and a block of 8192 frames ≈ 70 MB
    mb = [f"{p / 2**20:.1f} MB" for p in peaks]
    assert peaks[1] - peaks[0] < wave.nbytes // 8, f"{mb} for 120 s and 600 s"
    assert peaks[1] < wave.nbytes, f"{mb} for 120 s and 600 s ({wave.nbytes / 2**20:.0f} MB of samples)"
