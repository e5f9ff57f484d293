"""Metric embedders: audio → ``[frames, dim]`` features that FAD and KAD compare.

The offline defaults need no weights:

* ``logmel`` — natural-log mel magnitudes, 64 bands, 16 kHz, 25 ms window / 10 ms hop
  (``logmel@n_mels=128,sample_rate=22050,n_fft=1024,hop_length=220`` to change; more bands
  need a longer window, or the lowest bands stay empty).
* ``mfcc`` — 20 MFCCs of that log-mel (DCT-II, ortho), same framing.

Scores are only comparable with the same embedder, so every output names it (``name``,
e.g. ``logmel@sample_rate=16000,n_mels=64,n_fft=400,hop_length=160``). The name holds every
option that changes the frames (a non-default ``floor``, a model's ``dtype`` other than
float32), and it keys the embedding cache.

Model embedders wrap the other stages' registries lazily (nothing heavy is imported until
one is built):

* any extractor spec (``clap:laion/clap-htsat-unfused``, ``hf:facebook/hubert-base-ls960@layer=6``,
  ``whisper:…``, ``wavlm:…``, ``wav2vec2:…``) → :data:`auralens.encoders.base.EXTRACTORS`;
* codec latents (``encodec:…``, ``dac:…``, ``codec:<codec spec>``) →
  :data:`auralens.codecs.base.CODECS`, frames = ``encode(wave).T``.

:func:`circularity_warning` flags a metric embedder that is the model whose hidden states
were sonified (or the codec the gate was trained to predict): such a score rewards
reproducing that model's own features rather than the sound.
"""

from __future__ import annotations

import logging
import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from auralens.checks import is_number, is_whole
from auralens.registry import Registry
from auralens.specs import ModelSpec, parse_spec

log = logging.getLogger(__name__)


class MetricEmbedder(ABC):
    """Audio → frame embeddings for distribution metrics.

    Attributes:
        name: full, unambiguous name (goes into every output and cache key).
        sample_rate: rate :meth:`embed` expects.
        dim: embedding size.
        model_id: the underlying model id ("" for weight-free features), used for the
            circularity check.
        revision: the model's revision ("" for weight-free features), part of cache keys.
    """

    name: str = "embedder"
    sample_rate: int = 16000
    dim: int = 0
    model_id: str = ""
    revision: str = ""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        from auralens.audio import check_clip_methods

        check_clip_methods(cls, ("embed",))

    @abstractmethod
    def embed(self, wave: np.ndarray) -> np.ndarray:
        """``[T]`` float32 mono at :attr:`sample_rate` → ``[frames, dim]`` float32."""

    def embed_file(self, path: str | Path, *, cache: Any = None) -> np.ndarray:
        """Load ``path`` at :attr:`sample_rate` and embed it (cached by file content)."""
        from auralens import audio
        from auralens.cache import hash_file, make_key

        key = None
        if cache is not None:
            # The model revision counts too (only when there is one, so weight-free keys stay).
            extra = {"revision": self.revision} if self.revision else {}
            key = make_key(hash_file(path), embedder=self.name, sr=self.sample_rate, **extra)
            hit = cache.get(key)
            if hit is not None:
                return hit["frames"]
        frames = np.asarray(self.embed(audio.load(path, self.sample_rate)), dtype=np.float32)
        if cache is not None and key is not None:
            cache.put(key, {"frames": frames}, {"embedder": self.name, "file": str(path)})
        return frames


EMBEDDERS: Registry[MetricEmbedder] = Registry("metric embedder", default="logmel")

#: Log-mel magnitude floor when none is given (left out of the embedder's name).
DEFAULT_FLOOR = 1e-5


def _check_whole(option: str, value: Any) -> None:
    # ValueError: the registry reports it with the spec ("metric embedder logmel@…: invalid
    # options (…)")
    if not is_whole(value, 1):
        raise ValueError(f"{option} must be a whole number ≥ 1, got {value!r}")


def _with_options(base: str, options: list[str]) -> str:
    """``base`` with ``key=value`` options added (after its own ``@…`` options, if any)."""
    if not options:
        return base
    return base + ("," if re.search(r"@[A-Za-z_]\w*=", base) else "@") + ",".join(options)


def _dtype_option(model: Any) -> list[str]:
    """``["dtype=bfloat16"]`` for a model computing in a dtype other than float32 (which
    changes its output, so it must reach the name and the cache key), else ``[]``."""
    dtype = getattr(model, "torch_dtype", None)
    name = str(dtype).removeprefix("torch.") if dtype is not None else "float32"
    return [] if name == "float32" else [f"dtype={name}"]


