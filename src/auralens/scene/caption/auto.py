"""Pick a captioner backend from a model's ``config.json`` (bare hub ids and local dirs)."""

from __future__ import annotations

import importlib
from typing import Any

from auralens.scene.caption.base import CAPTIONERS, Captioner
from auralens.scene.llm import check_model_dir, from_pretrained, model_kind, resolve_model_id
from auralens.specs import ModelSpec


def kind_for(architecture: str) -> str:
    """Registry name for a model's ``model_type`` / architecture names (any case)."""
    arch = architecture.lower()
    if "qwen2audio" in arch or "qwen2_audio" in arch:
        return "qwen2-audio"
    if "whisper" in arch:
        return "whisper-aac"
    if "clap" in arch:
        return "clap-zeroshot"
    if "audioclassification" in arch:
        return "classifier"
    return "hf-audio-text"


def backend_for(model_id: str) -> str:
    """Registry name for the architecture stored in ``model_id``'s config.

    A local folder's ``config.json`` is read directly (a folder without one is refused in one
    line); a hub id goes through ``AutoConfig`` (the cache, or the hub when online).
    """
    path = check_model_dir(model_id)
    if path is not None:
        return kind_for(model_kind(path))
    from transformers import AutoConfig

    cfg = from_pretrained(AutoConfig.from_pretrained, model_id)
    names = getattr(cfg, "architectures", None) or [type(cfg).__name__]
    return kind_for(" ".join([str(getattr(cfg, "model_type", "")), *names]))


def check_spec(spec: ModelSpec, **params: Any) -> None:
    """For a local folder: the backend its config names, and that backend's checks (no
    weights read). A hub id is checked when it loads (no network here)."""
    model_id = resolve_model_id(spec)
    path = check_model_dir(model_id)
    if path is None:
        return
    kind = kind_for(model_kind(path))
    module = importlib.import_module(CAPTIONERS.get(kind).__module__)
    module.check_spec(ModelSpec(kind, model_id, spec.params, spec.raw), **params)


def build(spec: ModelSpec, **params: Any) -> Captioner:
    """``hf:<id>`` or a local directory → the matching backend."""
    model_id = resolve_model_id(spec)
    kind = backend_for(model_id)
    return CAPTIONERS.get(kind)(ModelSpec(kind, model_id, spec.params, spec.raw), **params)
