"""Whisper-architecture audio captioning checkpoints (``WhisperForConditionalGeneration``)."""

from __future__ import annotations

from typing import Any

import numpy as np

from auralens.scene.caption._hf import check_options, chunks, load_model, processor_kwargs
from auralens.scene.caption.base import Captioner
from auralens.scene.llm import from_pretrained, resolve_model_id
from auralens.specs import ModelSpec

DEFAULT_MODEL = "MU-NLPC/whisper-small-audio-captioning"


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

        check_options("whisper-aac", params, ("prefix", "max_new_tokens", "num_beams"))
        self.model_id = model_id
        self.name = f"whisper-aac:{model_id}"
        kw = processor_kwargs(params)
        self.extractor = from_pretrained(AutoFeatureExtractor.from_pretrained, model_id, **kw)
        self.tokenizer = from_pretrained(AutoTokenizer.from_pretrained, model_id, **kw)
        self.model, self.device = load_model(WhisperForConditionalGeneration, model_id, params)
        self.sample_rate = int(self.extractor.sampling_rate)
        self.prefix = prefix
        self.max_new_tokens = int(max_new_tokens)
        self.num_beams = int(num_beams)

    def _one(self, wave: np.ndarray) -> str:
        import torch

        feats = self.extractor(wave, sampling_rate=self.sample_rate, return_tensors="pt")
        features = feats["input_features"].to(self.device, dtype=self.model.dtype)
        kwargs: dict[str, Any] = {"max_new_tokens": self.max_new_tokens,
                                  "num_beams": self.num_beams}
        start = self.model.generation_config.decoder_start_token_id
        ids = [start]
        if self.prefix:
            ids += self.tokenizer(self.prefix, add_special_tokens=False)["input_ids"]
        dec = torch.tensor([ids], device=self.device)
        with torch.inference_mode():
            # Plain seq2seq generation: bypasses Whisper's speech-specific language/task
            # handling, which captioning checkpoints do not use.
            out = super(type(self.model), self.model).generate(
                input_features=features, decoder_input_ids=dec, **kwargs)
        text = self.tokenizer.decode(out[0, len(ids):], skip_special_tokens=True)
        return text.strip()

    def caption(self, wave: np.ndarray) -> str:
        parts = chunks(np.asarray(wave, dtype=np.float32), self.sample_rate, 30.0)
        return " ".join(c for c in (self._one(p) for p in parts) if c)


def build(spec: ModelSpec, **params: Any) -> WhisperCaptioner:
    """``whisper-aac`` / ``whisper-aac:<id or dir>@prefix=...``."""
    return WhisperCaptioner(resolve_model_id(spec, default=DEFAULT_MODEL), **params)
