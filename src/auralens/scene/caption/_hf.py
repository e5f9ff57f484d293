"""Small helpers shared by the transformers-based captioners."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from auralens.errors import AuralensError
from auralens.scene import llm
from auralens.scene.llm import LOAD_OPTIONS, from_pretrained, hf_load_kwargs


def check_options(backend: str, params: dict[str, Any], named: tuple[str, ...]) -> None:
    """Refuse spec options a captioner would silently ignore (``classifier@top_kk=5``).

    ``params`` may hold the constructor's own ``named`` options and the model-loading ones.
    """
    llm.check_options(backend, params, (*named, *LOAD_OPTIONS))


def check_audio_model(model_id: str, what: str = "audio model",
                      expect: tuple[str, ...] = (), label: str = "") -> dict[str, Any] | None:
    """Cheap checks of a local audio model folder (no weights read): ``config.json``, an audio
    feature extractor, and (``expect``) a ``model_type``/architecture naming ``label``.
    Hub ids pass (their files are checked when they load).

    Returns:
        the folder's parsed ``config.json`` (a caller checks more of it without reading it
        again), or None for a hub id.

    Raises:
        AuralensError: ``"<dir>: not an audio-language model (no audio feature extractor)"`` …
    """
    path = llm.check_model_dir(model_id)
    if path is None:
        return None
    if not llm.has_audio_feature_extractor(path):
        raise AuralensError(f"{model_id}: not an {what} (no audio feature extractor)")
    config = llm.read_json_file(path / "config.json")
    kind = llm.config_kind(config)
    if expect and not any(e in kind.lower() for e in expect):
        raise AuralensError(f"{model_id}: not a {label} model (config.json: "
                            f"{kind.strip() or 'no model_type'})")
    if what == "audio-language model" and not expect:
        from auralens.scene.caption.hf_audio_text import audio_text_classes

        # an audio encoder or classifier (AST, HuBERT …) has a feature extractor too, but
        # none of the text-generating classes the audio-LLM loader tries takes it
        if llm.auto_class_loads(config, audio_text_classes()) is False:
            raise AuralensError(f"{model_id}: not an audio-language model (config.json: "
                                f"{kind.strip() or 'no model_type'}); give a model that "
                                "answers in text about audio, such as Qwen2-Audio")
    return config


def load_model(model_cls: Any, model_id: str, params: dict[str, Any], *,
               check_loaded: Any = None) -> tuple[Any, Any]:
    """Load ``model_cls`` from ``model_id`` with our load options; returns ``(model, device)``.

    ``check_loaded(model, missing_keys)`` is called before the model moves to its device
    (e.g. to refuse a checkpoint without the weights of a head it needs).
    """
    kwargs, device = hf_load_kwargs({k: v for k, v in params.items() if k in LOAD_OPTIONS})
    if check_loaded is None:
        model = from_pretrained(model_cls.from_pretrained, model_id, **kwargs)
    else:
        model, info = from_pretrained(model_cls.from_pretrained, model_id,
                                      output_loading_info=True, **kwargs)
        check_loaded(model, info.get("missing_keys"))
    if device:
        model.to(device)
    model.eval()
    return model, next(model.parameters()).device


def processor_kwargs(params: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if params.get("trust_remote_code") is True:
        out["trust_remote_code"] = True
    if params.get("revision"):
        out["revision"] = str(params["revision"])
    return out


def as_tensor(output: Any) -> Any:
    """``get_*_features`` return a tensor in older transformers, a model output in newer."""
    if hasattr(output, "pooler_output") and output.pooler_output is not None:
        return output.pooler_output
    return output


def chunks(wave: np.ndarray, sample_rate: int, seconds: float = 30.0) -> list[np.ndarray]:
    """Split ``[T]`` into pieces of at most ``seconds``.

    A tail shorter than 1 s is not worth its own model call: the last piece is then the final
    ``seconds`` of the input instead (overlapping the one before), so no audio is left out.
    """
    size = int(seconds * sample_rate)
    n = wave.shape[-1]
    if n <= size:
        return [wave]
    pieces = [wave[i:i + size] for i in range(0, n, size)]
    if pieces[-1].shape[-1] < sample_rate:
        pieces[-1] = wave[..., n - size:]
    return pieces


def model_dir_label(model_id: str) -> str:
    p = Path(model_id)
    return p.name if p.exists() else model_id
