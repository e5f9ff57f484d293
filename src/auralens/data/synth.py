"""A procedural sound library: labelled classes from parameterised generators.

Each class has its own spectral and temporal signature (tonal sweeps, inharmonic decays,
impulse trains, shaped noise, formant-filtered pulse trains), and every clip draws its own
parameters, so a classifier or a separator has something real to learn without any
downloaded data. Output is an ESC-50-layout dataset, so every ESC-50 tool reads it.

Each clip's generator is seeded by ``(seed, class index, clip index)``: a clip does not
change when other classes or more clips are requested.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import signal

from auralens.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE, write
from auralens.checks import is_number, is_whole
from auralens.data import DatasetError, check_free_space, check_length
from auralens.io import (
    atomic_path,
    check_out_dir,
    is_temp_name,
    read_recorded_settings,
    remove_stale_temps,
    write_json,
)

log = logging.getLogger(__name__)

Rng = np.random.Generator
Generator = Callable[[Rng, int, int], np.ndarray]

#: Number of cross-validation folds the library is split into (as ESC-50).
N_FOLDS = 5
#: Most clips per class: clip ``k`` of class ``t`` gets the ESC-50 ``src_file`` id
#: ``100000 + 1000·t + k``, unique only while ``k < 1000`` (ESC-50 itself has 40 per class).
MAX_CLIPS_PER_CLASS = 1000
#: The settings a library is made with, written before the first clip (resume guard).
CONFIG_NAME = "synth_config.json"


# --------------------------------------------------------------------------- helpers
def _time(n: int, sr: int) -> np.ndarray:
    return np.arange(n, dtype=np.float64) / sr


def _sos(kind: str, freq: float | tuple[float, float], sr: int, order: int = 4) -> np.ndarray:
    """Butterworth SOS with cut-offs clamped inside (0, Nyquist)."""
    nyq = sr / 2.0
    if isinstance(freq, tuple):
        lo = float(np.clip(freq[0], 10.0, 0.95 * nyq))
        hi = float(np.clip(freq[1], lo * 1.05, 0.98 * nyq))
        wn: float | tuple[float, float] = (lo, hi)
    else:
        wn = float(np.clip(freq, 10.0, 0.98 * nyq))
    return signal.butter(order, wn, btype=kind, fs=sr, output="sos")


def _filtered_noise(rng: Rng, n: int, sr: int, kind: str, freq: float | tuple[float, float],
                    order: int = 4) -> np.ndarray:
    return signal.sosfilt(_sos(kind, freq, sr, order), rng.standard_normal(n))


def _smooth_envelope(rng: Rng, n: int, sr: int, rate_hz: float, depth: float) -> np.ndarray:
    """A slowly varying positive envelope ``[n]`` around 1 (random control points, cubic)."""
    n_ctrl = max(4, int(np.ceil(n / sr * rate_hz)) + 3)
    ctrl = 1.0 + depth * rng.uniform(-1.0, 1.0, n_ctrl)
    x = np.linspace(0, n_ctrl - 1, n)
    env = np.interp(x, np.arange(n_ctrl), ctrl)
    # a short moving average rounds the linear corners
    k = max(1, int(sr / max(rate_hz, 0.1) / 4))
    if 1 < k < n:
        env = signal.oaconvolve(env, np.ones(k) / k, mode="same")
    return np.maximum(env, 0.0)


def _place(n: int, onsets: np.ndarray, amps: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Sum copies of ``kernel`` at sample ``onsets`` scaled by ``amps`` (one FFT convolution)."""
    train = np.zeros(n)
    onsets = np.asarray(onsets, dtype=int)
    keep = (onsets >= 0) & (onsets < n)
    np.add.at(train, onsets[keep], np.asarray(amps, dtype=float)[keep])
    return signal.fftconvolve(train, kernel)[:n]


def _harmonic_stack(phase: np.ndarray, f0: np.ndarray, sr: int, amps: np.ndarray) -> np.ndarray:
    """``sum_k amps[k] * sin((k+1) * phase)`` with partials above 0.45·sr muted. ``[T]``."""
    k = np.arange(1, len(amps) + 1)[:, None]
    alive = (k * f0[None, :]) < 0.45 * sr
    return np.sum(amps[:, None] * alive * np.sin(k * phase[None, :]), axis=0)


