"""Audio input/output with clear errors: load any common format to float32 mono.

Loading goes through soundfile (wav, flac, ogg, mp3 with libsndfile ≥ 1.1), or ffmpeg for
what libsndfile lacks (:data:`FFMPEG_SUFFIXES`: m4a, aac and the soundtrack of a video), and
resampling through soxr. Every failure raises :class:`AudioError` carrying the path and a
plain reason, so a CLI can print one line and a batch job can skip the item.
"""

from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from auralens.checks import is_number, is_whole
from auralens.errors import AuralensError
from auralens.io import atomic_path

log = logging.getLogger(__name__)

#: Default upper bound on clip duration in seconds (configurable per call).
DEFAULT_MAX_DURATION = 3600.0
#: Most channels :func:`write` takes: more means a ``[T, C]`` array was given as ``[C, T]``.
MAX_WRITE_CHANNELS = 64
#: Sample rates accepted on input.
MIN_SAMPLE_RATE = 1000
MAX_SAMPLE_RATE = 768000
#: Video containers: their first audio stream is the audio (imagine also takes a frame).
VIDEO_SUFFIXES = frozenset({".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg"})
#: Formats libsndfile cannot read: decoded with ffmpeg, which must be on PATH.
FFMPEG_SUFFIXES = frozenset({".m4a", ".aac"}) | VIDEO_SUFFIXES
#: Longest one ffmpeg decode may take, in seconds.
FFMPEG_TIMEOUT = 600
#: Formats we write.
WRITE_FORMATS = {".wav": "WAV", ".flac": "FLAC"}
#: Peak level from which a clip is flagged as clipped.
CLIP_LEVEL = 0.999
#: RMS below which a clip is flagged as silent (-80 dBFS).
SILENCE_RMS = 1e-4
#: Peak from which loading warns: not a clipped recording but audio on another scale (e.g.
#: unnormalised float samples), which metrics and models would read as an extremely loud clip.
FAR_OUT_LEVEL = 2.0
#: Samples per block when mixing down, resampling and measuring levels: float64 work is done
#: one block at a time, so loading holds no float64 copy of the whole wave.
BLOCK = 2**16


class AudioError(AuralensError):
    """A file that cannot be used as audio.

    Attributes:
        path: the offending file.
        reason: a short plain-language reason.
    """

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


@dataclass
class AudioInfo:
    """What was found while loading a file.

    Attributes:
        path: source file.
        sample_rate: rate of the returned samples.
        orig_sample_rate: rate stored in the file.
        channels: channel count in the file (the result is averaged to mono).
        duration: seconds of the returned samples.
        peak: max |x| of the returned samples.
        rms: root mean square of the returned samples.
        flags: ``"silent"`` and/or ``"clipped"``.
    """

    path: Path
    sample_rate: int
    orig_sample_rate: int
    channels: int
    duration: float
    peak: float
    rms: float
    flags: list[str] = field(default_factory=list)

    @property
    def silent(self) -> bool:
        return "silent" in self.flags

    @property
    def clipped(self) -> bool:
        return "clipped" in self.flags


def _read(path: Path, max_duration: float | None = None,
          head: float | None = None) -> tuple[np.ndarray, int]:
    import soundfile as sf

    if path.suffix.lower() in FFMPEG_SUFFIXES:
        return _read_ffmpeg(path, max_duration, head)
    try:
        if head is None:
            data, sr = sf.read(str(path), dtype="float32", always_2d=True)
        else:  # decode only the first `head` seconds: the rest is never held in memory
            with sf.SoundFile(str(path)) as f:
                sr = f.samplerate
                data = f.read(int(math.ceil(head * sr)), dtype="float32", always_2d=True)
    except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError, TypeError …
        if path.suffix.lower() == ".mp3":
            return _read_fallback(path, exc, head)
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise AudioError(path, f"unreadable or corrupt audio ({msg})") from exc
    return data, int(sr)


def _read_fallback(path: Path, first_exc: Exception, head: float | None = None) -> tuple[np.ndarray, int]:
    """Decode through librosa/audioread for formats an old libsndfile lacks."""
    import warnings

    try:
        import librosa

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            y, sr = librosa.load(str(path), sr=None, mono=False, duration=head)
    except Exception as exc:
        raise AudioError(path, f"unreadable or corrupt audio ({first_exc})") from exc
    y = np.atleast_2d(y).T.astype(np.float32)
    return y, int(sr)


