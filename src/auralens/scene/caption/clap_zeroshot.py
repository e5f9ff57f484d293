"""Zero-shot captions from CLAP: rank a label vocabulary (AudioSet's 527 classes by default).

Clips longer than the CLAP window (10 s) are labelled from their loudest window
(:func:`auralens.audio.loudest_segment`): a separated source's event may lie anywhere in it.
The crop is deterministic (the CLAP feature extractor's own is random), so a caption does not
change between runs. The CLAP extractor and CLAPScore, which describe a whole clip rather than
its event, centre-crop instead (:func:`auralens.encoders.clap.centre_crop`).
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import numpy as np

from auralens.audio import loudest_segment
from auralens.encoders.clap import window_samples
from auralens.encoders.hf import check_tokenizer_files
from auralens.errors import AuralensError
from auralens.io import read_user_text
from auralens.scene.caption._hf import (
    as_tensor,
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
    TEXT_RULE,
    check_values,
    from_pretrained,
    resolve_model_id,
    whole_rule,
)
from auralens.specs import ModelSpec, SpecError

#: The AudioSet ontology's 527 class names, one per line.
AUDIOSET_LABELS = Path(__file__).with_name("audioset_labels.txt")
DEFAULT_MODEL = "laion/clap-htsat-unfused"


def read_labels(path: str | Path) -> list[str]:
    """One label per line; blank lines and ``#`` comments ignored.

    Raises:
        AuralensError: the file is missing or holds no label.
        auralens.io.NotTextError: the file is not UTF-8 text (the message names it).
    """
    path = Path(path)
    if not path.exists():
        raise AuralensError(f"{path}: label file not found")
    labels = [ln.strip() for ln in read_user_text(path).splitlines()]
    labels = [ln for ln in labels if ln and not ln.startswith("#")]
    if not labels:
        raise AuralensError(f"{path}: no labels in file")
    return labels


def check_prompt(prompt: str) -> None:
    """A label prompt must name ``{label}`` and no other field: without it every label
    gets the same text (the first label would always win), another field has no value.

    Raises:
        SpecError: one line naming the prompt and the problem.
    """
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(prompt) if f is not None]
    except ValueError as exc:  # an unmatched brace
        raise SpecError(f"clap-zeroshot option prompt {prompt!r} is not a valid template "
                        f"({exc}); write {{label}} where the label goes") from exc
    other = sorted({f or "{}" for f in fields} - {"label"})
    if other:
        raise SpecError(f"clap-zeroshot option prompt {prompt!r} has unknown field(s) "
                        f"{', '.join(other)}; only {{label}} is filled in")
    if "label" not in fields:
        raise SpecError(f"clap-zeroshot option prompt {prompt!r} must contain {{label}} "
                        "(else every label gets the same text)")


class ClapZeroShotCaptioner(Captioner):
    """Caption = the best-matching labels with their softmax scores.

    Args:
        model_id: CLAP checkpoint (``laion/clap-htsat-unfused``) or local dir.
        labels: label file (default: the AudioSet vocabulary).
        top_k: labels named in the caption.
        prompt: text template each label is embedded with.
    """

    def __init__(self, model_id: str = DEFAULT_MODEL, *, labels: str | Path | None = None,
                 top_k: int = 3, prompt: str = "This is a sound of {label}.",
                 **params: Any) -> None:
        import torch
        from transformers import AutoProcessor, ClapModel

        check_options("clap-zeroshot", params, _NAMED)
        check_prompt(prompt)
        self.model_id = model_id
        self.name = f"clap-zeroshot:{model_id}"
        self.top_k = int(top_k)
        self.labels = read_labels(labels or AUDIOSET_LABELS)
        # without its files transformers builds a tokenizer of a few special tokens only:
        # every label would get the same text embedding
        check_tokenizer_files(model_id)
        self.processor = from_pretrained(AutoProcessor.from_pretrained, model_id,
                                         **processor_kwargs(params))
        self.model, self.device = load_model(ClapModel, model_id, params)
        self.sample_rate = int(self.processor.feature_extractor.sampling_rate)
        self.max_samples = window_samples(self.processor.feature_extractor)
        texts = [prompt.format(label=readable_label(lb)) for lb in self.labels]
        embeds = []
        with torch.inference_mode():
            for i in range(0, len(texts), 64):  # batches keep memory flat for 527 labels
                tok = self.processor.tokenizer(texts[i:i + 64], padding=True, return_tensors="pt")
                tok = {k: v.to(self.device) for k, v in tok.items()}
                embeds.append(as_tensor(self.model.get_text_features(**tok)).float())
        self.text_embeds = torch.nn.functional.normalize(torch.cat(embeds), dim=-1)  # [L, D]

    def scores(self, wave: np.ndarray) -> np.ndarray:
        """``[T]`` → ``[L]`` softmax over the label vocabulary."""
        import torch

        wave = loudest_segment(mono_wave(wave, self.name), self.max_samples, self.sample_rate // 100)
        feats = self.processor.feature_extractor(wave,
                                                 sampling_rate=self.sample_rate,
                                                 return_tensors="pt")
        feats = {k: v.to(self.device) for k, v in feats.items()}
        with torch.inference_mode():
            audio = as_tensor(self.model.get_audio_features(**feats)).float()
            audio = torch.nn.functional.normalize(audio, dim=-1)  # [1, D]
            logits = self.model.logit_scale_a.exp().float() * audio @ self.text_embeds.T
        return torch.softmax(logits[0], dim=-1).cpu().numpy()

    def describe(self, wave: np.ndarray) -> CaptionResult:
        probs = self.scores(wave)
        order = np.argsort(-probs)[: self.top_k]
        top = [(self.labels[int(i)], float(probs[i])) for i in order]
        label, score = top[0]
        text = f"{sound_of(label)} ({score:.2f})"
        if len(top) > 1:
            text += ", possibly also " + ", ".join(f"{readable_label(lb)} ({s:.2f})"
                                                    for lb, s in top[1:])
        return CaptionResult(text, readable_label(label), score, top)

    def caption(self, wave: np.ndarray) -> str:
        return self.describe(wave).text


_NAMED = ("labels", "top_k", "prompt")
_RULES = {"labels": TEXT_RULE, "top_k": whole_rule(1), "prompt": TEXT_RULE}


def check_spec(spec: ModelSpec, **params: Any) -> None:
    """Option names and values, the label file and a local folder's files (no weights read)."""
    check_options("clap-zeroshot", params, _NAMED)
    check_values("clap-zeroshot", params, _RULES)
    if params.get("prompt") is not None:
        check_prompt(params["prompt"])
    if params.get("labels") and not Path(params["labels"]).expanduser().is_file():
        raise AuralensError(f"{params['labels']}: label file not found (clap-zeroshot labels=)")
    model_id = resolve_model_id(spec, default=DEFAULT_MODEL)
    check_audio_model(model_id, "audio model", ("clap",), "CLAP")
    check_tokenizer_files(model_id)  # the labels are embedded as text


def build(spec: ModelSpec, **params: Any) -> ClapZeroShotCaptioner:
    """``clap-zeroshot`` / ``clap-zeroshot:<id or dir>@labels=FILE,top_k=3``."""
    check_spec(spec, **params)
    return ClapZeroShotCaptioner(resolve_model_id(spec, default=DEFAULT_MODEL), **params)
