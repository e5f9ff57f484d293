"""Self-supervised speech encoders: HuBERT, wav2vec 2.0, WavLM (and data2vec-audio).

All share one layout: a strided 1-D convolution stack (total stride 320 at 16 kHz, so 50 frames
per second; 1 s of audio gives 49 frames), a *feature projection* to the model width, then a
transformer encoder (positional convolution + blocks).

Layers:
    * ``features``: output of the feature projection, before time masking and before the
      encoder's positional convolution (computed without running the encoder at all).
    * ``0``: ``hidden_states[0]``, the encoder input after the positional convolution (and,
      for post-norm models such as HuBERT base, the encoder layer norm).
    * ``k`` (1..num_layers): ``hidden_states[k]``, the output of block ``k``;
      ``last`` (default) = the last block.

Batching: the attention mask is passed only when the checkpoint's feature extractor asks for
it (``return_attention_mask``, i.e. layer-norm feature encoders such as the large models);
base models with group-norm feature encoders (HuBERT base, WavLM base) were trained without
it, as Hugging Face recommends. With a mask and a layer-norm feature encoder, clips are
zero-padded to the longest one and frames beyond each clip's own length
(``_get_feat_extract_output_lengths``) are trimmed: the result equals one-by-one embedding.
Without a mask (or with a group-norm feature encoder, whose first GroupNorm normalises over
time) padding would change every frame of the shorter clips, so only clips of the same
length share a forward pass; a clip whose length no other clip has runs alone. Either way
a clip's embedding does not depend on its batch mates or on ``batch_size``.

Input: mono float32 at 16 kHz (the feature extractor's ``sampling_rate``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np

from auralens.encoders.base import Extractor
from auralens.encoders.hf import (
    batch_size_option,
    load_pretrained,
    model_revision,
    model_source,
    parse_layer,
    pick_device,
    read_config,
    torch_dtype,
)
from auralens.errors import AuralensError
from auralens.specs import ModelSpec

log = logging.getLogger(__name__)

#: backend name → (transformers model class, default hub id)
FAMILIES: dict[str, tuple[str, str]] = {
    "hubert": ("HubertModel", "facebook/hubert-base-ls960"),
    "wav2vec2": ("Wav2Vec2Model", "facebook/wav2vec2-base-960h"),
    "wavlm": ("WavLMModel", "microsoft/wavlm-base-plus"),
    "data2vec-audio": ("Data2VecAudioModel", "facebook/data2vec-audio-base-960h"),
}


class SSLExtractor(Extractor):
    """Hidden states of a HuBERT / wav2vec 2.0 / WavLM model.

    Args:
        source: hub id or local directory.
        family: ``"hubert"``, ``"wav2vec2"``, ``"wavlm"`` or ``"data2vec-audio"``.
        layer: ``"features"``, ``"last"`` or a block index (see the module docstring).
        device: ``"auto"`` (cuda when available), ``"cpu"``, ``"cuda:0"`` …
        dtype: ``"float32"`` (default), ``"float16"``, ``"bfloat16"``.
        batch_size: clips per forward pass in :meth:`embed_batch`.
        name: display name (defaults to ``"<family>:<source>"``).
        trust_remote_code: allow custom modelling code (off by default).
    """

    first_name = "features"
    #: the convolutional feature encoder's receptive field (25 ms at 16 kHz)
    min_samples = 400

    def __init__(self, source: str, family: str = "hubert", layer: Any = None,
                 device: str | None = None, dtype: str | None = None, batch_size: int = 8,
                 name: str | None = None, trust_remote_code: bool = False) -> None:
        import torch
        import transformers
        from transformers import Wav2Vec2FeatureExtractor

        batch_size = batch_size_option(batch_size)
        if family not in FAMILIES:
            raise AuralensError(f"unknown SSL family {family!r}; use one of {sorted(FAMILIES)}")
        self.source = source
        self.family = family
        cls = getattr(transformers, FAMILIES[family][0])
        self.device = pick_device(device)
        self.torch_dtype = torch_dtype(dtype)
        self.model = load_pretrained(cls, source, dtype=self.torch_dtype,
                                     trust_remote_code=trust_remote_code)
        self.model.to(self.device).eval()
        self.config = self.model.config
        try:
            self.feature_extractor = Wav2Vec2FeatureExtractor.from_pretrained(source)
        except (OSError, ValueError):
            layer_norm = getattr(self.config, "feat_extract_norm", "group") == "layer"
            log.info("%s: no preprocessor_config.json; using defaults", source)
            self.feature_extractor = Wav2Vec2FeatureExtractor(
                do_normalize=layer_norm, return_attention_mask=layer_norm)
        self.sample_rate = int(self.feature_extractor.sampling_rate)
        self.use_attention_mask = bool(self.feature_extractor.return_attention_mask)
        # Zero padding is invisible only with a mask and per-frame (layer) normalisation.
        self.pads_exactly = (self.use_attention_mask
                             and getattr(self.config, "feat_extract_norm", "layer") != "group")
        stride = int(np.prod(self.config.conv_stride))
        self.frame_rate = self.sample_rate / stride
        self.dim = int(self.config.hidden_size)
        self.layer = parse_layer(layer, self.first_name, self.config.num_hidden_layers)
        self.batch_size = batch_size
        self.name = name or f"{family}:{source}"
        self.revision = model_revision(source)
        if not self.pads_exactly:
            # Embeddings of mixed-length batches used to depend on their batch mates; a
            # distinct revision keeps such cache entries from being reused.
            self.revision += "+own-length"
        self._torch = torch

    def num_layers(self) -> int:
        return int(self.config.num_hidden_layers)

    def num_frames(self, num_samples: int) -> int:
        """Frames the conv stack produces for ``num_samples`` (49 for 1 s at 16 kHz)."""
        torch = self._torch
        return int(self.model._get_feat_extract_output_lengths(torch.tensor(num_samples)))

    def embed(self, wave: np.ndarray) -> np.ndarray:
        """``[T]`` at 16 kHz → ``[frames, hidden]``."""
        return self.embed_batch([wave])[0]

    def embed_batch(self, waves: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Batched forward passes; each result trimmed to its clip's own frames.

        Padded batches when :attr:`pads_exactly`, else batches of equal-length clips only
        (see the module docstring); results come back in the order of ``waves``.
        """
        arrays = [np.asarray(w, dtype=np.float32) for w in waves]
        for w in arrays:  # mono [T]: the Extractor protocol checks
            if w.shape[0] < self.min_samples:
                raise AuralensError(
                    f"{self.family} needs at least {self.min_samples} samples (25 ms), got {w.shape[0]}")
        if self.pads_exactly:
            groups = [list(range(len(arrays)))]
        else:
            by_length: dict[int, list[int]] = {}
            for i, w in enumerate(arrays):
                by_length.setdefault(w.shape[0], []).append(i)
            groups = list(by_length.values())
        out: list[np.ndarray | None] = [None] * len(arrays)
        for group in groups:
            for start in range(0, len(group), self.batch_size):
                idx = group[start : start + self.batch_size]
                states = self._forward([arrays[i] for i in idx])
                for i, state in zip(idx, states, strict=True):
                    frames = self.num_frames(arrays[i].shape[0])
                    out[i] = np.ascontiguousarray(state[:frames].numpy())
        return [o for o in out if o is not None]

    def _forward(self, chunk: list[np.ndarray]) -> Any:
        torch = self._torch
        inputs = self.feature_extractor(
            chunk, sampling_rate=self.sample_rate, padding=True, return_tensors="pt",
            return_attention_mask=self.use_attention_mask)
        x = inputs["input_values"].to(self.device, self.torch_dtype)
        mask = inputs.get("attention_mask") if self.use_attention_mask else None
        if mask is not None:
            mask = mask.to(self.device)
        with torch.inference_mode():
            if self.layer == self.first_name:
                # Conv stack + projection only; the encoder is not needed.
                feats = self.model.feature_extractor(x).transpose(1, 2)
                proj = self.model.feature_projection(feats)
                hidden = proj[0] if isinstance(proj, tuple) else proj
            else:
                result = self.model(x, attention_mask=mask, output_hidden_states=True)
                hidden = result.hidden_states[int(self.layer)]
        return hidden.float().cpu()


def _builder(family: str) -> Any:
    def build(spec: ModelSpec, **params: Any) -> SSLExtractor:
        source = model_source(spec, default=FAMILIES[family][1])
        fam = family
        if spec.path is not None:  # a local dir may hold another family; trust its config
            model_type = str(read_config(source).get("model_type", family))
            fam = model_type if model_type in FAMILIES else family
            if fam != family:
                log.warning("%s: its config is a %s model; loading it as %s", source, fam, fam)
        params.setdefault("name", f"{fam}:{spec.id or FAMILIES[family][1]}")  # what was loaded
        return SSLExtractor(source, family=fam, **params)

    build.__name__ = f"build_{family.replace('-', '_')}"
    build.__doc__ = f"Registry factory for ``{family}:<hub id or dir>@layer=…``."
    return build


build_hubert = _builder("hubert")
build_wav2vec2 = _builder("wav2vec2")
build_wavlm = _builder("wavlm")
build_data2vec_audio = _builder("data2vec-audio")
