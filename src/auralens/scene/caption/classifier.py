"""Offline default captioner: an ESC-50-style audio classifier's top label → a caption.

Any transformers audio-classification directory works (``AutoModelForAudioClassification`` +
``AutoFeatureExtractor``); the default is the classifier committed under
``auralens/presets/classifier``.

An AST-style classifier sees a fixed window (``max_length`` filterbank frames: 5.12 s for the
committed one); a longer clip is labelled from its loudest window of that length
(:func:`auralens.audio.loudest_segment`), not from its opening, which is all the feature
extractor would keep.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import numpy as np

from auralens.audio import loudest_segment
from auralens.errors import AuralensError, ModelUnavailableError
from auralens.scene.caption._hf import (
    check_audio_model,
    check_options,
    load_model,
    processor_kwargs,
)
from auralens.scene.caption.base import (
    Captioner,
    CaptionResult,
    mono_wave,
    readable_label,
    sound_of,
)
from auralens.scene.llm import (
    BOOL_RULE,
    check_values,
    from_pretrained,
    local_dir,
    read_json_file,
    resolve_model_id,
    whole_rule,
)
from auralens.specs import ModelSpec

log = logging.getLogger(__name__)

#: Where the committed offline classifier lives.
PRESET_DIR = Path(__file__).resolve().parents[2] / "presets" / "classifier"


class ClassifierCaptioner(Captioner):
    """``"the sound of a dog (confidence 0.83)"`` from a classifier's top class.

    Args:
        model_id: local dir or hub id of an audio-classification model.
        top_k: how many runner-up classes to keep in :attr:`CaptionResult.top`.
        confidence: include the confidence in the caption text.
    """

    def __init__(self, model_id: str, *, top_k: int = 3, confidence: bool = True,
                 **params: Any) -> None:
        from transformers import AutoFeatureExtractor, AutoModelForAudioClassification

        check_options("classifier", params, _NAMED)
        self.model_id = model_id
        self.name = f"classifier:{model_id}"
        self.top_k = int(top_k)
        self.confidence = bool(confidence)
        check_classifier_config(model_id)
        self.extractor = from_pretrained(AutoFeatureExtractor.from_pretrained, model_id,
                                         **processor_kwargs(params))
        self.model, self.device = load_model(
            AutoModelForAudioClassification, model_id, params,
            check_loaded=lambda model, missing: check_head_loaded(model_id, model, missing))
        self.sample_rate = int(getattr(self.extractor, "sampling_rate", 16000))
        self.labels = [str(self.model.config.id2label[i])
                       for i in range(len(self.model.config.id2label))]
        self.window = fbank_window(self.extractor)

    def describe(self, wave: np.ndarray) -> CaptionResult:
        """``[T]`` at :attr:`sample_rate` → caption with the top label and its probability."""
        import torch

        wave = mono_wave(wave, self.name)
        if self.window is not None:
            # The extractor would keep only the opening; a separated source's event may lie
            # anywhere in it, and the features of the rest would be computed for nothing.
            wave = loudest_segment(wave, self.window, self.sample_rate // 100)
        shortest = self.sample_rate // 10  # the filterbank needs whole 25 ms frames
        if wave.shape[-1] < shortest:
            wave = np.pad(wave, (0, shortest - wave.shape[-1]))
        inputs = self.extractor(wave, sampling_rate=self.sample_rate, return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        with torch.inference_mode():
            logits = self.model(**inputs).logits[0].float()
        # Multi-label (AudioSet) heads use sigmoid scores, single-label heads softmax.
        multi = getattr(self.model.config, "problem_type", None) == "multi_label_classification"
        probs = torch.sigmoid(logits) if multi else torch.softmax(logits, dim=-1)
        scores, idx = torch.topk(probs, k=min(self.top_k, probs.shape[0]))
        top = [(self.labels[int(i)], float(s)) for s, i in zip(scores, idx, strict=True)]
        label, score = top[0]
        text = sound_of(label)
        if self.confidence:
            text += f" (confidence {score:.2f})"
        return CaptionResult(text, readable_label(label), score, top)

    def caption(self, wave: np.ndarray) -> str:
        return self.describe(wave).text


def fbank_window(extractor: Any) -> int | None:
    """Samples that fill the ``max_length`` frames of an AST-style filterbank extractor (25 ms
    frames every 10 ms), else None (an extractor that takes the whole clip)."""
    frames = getattr(extractor, "max_length", None)
    if not hasattr(extractor, "num_mel_bins") or not isinstance(frames, int) or frames <= 0:
        return None
    sr = int(getattr(extractor, "sampling_rate", 16000))
    return sr * 25 // 1000 + sr // 100 * (frames - 1)


#: The names transformers gives classes when a config has no labels (``LABEL_0`` …).
_GENERIC_LABEL = re.compile(r"LABEL_[0-9]+")
_HEAD_HINT = ("give an audio-classification model (e.g. one saved from "
              "ASTForAudioClassification) with its class names")


def check_classifier_config(model_id: str, cfg: dict[str, Any] | None = None) -> None:
    """Refuse a local folder whose ``config.json`` describes no classifier: a bare encoder
    (``ASTModel``, ``HubertModel``) or one without class names. transformers would add a
    random head and every caption would read "label 0". Hub ids pass (checked when loaded).
    ``cfg``: the folder's ``config.json`` when the caller has parsed it already.

    Raises:
        AuralensError: ``"<dir>: not an audio classifier (…)"``.
    """
    if cfg is None:
        path = local_dir(model_id)
        if path is None or not (path / "config.json").is_file():
            return  # a hub id; a folder without config.json is refused by check_audio_model
        cfg = read_json_file(path / "config.json")
    arch = [str(a) for a in cfg.get("architectures") or []]
    if arch and not any(a.endswith(("ForAudioClassification", "ForSequenceClassification"))
                        for a in arch):
        raise AuralensError(f"{model_id}: not an audio classifier (config.json architectures: "
                            f"{', '.join(arch)}, no classification head); {_HEAD_HINT}")
    labels = cfg.get("id2label")
    names = [str(v) for v in labels.values()] if isinstance(labels, dict) else []
    if not names:
        raise AuralensError(f"{model_id}: not an audio classifier (config.json has no "
                            f"id2label class names); {_HEAD_HINT}")
    if all(_GENERIC_LABEL.fullmatch(n) for n in names):
        raise AuralensError(f"{model_id}: not an audio classifier (config.json has only generic "
                            f"class names: {', '.join(names[:3])}); {_HEAD_HINT}")


def check_head_loaded(model_id: str, model: Any, missing: Any) -> None:
    """Refuse a checkpoint whose classification head was not in the weights file (the
    config may name a classifier, the saved weights a bare encoder).

    Raises:
        AuralensError: ``"<dir>: no classification head in the checkpoint (…)"``.
    """
    prefix = f"{getattr(model, 'base_model_prefix', '')}."
    head = sorted(str(k) for k in (missing or ()) if not str(k).startswith(prefix))
    if head:
        raise AuralensError(f"{model_id}: no classification head in the checkpoint ({head[0]} "
                            f"and {len(head) - 1} more weight(s) missing); {_HEAD_HINT}")


_NAMED = ("top_k", "confidence")
_RULES = {"top_k": whole_rule(1), "confidence": BOOL_RULE}


def _model_id(spec: ModelSpec) -> str:
    if spec.id:
        return resolve_model_id(spec)
    if not (PRESET_DIR / "config.json").exists():
        raise ModelUnavailableError(
            str(PRESET_DIR), "the committed offline classifier is missing; pass "
            "--captioner classifier:<dir> with any audio-classification model directory")
    return str(PRESET_DIR)


def check_spec(spec: ModelSpec, **params: Any) -> None:
    """Option names and values, and a local folder's files (no weights read)."""
    check_options("classifier", params, _NAMED)
    check_values("classifier", params, _RULES)
    model_id = _model_id(spec)
    config = check_audio_model(model_id, "audio classifier")  # None for a hub id
    check_classifier_config(model_id, config)


def build(spec: ModelSpec, **params: Any) -> ClassifierCaptioner:
    """``classifier`` (committed preset) or ``classifier:<dir or hub id>``."""
    check_spec(spec, **params)
    return ClassifierCaptioner(_model_id(spec), **params)
