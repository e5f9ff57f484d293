"""Composer backend: a local transformers chat LLM (``hf:qwen2.5``, ``mistral``, a dir …)."""

from __future__ import annotations

from typing import Any

from auralens.scene.compose.chat import ChatComposer
from auralens.scene.llm import CHAT_PRESETS, HFChatModel, resolve_model_id
from auralens.specs import ModelSpec

_GEN = ("max_new_tokens", "temperature", "top_p", "seed", "repetition_penalty")


def build(spec: ModelSpec, *, template: str | None = None, **params: Any) -> ChatComposer:
    """``hf:<preset|id|dir>`` or a preset name (``qwen2.5``, ``mistral``, ``falcon3``)."""
    model_id = CHAT_PRESETS[spec.kind] if spec.kind in CHAT_PRESETS and not spec.id \
        else resolve_model_id(spec, CHAT_PRESETS)
    gen = {k: v for k, v in params.items() if k in _GEN}
    load = {k: v for k, v in params.items() if k not in _GEN}
    return ChatComposer(HFChatModel(model_id, **load), template=template, **gen)
