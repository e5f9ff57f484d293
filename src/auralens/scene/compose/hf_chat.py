"""Composer backend: a local transformers chat LLM (``hf:qwen2.5``, ``mistral``, a dir …)."""

from __future__ import annotations

from typing import Any

from auralens.scene.compose.chat import ChatComposer
from auralens.scene.compose.prompting import load_template
from auralens.scene.llm import (
    CHAT_PRESETS,
    GENERATION_OPTIONS,
    HFChatModel,
    check_hf_chat_spec,
    resolve_model_id,
)
from auralens.specs import ModelSpec


def _model_id(spec: ModelSpec) -> str:
    if spec.kind in CHAT_PRESETS and not spec.id:
        return CHAT_PRESETS[spec.kind]
    return resolve_model_id(spec, CHAT_PRESETS)


def check_spec(spec: ModelSpec, **params: Any) -> None:
    """Option names/values and, for a local folder, a chat model's files (no weights read)."""
    check_hf_chat_spec("hf composer", _model_id(spec), params, extra=("template",))
    if params.get("template") is not None:  # a missing or unusable file fails before any work
        load_template("compose", path=params["template"])


def build(spec: ModelSpec, *, template: str | None = None, **params: Any) -> ChatComposer:
    """``hf:<preset|id|dir>`` or a preset name (``qwen2.5``, ``mistral``, ``falcon3``)."""
    check_spec(spec, template=template, **params)
    gen = {k: v for k, v in params.items() if k in GENERATION_OPTIONS}
    load = {k: v for k, v in params.items() if k not in GENERATION_OPTIONS}
    return ChatComposer(HFChatModel(_model_id(spec), **load), template=template, **gen)