class LogMelEmbedder(MetricEmbedder):
    """Log-mel frames ``[frames, n_mels]`` (weight-free).

    Args:
        sample_rate: analysis rate.
        n_mels: mel bands (= dim).
        n_fft: window/FFT length (400 = 25 ms at 16 kHz).
        hop_length: frame step (160 = 10 ms at 16 kHz).
        floor: magnitude floor before the log (in :attr:`name` when not the default).

    Raises:
        ValueError: an option that is not a whole number ≥ 1 (``floor``: a number ≥ 0);
            :func:`build_embedder` reports it as a ``SpecError`` naming the spec.
    """

    kind = "logmel"

    def __init__(self, sample_rate: int = 16000, n_mels: int = 64, n_fft: int = 400,
                 hop_length: int = 160, floor: float = DEFAULT_FLOOR) -> None:
        import librosa

        from auralens.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE

        for option, value in (("sample_rate", sample_rate), ("n_mels", n_mels),
                              ("n_fft", n_fft), ("hop_length", hop_length)):
            _check_whole(option, value)
        if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:  # audio.load refuses others
            raise ValueError(f"sample_rate must be {MIN_SAMPLE_RATE}–{MAX_SAMPLE_RATE} Hz, "
                             f"got {sample_rate}")
        # 0 is allowed (exact silence then gives -inf, and that file is skipped as unscorable)
        if not is_number(floor) or floor < 0:
            raise ValueError(f"floor must be a finite number ≥ 0, got {floor!r}")
        self.sample_rate = int(sample_rate)
        self.n_mels = int(n_mels)
        self.n_fft = int(n_fft)
        self.hop_length = int(hop_length)
        self.floor = float(floor)
        self.dim = self.n_mels
        self._fb = librosa.filters.mel(sr=self.sample_rate, n_fft=self.n_fft,
                                       n_mels=self.n_mels).astype(np.float32)
        # Every option that changes the frames is in the name (it keys the embedding cache);
        # the default floor is left out so the default names stay as they were.
        self.name = (f"{self.kind}@sample_rate={self.sample_rate},n_mels={self.n_mels},"
                     f"n_fft={self.n_fft},hop_length={self.hop_length}")
        if self.floor != DEFAULT_FLOOR:
            self.name += f",floor={self.floor!r}"

    def _logmel(self, wave: np.ndarray) -> np.ndarray:
        from auralens.evaluate.spectral import stft_mag

        x = np.asarray(wave, dtype=np.float32).reshape(-1)
        spec = stft_mag(x, self.n_fft, self.hop_length).astype(np.float32)
        with np.errstate(divide="ignore"):  # floor=0 on silence: -inf, refused by the caller
            return np.log(np.maximum(self._fb @ spec, self.floor)).T  # [frames, n_mels]

    def embed(self, wave: np.ndarray) -> np.ndarray:
        return self._logmel(wave).astype(np.float32)


class MfccEmbedder(LogMelEmbedder):
    """MFCC frames ``[frames, n_mfcc]`` from the log-mel (DCT-II, orthonormal).

    ``n_mfcc`` is at most ``n_mels`` (the DCT of ``n_mels`` bands has that many coefficients).
    """

    kind = "mfcc"

    def __init__(self, n_mfcc: int = 20, **params: Any) -> None:
        super().__init__(**params)
        _check_whole("n_mfcc", n_mfcc)
        if n_mfcc > self.n_mels:  # the DCT of n_mels bands has n_mels coefficients
            raise ValueError(f"n_mfcc ({n_mfcc}) cannot exceed n_mels ({self.n_mels})")
        self.n_mfcc = int(n_mfcc)
        self.dim = self.n_mfcc
        self.name += f",n_mfcc={self.n_mfcc}"

    def embed(self, wave: np.ndarray) -> np.ndarray:
        from scipy.fft import dct

        return dct(self._logmel(wave), type=2, norm="ortho", axis=1)[:, :self.n_mfcc].astype(np.float32)


class ExtractorEmbedder(MetricEmbedder):
    """Any :class:`~auralens.encoders.base.Extractor` used as a metric embedder."""

    def __init__(self, extractor: Any, spec: ModelSpec) -> None:
        self.extractor = extractor
        self.revision = str(getattr(extractor, "revision", "") or "")
        self.sample_rate = int(extractor.sample_rate)
        self.dim = int(getattr(extractor, "dim", 0) or 0)
        self.model_id = spec.id
        layer = getattr(extractor, "layer", None)
        base = getattr(extractor, "name", "") or str(spec)
        name = f"{base}@layer={layer}" if layer is not None and "layer=" not in base else base
        self.name = _with_options(name, _dtype_option(extractor))

    def embed(self, wave: np.ndarray) -> np.ndarray:
        out = np.asarray(self.extractor.embed(wave), dtype=np.float32)
        return out.reshape(-1, out.shape[-1]) if out.ndim != 2 else out


class CodecLatentEmbedder(MetricEmbedder):
    """A codec's continuous latent as frames: ``encode(wave).T`` → ``[frames, latent_dim]``."""

    def __init__(self, codec: Any, spec: ModelSpec) -> None:
        self.codec = codec
        self.revision = str(getattr(codec, "revision", "") or "")
        self.sample_rate = int(codec.sample_rate)
        self.dim = int(codec.latent_dim)
        self.model_id = spec.id or getattr(codec, "name", "")
        # (a sampling codec's name already carries its seed)
        self.name = _with_options(f"codec-latent:{getattr(codec, 'name', str(spec))}",
                                  _dtype_option(codec))

    def embed(self, wave: np.ndarray) -> np.ndarray:
        return np.asarray(self.codec.encode(wave), dtype=np.float32).T


