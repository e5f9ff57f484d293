"""End-to-end baseline: one audio LLM turns the whole mixture into a scene description.

No separation, no per-source captions: the mixture goes straight into an audio-text chat model
(Qwen2-Audio by default) with one of the prompting techniques (``zero-shot``, ``cot``,
``role``, ``few-shot``) from ``compose/prompts/allm_<technique>.txt`` or a user's template.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from auralens.errors import AuralensError
from auralens.scene.caption.qwen2audio import DEFAULT_MODEL, AudioChatLM
from auralens.scene.compose.base import Description
from auralens.scene.compose.prompting import load_template, parse_answer, require_description
from auralens.scene.llm import GENERATION_OPTIONS, resolve_model_id
from auralens.specs import ModelSpec, parse_spec

log = logging.getLogger(__name__)

_GEN = GENERATION_OPTIONS


class AudioLLMDescriber:
    """Mixture → :class:`~auralens.scene.compose.base.Description` with one audio LLM.

    Args:
        lm: a loaded :class:`~auralens.scene.caption.qwen2audio.AudioChatLM`.
        template: a user template file (else the built-in one per technique).
        **gen: generation options (``max_new_tokens`` 512 by default).
    """

    def __init__(self, lm: AudioChatLM, *, template: str | Path | None = None,
                 **gen: Any) -> None:
        self.lm = lm
        self.template = template
        self.gen = {"max_new_tokens": 512, **gen}
        self.name = f"allm:{lm.model_id}"
        self.sample_rate = lm.sample_rate

    def messages(self, technique: str = "zero-shot") -> list[dict[str, str]]:
        return load_template("allm", technique, self.template).render()

    def describe(self, wave: np.ndarray, technique: str = "zero-shot") -> Description:
        """``[T]`` float32 mixture at :attr:`sample_rate` → description (+ CoT reasoning).

        Raises:
            AuralensError: ``wave`` is not one channel of samples (the model's ``ask``
                checks it, naming the model), or the answer holds no description.
        """
        answer = self.lm.ask(wave, self.messages(technique), **self.gen)
        return require_description(parse_answer(answer, cot=technique == "cot"), answer,
                                   self.name)


_KINDS = ("qwen2-audio", "qwen2audio", "hf-audio-text", "openai-audio", "openai")


def _resolve(spec: str | ModelSpec | None, overrides: dict[str, Any], *, load: bool
             ) -> tuple[ModelSpec, str, dict[str, Any]]:
    """``(parsed spec, backend kind, options)``; a bare id or folder gets its kind from the
    model's config (``load=False``: only from a local folder's ``config.json``, no network)."""
    parsed = parse_spec(spec or "qwen2-audio")
    params = {**parsed.params, **overrides}
    kind = parsed.kind
    if kind in ("hf", "path"):  # bare hub id or local dir: pick by the model's architecture
        from auralens.scene.caption.auto import backend_for, kind_for
        from auralens.scene.llm import check_model_dir, model_kind

        model_id = resolve_model_id(parsed)
        if load:
            kind = backend_for(model_id)
        else:
            path = check_model_dir(model_id)
            kind = kind_for(model_kind(path)) if path is not None else "hf-audio-text"
    if kind not in _KINDS:
        raise AuralensError(f"{parsed.raw or spec}: not an audio LLM spec; use qwen2-audio[:<id>], "
                            "hf-audio-text:<id> or openai-audio:<served model>")
    return parsed, kind, params


def check_audio_llm(spec: str | ModelSpec | None = None, *, template: str | Path | None = None,
                    **overrides: Any) -> None:
    """Cheap checks of an audio-LLM spec before any work (no weights read, no request sent):
    the backend, option names and values, a local folder's files, and the user template
    file when one is given (read and parsed, as the LLM composers' checks do).

    Raises:
        TemplateError: the template file is missing, not UTF-8 text or has no user turn.
        AuralensError: one line naming the problem (``"<dir>: not an audio-language model (no
            audio feature extractor)"``, ``"unknown qwen2-audio option(s) …"`` …).
    """
    from auralens.scene.caption.qwen2audio import QWEN2AUDIO_KIND, check_audio_lm_spec

    parsed, kind, params = _resolve(spec, overrides, load=False)
    if kind in ("openai-audio", "openai"):
        from auralens.scene.llm import check_openai_spec, check_values, whole_rule

        check_values("openai-audio", params, {"sample_rate": whole_rule(1)})
        check_openai_spec("openai-audio", parsed.id, params, ("sample_rate",))
    elif kind == "hf-audio-text":
        check_audio_lm_spec(kind, resolve_model_id(parsed), params)
    else:
        check_audio_lm_spec("qwen2-audio", resolve_model_id(parsed, default=DEFAULT_MODEL),
                            params, expect=QWEN2AUDIO_KIND, label="Qwen2-Audio")
    if template is not None:
        load_template("allm", path=template)


def load_audio_llm(spec: str | ModelSpec | None = None, *, template: str | Path | None = None,
                   **overrides: Any) -> AudioLLMDescriber:
    """Build the baseline from ``qwen2-audio[:<id|dir>]``, ``hf-audio-text:<id|dir>`` or
    ``openai-audio:<served model>@base_url=…`` (an OpenAI-compatible server such as vLLM).

    Raises:
        SpecError: an unknown option or a bad value (see :func:`check_audio_llm`).
        ModelUnavailableError: when the model is not available offline.
    """
    check_audio_llm(spec, **overrides)
    parsed, kind, params = _resolve(spec, overrides, load=True)
    gen = {k: v for k, v in params.items() if k in _GEN}
    load = {k: v for k, v in params.items() if k not in _GEN}
    if kind in ("openai-audio", "openai"):  # a serving engine (vLLM) for throughput
        from auralens.scene.caption.openai_audio import OpenAIAudioLM

        lm = OpenAIAudioLM(parsed.id, **load)
    elif kind == "hf-audio-text":
        from auralens.scene.caption.hf_audio_text import load_audio_text

        lm = load_audio_text(resolve_model_id(parsed), **load)
    else:
        from auralens.scene.caption.qwen2audio import load_qwen2audio

        lm = load_qwen2audio(resolve_model_id(parsed, default=DEFAULT_MODEL), **load)
    return AudioLLMDescriber(lm, template=template, **gen)


#: Name used by the experiment runner.
load_allm = load_audio_llm
