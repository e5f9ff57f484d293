"""Qwen2-Audio (and other audio-text chat models) as captioners and as the audio-LLM baseline.

:class:`AudioChatLM` wraps a processor with a chat template and a generative model that takes
audio inside a user turn. It is used by the ``qwen2-audio`` and ``hf-audio-text`` captioners and
by :mod:`auralens.scene.allm`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from auralens.errors import AuralensError
from auralens.scene.caption._hf import check_audio_model, chunks, load_model, processor_kwargs
from auralens.scene.caption.base import Captioner, mono_wave, require_caption
from auralens.scene.llm import (
    GENERATION_OPTIONS,
    LOAD_OPTIONS,
    Message,
    check_options,
    check_values,
    error_line,
    from_pretrained,
    generation_kwargs,
    resolve_model_id,
    seeded,
)
from auralens.specs import ModelSpec

log = logging.getLogger(__name__)

DEFAULT_MODEL = "Qwen/Qwen2-Audio-7B-Instruct"
#: Our captioning instruction (the study asked the model to describe the audio in detail).
CAPTION_INSTRUCTION = ("Listen carefully and describe this sound in detail: what is making it, "
                       "how it sounds and where it might be happening. Answer in one or two "
                       "sentences.")
#: Longest audio one model call receives; longer inputs are chunked.
CHUNK_SECONDS = 30.0
#: Shortest audio one model call receives (seconds); shorter clips are zero-padded. Qwen2-Audio
#: needs at least two audio tokens (~0.05 s) or its forward pass fails.
MIN_SECONDS = 0.1


def check_audio_lm_spec(backend: str, model_id: str, params: dict[str, Any],
                        extra: tuple[str, ...] = (), expect: tuple[str, ...] = (),
                        label: str = "") -> None:
    """Cheap checks of an audio chat model spec (no weights read): option names and values,
    and for a local folder ``config.json``, an audio feature extractor and (``expect``) the
    architecture.

    Raises:
        SpecError: an unknown option or a bad value.
        AuralensError: ``"<dir>: not an audio-language model (no audio feature extractor)"``.
    """
    check_options(backend, params, (*LOAD_OPTIONS, *GENERATION_OPTIONS, *extra))
    check_values(backend, params)
    check_audio_model(model_id, "audio-language model", expect, label)


class AudioChatLM:
    """A chat model that listens: processor (feature extractor + tokenizer + chat template)
    and a generative model.

    Args:
        model_id: hub id or local dir.
        model_classes: transformers classes tried in order (first that loads wins).
        **params: load options (dtype, device, quantize, offload, trust_remote_code) and
            generation defaults (max_new_tokens 256, temperature 0 = greedy, top_p,
            repetition_penalty, seed: see :func:`~auralens.scene.llm.generation_kwargs`).
    """

    def __init__(self, model_id: str, model_classes: Sequence[Any], **params: Any) -> None:
        from transformers import AutoProcessor

        check_options("audio LM", params, (*LOAD_OPTIONS, *GENERATION_OPTIONS))
        self.model_id = model_id
        self.params = params
        self.processor = from_pretrained(AutoProcessor.from_pretrained, model_id,
                                         **processor_kwargs(params))
        # A text-only LLM's "processor" is its tokenizer: refuse before loading its weights.
        extractor = getattr(self.processor, "feature_extractor", None)
        if extractor is None or not hasattr(extractor, "sampling_rate"):
            raise AuralensError(f"{model_id}: not an audio-language model (no audio feature "
                                "extractor)")
        if getattr(self.processor, "chat_template", None) is None:
            raise AuralensError(f"{model_id}: processor has no chat template")
        last: Exception | None = None
        for cls in model_classes:
            try:
                self.model, self.device = load_model(cls, model_id, params)
                break
            except (ValueError, TypeError, KeyError) as exc:  # wrong architecture for this class
                last = exc
        else:
            raise AuralensError(f"{model_id}: not an audio-text-to-text model ({last})")
        self.sample_rate = int(extractor.sampling_rate)
        self.min_samples = int(MIN_SECONDS * self.sample_rate)
        self.gen_defaults = {k: v for k, v in params.items() if k in GENERATION_OPTIONS}
        self._lock = threading.Lock()

    def ask(self, wave: np.ndarray, messages: Sequence[Message], **gen: Any) -> str:
        """Answer ``messages`` with ``wave`` attached to the last user turn.

        Audio longer than 30 s becomes several audio items in that turn; audio shorter than
        :data:`MIN_SECONDS` is zero-padded to it.

        Args:
            wave: ``[T]`` float32 at :attr:`sample_rate`.
            messages: chat turns with string contents; earlier turns (few-shot examples)
                stay text-only.

        Raises:
            AuralensError: the model failed (one line naming the model and the clip length).
        """
        wave = mono_wave(wave, self.model_id)
        try:
            return self._ask(wave, messages, **gen)
        except AuralensError:
            raise
        except Exception as exc:  # noqa: BLE001 - one line naming the model, not a traceback
            raise AuralensError(f"{self.model_id}: the model failed on a "
                                f"{wave.shape[-1] / self.sample_rate:.2f} s clip "
                                f"({error_line(exc)})") from exc

    def _ask(self, wave: np.ndarray, messages: Sequence[Message], **gen: Any) -> str:
        import torch

        pieces = chunks(wave, self.sample_rate, CHUNK_SECONDS)
        # Zeros add no sound; the model needs a minimum number of audio frames.
        pieces = [np.pad(p, (0, self.min_samples - p.shape[-1]))
                  if p.shape[-1] < self.min_samples else p for p in pieces]
        conv: list[dict[str, Any]] = []
        last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
        for i, m in enumerate(messages):
            if i == last_user:
                content = [{"type": "audio", "audio_url": f"clip-{k}.wav"}
                           for k in range(len(pieces))]
                content.append({"type": "text", "text": str(m["content"])})
                conv.append({"role": "user", "content": content})
            else:
                conv.append({"role": m["role"],
                             "content": [{"type": "text", "text": str(m["content"])}]})
        text = self.processor.apply_chat_template(conv, add_generation_prompt=True,
                                                  tokenize=False)
        inputs = self.processor(text=[text], audio=pieces, sampling_rate=self.sample_rate,
                                return_tensors="pt", padding=True)
        inputs = inputs.to(self.device)
        opts = {"max_new_tokens": 256, "temperature": 0.0, **self.gen_defaults, **gen}
        tok = self.processor.tokenizer
        kwargs = generation_kwargs(
            opts, tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
        with self._lock, torch.inference_mode(), seeded(opts.get("seed"), self.device):
            out = self.model.generate(**inputs, **kwargs)
        new = out[:, inputs["input_ids"].shape[1]:]
        return self.processor.batch_decode(new, skip_special_tokens=True)[0].strip()


class AudioChatCaptioner(Captioner):
    """Caption by asking an :class:`AudioChatLM`; inputs over 30 s are captioned per chunk
    and the captions joined.

    Args:
        lm: the loaded audio chat model.
        instruction: the user prompt (default :data:`CAPTION_INSTRUCTION`).
        kind: registry name for :attr:`name`.
    """

    def __init__(self, lm: AudioChatLM, *, instruction: str | None = None,
                 kind: str = "qwen2-audio") -> None:
        self.lm = lm
        self.instruction = instruction or CAPTION_INSTRUCTION
        self.name = f"{kind}:{lm.model_id}"
        self.sample_rate = lm.sample_rate

    def caption(self, wave: np.ndarray) -> str:
        """``[T]`` → caption; chunks the model left empty are dropped.

        Raises:
            EmptyCaptionError: the model said nothing about any chunk.
        """
        wave = mono_wave(wave, self.name)
        parts = chunks(wave, self.sample_rate, CHUNK_SECONDS)
        captions = [self.lm.ask(p, [{"role": "user", "content": self.instruction}]).strip()
                    for p in parts]
        captions = [c for c in captions if c]
        if len(captions) <= 1:
            return require_caption(captions[0] if captions else "", self.name,
                                   wave.shape[-1] / self.sample_rate)
        return " ".join(f"Then: {c}" if i else c for i, c in enumerate(captions))


def load_qwen2audio(model_id: str = DEFAULT_MODEL, **params: Any) -> AudioChatLM:
    """Load Qwen2-Audio (``Qwen2AudioForConditionalGeneration`` + ``AutoProcessor``)."""
    from transformers import Qwen2AudioForConditionalGeneration

    return AudioChatLM(model_id, [Qwen2AudioForConditionalGeneration], **params)


#: ``model_type`` / architecture words of a Qwen2-Audio checkpoint.
QWEN2AUDIO_KIND = ("qwen2_audio", "qwen2audio")


def check_spec(spec: ModelSpec, **params: Any) -> None:
    """Option names and values, and a local folder's files (no weights read)."""
    check_audio_lm_spec("qwen2-audio", resolve_model_id(spec, default=DEFAULT_MODEL), params,
                        ("instruction",), QWEN2AUDIO_KIND, "Qwen2-Audio")


def build(spec: ModelSpec, *, instruction: str | None = None, **params: Any) -> Captioner:
    """``qwen2-audio`` (Qwen/Qwen2-Audio-7B-Instruct) or ``qwen2-audio:<id or dir>``."""
    check_spec(spec, instruction=instruction, **params)
    lm = load_qwen2audio(resolve_model_id(spec, default=DEFAULT_MODEL), **params)
    return AudioChatCaptioner(lm, instruction=instruction, kind="qwen2-audio")