def _weightfree(cls: type[LogMelEmbedder]):  # noqa: ANN202
    def factory(spec: ModelSpec | None = None, **params: Any) -> LogMelEmbedder:
        from auralens.specs import SpecError

        try:
            return cls(**params)
        except TypeError as exc:
            raise SpecError(f"bad option for metric embedder {cls.kind!r}: {exc}") from exc
    return factory


build_logmel = _weightfree(LogMelEmbedder)
build_mfcc = _weightfree(MfccEmbedder)


def build_extractor(spec: ModelSpec, **params: Any) -> ExtractorEmbedder:
    """Wrap an extractor built from the same spec (lazy; loads the model now)."""
    from auralens.encoders.base import EXTRACTORS

    return ExtractorEmbedder(EXTRACTORS.build(spec, **params), spec)


def build_codec(spec: ModelSpec, **params: Any) -> CodecLatentEmbedder:
    """``codec:<codec spec>`` or a codec kind (``encodec:…``, ``dac:…``)."""
    from auralens.codecs.base import CODECS

    inner = parse_spec(spec.id) if spec.kind == "codec" and spec.id else spec
    return CodecLatentEmbedder(CODECS.build(inner, **params), inner)


def build_path(spec: ModelSpec, **params: Any) -> MetricEmbedder:
    """A bare local directory: a codec's latents when its config is a codec's (DAC, EnCodec,
    Oobleck), else an extractor's hidden states (``hf`` dispatch on ``model_type``)."""
    from auralens.codecs.base import CODECS
    from auralens.codecs.neural import codec_kind_of_dir

    if spec.path is not None and spec.path.is_dir() and codec_kind_of_dir(spec.path)[0]:
        return CodecLatentEmbedder(CODECS.build(spec, **params), spec)
    return build_extractor(spec, **params)


EMBEDDERS.register("logmel", "auralens.evaluate.embedders:build_logmel")
EMBEDDERS.register("mfcc", "auralens.evaluate.embedders:build_mfcc")
EMBEDDERS.register("path", "auralens.evaluate.embedders:build_path")
for _kind in ("clap", "hf", "ast", "hubert", "wav2vec2", "wavlm", "whisper", "extractor"):
    EMBEDDERS.register(_kind, "auralens.evaluate.embedders:build_extractor")
for _kind in ("codec", "encodec", "dac", "oobleck"):
    EMBEDDERS.register(_kind, "auralens.evaluate.embedders:build_codec")


def build_embedder(spec: str | ModelSpec | None = None, **params: Any) -> MetricEmbedder:
    """Build a metric embedder from a spec (default ``logmel``).

    A kind that is not a metric embedder but is an extractor (or codec) backend name is
    wrapped as one, so every extractor the encoders package registers works here too.
    """
    if spec is not None and not (isinstance(spec, str) and not spec.strip()):
        parsed = parse_spec(spec)
        if parsed.kind not in EMBEDDERS:
            from auralens.codecs.base import CODECS
            from auralens.encoders.base import EXTRACTORS

            if parsed.kind in EXTRACTORS:
                return build_extractor(parsed, **{**parsed.params, **params})
            if parsed.kind in CODECS:
                return build_codec(parsed, **{**parsed.params, **params})
        spec = parsed
    return EMBEDDERS.build(spec, **params)


def _norm_id(text: str) -> str:
    """Model identity for comparison: hub id / path tail, lower-case, no options or kind."""
    text = str(text or "").strip()
    if not text:
        return ""
    try:
        spec = parse_spec(text)
        ident = spec.id or spec.kind
    except Exception:  # noqa: BLE001 - free text in old run.json files
        ident = text
    ident = re.sub(r"@.*$", "", ident).rstrip("/")
    return ident.split("://")[-1].lower()


def circularity_warning(embedder: MetricEmbedder | str, run_config: Mapping[str, Any]) -> str | None:
    """A warning when the metric embedder is the sonified encoder or the run's codec.

    Args:
        embedder: built embedder or its spec string.
        run_config: the sonify run's configuration (``run.json`` ``config`` or the whole
            record; ``encoder``/``extractor`` and ``codec`` keys are looked up, also nested
            as ``{"spec": ...}``).
    Returns:
        the warning text (also logged), or None.
    """
    from auralens.evaluate.sonify_eval import config_value

    if isinstance(embedder, MetricEmbedder):
        emb_id = _norm_id(embedder.model_id or "")
        emb_name = embedder.name
    else:
        emb_id, emb_name = _norm_id(embedder), str(embedder)
    if not emb_id or emb_id in {"logmel", "mfcc"}:
        return None
    for role in ("encoder", "codec"):
        value = config_value(run_config, role)
        if value and _norm_id(str(value)) == emb_id:
            msg = (f"metric embedder {emb_name} is the same model as the run's {role} "
                   f"({value}): the score is circular (it rewards reproducing that model's "
                   "own features); prefer an independent embedder")
            log.warning(msg)
            return msg
    return None