def _fade(x: np.ndarray, sr: int, ms: float = 10.0) -> np.ndarray:
    m = min(len(x) // 2, int(sr * ms / 1000))
    if m > 0:
        ramp = np.linspace(0.0, 1.0, m)
        x[:m] *= ramp
        x[-m:] *= ramp[::-1]
    return x


# --------------------------------------------------------------------------- generators
def _siren(rng: Rng, n: int, sr: int) -> np.ndarray:
    t = _time(n, sr)
    fc = rng.uniform(650, 1100)
    if rng.random() < 0.6:  # wail: slow sweep
        rate, dev = rng.uniform(0.15, 0.6), rng.uniform(0.25, 0.45) * fc
        sweep = np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi))
    else:  # yelp: fast saw-like sweep
        rate, dev = rng.uniform(2.5, 6.0), rng.uniform(0.2, 0.35) * fc
        sweep = 2 * ((rate * t + rng.random()) % 1.0) - 1
    f = fc + dev * sweep
    phase = 2 * np.pi * np.cumsum(f) / sr
    amps = np.array([1.0, rng.uniform(0.2, 0.5), rng.uniform(0.1, 0.3), rng.uniform(0.05, 0.15)])
    x = _harmonic_stack(phase, f, sr, amps)
    # Doppler-ish slow level change as the vehicle passes
    x *= _smooth_envelope(rng, n, sr, 0.4, rng.uniform(0.1, 0.5))
    return x + 0.01 * _filtered_noise(rng, n, sr, "lowpass", 800.0)


def _birds(rng: Rng, n: int, sr: int) -> np.ndarray:
    x = np.zeros(n)
    t_now = rng.uniform(0.0, 0.5)
    dur_total = n / sr
    base = rng.uniform(2500, 5000)
    while t_now < dur_total:
        n_chirps = rng.integers(3, 9)
        for _ in range(n_chirps):
            d = rng.uniform(0.03, 0.12)
            m = int(d * sr)
            start = int(t_now * sr)
            if start + m >= n:
                break
            f_start = base * rng.uniform(0.8, 1.25)
            f_end = f_start * rng.choice([rng.uniform(0.45, 0.8), rng.uniform(1.2, 1.7)])
            f = np.geomspace(f_start, f_end, m)
            f = np.minimum(f, 0.45 * sr)
            ph = 2 * np.pi * np.cumsum(f) / sr
            chirp = np.sin(ph) * np.hanning(m) * rng.uniform(0.5, 1.0)
            chirp += 0.15 * np.sin(2 * ph) * np.hanning(m)
            x[start:start + m] += chirp
            t_now += d + rng.uniform(0.02, 0.12)
        t_now += rng.uniform(0.3, 1.5)
    return x + 0.005 * _filtered_noise(rng, n, sr, "highpass", 1500.0)


def _rain(rng: Rng, n: int, sr: int) -> np.ndarray:
    hiss = _filtered_noise(rng, n, sr, "bandpass", (rng.uniform(400, 1200), rng.uniform(6000, 10000)), 2)
    rate = rng.uniform(80, 400)  # drops per second
    n_drops = rng.poisson(rate * n / sr)
    onsets = rng.integers(0, n, n_drops)
    amps = rng.lognormal(0.0, 0.6, n_drops) * rng.choice([-1, 1], n_drops)
    m = max(8, int(0.003 * sr))
    kernel = rng.standard_normal(m) * np.exp(-np.arange(m) / (0.0008 * sr))
    drops = _place(n, onsets, amps, kernel)
    drops = signal.sosfilt(_sos("highpass", 1500.0, sr, 2), drops)
    mix = rng.uniform(0.3, 0.7)
    x = mix * hiss / (np.std(hiss) + 1e-9) + (1 - mix) * drops / (np.std(drops) + 1e-9)
    return x * _smooth_envelope(rng, n, sr, 0.3, 0.15)


