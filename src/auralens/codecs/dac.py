"""Descript Audio Codec (transformers ``DacModel``) with a *continuous* latent.

Latent choice (``latent=`` option):
    * ``quantized`` (default): ``quantized_representation``, the sum of the residual
      quantizers' output projections, ``[hidden, frames]`` (``[1024, T/512]`` for
      ``descript/dac_44khz``). This is exactly what DAC's own decoder consumes, so
      ``decode(encode(x))`` is the codec's normal reconstruction. ``n_quantizers=k`` uses only
      the first k codebooks (coarser latent).
    * ``encoder``: the encoder output *before* quantisation (same shape); decoded by feeding
      it straight to the decoder. Smoother to regress onto, slightly different from DAC's
      quantised reconstruction.

Presets: ``dac`` (= ``descript/dac_44khz``, 44.1 kHz, hop 512 → 86.13 frames/s),
``dac:descript/dac_24khz`` (hop 320, 75 frames/s), ``dac:descript/dac_16khz``
(hop 320, 50 frames/s), or any local directory saved with ``save_pretrained``.
Input: mono float32 at :attr:`DacCodec.sample_rate`.
"""

from __future__ import annotations

import math
from typing import Any

from auralens.checks import is_whole
from auralens.codecs.neural import NeuralCodec, codec_source, load
from auralens.errors import AuralensError
from auralens.specs import ModelSpec

PRESETS = {"dac_44khz": "descript/dac_44khz", "dac_24khz": "descript/dac_24khz",
           "dac_16khz": "descript/dac_16khz", "44khz": "descript/dac_44khz",
           "24khz": "descript/dac_24khz", "16khz": "descript/dac_16khz"}


class DacCodec(NeuralCodec):
    """DAC with a continuous latent (see the module docstring).

    Args:
        source: hub id or local directory.
        latent: ``"quantized"`` or ``"encoder"``.
        n_quantizers: codebooks used for the ``quantized`` latent (None: all).
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` …
        dtype: ``"float32"`` (default), ``"float16"``, ``"bfloat16"``.
    """

    def __init__(self, source: str, latent: str = "quantized", n_quantizers: int | None = None,
                 device: str | None = None, dtype: str | None = None) -> None:
        from transformers import DacModel

        if latent not in {"quantized", "encoder"}:
            raise AuralensError(f"dac latent must be 'quantized' or 'encoder', got {latent!r}")
        if latent == "encoder" and n_quantizers is not None:
            raise AuralensError("dac option n_quantizers applies to latent=quantized only; "
                                "the encoder latent is taken before any codebook")
        self._setup(source, device, dtype)
        self.model = load(DacModel, source)
        cfg = self.model.config
        books = int(cfg.n_codebooks)
        if n_quantizers is not None and not (is_whole(n_quantizers, 1) and n_quantizers <= books):
            raise AuralensError(f"dac option n_quantizers must be a whole number from 1 to {books} "
                                f"(the codebooks of {source}), got {n_quantizers!r}")
        self.latent = latent
        self.n_quantizers = n_quantizers
        self.sample_rate = int(cfg.sampling_rate)
        self.hop_length = int(math.prod(cfg.downsampling_ratios))
        self.latent_dim = int(cfg.hidden_size)
        self.audio_channels = 1
        suffix = f"@latent={latent}" + (f",n_quantizers={n_quantizers}" if n_quantizers else "")
        self.name = f"dac:{source}{suffix}"
        self._finish()

    def _encode(self, x: Any) -> Any:
        z = self.model.encoder(x)
        if self.latent == "encoder":
            return z
        return self.model.quantizer(z, self.n_quantizers)[0]

    def _decode(self, z: Any) -> Any:
        return self.model.decoder(z)


def build(spec: ModelSpec, **params: Any) -> DacCodec:
    """Registry factory: ``dac``, ``dac:descript/dac_24khz``, ``dac:/dir@latent=encoder``."""
    ident = PRESETS.get(spec.id, spec.id)
    spec = ModelSpec(spec.kind, ident, spec.params, spec.raw)
    return DacCodec(codec_source(spec, default="descript/dac_44khz"), **params)


def _preset(hub_id: str) -> Any:
    def build_preset(spec: ModelSpec, **params: Any) -> DacCodec:
        return DacCodec(codec_source(ModelSpec("dac", spec.id or hub_id), default=hub_id),
                        **params)

    build_preset.__doc__ = f"Registry factory for the ``{hub_id.split('/')[-1]}`` preset ({hub_id})."
    return build_preset


build_44khz = _preset("descript/dac_44khz")
build_24khz = _preset("descript/dac_24khz")
build_16khz = _preset("descript/dac_16khz")
