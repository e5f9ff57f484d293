"""CLAPScore: cosine similarity of CLAP audio and text embeddings.

The study scored each description against the mixture it was made from with the unfused
LAION CLAP (``laion/clap-htsat-unfused``). The unfused model sees at most ``max_length_s``
seconds (10 s) of 48 kHz audio; longer audio is centre-cropped here (deterministic, unlike
the processor's random crop) and shorter audio is repeat-padded by the processor.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from auralens.checks import is_whole
from auralens.encoders.clap import centre_crop, window_samples
from auralens.encoders.hf import (
    ModelFolderError,
    check_processor_files,
    check_tokenizer_files,
    expected_model_type,
    read_config,
    short_error,
    weights_file_problem,
)
from auralens.errors import AuralensError, CheckpointMismatchError, ModelUnavailableError
from auralens.evaluate.fad import MetricInputError
from auralens.specs import parse_spec

log = logging.getLogger(__name__)

DEFAULT_CLAP = "laion/clap-htsat-unfused"


def _model_id(model: str | Path, kind: str = "clap", default: str = DEFAULT_CLAP) -> str:
    """Accept a hub id, local dir, ``hf:`` or ``<kind>:`` spec (``clap:DIR`` as the CLAP
    extractor takes it); return what from_pretrained takes.

    Raises:
        AuralensError: a spec of another backend (``clip:DIR`` given to CLAPScore).
    """
    text = str(model)
    spec = parse_spec(text)
    if spec.kind == kind:
        return spec.id or default
    if spec.kind in {"hf", "path"} and spec.id:
        return spec.id
    if spec.id:  # "mel:x", "clip:DIR": a hub lookup of the whole text would only confuse
        raise AuralensError(f"{text}: not a {kind.upper()} model spec; give a hub id, a local "
                            f"folder, hf:<id or folder> or {kind}:<id or folder>")
    return text


def check_local(model_id: str) -> None:
    """A path-like id that does not exist is a user error, not a hub lookup."""
    if model_id.startswith(("/", "./", "../", "~")) and not Path(model_id).expanduser().exists():
        raise ModelUnavailableError(model_id, "no such local directory")


def check_model_folder(model_id: str, model_cls: Any, label: str) -> None:
    """Cheap checks of a local folder before any weights load: a ``config.json`` of the
    right ``model_type``, a saved processor and a tokenizer (without its files transformers
    builds one of a few special tokens, and every text gets the same embedding).
    Hub ids pass (their files are checked when they load).

    Raises:
        NotAModelFolderError: no ``config.json``.
        CheckpointMismatchError: another kind of model (a HuBERT folder given to CLAPScore).
        ModelFolderError: no processor config or no tokenizer files.
    """
    if not Path(model_id).expanduser().is_dir():
        return
    want = expected_model_type(model_cls)
    have = read_config(model_id).get("model_type")
    if want and have != want:
        raise CheckpointMismatchError(
            f"{model_id}: not a {label} model (config.json model_type {have!r}); {label}Score "
            f"needs a {model_cls.__name__} folder")
    check_processor_files(model_id)
    check_tokenizer_files(model_id)


def load_model_and_processor(model: str | Path, model_cls: Any, load_processor: Any,
                             device: str, kind: str = "clap",
                             default: str = DEFAULT_CLAP) -> tuple[str, Any, Any]:
    """``(model_id, processor, model)`` for a hub id, local dir or ``hf:``/``<kind>:`` spec,
    in eval mode on ``device``.

    Raises:
        ModelUnavailableError: not available offline, or (a subclass naming the folder) a
            local folder that lacks files or does not load as ``model_cls``.
        CheckpointMismatchError: a local folder of another kind of model.
    """
    model_id = _model_id(model, kind, default)
    check_local(model_id)
    check_model_folder(model_id, model_cls, kind.upper())
    try:
        processor = load_processor(model_id)
        net = model_cls.from_pretrained(model_id)
    except Exception as exc:  # noqa: BLE001 - one line naming the model, not a traceback
        # unlike hf.raise_for_bad_weights, any failure of a local folder is one line here, and
        # a ModelFolderError: a ModelUnavailableError, as the scorers' other folder errors are
        problem = weights_file_problem(exc)
        if problem or Path(model_id).expanduser().is_dir():
            raise ModelFolderError(model_id, f"cannot load as {model_cls.__name__}: "
                                             f"{problem or short_error(exc)}") from exc
        lines = str(exc).strip().splitlines()
        raise ModelUnavailableError(model_id, lines[0] if lines else type(exc).__name__) from exc
    return model_id, processor, net.to(device).eval()


def pooled(output: Any) -> Any:
    """transformers 5 returns a model output from ``get_*_features``; 4.x a tensor."""
    return output if hasattr(output, "ndim") else output.pooler_output


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine of ``[N, D]`` and ``[N, D]`` → ``[N]`` (float64)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    na = np.linalg.norm(a, axis=-1)
    nb = np.linalg.norm(b, axis=-1)
    return (a * b).sum(-1) / np.maximum(na * nb, 1e-12)


class TextTower:
    """``embed_text`` shared by the CLAP and CLIP scorers (both expose ``get_text_features``).

    Needs ``processor``, ``model``, ``device``, ``batch_size``, ``max_tokens`` and ``_torch``.
    """

    processor: Any
    model: Any
    device: str
    batch_size: int
    max_tokens: int
    _torch: Any

    def embed_text(self, texts: list[str]) -> np.ndarray:
        """Texts → L2-normalised embeddings ``[N, D]`` (longer texts are cut to the window)."""
        out = []
        for i in range(0, len(texts), self.batch_size):
            inputs = self.processor(text=list(texts[i : i + self.batch_size]),
                                    return_tensors="pt", padding=True, truncation=True,
                                    max_length=self.max_tokens)
            inputs = {k: v.to(self.device) for k, v in inputs.items()}
            with self._torch.inference_mode():
                emb = pooled(self.model.get_text_features(**inputs))
            out.append(emb.float().cpu().numpy())
        return _normalise(np.concatenate(out, axis=0)) if out else np.zeros((0, 0))


class ClapScorer(TextTower):
    """Embed audio and text with CLAP and compare them.

    Args:
        model: hub id or local directory of a ``ClapModel`` + ``ClapProcessor`` (also as
            ``hf:…`` or ``clap:…``).
        device: torch device string.
        batch_size: items per forward pass.
    """

    def __init__(self, model: str | Path = DEFAULT_CLAP, device: str = "cpu",
                 batch_size: int = 8) -> None:
        import torch
        from transformers import ClapModel, ClapProcessor

        self.device = device
        self.batch_size = batch_size
        self.model_id, self.processor, self.model = load_model_and_processor(
            model, ClapModel, ClapProcessor.from_pretrained, device)
        fe = self.processor.feature_extractor
        self.sample_rate: int = int(fe.sampling_rate)
        self.max_samples: int = window_samples(fe)
        # RoBERTa reserves two positions for padding offsets
        self.max_tokens = min(int(getattr(self.processor.tokenizer, "model_max_length", 512)),
                              int(self.model.config.text_config.max_position_embeddings) - 2)
        self._torch = torch

    @property
    def name(self) -> str:
        return f"clap:{self.model_id}"

    def _prepare(self, wave: np.ndarray, sr: int, what: str = "audio") -> np.ndarray:
        """Mono, resampled and centre-cropped; ``what`` names the clip in errors.

        Raises:
            MetricInputError: not ``[T]`` or channels-first ``[C, T]``, empty, or NaN/inf.
        """
        from auralens.audio import resample

        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim == 2 and wave.shape[0] < wave.shape[1]:
            wave = wave.mean(axis=0)  # [C, T]: fewer channels than samples, so unambiguous
        elif wave.ndim != 1:
            hint = " (channels last? pass it transposed)" if wave.ndim == 2 else ""
            raise MetricInputError(f"{what}: expected mono [T] or channels-first [C, T] audio, "
                                   f"got shape {wave.shape}{hint}")
        if wave.size == 0:
            raise MetricInputError(f"{what}: empty audio (0 samples)")
        if not np.all(np.isfinite(wave)):
            raise MetricInputError(f"{what}: audio contains NaN or inf samples")
        return centre_crop(resample(wave, sr, self.sample_rate), self.max_samples)

    def embed_audio(self, waves: list[np.ndarray], sr: int) -> np.ndarray:
        """Audio ``[T]`` (or ``[C, T]``) arrays at ``sr`` → L2-normalised embeddings ``[N, D]``.

        Raises:
            MetricInputError: a bad ``sr`` or a clip :meth:`_prepare` refuses (its index named).
        """
        if not is_whole(sr, 1):
            raise MetricInputError(f"sample rate must be a whole number of Hz ≥ 1, got {sr!r}")
        out = []
        for i in range(0, len(waves), self.batch_size):
            chunk = [self._prepare(w, sr, f"audio clip {i + k}")
                     for k, w in enumerate(waves[i : i + self.batch_size])]
            inputs = self.processor(audio=chunk, sampling_rate=self.sample_rate,
                                    return_tensors="pt", truncation="rand_trunc",
                                    padding="repeatpad")
            inputs = {k: v.to(self.device) for k, v in inputs.items()}
            with self._torch.inference_mode():
                emb = pooled(self.model.get_audio_features(**inputs))
            out.append(emb.float().cpu().numpy())
        return _normalise(np.concatenate(out, axis=0)) if out else np.zeros((0, 0))

    def score(self, waves: list[np.ndarray], texts: list[str], sr: int) -> np.ndarray:
        """CLAPScore of each (audio, text) pair → ``[N]`` cosines in [-1, 1]."""
        if len(waves) != len(texts):
            raise MetricInputError(f"{len(waves)} audio clips but {len(texts)} texts")
        if not waves:
            return np.zeros(0)
        return cosine(self.embed_audio(waves, sr), self.embed_text(texts))


def _normalise(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def clap_score(audio: list[np.ndarray], texts: list[str], sr: int,
               model: str | Path = DEFAULT_CLAP) -> np.ndarray:
    """One-shot helper: build a :class:`ClapScorer` and score the pairs."""
    return ClapScorer(model).score(audio, texts, sr)