def _engine(rng: Rng, n: int, sr: int) -> np.ndarray:
    f0 = rng.uniform(25, 60) * _smooth_envelope(rng, n, sr, 0.3, rng.uniform(0.02, 0.15))
    cycles = np.cumsum(f0) / sr
    # a sawtooth/pulse blend is harmonically rich (1/k partials); the low-pass below
    # removes the aliasing a naive waveform would otherwise add at these low pitches
    saw = 2.0 * (cycles % 1.0) - 1.0
    pulse = ((cycles % 1.0) < rng.uniform(0.1, 0.4)).astype(float)
    x = saw + rng.uniform(0.0, 1.0) * (pulse - pulse.mean())
    # cylinder firing: amplitude modulation at half the crank rate
    x *= 1.0 + rng.uniform(0.2, 0.6) * np.sin(np.pi * cycles)
    x = signal.sosfilt(_sos("lowpass", rng.uniform(700, 1800), sr, 4), x)
    rumble = _filtered_noise(rng, n, sr, "lowpass", 300.0, 2)
    return x / (np.std(x) + 1e-9) + rng.uniform(0.1, 0.4) * rumble / (np.std(rumble) + 1e-9)


def _clock(rng: Rng, n: int, sr: int) -> np.ndarray:
    period = rng.uniform(0.45, 1.05)
    first = rng.uniform(0, period)
    times = np.arange(first, n / sr, period)
    times = times + rng.normal(0, 0.002, len(times))
    onsets = (times * sr).astype(int)
    m = int(0.02 * sr)
    tt = np.arange(m) / sr
    f_tick = rng.uniform(2000, 4500)
    decay = rng.uniform(0.001, 0.004)

    def tick(f: float) -> np.ndarray:
        body = np.sin(2 * np.pi * f * tt) + 0.5 * np.sin(2 * np.pi * 1.63 * f * tt)
        return (body + 0.5 * rng.standard_normal(m)) * np.exp(-tt / decay)

    tock_ratio = rng.uniform(0.7, 0.9)
    x = _place(n, onsets[0::2], np.ones(len(onsets[0::2])), tick(f_tick))
    x += _place(n, onsets[1::2], np.full(len(onsets[1::2]), rng.uniform(0.6, 1.0)), tick(f_tick * tock_ratio))
    return x + 0.003 * rng.standard_normal(n)


def _bell(rng: Rng, n: int, sr: int) -> np.ndarray:
    f0 = rng.uniform(300, 900)
    ratios = np.array([0.5, 1.0, 1.19, 1.5, 2.0, 2.52, 2.66, 3.01, 4.0, 5.33])
    ratios = ratios * rng.uniform(0.985, 1.015, len(ratios))
    freqs = f0 * ratios
    tau = rng.uniform(1.0, 3.0) / np.sqrt(ratios / 0.5)  # higher partials die faster
    amps = rng.uniform(0.3, 1.0, len(ratios)) / np.sqrt(np.arange(1, len(ratios) + 1))
    tt = np.arange(n) / sr
    alive = freqs < 0.45 * sr
    phases = rng.uniform(0, 6.3, (len(ratios), 1))
    # partial by partial (the same sum as over a [partials, n] array, without holding one)
    kernel = np.zeros(n)
    for amp, t_decay, freq, ph in zip(amps * alive, tau, freqs, phases[:, 0], strict=True):
        kernel += amp * np.exp(-tt / t_decay) * np.sin(2 * np.pi * freq * tt + ph)
    n_strikes = rng.integers(1, 5)
    gap = rng.uniform(0.8, 1.6)
    start = rng.uniform(0.0, 0.5)
    times = start + gap * np.arange(n_strikes)
    return _place(n, (times * sr).astype(int), rng.uniform(0.6, 1.0, n_strikes), kernel)


def _wind(rng: Rng, n: int, sr: int) -> np.ndarray:
    x = np.zeros(n)
    for _ in range(rng.integers(2, 4)):
        lo = rng.uniform(250, 1200)
        band = _filtered_noise(rng, n, sr, "bandpass", (lo, lo * rng.uniform(1.2, 2.0)), 2)
        band /= np.std(band) + 1e-9
        x += band * _smooth_envelope(rng, n, sr, rng.uniform(0.2, 0.8), rng.uniform(0.5, 0.95)) ** 2
    low = _filtered_noise(rng, n, sr, "lowpass", 150.0, 2)
    return x + 0.3 * low / (np.std(low) + 1e-9)


