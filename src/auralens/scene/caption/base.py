"""The ``Captioner`` protocol: one source's audio → a short text caption.

A backend module may also define ``check_spec(spec, **params)``: cheap checks of a spec (option
names and values, a local folder's files; no weights, no network) that
:func:`auralens.scene.pipeline.check_stage` runs for every configured stage before any work,
and that the backend's ``build`` calls first.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

import numpy as np

from auralens.errors import AuralensError
from auralens.registry import Registry


@dataclass
class CaptionResult:
    """A caption with the class label behind it when the backend has one.

    Attributes:
        text: the caption.
        label: top class name (classifier / CLAP backends) or None for free-text captioners.
        score: confidence of ``label`` (probability or softmax over the label set).
        top: the best few ``(label, score)`` pairs.
    """

    text: str
    label: str | None = None
    score: float | None = None
    top: list[tuple[str, float]] = field(default_factory=list)


class Captioner(ABC):
    """Audio captioning (an audio-language model, a zero-shot CLAP, or a classifier).

    Attributes:
        name: backend + model id.
        sample_rate: rate the captioner expects.
    """

    name: str = "captioner"
    sample_rate: int = 16000

    @abstractmethod
    def caption(self, wave: np.ndarray) -> str:
        """``[T]`` float32 at :attr:`sample_rate` → caption text."""

    def caption_batch(self, waves: list[np.ndarray]) -> list[str]:
        return [self.caption(w) for w in waves]

    def describe(self, wave: np.ndarray) -> CaptionResult:
        """Caption plus label/score when the backend knows them (default: text only)."""
        return CaptionResult(self.caption(wave))


class EmptyCaptionError(AuralensError):
    """An audio model answered with no text: a failed caption, never a label."""


def mono_wave(wave: np.ndarray, name: str) -> np.ndarray:
    """``wave`` as float32 ``[T]``.

    Raises:
        AuralensError: not one channel (a ``[T, 2]`` array would be read as T clips of one
            sample each), no samples at all, or NaN / Inf samples.
    """
    arr = np.asarray(wave, dtype=np.float32)
    if arr.ndim != 1:
        raise AuralensError(f"{name}: expected mono audio of shape [T], got shape "
                            f"{tuple(arr.shape)}; mix the channels down first")
    from auralens.audio import check_clip

    # no samples, or NaN ones (a caption of NaN features would be a confident guess about nothing)
    return check_clip(arr, name)


def require_caption(text: str, name: str, seconds: float) -> str:
    """``text`` stripped.

    Raises:
        EmptyCaptionError: the model gave no text for the clip.
    """
    text = (text or "").strip()
    if not text:
        raise EmptyCaptionError(f"{name}: the model gave an empty caption for a "
                                f"{seconds:.2f} s clip")
    return text


_MASS_NOUNS = {"rain", "wind", "water", "music", "speech", "fire", "thunder", "traffic",
               "applause", "laughter", "snoring", "breathing", "coughing", "sneezing",
               "clapping", "crying", "typing", "static", "noise", "silence", "hum", "steam",
               "thunderstorm", "engine hum", "crackling fire", "pouring water", "voice",
               "brushing teeth", "drinking sipping", "keyboard typing", "fireworks"}


def readable_label(label: str) -> str:
    """``"church_bells"`` → ``"church bells"`` (underscores/dashes to spaces, lower case)."""
    return re.sub(r"\s+", " ", re.sub(r"[_\-]+", " ", label)).strip().lower()


def sound_of(label: str) -> str:
    """``"dog"`` → ``"the sound of a dog"``; plurals and mass nouns take no article."""
    text = readable_label(label)
    last = text.split(" ")[-1] if text else text
    if (text in _MASS_NOUNS or last in _MASS_NOUNS or "," in text
            or (last.endswith("s") and not last.endswith("ss")) or last.endswith("ing")):
        return f"the sound of {text}"
    article = "an" if text[:1] in "aeiou" else "a"
    return f"the sound of {article} {text}"


CAPTIONERS: Registry[Captioner] = Registry("captioner", default="classifier")

# Lazy registrations: heavy libraries load only when a backend is built.
CAPTIONERS.register("classifier", "auralens.scene.caption.classifier:build")
CAPTIONERS.register("clap-zeroshot", "auralens.scene.caption.clap_zeroshot:build",
                    aliases=("clap",))
CAPTIONERS.register("qwen2-audio", "auralens.scene.caption.qwen2audio:build",
                    aliases=("qwen2audio",))
CAPTIONERS.register("whisper-aac", "auralens.scene.caption.whisper_aac:build")
CAPTIONERS.register("hf-audio-text", "auralens.scene.caption.hf_audio_text:build")
CAPTIONERS.register("openai-audio", "auralens.scene.caption.openai_audio:build")
# A bare hub id or local directory: pick the backend from the model's config.
CAPTIONERS.register("hf", "auralens.scene.caption.auto:build")
