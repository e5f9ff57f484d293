"""Memory of a long separation: the activity filter scores block by block (no full-length
float64 copies), chunked separation returns float32 estimates that still sum to the mixture,
and ``separate`` / ``imagine`` peak near what they must hold: the input and its M sources
(imagine's captions and report spectrograms one source at a time, each drawn in blocks)."""

from __future__ import annotations

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


@pytest.mark.parametrize("n", [100, 512, 700, 128 * 1600, 128 * 1600 + 1, 16000 * 70 + 17])
def test_report_spectrogram_columns_are_overview_mag_in_small_blocks(n: int) -> None:
    from auralens.scene.pipeline import _overview_mag

    x = (0.1 * np.random.default_rng(n).standard_normal(n)).astype(np.float32)
    ref, _ = overview_mag(x, 512, 128)
    for block in (7, 100, 1024):  # blocks shorter than a column's group, partial last blocks
        assert np.array_equal(_overview_mag(x, 512, 128, block=block), ref)
    ref, _ = overview_mag(x, 512, 128, max_cols=50)
    assert np.array_equal(_overview_mag(x, 512, 128, max_cols=50, block=100), ref)


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
