"""Signal-level distances between an original clip and its sonification.

All functions take two mono ``[T]`` finite waves at one sample rate (the longer is trimmed to
the shorter; NaN or infinite samples are refused with ``ValueError``) and compute in float64.
Silence is handled by small documented epsilons, with one exception: the metrics measured
*relative to the reference* (spectral convergence, the SC part of the MR-STFT distance,
SI-SDR) are undefined for a silent reference (RMS ≤ ``SILENT_RMS``, −100 dBFS) and come back
as NaN, which averages over clips leave out, instead of a huge number that would swamp them.
So is the envelope correlation of a silent reference with a signal that is not silent in the
same way, and SI-SDR of a constant reference (a DC offset: silent once its mean is removed)
or of a silent or constant *estimate* (its optimal scale is 0, so target and error both
vanish: 0 dB would rank a silent render above every real one).
:func:`undefined_warning` says which metrics are undefined and why.

* :func:`mr_stft_distance` — multi-resolution STFT distance: for each FFT size, spectral
  convergence ``‖|X|−|Y|‖_F / ‖|X|‖_F`` plus mean log-magnitude L1
  ``mean |log(|X|+ε) − log(|Y|+ε)|``, averaged over resolutions (Yamamoto et al. 2020).
* :func:`logmel_l1` — mean |Δ| of natural-log mel magnitudes (64 bands).
* :func:`log_spectral_distance` — LSD in dB: per frame RMS over frequency of the
  10·log10 power difference, averaged over frames.
* :func:`spectral_convergence` — single resolution (n_fft 2048).
* :func:`envelope_correlation` — Pearson correlation of smoothed amplitude envelopes (does
  the sonification follow the original's loudness shape over time?).
* :func:`si_sdr` — scale-invariant SDR in dB. Only meaningful when the phase is meaningful
  (a waveform codec's ceiling); for Griffin-Lim or generated audio, whose phase is
  arbitrary, it is near or below 0 dB whatever the quality.

Lengths: the functions compare the first ``min(len(ref), len(est))`` samples. Comparing two
*files* (:func:`auralens.evaluate.folders.spectral_files`) reports the compared length and
each file's duration (:func:`compare_lengths`); a mismatch of more than one analysis frame
(:data:`ANALYSIS_FRAME` samples, the largest STFT size) is a warning in the output, and a file
shorter than :data:`MIN_COMPARE_SAMPLES` (the smallest STFT size) is an error: its metrics
would be numbers computed from zero padding.

Epsilons: magnitudes get ``EPS_MAG = 1e-5`` (−100 dB re full scale) before logs, powers
``EPS_POW = 1e-10``; norms in ratios get ``EPS_NORM = 1e-8``; SI-SDR adds ``EPS_SDR = 1e-10``
to both energies, so a perfect match gives a large finite value instead of +inf.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from auralens.checks import is_whole
from auralens.evaluate.fad import MetricInputError

log = logging.getLogger(__name__)

EPS_MAG = 1e-5
EPS_POW = 1e-10
EPS_NORM = 1e-8
EPS_SDR = 1e-10
#: A reference at or below this RMS (−100 dBFS) is silent: relative metrics are NaN for it.
SILENT_RMS = 1e-5

#: Largest STFT size the metrics use (MR-STFT, LSD, spectral convergence): cutting more than
#: one such frame off the longer signal is reported as a length mismatch.
ANALYSIS_FRAME = 2048
#: Fewest samples a file comparison accepts: the smallest STFT size of the MR-STFT distance.
MIN_COMPARE_SAMPLES = 512

#: Metrics where lower is better (the rest: higher is better).
LOWER_IS_BETTER = {"mr_stft", "mr_stft_sc", "mr_stft_logmag", "logmel_l1", "lsd_db",
                   "spectral_convergence", "fad", "kad", "fad_inf"}
#: Metrics only meaningful when the phase is.
PHASE_SENSITIVE = {"si_sdr"}


def _mono(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if sum(d > 1 for d in x.shape) > 1:  # flattening [C, T] would compare channels end to end
        raise MetricInputError(f"the metrics compare mono [T] signals; the {name} has shape "
                               f"{x.shape} (mix it down first)")
    return x.reshape(-1)


def _pair(ref: np.ndarray, est: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ref, est = _mono(ref, "reference"), _mono(est, "estimate")
    n = min(ref.shape[0], est.shape[0])
    if n == 0:
        raise MetricInputError("cannot compare empty signals")
    ref, est = ref[:n], est[:n]
    if not (np.isfinite(ref).all() and np.isfinite(est).all()):
        raise MetricInputError("cannot compare signals holding NaN or infinite samples")
    return ref, est


def compare_lengths(n_ref: int, n_est: int, sr: int, ref_name: str = "reference",
                    est_name: str = "estimate") -> tuple[dict[str, float | int], str | None]:
    """What a comparison of ``n_ref`` and ``n_est`` samples at ``sr`` actually compares.

    Returns:
        ``({"compared_samples", "compared_s", "ref_duration_s", "est_duration_s"}, warning)``;
        ``warning`` is None unless the longer signal loses more than :data:`ANALYSIS_FRAME`
        samples (a different clip, or a render cut to a model's window: the metrics then
        describe only the common start).
    """
    n = min(n_ref, n_est)
    info: dict[str, float | int] = {"compared_samples": n, "compared_s": round(n / sr, 6),
                                    "ref_duration_s": round(n_ref / sr, 6),
                                    "est_duration_s": round(n_est / sr, 6)}
    warning = None
    if abs(n_ref - n_est) > ANALYSIS_FRAME:
        warning = (f"lengths differ by more than one analysis frame ({ANALYSIS_FRAME} samples): "
                   f"{ref_name} is {n_ref / sr:.3f} s, {est_name} is {n_est / sr:.3f} s; only "
                   f"the first {n / sr:.3f} s of each were compared")
    return info, warning


def _silent(x: np.ndarray) -> bool:
    return bool(np.sqrt(np.mean(x * x)) <= SILENT_RMS)


def stft_mag(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """``[F, frames]`` STFT magnitude: Hann window, centred (zero padding), numpy only.

    Plain numpy (one rfft over a strided frame view) keeps the speed steady on a busy
    machine where torch's thread pool contends for cores.
    """
    return np.concatenate(list(stft_mag_blocks(x, n_fft, hop, block=1 << 62)), axis=1)


def stft_mag_blocks(x: np.ndarray, n_fft: int, hop: int, block: int = 4096) -> Iterator[np.ndarray]:
    """The columns of :func:`stft_mag` in consecutive ``[F, ≤ block]`` pieces: the same
    numbers, with memory bounded by ``block`` frames instead of the signal's length."""
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    x = np.pad(x, (n_fft // 2, n_fft // 2))
    if x.shape[0] < n_fft:
        x = np.pad(x, (0, n_fft - x.shape[0]))
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft)[::hop]  # a view: no copy
    window = np.hanning(n_fft + 1)[:-1]  # periodic Hann, as torch.hann_window
    for start in range(0, frames.shape[0], block):
        yield np.abs(np.fft.rfft(frames[start:start + block] * window, axis=1)).T


#: Frames :func:`overview_mag` transforms at once (rounded to whole columns): about 10 MB of
#: float64 frames and spectra with 512-sample windows, whatever the signal's length.
OVERVIEW_BLOCK = 1024


def overview_mag(x: np.ndarray, n_fft: int, hop: int, max_cols: int = 1600,
                 block: int = OVERVIEW_BLOCK) -> tuple[np.ndarray, int]:
    """STFT magnitude for a picture: ``([F, ≤ max_cols], frames per column)``.

    Up to ``max_cols`` frames this is :func:`stft_mag`; a longer signal's frames are taken
    in groups, each column the maximum over its group (a short event stays visible in the
    overview of a long recording).

    The same numbers as pooling :func:`stft_mag` (zero-padded centred frames, periodic Hann
    window), computed about ``block`` frames at a time (whole groups, so a column never
    straddles two blocks) from ``x`` as it is: only the current block's samples become
    float64, never a float64 copy of the whole signal (twice a float32 signal's size, plus a
    padded copy). A 10-minute 16 kHz float32 signal with 512-sample windows needs about
    30 MB, not 156 MB.

    Args:
        x: ``[T]`` signal (any real dtype; flattened).
        n_fft: window and FFT size.
        hop: frame step in samples.
        max_cols: most columns returned.
        block: frames transformed at once (memory, not the result).

    Returns:
        ``(mag [n_fft // 2 + 1, ≤ max_cols], frames per column)``.
    """
    x = np.asarray(x).reshape(-1)
    half = n_fft // 2
    size = x.shape[0]
    n_frames = (max(size + 2 * half, n_fft) - n_fft) // hop + 1  # as stft_mag_blocks
    group = max(1, -(-n_frames // max_cols))
    step = group * max(1, block // group)  # whole groups per block: columns never straddle
    window = np.hanning(n_fft + 1)[:-1]  # periodic Hann, as stft_mag_blocks
    cols = []
    for f0 in range(0, n_frames, step):
        f1 = min(f0 + step, n_frames)
        # samples of frames f0 … f1-1 in the zero-padded signal, position p = sample p - half
        lo, hi = f0 * hop, (f1 - 1) * hop + n_fft
        seg = np.zeros(hi - lo)
        a, b = max(lo - half, 0), min(hi - half, size)
        if b > a:
            seg[a + half - lo:b + half - lo] = x[a:b]
        frames = np.lib.stride_tricks.sliding_window_view(seg, n_fft)[::hop]
        mag = np.abs(np.fft.rfft(frames * window, axis=1)).T
        pad = -mag.shape[1] % group  # magnitudes are ≥ 0, so zero columns never win a max
        mag = np.pad(mag, ((0, 0), (0, pad)))
        cols.append(mag.reshape(mag.shape[0], -1, group).max(axis=2))
    return np.concatenate(cols, axis=1), group


def _block_sums(ref: np.ndarray, est: np.ndarray, n_fft: int, hop: int,
                fn: Callable[[np.ndarray, np.ndarray], tuple[float, ...]]) -> np.ndarray:
    """Σ over frame blocks of ``fn(|X|, |Y|)`` (magnitude blocks ``[F, n]`` of equal-length
    signals): the metrics are sums over frames, so memory stays bounded by one block."""
    total = None
    for a, b in zip(stft_mag_blocks(ref, n_fft, hop), stft_mag_blocks(est, n_fft, hop), strict=True):
        part = np.asarray(fn(a, b), dtype=np.float64)
        total = part if total is None else total + part
    assert total is not None  # stft_mag_blocks yields at least one block
    return total


def _sc_logmag(a: np.ndarray, b: np.ndarray) -> tuple[float, ...]:
    """Sums for spectral convergence and the log-magnitude L1: ‖a−b‖², ‖a‖², Σ|log a − log b|, n."""
    return (float(np.sum((a - b) ** 2)), float(np.sum(a * a)),
            float(np.sum(np.abs(np.log(a + EPS_MAG) - np.log(b + EPS_MAG)))), a.size)


def _sc(sums: np.ndarray) -> float:
    return float(np.sqrt(sums[0]) / (np.sqrt(sums[1]) + EPS_NORM))


def spectral_convergence(ref: np.ndarray, est: np.ndarray, n_fft: int = 2048,
                         hop: int | None = None) -> float:
    """``‖|X|−|Y|‖_F / (‖|X|‖_F + ε)``; 0 for identical signals, NaN for a silent reference."""
    ref, est = _pair(ref, est)
    if _silent(ref):
        return float("nan")
    return _sc(_block_sums(ref, est, n_fft, hop or n_fft // 4, _sc_logmag))


def mr_stft_distance(ref: np.ndarray, est: np.ndarray,
                     fft_sizes: Sequence[int] = (512, 1024, 2048)) -> dict[str, float]:
    """Multi-resolution STFT distance.

    Returns:
        ``{"mr_stft": sc + logmag, "mr_stft_sc": mean SC, "mr_stft_logmag": mean log-L1}``;
        ``mr_stft`` and ``mr_stft_sc`` are NaN for a silent reference.
    """
    ref, est = _pair(ref, est)
    scs, lms = [], []
    for n_fft in fft_sizes:
        sums = _block_sums(ref, est, n_fft, n_fft // 4, _sc_logmag)
        scs.append(_sc(sums))
        lms.append(sums[2] / sums[3])
    sc, lm = float(np.mean(scs)), float(np.mean(lms))
    if _silent(ref):
        sc = float("nan")
    return {"mr_stft": sc + lm, "mr_stft_sc": sc, "mr_stft_logmag": lm}


@functools.lru_cache(maxsize=16)
def _mel_filters(sr: int, n_fft: int, n_mels: int) -> np.ndarray:
    """Mel filterbank ``[n_mels, n_fft // 2 + 1]``, built once per setting (not per clip)."""
    import librosa

    return librosa.filters.mel(sr=sr, n_fft=n_fft, n_mels=n_mels)


def logmel_l1(ref: np.ndarray, est: np.ndarray, sr: int, n_fft: int = 1024,
              hop: int | None = None, n_mels: int = 64) -> float:
    """Mean |log(mel_ref+ε) − log(mel_est+ε)| (natural log, magnitude mel)."""
    ref, est = _pair(ref, est)
    mel = _mel_filters(sr, n_fft, n_mels)

    def sums(a: np.ndarray, b: np.ndarray) -> tuple[float, ...]:
        ma, mb = mel @ a, mel @ b
        return float(np.sum(np.abs(np.log(ma + EPS_MAG) - np.log(mb + EPS_MAG)))), ma.size

    total, count = _block_sums(ref, est, n_fft, hop or n_fft // 4, sums)
    return float(total / count)


def log_spectral_distance(ref: np.ndarray, est: np.ndarray, n_fft: int = 2048,
                          hop: int | None = None) -> float:
    """LSD in dB: ``mean_frames sqrt(mean_freq (10 log10 P_ref − 10 log10 P_est)²)``."""
    ref, est = _pair(ref, est)

    def sums(a: np.ndarray, b: np.ndarray) -> tuple[float, ...]:
        diff = 10 * np.log10(a**2 + EPS_POW) - 10 * np.log10(b**2 + EPS_POW)
        return float(np.sum(np.sqrt(np.mean(diff**2, axis=0)))), a.shape[1]

    total, frames = _block_sums(ref, est, n_fft, hop or n_fft // 4, sums)
    return float(total / frames)


def envelope(x: np.ndarray, sr: int, smooth_ms: float = 20.0, method: str = "hilbert") -> np.ndarray:
    """Smoothed amplitude envelope ``[T']`` (decimated to ~1 kHz frames).

    ``hilbert``: |analytic signal| smoothed by a moving average of ``smooth_ms``;
    ``rms``: frame RMS over ``smooth_ms`` windows.
    """
    from scipy.signal import hilbert

    x = np.asarray(x, dtype=np.float64)
    # A window longer than the clip would make np.convolve("same") return the window's length.
    win = max(1, min(int(round(sr * smooth_ms / 1000)), x.shape[0]))
    step = max(1, sr // 1000)
    if method == "hilbert":
        env = np.abs(hilbert(x)) if x.shape[0] > 1 else np.abs(x)
        kernel = np.ones(win) / win
        env = np.convolve(env, kernel, mode="same")
    elif method == "rms":
        sq = np.convolve(x * x, np.ones(win) / win, mode="same")
        env = np.sqrt(np.maximum(sq, 0.0))
    else:
        raise ValueError(f"unknown envelope method {method!r}; use 'hilbert' or 'rms'")
    return env[::step]


def envelope_correlation(ref: np.ndarray, est: np.ndarray, sr: int, smooth_ms: float = 20.0,
                         method: str = "hilbert") -> float:
    """Pearson correlation of the smoothed envelopes, in [−1, 1].

    When an envelope is constant (silence, or a stationary tone) the correlation is
    undefined; we return 1.0 if both envelopes are equal and 0.0 otherwise, except for a
    silent reference (RMS ≤ ``SILENT_RMS``) with an estimate that differs from it: NaN, as
    the other metrics relative to the reference. So a silent estimate of a sounding reference
    gets 0.0: it follows none of the reference's loudness shape (the bottom of the scale for
    an estimate that does not move against the reference, unlike SI-SDR it is not undefined).
    """
    ref, est = _pair(ref, est)
    env_a, env_b = envelope(ref, sr, smooth_ms, method), envelope(est, sr, smooth_ms, method)
    a, b = env_a - env_a.mean(), env_b - env_b.mean()
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    # "Constant" relative to each signal's own level, so a faint but faithful copy still counts.
    flat_a = na <= 1e-9 * max(np.abs(ref).max(), 1e-12) * np.sqrt(a.size)
    flat_b = nb <= 1e-9 * max(np.abs(est).max(), 1e-12) * np.sqrt(b.size)
    if flat_a or flat_b:
        scale = max(np.abs(ref).max(), np.abs(est).max(), 1e-12)
        if flat_a and flat_b and np.allclose(env_a, env_b, atol=1e-9 * scale):
            return 1.0
        return float("nan") if _silent(ref) else 0.0
    if _silent(ref):
        return float("nan")
    return float(np.clip(a @ b / (na * nb), -1.0, 1.0))


def si_sdr(ref: np.ndarray, est: np.ndarray) -> float:
    """Scale-invariant SDR in dB (Le Roux et al. 2019), zero-mean signals.

    ``x`` vs ``0.5 x`` gives a large finite value (≈ 10 log10(‖αx‖² / EPS_SDR));
    ``x`` vs ``x + noise`` gives the SNR; a silent or constant reference, or a silent or
    constant estimate (silent once its mean is removed), gives NaN: with no estimate the
    optimal scale is 0, target and error both vanish, and the formula's 0 dB would rank
    silence above any real render. Phase-sensitive: see the module docstring.
    """
    from auralens.scene.separate.metrics import si_sdr_zero_mean

    ref, est = _pair(ref, est)
    if _silent(ref - ref.mean()) or _silent(est - est.mean()):
        return float("nan")
    return float(si_sdr_zero_mean(est, ref, eps=EPS_SDR))


def spectral_metrics(ref: np.ndarray, est: np.ndarray, sr: int) -> dict[str, float]:
    """Every metric of this module for one (original, estimate) pair.

    Returns:
        ``mr_stft, mr_stft_sc, mr_stft_logmag, logmel_l1, lsd_db, spectral_convergence,
        env_corr, si_sdr``: finite floats, except the relative ones (``mr_stft``, ``mr_stft_sc``,
        ``spectral_convergence``, ``si_sdr``, and ``env_corr`` unless the estimate is silent in
        the same way), which are NaN for a silent reference, and ``si_sdr``, NaN for a constant
        reference and for a silent or constant estimate (see :func:`undefined_warning`). A
        silent estimate of a sounding reference keeps ``env_corr`` 0.0 (no correlation).
    """
    if not is_whole(sr, 1):
        raise MetricInputError(f"sample rate must be a positive whole number of Hz, got {sr!r}")
    _, warning = compare_lengths(np.shape(ref)[-1] if np.ndim(ref) else 1,
                                 np.shape(est)[-1] if np.ndim(est) else 1, int(sr))
    if warning:  # the metrics describe the common start only
        log.warning("%s", warning)
    out = mr_stft_distance(ref, est)
    out["logmel_l1"] = logmel_l1(ref, est, sr)
    out["lsd_db"] = log_spectral_distance(ref, est)
    out["spectral_convergence"] = spectral_convergence(ref, est)
    out["env_corr"] = envelope_correlation(ref, est, sr)
    out["si_sdr"] = si_sdr(ref, est)
    return out


def undefined_warning(ref: np.ndarray, metrics: dict[str, float], name: str = "reference",
                      est: np.ndarray | None = None, est_name: str = "estimate") -> str | None:
    """A line saying which of ``metrics`` (of :func:`spectral_metrics`) are undefined (NaN)
    and why (a silent or a constant ``ref``; else a silent or constant estimate, told apart
    when ``est`` is given), or None when all are defined."""
    undefined = [k for k, v in metrics.items() if not np.isfinite(v)]
    if not undefined:
        return None
    ref = _mono(ref, "reference")
    silent = "is silent (RMS at or below −100 dBFS)"
    constant = "is constant (a DC offset with no sound; silent once its mean is removed)"
    if _silent(ref):
        who, why = name, silent
    elif _silent(ref - ref.mean()):
        who, why = name, constant
    elif est is None:  # a sounding reference: only a soundless estimate leaves a metric undefined
        who, why = est_name, "is silent (RMS at or below −100 dBFS once any DC offset is removed)"
    else:
        est = _mono(est, "estimate")
        who, why = est_name, (silent if _silent(est) else constant)
    return f"the {who} {why}: {', '.join(undefined)} undefined, given as null"
