"""Spectral metrics: identities, SI-SDR known answers, silence robustness."""

from __future__ import annotations

import numpy as np
import pytest

from auralens.evaluate.spectral import (
    envelope_correlation,
    log_spectral_distance,
    logmel_l1,
    mr_stft_distance,
    overview_mag,
    si_sdr,
    spectral_convergence,
    spectral_metrics,
    stft_mag,
    stft_mag_blocks,
)

SR = 16000


@pytest.fixture
def burst() -> np.ndarray:
    """A 440 Hz tone with a loudness envelope (rises then falls), 1 s."""
    t = np.arange(SR) / SR
    return (np.sin(2 * np.pi * 440 * t) * np.sin(np.pi * t) ** 2).astype(np.float32)


def test_identical_signals_score_perfectly(burst: np.ndarray) -> None:
    m = spectral_metrics(burst, burst, SR)
    for key in ("mr_stft", "mr_stft_sc", "mr_stft_logmag", "logmel_l1", "lsd_db",
                "spectral_convergence"):
        assert m[key] == pytest.approx(0.0, abs=1e-9), key
    assert m["env_corr"] == pytest.approx(1.0, abs=1e-9)
    assert m["si_sdr"] > 100


def test_si_sdr_scaled_copy_is_large_and_finite(burst: np.ndarray) -> None:
    value = si_sdr(burst, 0.5 * burst)
    assert np.isfinite(value) and value > 80


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 20.0])
def test_si_sdr_matches_known_snr(snr_db: float) -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(SR * 4)
    noise = rng.standard_normal(SR * 4)
    noise -= noise @ x / (x @ x) * x  # orthogonal to x: SI-SDR equals the SNR exactly
    noise *= np.linalg.norm(x) / np.linalg.norm(noise) * 10 ** (-snr_db / 20)
    assert si_sdr(x, x + noise) == pytest.approx(snr_db, abs=0.01)