def _read_ffmpeg(path: Path, max_duration: float | None = None,
                 head: float | None = None) -> tuple[np.ndarray, int]:
    """Decode the first audio stream with ffmpeg (float WAV on a pipe), channels and rate
    as stored; decoding stops a little past ``max_duration`` seconds, or at ``head`` seconds."""
    import io
    import shutil
    import subprocess

    import soundfile as sf

    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise AudioError(path, f"reading {path.suffix.lower()} audio needs ffmpeg, which is not on "
                               "PATH; install ffmpeg or convert the file to wav or flac")
    if head is not None:
        limit = ["-t", f"{head:.6f}"]
    else:
        limit = [] if max_duration is None else ["-t", f"{max_duration * 1.01 + 1:.3f}"]
    try:
        proc = subprocess.run([ffmpeg, "-nostdin", "-v", "error", "-i", str(path), *limit,
                               "-map", "0:a:0", "-c:a", "pcm_f32le", "-f", "wav", "pipe:1"],
                              capture_output=True, check=False, timeout=FFMPEG_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise AudioError(path, f"ffmpeg took over {FFMPEG_TIMEOUT} s to decode it") from None
    if proc.returncode != 0 or not proc.stdout:
        lines = proc.stderr.decode(errors="replace").strip().splitlines()
        if any("matches no streams" in line for line in lines):  # -map 0:a:0 found nothing
            raise AudioError(path, "no audio track")
        raise AudioError(path, f"unreadable or corrupt audio (ffmpeg: {lines[-1] if lines else 'no audio'})")
    try:
        data, sr = sf.read(io.BytesIO(proc.stdout), dtype="float32", always_2d=True)
    except Exception as exc:  # noqa: BLE001 - ffmpeg's output is ours; still, name the file
        raise AudioError(path, f"unreadable or corrupt audio ({exc})") from exc
    if max_duration is not None and data.shape[0] / sr > max_duration:
        raise AudioError(path, f"duration exceeds the limit of {max_duration:g} s (decoding "
                               f"stopped at {data.shape[0] / sr:.1f} s)")
    return data, int(sr)


def resample(wave: np.ndarray, orig_sr: int, target_sr: int) -> np.ndarray:
    """Resample along the last axis with soxr (high quality).

    Args:
        wave: ``[T]`` or ``[C, T]`` float array.
    Returns:
        Resampled float32 array with the same leading shape.
    """
    for rate in (orig_sr, target_sr):
        if not (is_number(rate) and rate > 0):
            raise ValueError(f"resample: sample rates must be positive, got {orig_sr!r} → {target_sr!r}")
    if orig_sr == target_sr or wave.shape[-1] == 0:
        return np.ascontiguousarray(wave, dtype=np.float32)
    import soxr

    # soxr pads with zeros, so a DC offset becomes a step at each end and rings into clicks
    # (a DC-only file would come out as audio). Resampling is linear and keeps a constant,
    # so resample around each channel's mean and add it back.
    # Centring and adding back are done in float64 one block at a time, into float32 arrays.
    mean = wave.mean(axis=-1, keepdims=True, dtype=np.float64)
    n = wave.shape[-1]
    if wave.ndim == 1:
        centred = np.empty(n, np.float32)
        for i in range(0, n, BLOCK):
            centred[i:i + BLOCK] = wave[i:i + BLOCK] - mean
        out = soxr.resample(centred, orig_sr, target_sr)
        del centred
        if out.dtype != np.float32:
            out = out.astype(np.float32)
        for i in range(0, out.shape[0], BLOCK):
            out[i:i + BLOCK] = out[i:i + BLOCK] + mean
        return out
    centred = np.empty((n, wave.shape[0]), np.float32)  # [T, C]: the layout soxr takes
    for i in range(0, n, BLOCK):
        centred[i:i + BLOCK] = (wave[:, i:i + BLOCK] - mean).T
    out = soxr.resample(centred, orig_sr, target_sr)  # [T', C]
    del centred
    res = np.empty((wave.shape[0], out.shape[0]), np.float32)
    for i in range(0, out.shape[0], BLOCK):
        res[:, i:i + BLOCK] = out[i:i + BLOCK].T + mean
    return res


class ClipError(AuralensError, ValueError):
    """An in-memory clip a model cannot take: not mono, no samples, or NaN / Inf samples."""


def check_clip(wave: Any, what: str) -> np.ndarray:
    """``wave`` as a float32 mono ``[T]`` clip (singleton axes dropped: ``[1, T]``, ``[T, 1]``).

    Models turn a NaN sample into NaN outputs everywhere, and a ``[2, T]`` array read flat
    would be the two channels end to end, so both are refused here rather than answered.

    Raises:
        ClipError: ``"<what>: …"`` for a non-numeric, multi-channel, empty or non-finite clip.
    """
    try:
        arr = np.asarray(wave, dtype=np.float32)
    except (TypeError, ValueError):
        raise ClipError(f"{what}: expected audio samples (a [T] float array), got "
                        f"{type(wave).__name__}") from None
    if arr.ndim == 0 or sum(d > 1 for d in arr.shape) > 1:
        raise ClipError(f"{what}: expected mono audio of shape [T], got shape {tuple(arr.shape)}; "
                        "mix the channels down first (e.g. wave.mean(axis=0) for [C, T])")
    arr = arr.reshape(-1)
    if arr.size == 0:
        raise ClipError(f"{what}: empty audio (0 samples)")
    bad = int(np.count_nonzero(~np.isfinite(arr)))
    if bad:
        raise ClipError(f"{what}: the clip holds {bad} NaN or Inf sample(s)")
    return arr


def check_clip_methods(cls: type, names: tuple[str, ...], batch: tuple[str, ...] = ()) -> None:
    """Make ``cls``'s own ``names`` methods (first argument: one clip) and ``batch`` methods
    (first argument: a sequence of clips) pass their clips through :func:`check_clip`.

    Called from a protocol's ``__init_subclass__``, so every backend, a user's own included,
    refuses a bad clip in one line naming itself, before any model work.
    """
    for name in (*names, *batch):
        fn = cls.__dict__.get(name)
        if fn is not None and not getattr(fn, "_clips_checked", False):
            setattr(cls, name, _clips_checked(fn, name, many=name in batch))


def _clips_checked(fn: Any, name: str, *, many: bool) -> Any:
    import functools

    @functools.wraps(fn)
    def wrapper(self: Any, clips: Any, *args: Any, **kwargs: Any) -> Any:
        what = f"{getattr(self, 'name', None) or type(self).__name__}.{name}"
        if many:
            clips = [check_clip(w, f"{what} (clip {i})") for i, w in enumerate(clips)]
        else:
            clips = check_clip(clips, what)
        return fn(self, clips, *args, **kwargs)

    wrapper._clips_checked = True  # type: ignore[attr-defined]
    return wrapper


def inspect_wave(path: str | Path, wave: np.ndarray, sr: int, orig_sr: int | None = None,
                 channels: int = 1) -> AudioInfo:
    """Compute the silence/clipping flags of a loaded ``[T]`` wave."""
    peak, rms = _levels(np.ravel(wave))
    return _info(path, peak, rms, wave.shape[-1], sr, orig_sr, channels)


def _abs_max(x: np.ndarray) -> float:
    """max |x| over the last axis of ``[T]`` or ``[C, T]``, block by block (no full-size
    temporary); NaN when ``x`` holds a NaN, inf when it holds an inf, 0.0 when empty."""
    peak = 0.0
    for i in range(0, x.shape[-1], BLOCK):
        peak = _larger(peak, float(np.max(np.abs(x[..., i:i + BLOCK]))))
    return peak


def _larger(peak: float, top: float) -> float:
    """The larger of two peaks; NaN once either is NaN (where max() would keep ``peak``)."""
    return peak if top <= peak or math.isnan(peak) else top


def _levels(x: np.ndarray) -> tuple[float, float]:
    """``(peak, rms)`` of a ``[T]`` wave, or of the channel mean of a ``[C, T]`` one; the
    peak is NaN or inf when a sample is.

    Squares and channel means are taken in float64 one block at a time (the same values as
    over the whole wave, without a float64 copy of it).
    """
    n = x.shape[-1]
    if n == 0:
        return 0.0, 0.0
    peak, total = 0.0, 0.0
    for i in range(0, n, BLOCK):
        block = x[..., i:i + BLOCK]
        if x.ndim == 2:
            block = block.mean(axis=0, dtype=np.float64)
        peak = _larger(peak, float(np.max(np.abs(block))))
        total += float(np.sum(np.square(block, dtype=np.float64)))
    return peak, math.sqrt(total / n)


def _info(path: str | Path, peak: float, rms: float, n: int, sr: int, orig_sr: int | None,
          channels: int) -> AudioInfo:
    """The :class:`AudioInfo` of ``n`` samples at ``sr`` with the given levels, flags set."""
    flags: list[str] = []
    if rms < SILENCE_RMS:
        flags.append("silent")
    if peak >= CLIP_LEVEL:
        flags.append("clipped")
    return AudioInfo(Path(path), sr, orig_sr or sr, channels, n / sr, peak, rms, flags)


def load_with_info(
    path: str | Path,
    sample_rate: int | None = None,
    *,
    max_duration: float | None = DEFAULT_MAX_DURATION,
    mono: bool = True,
    head: float | None = None,
) -> tuple[np.ndarray, AudioInfo]:
    """Load an audio file as float32, averaged to mono, at ``sample_rate``.

    Args:
        path: wav/flac/ogg/mp3 (anything libsndfile reads), or m4a/aac or a video's
            soundtrack (needs ffmpeg).
        sample_rate: target rate; None keeps the file's rate.
        max_duration: reject files longer than this many seconds (None: no limit).
        mono: average channels (default). When False returns ``[C, T]``.
        head: read only the first ``head`` seconds (later audio is never decoded, and
            ``max_duration`` does not apply: a long file's opening is read as cheaply as a
            short file).

    Returns:
        ``(wave, info)`` where wave is ``[T]`` (or ``[C, T]`` when ``mono=False``). Silent and
        clipped clips are flagged in ``info.flags`` (logged at INFO); samples beyond
        ±:data:`FAR_OUT_LEVEL` are also logged as a warning naming the file and the peak.

    Raises:
        AudioError: missing, unreadable/corrupt/truncated, empty, non-finite, too long,
            or an unsupported sample rate.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(path, "file not found")
    if path.is_dir():
        raise AudioError(path, "is a directory, not an audio file")
    if path.stat().st_size == 0:
        raise AudioError(path, "empty file (0 bytes)")
    if sample_rate is not None and not (MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE):
        raise AudioError(path, f"unsupported target sample rate {sample_rate} Hz")
    if head is not None:
        if not (math.isfinite(head) and head > 0):
            raise AudioError(path, f"cannot read the first {head} s: give a positive duration")
        max_duration = None
    _check_header(path, max_duration)
    data, sr = _read(path, max_duration, head)
    if not (MIN_SAMPLE_RATE <= sr <= MAX_SAMPLE_RATE):
        raise AudioError(
            path, f"unsupported sample rate {sr} Hz (supported {MIN_SAMPLE_RATE}–{MAX_SAMPLE_RATE})"
        )
    frames, channels = data.shape
    if frames == 0:
        raise AudioError(path, "zero samples")
    raw_peak = _abs_max(data.T)  # NaN or inf when any sample is
    if not math.isfinite(raw_peak):
        raise AudioError(path, "contains NaN or Inf samples")
    duration = frames / sr
    if max_duration is not None and duration > max_duration:
        raise AudioError(path, f"duration {duration:.1f} s exceeds the limit of {max_duration:g} s")
    if not mono:
        wave = np.ascontiguousarray(data.T)  # [C, T]
    elif channels == 1:
        wave = np.ascontiguousarray(data[:, 0])  # a view: the samples are held once
    else:
        wave = _mix_down(data)
    del data  # not held while resampling
    out_sr = sample_rate or sr
    wave = resample(wave, sr, out_sr)
    if wave.shape[-1] == 0:  # e.g. 1 sample at 44.1 kHz resampled to 16 kHz
        raise AudioError(path, f"too short: {frames} sample(s) at {sr} Hz leave none at {out_sr} Hz")
    peak, rms = _levels(wave)  # of the channel mean when mono=False
    if not math.isfinite(peak):  # resampling overshoot past the float32 limit
        raise AudioError(path, f"sample values too large to process (peak "
                               f"{raw_peak:.3g}; audio samples lie within ±1)")
    info = _info(path, peak, rms, wave.shape[-1], out_sr, sr, channels)
    # a warning, not an error: some users keep unnormalised float audio on purpose
    if raw_peak > FAR_OUT_LEVEL:
        log.warning("%s: sample values reach ±%.3g, far outside ±1; metrics and models expect "
                    "audio within ±1", path, raw_peak)
    for flag in info.flags:
        # Flags, not errors: logged quietly, returned in AudioInfo.flags for callers to report.
        log.info("%s: %s", path, "silent (RMS below -80 dBFS)" if flag == "silent"
                    else f"clipped (peak {info.peak:.3f})")
    return wave, info


def _mix_down(data: np.ndarray) -> np.ndarray:
    """Average ``[T, C]`` float32 samples to a float32 ``[T]`` wave.

    Averaged in float64 (float32 sums of samples near its limit, 3.4e38, overflow to inf),
    one block at a time, so the only full-size array made is the float32 result.
    """
    wave = np.empty(data.shape[0], np.float32)
    for i in range(0, data.shape[0], BLOCK):
        wave[i:i + BLOCK] = data[i:i + BLOCK].mean(axis=1, dtype=np.float64)
    return wave


def _check_header(path: Path, max_duration: float | None) -> None:
    """Reject obviously bad files from the header alone (cheap, before decoding)."""
    import soundfile as sf

    try:
        meta = sf.info(str(path))
    except Exception:
        return  # let the full read produce the precise error (or the mp3 fallback succeed)
    if meta.samplerate and not (MIN_SAMPLE_RATE <= meta.samplerate <= MAX_SAMPLE_RATE):
        raise AudioError(path, f"unsupported sample rate {meta.samplerate} Hz")
    if meta.format in ("WAV", "WAVEX"):
        _check_wav_data_size(path, meta.extra_info)
    if max_duration is not None and meta.samplerate and meta.frames > 0:
        duration = meta.frames / meta.samplerate
        if math.isfinite(duration) and duration > max_duration * 1.01:
            raise AudioError(
                path, f"duration {duration:.1f} s exceeds the limit of {max_duration:g} s"
            )


#: libsndfile's WAV header dump: ``data : N (should be M)`` when the data chunk declares
#: N bytes but the file holds only M of them.
_WAV_DATA_SIZE = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)
_WAV_BYTES_PER_SEC = re.compile(r"^\s*Bytes/sec\s*:\s*(\d+)", re.MULTILINE)
#: A data size of 0 or 0xFFFFFFFF marks a streamed WAV whose writer could not seek back.
_WAV_STREAMED_SIZES = (0, 0xFFFFFFFF)


def _check_wav_data_size(path: Path, extra_info: str) -> None:
    """Refuse a WAV whose data chunk is shorter than its header says (a cut-off copy).

    libsndfile reads such a file without complaint, returning only the samples present, so
    without this check a half-copied file would be analysed as if it were whole.
    """
    found = _WAV_DATA_SIZE.search(extra_info or "")
    if found is None:
        return
    declared, held = int(found.group(1)), int(found.group(2))
    if declared in _WAV_STREAMED_SIZES or declared <= held:
        return
    rate = _WAV_BYTES_PER_SEC.search(extra_info)
    if rate is not None and int(rate.group(1)) > 0:
        per_s = int(rate.group(1))
        sizes = f"the header declares {declared / per_s:.3f} s but the file holds {held / per_s:.3f} s"
    else:
        sizes = f"the header declares {declared} data bytes but the file holds {held}"
    raise AudioError(path, f"truncated WAV: {sizes}")


def load(
    path: str | Path,
    sample_rate: int | None = None,
    *,
    max_duration: float | None = DEFAULT_MAX_DURATION,
    head: float | None = None,
) -> np.ndarray:
    """Load ``path`` as float32 mono ``[T]`` at ``sample_rate`` (see :func:`load_with_info`)."""
    return load_with_info(path, sample_rate, max_duration=max_duration, head=head)[0]


def load_sr(path: str | Path, sample_rate: int | None = None, **kw: object) -> tuple[np.ndarray, int]:
    """Like :func:`load` but also returns the sample rate of the result."""
    wave, info = load_with_info(path, sample_rate, **kw)  # type: ignore[arg-type]
    return wave, info.sample_rate


def write(path: str | Path, wave: np.ndarray, sample_rate: int, *, subtype: str | None = None) -> Path:
    """Atomically write ``wave`` (``[T]`` or ``[C, T]``) to a wav or flac file.

    Float WAV (``FLOAT``) is used by default for wav so sums of written sources stay exact;
    flac is 24-bit.
    """
    path = Path(path)
    fmt = WRITE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise AudioError(path, f"cannot write {path.suffix or 'extension-less'} files; use .wav or .flac")
    if not (is_whole(sample_rate) and MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE):
        raise AudioError(path, f"cannot write at sample rate {sample_rate!r} (a whole number of "
                               f"Hz from {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE})")
    wave = np.asarray(wave, dtype=np.float32)
    if wave.ndim not in (1, 2):
        raise AudioError(path, f"cannot write an array of shape {wave.shape}: give [T] or [C, T]")
    if wave.shape[-1] == 0:
        raise AudioError(path, "refusing to write audio with no samples")
    if wave.ndim == 2 and wave.shape[0] > MAX_WRITE_CHANNELS:  # [T, C] given for [C, T]
        raise AudioError(path, f"cannot write {wave.shape[0]} channels (shape {wave.shape}; "
                               f"at most {MAX_WRITE_CHANNELS}): audio is written as [C, T], pass "
                               "wave.T for a [T, C] array")
    if not np.all(np.isfinite(wave)):
        raise AudioError(path, "refusing to write NaN or Inf samples")
    data = wave.T if wave.ndim == 2 else wave
    if subtype is None:
        subtype = "FLOAT" if fmt == "WAV" else "PCM_24"
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        if fmt == "WAV" and subtype == "FLOAT":
            # scipy writes no timestamped PEAK chunk, so identical audio gives identical bytes
            # (content hashes and determinism checks rely on that).
            from scipy.io import wavfile

            wavfile.write(str(tmp), sample_rate, np.ascontiguousarray(data))
        else:
            sf.write(str(tmp), data, sample_rate, format=fmt, subtype=subtype)
    return path


def fix_length(wave: np.ndarray, length: int) -> np.ndarray:
    """Trim or zero-pad the last axis to ``length`` samples (``length`` ≥ 0)."""
    if length < 0:
        raise ValueError(f"fix_length: a length of {length} samples is negative")
    n = wave.shape[-1]
    if n == length:
        return wave
    if n > length:
        return wave[..., :length]
    pad = [(0, 0)] * (wave.ndim - 1) + [(0, length - n)]
    return np.pad(wave, pad)


def loop_to_length(wave: np.ndarray, length: int) -> np.ndarray:
    """Repeat (tile) a ``[T]`` wave until it has ``length`` samples, then trim."""
    if wave.shape[-1] == 0:
        raise ValueError("cannot loop an empty wave")
    reps = int(math.ceil(length / wave.shape[-1]))
    return np.tile(wave, reps)[:length]


def loudest_segment(wave: np.ndarray, length: int, step: int = 160) -> np.ndarray:
    """The ``length``-sample stretch of a ``[T]`` wave with the most energy (a view).

    Starts are tried every ``step`` samples (energy summed over whole steps, so the cost is one
    pass over the wave and no full-length copy); the first of equally loud stretches wins, so
    a steady sound gives its opening. A wave no longer than ``length`` is returned as it is.
    """
    n = wave.shape[-1]
    if n <= length:
        return wave
    step = max(1, min(int(step), length))
    hops = n // step
    frames = wave[:hops * step].reshape(hops, step)
    energy = np.einsum("ij,ij->i", frames, frames).astype(np.float64)  # [hops]
    cum = np.concatenate([[0.0], np.cumsum(energy)])
    k = length // step
    start = min(int(np.argmax(cum[k:] - cum[:-k])) * step, n - length)

    def power(s: int) -> float:
        seg = wave[s:s + length]
        return float(np.dot(seg, seg))

    # The steps leave out the tail past the last whole step: the stretch that ends the wave
    # is the one start they cannot reach.
    if power(n - length) > power(start):
        start = n - length
    return wave[start:start + length]
