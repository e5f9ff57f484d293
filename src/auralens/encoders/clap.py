"""CLAP audio tower (``ClapModel``, e.g. ``laion/clap-htsat-unfused``).

Layers:
    * ``embed`` (default): the joint audio–text embedding (audio projection of the pooled
      output, L2-normalised), one frame: ``[1, projection_dim]`` (``[1, 512]``). This is
      the vector CLAPScore and CLAP-based FAD use.
    * ``pooled``: the audio tower's pooled output before projection, ``[1, hidden]``.
    * ``k`` (0..num_stages): HTSAT stage outputs. HTSAT folds the 10 s log-mel into a square
      "image" (time chunks stacked along frequency), so these are token grids, not time
      frames: returned flattened as ``[H * W, channels]``.

Clips shorter than the model window (the feature extractor's ``max_length_s``, 10 s) are
repeat-padded by the feature extractor. Longer clips are centre-cropped to the window by
:func:`centre_crop` before the feature extractor sees them, so the result is deterministic
(the extractor's own ``rand_trunc``/``fusion`` would pick the crop at random). The
CLAPScore (:mod:`auralens.evaluate.clapscore`) and the ``clap-zeroshot`` captioner use the
same crop, so every CLAP path sees the same 10 s of a long clip.
Input: mono float32 at 48 kHz.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from auralens.checks import is_whole
from auralens.encoders.base import Extractor
from auralens.encoders.hf import (
    LayerError,
    batch_size_option,
    check_processor_files,
    load_pretrained,
    model_revision,
    model_source,
    pick_device,
    torch_dtype,
)
from auralens.specs import ModelSpec


def window_samples(feature_extractor: Any) -> int:
    """Samples in the CLAP window of ``feature_extractor`` (``max_length_s`` at its rate)."""
    return int(round(float(feature_extractor.max_length_s) * int(feature_extractor.sampling_rate)))


def centre_crop(wave: np.ndarray, max_samples: int) -> np.ndarray:
    """The middle ``max_samples`` of ``wave`` (``[T]``), or ``wave`` itself when not longer.

    The deterministic crop every CLAP path applies before the feature extractor.
    """
    if wave.shape[-1] <= max_samples:
        return wave
    start = (wave.shape[-1] - max_samples) // 2
    return wave[..., start : start + max_samples]


class ClapExtractor(Extractor):
    """Audio embeddings / hidden states of a CLAP model.

    Args:
        source: hub id or local directory of a ``ClapModel``.
        layer: ``"embed"``, ``"pooled"`` or a stage index.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` …
        dtype: ``"float32"`` (default), ``"float16"``, ``"bfloat16"``.
        batch_size: clips per forward pass.
        name: display name (defaults to ``"clap:<source>"``).
        trust_remote_code: allow custom modelling code (off by default).
    """

    def __init__(self, source: str, layer: Any = "embed", device: str | None = None,
                 dtype: str | None = None, batch_size: int = 8, name: str | None = None,
                 trust_remote_code: bool = False) -> None:
        import torch
        from transformers import ClapFeatureExtractor, ClapModel

        self.batch_size = batch_size_option(batch_size)
        self.source = source
        self.device = pick_device(device)
        self.torch_dtype = torch_dtype(dtype)
        check_processor_files(source)  # before the weights load, not after
        self.model = load_pretrained(ClapModel, source, dtype=self.torch_dtype,
                                     trust_remote_code=trust_remote_code)
        self.model.to(self.device).eval()
        self.config = self.model.config
        self.feature_extractor = load_pretrained(ClapFeatureExtractor, source)
        self.sample_rate = int(self.feature_extractor.sampling_rate)
        audio_cfg = self.config.audio_config
        stages = len(audio_cfg.depths)
        if layer is None:
            layer = "embed"
        if isinstance(layer, str) and layer.lower() in {"embed", "pooled"}:
            self.layer: str | int = layer.lower()
        else:
            # Only whole numbers: int() would take ``true`` as stage 1 and 1.5 as 1.
            text = layer.strip() if isinstance(layer, str) else None
            k = int(text) if text is not None and re.fullmatch(r"-?[0-9]+", text) else layer
            if not is_whole(k):
                raise LayerError(f"CLAP layer must be 'embed', 'pooled' or 0..{stages}, "
                                 f"got {layer!r}")
            k = int(k)
            if not 0 <= k <= stages:
                raise LayerError(f"CLAP layer {k} out of range 0..{stages}")
            self.layer = k
        if self.layer == "embed":
            self.dim = int(self.config.projection_dim)
        elif self.layer == "pooled":
            self.dim = int(audio_cfg.hidden_size)
        else:
            base = int(audio_cfg.patch_embeds_hidden_size)
            self.dim = base * 2 ** min(int(self.layer), stages - 1) if self.layer else base
        self.frame_rate = 1.0 / float(self.feature_extractor.max_length_s)
        # Longer clips are centre-cropped to this window (see centre_crop).
        self.max_duration = float(self.feature_extractor.max_length_s)
        self.max_samples = window_samples(self.feature_extractor)
        self.name = name or f"clap:{source}"
        self.revision = model_revision(source) + "+centre-crop"  # long clips used to be cropped at random
        self._stages = stages
        self._torch = torch

    def num_layers(self) -> int:
        return self._stages

    def embed(self, wave: np.ndarray) -> np.ndarray:
        return self.embed_batch([wave])[0]

    def embed_batch(self, waves: Sequence[np.ndarray]) -> list[np.ndarray]:
        torch = self._torch
        out: list[np.ndarray] = []
        for i in range(0, len(waves), self.batch_size):
            # mono [T] and non-empty (the repeat-padding divides by the length): Extractor checks
            chunk = [centre_crop(w, self.max_samples) for w in waves[i : i + self.batch_size]]
            inputs = self.feature_extractor(chunk, sampling_rate=self.sample_rate,
                                            return_tensors="pt")
            feats = inputs["input_features"].to(self.device, self.torch_dtype)
            longer = inputs.get("is_longer")
            longer = longer.to(self.device) if longer is not None else None
            with torch.inference_mode():
                if self.layer == "embed":
                    res = self.model.get_audio_features(input_features=feats, is_longer=longer)
                    vec = getattr(res, "pooler_output", res)
                    states = vec[:, None, :]
                else:
                    res = self.model.audio_model(input_features=feats, is_longer=longer,
                                                 output_hidden_states=self.layer != "pooled")
                    if self.layer == "pooled":
                        states = res.pooler_output[:, None, :]
                    else:
                        grid = res.hidden_states[int(self.layer)]  # [B, C, H, W]
                        states = grid.flatten(2).transpose(1, 2)
            out.extend(np.ascontiguousarray(s, dtype=np.float32)
                       for s in states.float().cpu().numpy())
        return out


def build_clap(spec: ModelSpec, **params: Any) -> ClapExtractor:
    """Registry factory for ``clap:<hub id or dir>@layer=…`` (default ``laion/clap-htsat-unfused``)."""
    params.setdefault("name", f"clap:{spec.id or 'laion/clap-htsat-unfused'}")
    return ClapExtractor(model_source(spec, default="laion/clap-htsat-unfused"), **params)