def test_distances_grow_with_degradation(burst: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    mild = burst + 0.01 * rng.standard_normal(SR).astype(np.float32)
    strong = burst + 0.3 * rng.standard_normal(SR).astype(np.float32)
    for fn in (lambda a, b: mr_stft_distance(a, b)["mr_stft"], spectral_convergence,
               log_spectral_distance, lambda a, b: logmel_l1(a, b, SR)):
        assert 0 < fn(burst, mild) < fn(burst, strong)


def test_envelope_correlation_follows_shape(burst: np.ndarray) -> None:
    t = np.arange(SR) / SR
    # A different carrier with the same loudness shape still correlates strongly.
    other = (np.sin(2 * np.pi * 1300 * t) * np.sin(np.pi * t) ** 2).astype(np.float32)
    reversed_shape = (np.sin(2 * np.pi * 440 * t) * np.cos(np.pi * t) ** 2).astype(np.float32)
    assert envelope_correlation(burst, other, SR) > 0.95
    assert envelope_correlation(burst, reversed_shape, SR) < -0.5
    assert envelope_correlation(burst, other, SR, method="rms") > 0.95


def test_silence_is_handled(burst: np.ndarray) -> None:
    silent = np.zeros(SR, dtype=np.float32)
    relative = {"mr_stft", "mr_stft_sc", "spectral_convergence", "si_sdr"}
    m = spectral_metrics(burst, silent, SR)
    # A silent estimate leaves SI-SDR undefined (the optimal scale is 0): it used to read 0 dB,
    # above every real estimate; the distances stay finite and env_corr reads "no correlation".
    assert {k for k, v in m.items() if not np.isfinite(v)} == {"si_sdr"}, m
    assert m["env_corr"] == 0.0
    # A silent reference: the metrics relative to it are undefined (NaN), the rest finite;
    # the envelope correlation too, unless the estimate is silent as well.
    for est in (burst, 1e-3 * np.random.default_rng(0).standard_normal(SR)):
        m = spectral_metrics(silent, est, SR)
        assert {k for k, v in m.items() if not np.isfinite(v)} == relative | {"env_corr"}, m
    m = spectral_metrics(silent, silent, SR)
    assert {k for k, v in m.items() if not np.isfinite(v)} == relative and m["env_corr"] == 1.0
    # Just above −100 dBFS the reference counts as sounding again.
    quiet = (2e-5 * np.sqrt(2) * np.sin(2 * np.pi * 440 * np.arange(SR) / SR)).astype(np.float32)
    assert np.isfinite(spectral_metrics(quiet, quiet, SR)["si_sdr"])


def test_si_sdr_of_a_constant_reference_is_undefined(burst: np.ndarray) -> None:
    dc = np.full(SR, 0.5)
    assert np.isnan(si_sdr(dc, dc)) and np.isnan(si_sdr(dc, burst))
    m = spectral_metrics(dc, dc, SR)
    assert {k for k, v in m.items() if not np.isfinite(v)} == {"si_sdr"}
    # A sound on a DC offset is still a sound.
    assert si_sdr(dc + burst, dc + burst) > 100


def test_undefined_metrics_are_named_in_a_warning(burst: np.ndarray) -> None:
    from auralens.evaluate.spectral import undefined_warning

    silent, dc = np.zeros(SR), np.full(SR, 0.5)
    assert undefined_warning(burst, spectral_metrics(burst, burst, SR)) is None
    assert undefined_warning(dc, spectral_metrics(dc, dc, SR)) == (
        "the reference is constant (a DC offset with no sound; silent once its mean is removed): "
        "si_sdr undefined, given as null")
    assert undefined_warning(silent, spectral_metrics(silent, burst, SR), "reference a.wav") == (
        "the reference a.wav is silent (RMS at or below −100 dBFS): mr_stft, mr_stft_sc, "
        "spectral_convergence, env_corr, si_sdr undefined, given as null")


def test_envelope_correlation_degenerate_cases(burst: np.ndarray) -> None:
    # Two different constant envelopes are not "equal"; a faint faithful copy still correlates.
    assert envelope_correlation(np.full(10, 0.5), np.full(10, 0.1), SR) == 0.0
    assert envelope_correlation(np.full(10, 0.5), np.full(10, 0.5), SR) == 1.0
    assert envelope_correlation(burst, 1e-10 * burst, SR) > 0.999


def test_non_finite_samples_are_refused(burst: np.ndarray) -> None:
    for bad in (np.nan, np.inf, -np.inf):
        est = burst.copy()
        est[100] = bad
        with pytest.raises(ValueError, match="NaN or infinite"):
            spectral_metrics(burst, est, SR)
        with pytest.raises(ValueError, match="NaN or infinite"):
            spectral_metrics(est, burst, SR)


def test_means_leave_out_clips_with_a_silent_original(burst: np.ndarray) -> None:
    from auralens.evaluate.sonify_eval import VersionScores

    silent = np.zeros(SR, dtype=np.float32)
    noisy = burst + 0.01 * np.random.default_rng(1).standard_normal(SR).astype(np.float32)
    vs = VersionScores("run", "none")
    vs.clip_metrics = {f"c{i}": spectral_metrics(burst, noisy, SR) for i in range(3)}
    vs.clip_metrics["quiet"] = spectral_metrics(silent, noisy, SR)
    means = vs.means()
    assert means["si_sdr"] == pytest.approx(vs.clip_metrics["c0"]["si_sdr"])
    lm = [m["mr_stft_logmag"] for m in vs.clip_metrics.values()]
    assert means["mr_stft_logmag"] == pytest.approx(np.mean(lm))  # defined for every clip
    vs.clip_metrics = {"quiet": vs.clip_metrics["quiet"]}
    assert np.isnan(vs.means()["si_sdr"])


def test_lengths_are_aligned_and_short_inputs_work(burst: np.ndarray, caplog) -> None:
    import logging

    with caplog.at_level(logging.WARNING, logger="auralens.evaluate.spectral"):
        m = spectral_metrics(burst, burst[: SR // 2], SR)
    assert m["mr_stft"] == pytest.approx(0.0, abs=1e-9)
    # a perfect score of the common start only: said, not silent
    assert "only the first 0.500 s of each were compared" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="auralens.evaluate.spectral"):
        assert np.isfinite(spectral_metrics(burst[:100], burst[:100] * 0.9, SR)["lsd_db"])
    assert caplog.text == ""
    from auralens.errors import AuralensError

    for sr in (0, -1, 16000.5, None):
        with pytest.raises(AuralensError, match="sample rate must be a positive whole number"):
            spectral_metrics(burst, burst, sr)
    with pytest.raises(AuralensError, match="cannot compare empty signals"):
        spectral_metrics(burst[:0], burst, SR)


def test_cli_prints_valid_json_for_a_silent_reference(tmp_path, capsys) -> None:
    import json

    import soundfile as sf

    from auralens.cli import main

    sf.write(tmp_path / "silent.wav", np.zeros(SR, np.float32), SR)
    sf.write(tmp_path / "noise.wav", (0.1 * np.random.default_rng(0).standard_normal(SR)).astype(np.float32), SR)
    capsys.readouterr()
    assert main(["evaluate", "spectral", str(tmp_path / "silent.wav"), str(tmp_path / "noise.wav")]) == 0
    printed = json.loads(capsys.readouterr().out, parse_constant=lambda c: pytest.fail(f"not JSON: {c}"))
    assert printed["si_sdr"] is None and printed["lsd_db"] > 0
    assert printed["env_corr"] is None
    assert printed["warnings"] == [
        f"the reference {tmp_path / 'silent.wav'} is silent (RMS at or below −100 dBFS): mr_stft, "
        "mr_stft_sc, spectral_convergence, env_corr, si_sdr undefined, given as null"]


def test_cli_constant_reference_gives_null_si_sdr_with_a_warning(tmp_path, capsys) -> None:
    import json

    import soundfile as sf

    from auralens.cli import main

    sf.write(tmp_path / "dc.wav", np.full(3 * SR, 0.5, np.float32), SR)
    capsys.readouterr()
    assert main(["evaluate", "spectral", str(tmp_path / "dc.wav"), str(tmp_path / "dc.wav")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["si_sdr"] is None and printed["mr_stft"] == 0.0
    assert printed["warnings"] == [
        f"the reference {tmp_path / 'dc.wav'} is constant (a DC offset with no sound; silent once "
        "its mean is removed): si_sdr undefined, given as null"]



def test_multichannel_input_is_refused_not_flattened() -> None:
    rng = np.random.default_rng(0)
    stereo = rng.standard_normal((2, 4000))
    with pytest.raises(ValueError, match=r"mono \[T\] signals; the reference has shape \(2, 4000\)"):
        spectral_metrics(stereo, stereo, 16000)
    with pytest.raises(ValueError, match="the estimate has shape"):
        si_sdr(stereo[0], stereo.T)
    # singleton axes are mono: [1, T] and [T, 1] score like [T]
    assert si_sdr(stereo[:1], stereo[0][:, None]) == si_sdr(stereo[0], stereo[0])


def _files(tmp_path, ref: np.ndarray, est: np.ndarray):
    import soundfile as sf

    sf.write(tmp_path / "ref.wav", ref, SR)
    sf.write(tmp_path / "est.wav", est, SR)
    return tmp_path / "ref.wav", tmp_path / "est.wav"


def test_file_comparison_reports_lengths_and_warns_on_a_mismatch(burst: np.ndarray, tmp_path,
                                                                  capsys) -> None:
    import json

    from auralens.cli import main
    from auralens.evaluate.spectral import ANALYSIS_FRAME

    ref, est = _files(tmp_path, burst, burst[: SR // 2])
    capsys.readouterr()
    assert main(["evaluate", "spectral", str(ref), str(est)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["compared_samples"], out["compared_s"]) == (SR // 2, 0.5)
    assert (out["ref_duration_s"], out["est_duration_s"]) == (1.0, 0.5)
    assert out["warnings"] == [f"lengths differ by more than one analysis frame ({ANALYSIS_FRAME} "
                               f"samples): {ref} is 1.000 s, {est} is 0.500 s; only the first "
                               "0.500 s of each were compared"]
    # A few samples of difference (resampling, codec padding) is no mismatch.
    ref, est = _files(tmp_path, burst, burst[: SR - ANALYSIS_FRAME])
    assert main(["evaluate", "spectral", str(ref), str(est)]) == 0
    assert json.loads(capsys.readouterr().out)["warnings"] == []


@pytest.mark.parametrize("n", [1, 80, 511])
def test_file_too_short_for_the_metrics_is_an_error(burst: np.ndarray, tmp_path, capsys, n: int) -> None:
    from auralens.cli import main

    ref, est = _files(tmp_path, burst, burst[:n])
    capsys.readouterr()
    assert main(["evaluate", "spectral", str(ref), str(est)]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.strip() == (f"error: {est}: too short for the spectral metrics ({n} samples, "
                                    f"{1000 * n / SR:.1f} ms at {SR} Hz); they need at least 512 "
                                    "samples (32 ms)")


@pytest.mark.parametrize("n", [1, 511, 513, 16000, 40_003])
def test_blocks_and_overview_are_the_full_stft_pooled(n: int) -> None:
    """Long inputs are framed block by block (bounded memory): the same numbers as one STFT."""
    x = np.random.default_rng(n).standard_normal(n)
    full = stft_mag(x, 512, 128)
    assert full.shape == (257, n // 128 + 1)
    assert np.array_equal(np.concatenate(list(stft_mag_blocks(x, 512, 128, block=7)), axis=1), full)
    mag, group = overview_mag(x, 512, 128, max_cols=50)
    assert mag.shape[1] <= 50 and group == -(-full.shape[1] // 50)
    for j in (0, mag.shape[1] - 1):  # each column is the maximum over its group of frames
        np.testing.assert_array_equal(mag[:, j], full[:, j * group:(j + 1) * group].max(axis=1))


def test_metrics_summed_over_blocks_match_the_whole_spectrogram() -> None:
    """12 s at 16 kHz spans two 4096-frame blocks at hop 32: same value as in one piece."""
    rng = np.random.default_rng(3)
    ref = 0.1 * rng.standard_normal(12 * SR)
    est = ref + 0.03 * rng.standard_normal(12 * SR)
    a, b = stft_mag(ref, 256, 32), stft_mag(est, 256, 32)
    assert a.shape[1] > 4096
    diff = 10 * np.log10(a**2 + 1e-10) - 10 * np.log10(b**2 + 1e-10)
    lsd = np.mean(np.sqrt(np.mean(diff**2, axis=0)))
    assert log_spectral_distance(ref, est, n_fft=256, hop=32) == pytest.approx(lsd, rel=1e-12)
    sc = np.linalg.norm(a - b) / np.linalg.norm(a)
    assert spectral_convergence(ref, est, n_fft=256, hop=32) == pytest.approx(sc, rel=1e-9)
