"""Composer backend: an OpenAI-compatible chat endpoint (vLLM, Ollama, llama.cpp …)."""

from __future__ import annotations

from typing import Any

from auralens.scene.compose.chat import ChatComposer
from auralens.scene.compose.prompting import load_template
from auralens.scene.llm import OPENAI_GENERATION_OPTIONS, OpenAIChatModel, check_openai_spec
from auralens.specs import ModelSpec


def check_spec(spec: ModelSpec, **params: Any) -> None:
    """Option names and values, the model name and URL (no request is sent)."""
    check_openai_spec("openai composer", spec.id, params, extra=("template",))
    if params.get("template") is not None:  # a missing or unusable file fails before any work
        load_template("compose", path=params["template"])


def build(spec: ModelSpec, *, template: str | None = None, **params: Any) -> ChatComposer:
    """``openai:<model>@base_url=http://host:port/v1,timeout=60,retries=3,max_concurrency=4``."""
    check_spec(spec, template=template, **params)
    gen = {k: v for k, v in params.items() if k in OPENAI_GENERATION_OPTIONS}
    conn = {k: v for k, v in params.items() if k not in OPENAI_GENERATION_OPTIONS}
    return ChatComposer(OpenAIChatModel(spec.id, **conn), template=template, **gen)
