"""Generic audio-text-to-text chat models (any processor with a chat template that accepts
audio in a user turn), as captioners."""

from __future__ import annotations

from typing import Any

from auralens.scene.caption.base import Captioner
from auralens.scene.caption.qwen2audio import AudioChatCaptioner, AudioChatLM, check_audio_lm_spec
from auralens.scene.llm import resolve_model_id
from auralens.specs import ModelSpec


def audio_text_classes() -> list[Any]:
    """Auto classes that may hold an audio-text-to-text model, most specific first."""
    import transformers

    names = ("AutoModelForAudioTextToText", "AutoModelForMultimodalLM",
             "AutoModelForImageTextToText", "AutoModelForSeq2SeqLM", "AutoModelForCausalLM")
    return [getattr(transformers, n) for n in names if hasattr(transformers, n)]


def load_audio_text(model_id: str, **params: Any) -> AudioChatLM:
    return AudioChatLM(model_id, audio_text_classes(), **params)


def check_spec(spec: ModelSpec, **params: Any) -> None:
    """Option names and values, and a local folder's files (no weights read)."""
    check_audio_lm_spec("hf-audio-text", resolve_model_id(spec), params, ("instruction",))


def build(spec: ModelSpec, *, instruction: str | None = None, **params: Any) -> Captioner:
    """``hf-audio-text:<id or dir>``."""
    check_spec(spec, instruction=instruction, **params)
    lm = load_audio_text(resolve_model_id(spec), **params)
    return AudioChatCaptioner(lm, instruction=instruction, kind="hf-audio-text")