def _footsteps(rng: Rng, n: int, sr: int) -> np.ndarray:
    step = 1.0 / rng.uniform(1.4, 2.4)
    times = np.arange(rng.uniform(0, step), n / sr, step)
    times = times + rng.normal(0, 0.015 * step, len(times))  # humans are not metronomes
    onsets = (times * sr).astype(int)
    amps = rng.uniform(0.6, 1.0, len(onsets)) * np.where(np.arange(len(onsets)) % 2, 1.0, rng.uniform(0.6, 0.9))
    m = int(rng.uniform(0.06, 0.12) * sr)
    tt = np.arange(m) / sr
    thud = signal.sosfilt(_sos("lowpass", rng.uniform(150, 400), sr, 2), rng.standard_normal(m))
    thud *= np.exp(-tt / rng.uniform(0.015, 0.04))
    crunch = signal.sosfilt(_sos("bandpass", (1500.0, 6000.0), sr, 2), rng.standard_normal(m))
    crunch *= np.exp(-tt / rng.uniform(0.01, 0.03))
    kernel = thud / (np.max(np.abs(thud)) + 1e-9) + rng.uniform(0.0, 0.6) * crunch / (np.max(np.abs(crunch)) + 1e-9)
    # the heel strike is followed by the toe a few tens of ms later
    toe = int(rng.uniform(0.03, 0.08) * sr)
    kernel = kernel + 0.5 * np.concatenate([np.zeros(toe), kernel])[:m]
    return _place(n, onsets, amps, kernel) + 0.002 * rng.standard_normal(n)


def _water_drops(rng: Rng, n: int, sr: int) -> np.ndarray:
    x = np.zeros(n)
    rate = rng.uniform(2.0, 7.0)
    n_drops = max(3, rng.poisson(rate * n / sr))
    onsets = np.sort(rng.integers(0, n, n_drops))
    for onset in onsets:
        d = rng.uniform(0.02, 0.07)
        m = min(int(d * sr), n - onset)
        if m < 4:
            continue
        tt = np.arange(m) / sr
        f_start = rng.uniform(350, 1300)
        f = f_start * np.exp(np.log(rng.uniform(1.6, 3.2)) * tt / d)
        f = np.minimum(f, 0.45 * sr)
        ph = 2 * np.pi * np.cumsum(f) / sr
        blip = np.sin(ph) * np.exp(-tt / (d / 3)) * (1 - np.exp(-tt / 0.001))
        x[onset:onset + m] += rng.uniform(0.4, 1.0) * blip
    # a faint room tail so drops sit in a space
    m = int(0.15 * sr)
    tail = rng.standard_normal(m) * np.exp(-np.arange(m) / (0.03 * sr)) * 0.05
    tail[0] = 1.0
    return signal.fftconvolve(x, tail)[:n] + 0.002 * rng.standard_normal(n)


#: Formant frequencies (F1, F2, F3) in Hz of a few vowels.
_VOWELS = np.array([[730, 1090, 2440], [270, 2290, 3010], [300, 870, 2240],
                    [530, 1840, 2480], [570, 840, 2410], [660, 1720, 2410]], dtype=float)


