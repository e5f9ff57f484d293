"""Whisper-architecture audio captioning checkpoints (``WhisperForConditionalGeneration``)."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from auralens.errors import AuralensError
from auralens.scene.caption._hf import (
    check_audio_model,
    check_options,
    chunks,
    load_model,
    processor_kwargs,
)
from auralens.scene.caption.base import Captioner, mono_wave, require_caption
from auralens.scene.llm import (
    TEXT_RULE,
    check_values,
    error_line,
    from_pretrained,
    resolve_model_id,
    whole_rule,
)
from auralens.specs import ModelSpec

log = logging.getLogger(__name__)

DEFAULT_MODEL = "MU-NLPC/whisper-small-audio-captioning"
_NAMED = ("prefix", "max_new_tokens", "num_beams")
_RULES = {"prefix": TEXT_RULE, "max_new_tokens": whole_rule(1), "num_beams": whole_rule(1)}


class WhisperCaptioner(Captioner):
    """Encoder–decoder captioning: log-mel features → generated caption.

    Args:
        model_id: hub id or local dir of a Whisper-architecture captioning checkpoint.
        prefix: optional decoder prompt some checkpoints expect (e.g. a style tag).
        max_new_tokens: caption length bound.
        num_beams: beam search width.
    """

    def __init__(self, model_id: str, *, prefix: str = "", max_new_tokens: int = 64,
                 num_beams: int = 1, **params: Any) -> None:
        from transformers import (
            AutoFeatureExtractor,
            AutoTokenizer,
            WhisperForConditionalGeneration,
        )

        check_options("whisper-aac", params, _NAMED)
        check_values("whisper-aac", {"max_new_tokens": max_new_tokens, "num_beams": num_beams},
                     _RULES)
        self.model_id = model_id
        self.name = f"whisper-aac:{model_id}"
        kw = processor_kwargs(params)
        self.extractor = from_pretrained(AutoFeatureExtractor.from_pretrained, model_id, **kw)
        self.tokenizer = from_pretrained(AutoTokenizer.from_pretrained, model_id, **kw)
        self.model, self.device = load_model(WhisperForConditionalGeneration, model_id, params)
        self.sample_rate = int(self.extractor.sampling_rate)
        self.prefix = prefix
        self.prefix_ids = (self.tokenizer(prefix, add_special_tokens=False)["input_ids"]
                           if prefix else [])
        self.max_new_tokens = int(max_new_tokens)
        self.num_beams = int(num_beams)
        # The decoder has max_target_positions positions: the start token and the prefix use
        # some, so a longer budget would make generate refuse every clip.
        positions = getattr(self.model.config, "max_target_positions", None)
        if positions is not None:
            room = int(positions) - 1 - len(self.prefix_ids)
            if room < 1:
                raise AuralensError(f"whisper-aac prefix {prefix!r} fills the decoder's "
                                    f"{positions} positions; use a shorter prefix")
            if self.max_new_tokens > room:
                log.warning("%s: max_new_tokens=%d is more than the decoder's %d positions "
                            "leave; using %d", model_id, self.max_new_tokens, positions, room)
                self.max_new_tokens = room

    def _one(self, wave: np.ndarray) -> str:
        import torch

        feats = self.extractor(wave, sampling_rate=self.sample_rate, return_tensors="pt")
        features = feats["input_features"].to(self.device, dtype=self.model.dtype)
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens,
                                  "num_beams": self.num_beams}
        start = self.model.generation_config.decoder_start_token_id
        ids = [start, *self.prefix_ids]
        dec = torch.tensor([ids], device=self.device)
        try:
            with torch.inference_mode():
                # Plain seq2seq generation: bypasses Whisper's speech-specific language/task
                # handling, which captioning checkpoints do not use.
                out = super(type(self.model), self.model).generate(
                    input_features=features, decoder_input_ids=dec, **kwargs)
        except Exception as exc:  # noqa: BLE001 - one line naming the model, not a traceback
            raise AuralensError(f"{self.name}: captioning a {wave.shape[-1] / self.sample_rate:.2f}"
                                f" s clip failed ({error_line(exc)})") from exc
        text = self.tokenizer.decode(out[0, len(ids):], skip_special_tokens=True)
        return text.strip()

    def caption(self, wave: np.ndarray) -> str:
        """``[T]`` → caption; audio longer than the extractor's window (``chunk_length``,
        30 s for Whisper) is captioned per window, as the extractor cuts off the rest.

        Raises:
            EmptyCaptionError: the model said nothing about any chunk.
        """
        wave = mono_wave(wave, self.name)
        seconds = float(getattr(self.extractor, "chunk_length", None) or 30.0)
        parts = chunks(wave, self.sample_rate, seconds)
        text = " ".join(c for c in (self._one(p) for p in parts) if c)
        return require_caption(text, self.name, wave.shape[-1] / self.sample_rate)


def check_spec(spec: ModelSpec, **params: Any) -> None:
    """Option names and values, and a local folder's files (no weights read)."""
    check_options("whisper-aac", params, _NAMED)
    check_values("whisper-aac", params, _RULES)
    check_audio_model(resolve_model_id(spec, default=DEFAULT_MODEL), "audio captioning model",
                      ("whisper",), "Whisper")


def build(spec: ModelSpec, **params: Any) -> WhisperCaptioner:
    """``whisper-aac`` / ``whisper-aac:<id or dir>@prefix=...``."""
    check_spec(spec, **params)
    return WhisperCaptioner(resolve_model_id(spec, default=DEFAULT_MODEL), **params)
