"""Oobleck VAE (diffusers ``AutoencoderOobleck``), the autoencoder of Stable Audio Open.

The closest maintained relative of the 64-channel "DAC-VAE" the original work used: a
DAC-style convolutional encoder/decoder with a diagonal-Gaussian bottleneck of 64 channels,
44.1 kHz stereo, hop 2048 (21.5 latent frames per second; ``[64, 108]`` for 5 s).

* :meth:`OobleckCodec.encode` returns the posterior *mean* by default (deterministic);
  ``sample=true`` draws from the posterior with a seeded generator (``seed=``).
* Mono input is copied to both channels; the decoded stereo is averaged to mono.
* ``oobleck`` alone loads ``stabilityai/stable-audio-open-1.0`` subfolder ``vae`` (gated on the
  hub: pre-populate the cache or pass a directory). A local directory may be the VAE itself
  or a pipeline directory containing ``vae/``.
Input: mono float32 at :attr:`OobleckCodec.sample_rate`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from auralens.checks import is_whole
from auralens.codecs.neural import NeuralCodec, codec_source, load
from auralens.errors import AuralensError
from auralens.specs import ModelSpec


class OobleckCodec(NeuralCodec):
    """Oobleck VAE latent ``[64, frames]``.

    Args:
        source: hub id or local directory.
        subfolder: where the VAE lives inside ``source`` (auto: ``vae`` when present).
        sample: draw from the posterior instead of taking its mean.
        seed: seed of the posterior sample.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` …
        dtype: ``"float32"`` (default), ``"float16"``, ``"bfloat16"``.
    """

    def __init__(self, source: str, subfolder: str | None = None, sample: bool = False,
                 seed: int = 0, device: str | None = None, dtype: str | None = None) -> None:
        from diffusers import AutoencoderOobleck

        from auralens.encoders.hf import bool_option
        from auralens.progress import quiet_diffusers_if_asked

        sample = bool_option("oobleck option sample", sample)  # `sample=maybe` is not true
        if not is_whole(seed, 0):
            raise AuralensError(f"oobleck option seed must be a whole number ≥ 0, got {seed!r}")

        quiet_diffusers_if_asked()
        if subfolder is None:
            local = Path(source)
            if local.is_dir():
                subfolder = "vae" if (local / "vae" / "config.json").exists() else None
            elif source == "stabilityai/stable-audio-open-1.0":
                subfolder = "vae"
        self._setup(source, device, dtype)
        if subfolder and Path(source).is_dir():  # the VAE's own files, not the pipeline root's
            from auralens.encoders.hf import model_revision

            self.revision = model_revision(str(Path(source) / subfolder))
        kwargs: dict[str, Any] = {"subfolder": subfolder} if subfolder else {}
        # Loaded straight in the compute dtype, so _finish has nothing left to cast.
        self.model = load(AutoencoderOobleck, source, torch_dtype=self.torch_dtype, **kwargs)
        cfg = self.model.config
        self.sample = sample
        self.seed = int(seed)
        self.sample_rate = int(cfg.sampling_rate)
        self.hop_length = int(math.prod(cfg.downsampling_ratios))
        # The encoder emits 2 × latent channels (mean, scale); the decoder takes the latent.
        self.latent_dim = int(cfg.decoder_input_channels)
        self.audio_channels = int(cfg.audio_channels)
        # The name keys the latent cache: a posterior sample depends on its seed.
        # (seed 0, the default, keeps the name checkpoints made before the seed was named carry)
        self.name = f"oobleck:{source}" + (
            "" if not sample else "@sample=true" + (f",seed={self.seed}" if self.seed else ""))
        self._finish()

    def _encode(self, x: Any) -> Any:
        import torch

        dist = self.model.encode(x).latent_dist
        if not self.sample:
            return dist.mean
        gen = torch.Generator(device=x.device).manual_seed(self.seed)
        return dist.sample(generator=gen)

    def _decode(self, z: Any) -> Any:
        return self.model.decode(z).sample


def build(spec: ModelSpec, **params: Any) -> OobleckCodec:
    """Registry factory: ``oobleck``, ``oobleck:<id or dir>@sample=true``."""
    return OobleckCodec(codec_source(spec, default="stabilityai/stable-audio-open-1.0"), **params)