def _voice(rng: Rng, n: int, sr: int) -> np.ndarray:
    """Parallel formant synthesis: a glottal pulse train through per-syllable vowel resonators."""
    t = _time(n, sr)
    f0_base = rng.uniform(95, 260)
    intonation = _smooth_envelope(rng, n, sr, 1.5, rng.uniform(0.05, 0.2))
    vibrato = 1 + 0.01 * np.sin(2 * np.pi * rng.uniform(4, 6) * t)
    cycles = np.cumsum(f0_base * intonation * vibrato) / sr
    # one glottal pulse per period (rounded to a sample: a little natural jitter)
    onsets = np.flatnonzero(np.diff(np.floor(cycles)) > 0)
    m = max(4, int(0.004 * sr))
    open_phase = np.sin(np.pi * np.arange(m) / m) ** 2
    glottal = np.diff(open_phase, prepend=0.0)  # flow derivative: the excitation the tract sees
    source = _place(n, onsets, np.ones(len(onsets)), glottal)
    source += 0.03 * rng.standard_normal(n) * (np.std(source) + 1e-9)  # breathiness
    x = np.zeros(n)
    pos = int(rng.uniform(0.0, 0.4) * sr)
    while pos < n:
        syl = int(rng.uniform(0.12, 0.3) * sr)
        seg = slice(pos, min(n, pos + syl))
        length = seg.stop - seg.start
        if length > 16:
            formants = _VOWELS[rng.integers(len(_VOWELS))] * rng.uniform(0.9, 1.15)
            out = np.zeros(length)
            for j, (freq, q) in enumerate(zip(formants, (6.0, 12.0, 18.0), strict=True)):
                if freq < 0.45 * sr:
                    b, a = signal.iirpeak(freq, q, fs=sr)
                    out += signal.lfilter(b, a, source[seg]) / (j + 1)
            x[seg] = out * np.hanning(length + 2)[1:-1] ** 0.5
        pos += syl + int(rng.choice([rng.uniform(0.02, 0.08), rng.uniform(0.3, 0.8)], p=[0.8, 0.2]) * sr)
    return x


def _crickets(rng: Rng, n: int, sr: int) -> np.ndarray:
    t = _time(n, sr)
    fc = rng.uniform(3800, 6000)
    pulse_rate = rng.uniform(25, 60)
    pulses = (np.sin(2 * np.pi * pulse_rate * t) > rng.uniform(-0.2, 0.4)).astype(float)
    pulses = signal.oaconvolve(pulses, np.hanning(int(0.003 * sr) + 1), mode="same")
    chirp_rate = rng.uniform(1.0, 3.5)
    duty = rng.uniform(0.3, 0.6)
    gate = ((chirp_rate * t + rng.random()) % 1.0) < duty
    gate = signal.oaconvolve(gate.astype(float), np.hanning(int(0.01 * sr) + 1), mode="same")
    carrier = np.sin(2 * np.pi * fc * t) + 0.2 * np.sin(2 * np.pi * 2 * fc * t) * (2 * fc < 0.45 * sr)
    return carrier * pulses * gate + 0.003 * rng.standard_normal(n)


#: Class name → generator ``(rng, n_samples, sample_rate) -> [n_samples]``.
GENERATORS: dict[str, Generator] = {
    "siren": _siren,
    "chirping_birds": _birds,
    "rain": _rain,
    "engine": _engine,
    "clock_tick": _clock,
    "church_bells": _bell,
    "wind": _wind,
    "footsteps": _footsteps,
    "water_drops": _water_drops,
    "voice": _voice,
    "crickets": _crickets,
}

#: The procedural classes, in target order.
SYNTH_CLASSES: list[str] = list(GENERATORS)


def check_clip_settings(sample_rate: int, duration: float) -> None:
    """Refuse a sample rate or duration that would not give a loadable clip.

    Raises:
        DatasetError: ``sample_rate`` outside the rates :mod:`auralens.audio` loads
            (:data:`~auralens.audio.MIN_SAMPLE_RATE` … :data:`~auralens.audio.MAX_SAMPLE_RATE`),
            or ``duration`` not a positive finite number of seconds worth at least one sample
            and at most :data:`~auralens.data.MAX_DURATION_S` seconds /
            :data:`~auralens.data.MAX_SAMPLES` samples.
    """
    if not is_whole(sample_rate) or not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise DatasetError(f"sample rate must be an integer from {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz, "
                           f"got {sample_rate!r}")
    if not is_number(duration) or duration <= 0:
        raise DatasetError(f"duration must be a positive number of seconds, got {duration!r}")
    check_length(duration, sample_rate)


