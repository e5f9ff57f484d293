"""EnCodec (transformers ``EncodecModel``) with its continuous pre-quantisation latent.

The latent is the encoder output ``[hidden_size, frames]`` *before* residual vector
quantisation (``[128, 75 per s]`` for ``facebook/encodec_24khz``); :meth:`decode` feeds it
straight to the decoder. The whole clip is processed in one pass: the chunking and loudness
normalisation of the 48 kHz model's streaming mode are not applied. Stereo models receive the
mono input on both channels and their output is averaged back to mono.
Input: mono float32 at :attr:`EncodecCodec.sample_rate`.
"""

from __future__ import annotations

import math
from typing import Any

from auralens.codecs.neural import NeuralCodec, codec_source, load
from auralens.specs import ModelSpec


class EncodecCodec(NeuralCodec):
    """EnCodec encoder/decoder around the continuous embeddings.

    Args:
        source: hub id or local directory.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` …
        dtype: ``"float32"`` (default), ``"float16"``, ``"bfloat16"``.
    """

    def __init__(self, source: str, device: str | None = None, dtype: str | None = None) -> None:
        from transformers import EncodecModel

        self._setup(source, device, dtype)
        self.model = load(EncodecModel, source)
        cfg = self.model.config
        self.sample_rate = int(cfg.sampling_rate)
        self.hop_length = int(math.prod(cfg.upsampling_ratios))
        self.latent_dim = int(cfg.hidden_size)
        self.audio_channels = int(cfg.audio_channels)
        self.name = f"encodec:{source}"
        self._finish()

    def _encode(self, x: Any) -> Any:
        return self.model.encoder(x)

    def _decode(self, z: Any) -> Any:
        return self.model.decoder(z)


def build(spec: ModelSpec, **params: Any) -> EncodecCodec:
    """Registry factory: ``encodec`` (= ``facebook/encodec_24khz``) or ``encodec:<id or dir>``."""
    return EncodecCodec(codec_source(spec, default="facebook/encodec_24khz"), **params)
