"""Pick a captioner backend from a model's ``config.json`` (bare hub ids and local dirs)."""

from __future__ import annotations

from typing import Any

from auralens.scene.caption.base import CAPTIONERS, Captioner
from auralens.scene.llm import from_pretrained, resolve_model_id
from auralens.specs import ModelSpec


def backend_for(model_id: str) -> str:
    """Registry name for the architecture stored in ``model_id``'s config."""
    from transformers import AutoConfig

    cfg = from_pretrained(AutoConfig.from_pretrained, model_id)
    arch = " ".join(getattr(cfg, "architectures", None) or [type(cfg).__name__])
    if "Qwen2Audio" in arch:
        return "qwen2-audio"
    if "Whisper" in arch:
        return "whisper-aac"
    if "Clap" in arch:
        return "clap-zeroshot"
    if "AudioClassification" in arch:
        return "classifier"
    return "hf-audio-text"


def build(spec: ModelSpec, **params: Any) -> Captioner:
    """``hf:<id>`` or a local directory → the matching backend."""
    model_id = resolve_model_id(spec)
    kind = backend_for(model_id)
    return CAPTIONERS.get(kind)(ModelSpec(kind, model_id, spec.params, spec.raw), **params)