def generate_clip(label: str, rng: Rng, *, sample_rate: int = 22050, duration: float = 5.0) -> np.ndarray:
    """One clip of class ``label`` as float32 ``[T]``, normalised to a random level.

    The level is drawn per clip (RMS −30…−16 dBFS, peak at most 0.5…0.9) so loudness
    varies naturally within a class.

    Raises:
        DatasetError: unknown ``label`` or settings refused by :func:`check_clip_settings`.
    """
    if label not in GENERATORS:
        raise DatasetError(f"unknown synth class {label!r}; choose from {', '.join(SYNTH_CLASSES)}")
    check_clip_settings(sample_rate, duration)
    n = int(round(duration * sample_rate))
    x = np.asarray(GENERATORS[label](rng, n, sample_rate), dtype=np.float64)[:n]
    x = _fade(x - x.mean(), sample_rate)
    rms = float(np.sqrt(np.mean(x**2))) + 1e-12
    peak = float(np.max(np.abs(x))) + 1e-12
    gain = min(10 ** (rng.uniform(-30, -16) / 20) / rms, rng.uniform(0.5, 0.9) / peak)
    return (x * gain).astype(np.float32)


def synthesize(
    out_dir: Path,
    *,
    clips_per_class: int = 12,
    seed: int = 42,
    sample_rate: int = 22050,
    duration: float = 5.0,
    classes: Sequence[str] | None = None,
) -> Path:
    """Write a procedural ESC-50-layout library.

    Files: ``out_dir/audio/{fold}-{src_id}-A-{target}.wav`` (16-bit PCM),
    ``out_dir/meta/esc50.csv``, ``out_dir/synth_config.json`` (the settings, written first) and
    ``out_dir/run.json``; clip ``k`` of a class gets fold ``k % 5 + 1`` so every fold holds
    every class.

    A rerun into the same ``out_dir`` with the same settings resumes (clips already written
    are kept); one with other settings is refused, naming the setting, and so is an
    ``out_dir`` that holds a dataset this function did not make (its ``meta/esc50.csv`` or
    audio files would be overwritten or mixed in).

    Args:
        out_dir: destination (created).
        clips_per_class: clips per class (1 … :data:`MAX_CLIPS_PER_CLASS`).
        seed: library seed (same seed → identical files).
        sample_rate: Hz.
        duration: seconds per clip (at most :data:`~auralens.data.MAX_DURATION_S`).
        classes: subset of :data:`SYNTH_CLASSES` (default: all). ``target`` is always the
            index in :data:`SYNTH_CLASSES`.

    Returns:
        ``out_dir``.

    Raises:
        DatasetError: unknown or repeated classes, ``clips_per_class`` out of range, a sample rate or
            duration refused by :func:`check_clip_settings`, an ``out_dir`` made with other
            settings or holding another dataset, or a library that clearly does not fit on
            the disk (nothing is written then).
    """
    import time

    from auralens.io import write_run_json
    from auralens.progress import progress

    start = time.perf_counter()
    out_dir = Path(out_dir)
    names = list(classes) if classes is not None else SYNTH_CLASSES
    unknown = [c for c in names if c not in GENERATORS]
    if unknown:
        raise DatasetError(f"unknown synth class(es) {', '.join(unknown)}; choose from {', '.join(SYNTH_CLASSES)}")
    repeated = [c for c in dict.fromkeys(names) if names.count(c) > 1]
    if repeated:  # each would be written twice to meta/esc50.csv
        raise DatasetError(f"synth class(es) {', '.join(repeated)} given more than once; name each class once")
    if not is_whole(clips_per_class) or not 1 <= clips_per_class <= MAX_CLIPS_PER_CLASS:
        raise DatasetError(f"clips_per_class must be an integer from 1 to {MAX_CLIPS_PER_CLASS}, "
                           f"got {clips_per_class!r}")
    check_clip_settings(sample_rate, duration)  # before anything is written
    settings = {"seed": seed, "clips_per_class": int(clips_per_class), "sample_rate": int(sample_rate),
                "duration": duration, "classes": names}
    _check_out_dir(out_dir, settings)
    check_writable(out_dir)
    n_samples = int(round(duration * sample_rate))

    def clip_name(name: str, k: int) -> tuple[str, int, int, int]:
        target = SYNTH_CLASSES.index(name)
        fold = k % N_FOLDS + 1
        src_id = 100000 + target * 1000 + k
        return f"{fold}-{src_id}-A-{target}.wav", fold, target, src_id

    todo = [(name, k) for name in names for k in range(clips_per_class)
            if not (out_dir / "audio" / clip_name(name, k)[0]).is_file()]
    # 16-bit PCM plus a 44-byte header per clip, and a CSV line each
    check_free_space(out_dir, len(todo) * (2 * n_samples + 44 + 64), f"{len(todo)} clips of {duration:g} s")
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out_dir)
    write_json(out_dir / CONFIG_NAME, settings)
    for name, k in progress(todo, desc="synth"):
        filename, _, target, _ = clip_name(name, k)
        rng = np.random.default_rng([seed, target, k])
        wave = generate_clip(name, rng, sample_rate=sample_rate, duration=duration)
        write(out_dir / "audio" / filename, wave, sample_rate, subtype="PCM_16")
    rows = []
    for name in names:
        for k in range(clips_per_class):
            filename, fold, target, src_id = clip_name(name, k)
            rows.append([filename, fold, target, name, "False", src_id, "A"])
    with atomic_path(out_dir / "meta" / "esc50.csv") as tmp, open(tmp, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        writer.writerows(sorted(rows, key=lambda r: (r[1], r[0])))
    write_run_json(out_dir, command="data synth", seed=seed,
                   timings={"synth": time.perf_counter() - start},
                   config={k: v for k, v in settings.items() if k != "seed"},
                   extra={"n_clips": len(rows), "n_new": len(todo)})
    log.info("synthesized %d new clips (%d in all) of %d classes in %s", len(todo), len(rows), len(names), out_dir)
    return out_dir


def check_writable(out_dir: Path) -> None:
    """Refuse an ``out_dir`` that cannot be created or written, before any work (a free-space
    check there would report the free space of a read-only or virtual file system instead).
    Folders created for the check are removed again.

    Raises:
        DatasetError: one line naming ``out_dir`` and the system's reason.
    """
    import os
    import tempfile

    out_dir = Path(out_dir)
    missing = []
    probe = out_dir.absolute()
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    try:
        if missing:
            out_dir.mkdir(parents=True)
        fd, name = tempfile.mkstemp(prefix=".write-check.", dir=out_dir)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise DatasetError(f"{out_dir}: cannot create or write this folder ({reason}); "
                           "choose another --out") from None
    finally:
        for folder in missing:  # deepest first: leave the disk as it was
            try:
                folder.rmdir()
            except OSError:
                break


def _recorded_settings(out_dir: Path) -> dict[str, Any] | None:
    """The settings ``out_dir`` was synthesized with, or None when synth did not make it.

    Libraries of versions before :data:`CONFIG_NAME` are recognised by their ``run.json``.
    """
    def refuse(message: str) -> None:  # cannot tell what is there: never write over it
        raise DatasetError(message)

    old, run = read_recorded_settings(out_dir, CONFIG_NAME, "data synth", refuse)
    if run is None:
        return old
    return {**run["config"], "seed": run.get("seed")}


def _check_out_dir(out_dir: Path, settings: dict[str, Any]) -> None:
    """Refuse an ``out_dir`` made with other settings or holding a dataset synth did not make."""
    if not out_dir.exists():
        return
    check_out_dir(out_dir, DatasetError, "; choose another --out")
    old = _recorded_settings(out_dir)
    if old is None:
        # Any file at all, not only a dataset's: a folder of the user's own recordings must
        # not get audio/ and meta/ written beside them.
        found = next((f for f in sorted(out_dir.rglob("*"))
                      if f.is_file() and not is_temp_name(f.name)), None)
        if found is not None:
            raise DatasetError(f"{out_dir}: holds files that data synth does not write "
                               f"({found.relative_to(out_dir)}); choose an empty or new --out")
        return
    def same(key: str, before: Any, now: Any) -> bool:
        if key == "classes" and isinstance(before, list) and isinstance(now, list):
            # the files do not depend on the order: a clip's name and seed come from its class's
            # index in SYNTH_CLASSES, and the csv is sorted by fold and file name
            return sorted(map(str, before)) == sorted(map(str, now))
        return before == now

    diff = [f"{k} {old.get(k)!r} → {settings[k]!r}" if k == "classes" else f"{k} {old.get(k)} → {settings[k]}"
            for k in settings if not same(k, old.get(k), settings[k])]
    if diff:
        raise DatasetError(f"{out_dir}: holds a synth library made with other settings ({'; '.join(diff)}); "
                           f"use another --out, or remove {out_dir} to make it again")
