"""The weight-free ``mel`` codec: log-mel spectrogram latent, Griffin-Lim decoder.

This is the offline default codec. Nothing is downloaded and the result is deterministic.

Default choices (all overridable from the spec, e.g. ``mel@n_mels=128,n_iter=64``):

* ``sample_rate=22050``: enough bandwidth for environmental sound, half the cost of 44.1 kHz.
* ``n_fft=1024``, ``hop_length=256`` (≈ 86.13 latent frames per second, 11.6 ms hop), Hann
  window, centred frames: the usual TTS/vocoder analysis, a good time/frequency balance for
  Griffin-Lim at this rate.
* ``n_mels=128`` Slaney-normalised mel bands from ``fmin=0`` to ``fmax=sr/2``: 128 bands keep
  enough spectral detail that the linear spectrum can be recovered well.
* Magnitude (``power=1``) mel, natural log with a floor of ``1e-5`` (−100 dB), so silence maps to
  a finite constant ``log(1e-5) ≈ -11.5`` rather than ``-inf``.
* Decoding: ``exp`` → non-negative least-squares mel inversion (pseudo-inverse start, a few
  multiplicative refinement steps) → ``n_iter=48`` iterations of *fast* Griffin-Lim
  (momentum 0.99, Perraudin et al. 2013) from a seeded random phase (``seed=0``), so
  ``decode`` is deterministic. STFT/ISTFT are vectorised numpy (strided frames, batched FFT,
  overlap-add in ``n_fft / hop`` strides), single-threaded and deterministic; a 5 s clip
  decodes in well under a second of CPU time.

Input to :meth:`MelCodec.encode` must already be mono float32 at :attr:`MelCodec.sample_rate`
(resampling is the caller's job, see :func:`auralens.audio.resample`).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from typing import Any

import numpy as np

from auralens.checks import is_number
from auralens.codecs.base import Codec
from auralens.errors import AuralensError
from auralens.specs import ModelSpec


class LatentShapeError(AuralensError, ValueError):
    """A latent of another shape than the codec decodes."""


class MelCodec(Codec):
    """Log-mel latent ``[n_mels, frames]`` ↔ audio via Griffin-Lim.

    Args:
        sample_rate: audio rate of encode input / decode output.
        n_fft: FFT size (also the window length).
        hop_length: samples between frames; ``frame_rate = sample_rate / hop_length``.
        n_mels: mel bands (the latent dimension).
        fmin: lowest mel band edge in Hz.
        fmax: highest mel band edge in Hz (None: Nyquist).
        n_iter: Griffin-Lim iterations in :meth:`decode`.
        momentum: fast Griffin-Lim momentum (0 gives the classic algorithm).
        log_floor: magnitude floor before the log.
        nnls_iter: multiplicative refinement steps of the mel → linear inversion.
        seed: seed of the random initial phase (decode is deterministic for a given seed).
    """

    def __init__(self, sample_rate: int = 22050, n_fft: int = 1024, hop_length: int = 256,
                 n_mels: int = 128, fmin: float = 0.0, fmax: float | None = None,
                 n_iter: int = 48, momentum: float = 0.99, log_floor: float = 1e-5,
                 nnls_iter: int = 20, seed: int = 0) -> None:
        import librosa

        _check_options(sample_rate=sample_rate, n_fft=n_fft, hop_length=hop_length,
                       n_mels=n_mels, fmin=fmin, fmax=fmax, n_iter=n_iter, momentum=momentum,
                       log_floor=log_floor, nnls_iter=nnls_iter, seed=seed)
        if hop_length > n_fft:
            raise ValueError(f"hop_length {hop_length} exceeds n_fft {n_fft}")
        self.sample_rate = int(sample_rate)
        self.n_fft = int(n_fft)
        self.hop_length = int(hop_length)
        self.n_mels = int(n_mels)
        self.fmin = float(fmin)
        self.fmax = float(fmax) if fmax is not None else self.sample_rate / 2
        self.n_iter = int(n_iter)
        self.momentum = float(momentum)
        self.log_floor = float(log_floor)
        self.nnls_iter = int(nnls_iter)
        self.seed = int(seed)
        self.latent_dim = self.n_mels
        self.frame_rate = self.sample_rate / self.hop_length
        # [n_mels, n_fft // 2 + 1]
        with warnings.catch_warnings():  # empty bands are refused below, in one line
            warnings.simplefilter("ignore", UserWarning)
            self._fb = librosa.filters.mel(sr=self.sample_rate, n_fft=self.n_fft,
                                           n_mels=self.n_mels, fmin=self.fmin,
                                           fmax=self.fmax).astype(np.float32)
        if not np.all(self._fb.max(axis=1) > 0):
            empty = int(np.sum(self._fb.max(axis=1) <= 0))
            raise ValueError(f"{empty} of n_mels={self.n_mels} mel bands between fmin={self.fmin:g} "
                             f"and fmax={self.fmax:g} Hz are empty at n_fft={self.n_fft}; "
                             "use fewer n_mels, a wider fmin–fmax range or a larger n_fft")
        self._fb_pinv = np.linalg.pinv(self._fb).astype(np.float32)
        self._win = np.hanning(self.n_fft + 1)[:-1].astype(np.float32)  # periodic Hann
        self._wsum_cache: dict[int, np.ndarray] = {}
        params = self.params()
        self.revision = hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:12]
        self.name = "mel@" + ",".join(f"{k}={v}" for k, v in params.items())

    def params(self) -> dict[str, Any]:
        """Settings that determine the latent and the decoded audio."""
        return {"sample_rate": self.sample_rate, "n_fft": self.n_fft,
                "hop_length": self.hop_length, "n_mels": self.n_mels, "fmin": self.fmin,
                "fmax": self.fmax, "n_iter": self.n_iter, "momentum": self.momentum,
                "log_floor": self.log_floor, "nnls_iter": self.nnls_iter, "seed": self.seed}

    def num_frames(self, num_samples: int) -> int:
        """Centred STFT: ``1 + num_samples // hop_length`` frames."""
        return 1 + int(num_samples) // self.hop_length

    def _stft(self, wave: np.ndarray) -> np.ndarray:
        """Centred STFT ``[T]`` → ``[F, 1 + T // hop]`` complex64 (reflect padding)."""
        half = self.n_fft // 2
        # Reflect padding needs more than half a window of signal; tiny clips use zeros.
        mode = "reflect" if wave.shape[0] > half else "constant"
        padded = np.pad(wave, (half, half), mode=mode)
        frames = np.lib.stride_tricks.sliding_window_view(padded, self.n_fft)[:: self.hop_length]
        frames = frames[: 1 + wave.shape[0] // self.hop_length]
        return np.fft.rfft(frames * self._win, axis=-1).T.astype(np.complex64)

    def _istft(self, spec: np.ndarray, length: int) -> np.ndarray:
        """Windowed overlap-add inverse of :meth:`_stft`: ``[F, frames]`` → ``[length]``."""
        n, hop = self.n_fft, self.hop_length
        frames = np.fft.irfft(spec.T, n=n, axis=-1).astype(np.float32) * self._win
        count = frames.shape[0]
        total = n + hop * (count - 1)
        out = np.zeros(total, np.float32)
        if n % hop == 0:
            # Overlap-add in n // hop vectorised strides instead of one add per frame.
            r = n // hop
            seg = frames.reshape(count, r, hop)
            acc = np.zeros((count + r - 1, hop), np.float32)
            for j in range(r):
                acc[j : j + count] += seg[:, j]
            out = acc.reshape(-1)
        else:
            for i in range(count):
                out[i * hop : i * hop + n] += frames[i]
        norm = self._wsum(count)
        out = out / np.maximum(norm, 1e-8)
        half = n // 2
        out = out[half : half + length]
        return np.pad(out, (0, max(0, length - out.shape[0])))

    def _wsum(self, count: int) -> np.ndarray:
        """Sum of squared windows over ``count`` overlapped frames (istft normaliser)."""
        cached = self._wsum_cache.get(count)
        if cached is None:
            n, hop = self.n_fft, self.hop_length
            cached = np.zeros(n + hop * (count - 1), np.float32)
            sq = self._win**2
            for i in range(count):
                cached[i * hop : i * hop + n] += sq
            self._wsum_cache = {count: cached}  # keep one: clips in a batch share a length
        return cached

    def encode(self, wave: np.ndarray) -> np.ndarray:
        """Log-mel magnitude spectrogram.

        Args:
            wave: ``[T]`` float32 mono at :attr:`sample_rate`.
        Returns:
            ``[n_mels, 1 + T // hop_length]`` float32, natural log, floored at ``log(log_floor)``.
        """
        x = wave  # mono float32 [T]: the Codec protocol checks
        if x.shape[0] < 2:
            x = np.pad(x, (0, 2 - x.shape[0]))
        mag = np.abs(self._stft(x))  # [F, frames]
        mel = self._fb @ mag
        return np.log(np.maximum(mel, self.log_floor)).astype(np.float32)

    def mel_to_linear(self, mel: np.ndarray) -> np.ndarray:
        """Non-negative linear magnitude ``[F, frames]`` whose mel projection matches ``mel``.

        Starts from the clipped pseudo-inverse and refines with multiplicative NNLS updates
        (Lee & Seung), which keep the solution non-negative and cost two matmuls each.
        """
        fb = self._fb
        lin = np.maximum(self._fb_pinv @ mel, 1e-8)
        numer = fb.T @ mel
        for _ in range(self.nnls_iter):
            lin *= numer / np.maximum(fb.T @ (fb @ lin), 1e-10)
        return lin.astype(np.float32)

    def decode(self, latent: np.ndarray) -> np.ndarray:
        """Invert a log-mel latent to audio with fast Griffin-Lim.

        Args:
            latent: ``[n_mels, frames]`` natural-log mel magnitudes (any float dtype).
        Returns:
            ``[(frames - 1) * hop_length]`` float32 at :attr:`sample_rate`.
        """
        z = np.asarray(latent, dtype=np.float32)
        if z.ndim != 2 or z.shape[0] != self.n_mels or z.shape[1] == 0:
            raise LatentShapeError(f"mel codec expects a [{self.n_mels}, frames] latent with at "
                                   f"least one frame, got {z.shape}")
        frames = z.shape[1]
        if frames < 2:
            z = np.pad(z, ((0, 0), (0, 2 - frames)), mode="edge")
            frames = 2
        # Latents predicted by a model may overshoot; clamp to the valid log range.
        z = np.clip(np.nan_to_num(z, nan=np.log(self.log_floor)), np.log(self.log_floor), 20.0)
        mag = self.mel_to_linear(np.exp(z))  # [F, frames]
        length = (frames - 1) * self.hop_length
        rng = np.random.default_rng(self.seed)
        angles = np.exp(2j * np.pi * rng.random(mag.shape)).astype(np.complex64)
        prev = np.zeros_like(angles)
        beta = self.momentum / (1 + self.momentum)
        for _ in range(self.n_iter):
            rebuilt = self._stft(self._istft(mag * angles, length))
            accel = rebuilt - beta * prev if self.momentum else rebuilt
            angles = accel / np.maximum(np.abs(accel), 1e-16)
            prev = rebuilt
        wave = self._istft(mag * angles, length)
        return np.nan_to_num(wave).astype(np.float32)


def _is_int(value: Any) -> bool:
    return is_number(value) and float(value).is_integer()


def _check_options(*, sample_rate: Any, n_fft: Any, hop_length: Any, n_mels: Any, fmin: Any,
                   fmax: Any, n_iter: Any, momentum: Any, log_floor: Any, nnls_iter: Any,
                   seed: Any) -> None:
    """Refuse impossible settings with a message naming the option.

    Raises:
        ValueError: a count that is not a whole number in range, a non-finite number, a band
            edge outside ``0 ≤ fmin < fmax ≤ sample_rate / 2``, a negative momentum or a
            non-positive log floor.
    """
    for name, value, low in (("sample_rate", sample_rate, 1), ("n_fft", n_fft, 1),
                             ("hop_length", hop_length, 1), ("n_mels", n_mels, 1),
                             ("n_iter", n_iter, 0), ("nnls_iter", nnls_iter, 0), ("seed", seed, 0)):
        if not _is_int(value) or value < low:
            raise ValueError(f"mel codec option {name} must be a whole number ≥ {low}, got {value!r}")
    numbers = [("fmin", fmin), ("momentum", momentum), ("log_floor", log_floor)]
    for name, value in numbers + ([("fmax", fmax)] if fmax is not None else []):
        if not is_number(value):
            raise ValueError(f"mel codec option {name} must be a finite number, got {value!r}")
    nyquist = float(sample_rate) / 2
    if fmin < 0:
        raise ValueError(f"mel codec option fmin must be ≥ 0 Hz, got {fmin!r}")
    if fmax is not None and not 0 < fmax <= nyquist:
        raise ValueError(f"mel codec option fmax must be in (0, sample_rate/2 = {nyquist:g}] Hz, "
                         f"got {fmax!r}")
    top = nyquist if fmax is None else float(fmax)
    if fmin >= top:
        raise ValueError(f"mel codec option fmin={fmin!r} must be below fmax "
                         f"({top:g} Hz{'' if fmax is not None else ', sample_rate/2'})")
    if momentum < 0:
        raise ValueError(f"mel codec option momentum must be ≥ 0, got {momentum!r}")
    if log_floor <= 0:
        raise ValueError(f"mel codec option log_floor must be > 0, got {log_floor!r}")


def build(spec: ModelSpec | None = None, **params: Any) -> MelCodec:
    """Registry factory: ``mel`` or ``mel@n_mels=80,n_iter=64``.

    Raises:
        ValueError: unknown option names.
    """
    allowed = set(MelCodec.__init__.__code__.co_varnames[1:MelCodec.__init__.__code__.co_argcount])
    unknown = set(params) - allowed
    if unknown:
        from auralens.specs import SpecError

        raise SpecError(f"unknown mel codec option(s) {sorted(unknown)}; allowed: {sorted(allowed)}")
    for name, value in params.items():  # every option is a number (fmax may be None)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            from auralens.specs import SpecError

            raise SpecError(f"mel codec option {name} must be a number, got {value!r}")
    return MelCodec(**params)
