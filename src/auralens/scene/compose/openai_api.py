"""Composer backend: an OpenAI-compatible chat endpoint (vLLM, Ollama, llama.cpp …)."""

from __future__ import annotations

from typing import Any

from auralens.scene.compose.chat import ChatComposer
from auralens.scene.llm import OpenAIChatModel
from auralens.specs import ModelSpec

_GEN = ("max_new_tokens", "temperature", "top_p", "seed")


def build(spec: ModelSpec, *, template: str | None = None, **params: Any) -> ChatComposer:
    """``openai:<model>@base_url=http://host:port/v1,timeout=60,retries=3,max_concurrency=4``."""
    gen = {k: v for k, v in params.items() if k in _GEN}
    conn = {k: v for k, v in params.items() if k not in _GEN}
    return ChatComposer(OpenAIChatModel(spec.id, **conn), template=template, **gen)
