"""The ``Codec`` protocol: audio ↔ a continuous latent with time on the last axis."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from auralens.registry import Registry


class Codec(ABC):
    """An autoencoder (or weight-free transform) whose latent a gate learns to predict.

    Attributes:
        name: backend + model id (cache keys, run.json).
        sample_rate: audio rate of encode input and decode output.
        frame_rate: latent frames per second.
        latent_dim: latent channels.
        revision: model revision/hash for cache keys.
    """

    name: str = "codec"
    sample_rate: int = 22050
    frame_rate: float = 86.13
    latent_dim: int = 0
    revision: str = ""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        from auralens.audio import check_clip_methods

        check_clip_methods(cls, ("encode",))

    @abstractmethod
    def encode(self, wave: np.ndarray) -> np.ndarray:
        """``[T]`` float32 at :attr:`sample_rate` → ``[latent_dim, frames]`` float32."""

    @abstractmethod
    def decode(self, latent: np.ndarray) -> np.ndarray:
        """``[latent_dim, frames]`` → ``[T]`` float32 at :attr:`sample_rate`.

        ``T`` is what the frames cover (a whole number of hops), so it can differ from the
        encoded clip's length by up to a frame; :meth:`roundtrip` and the renderers cut or
        pad to the length wanted.
        """

    def num_frames(self, num_samples: int) -> int:
        """Latent frames produced for ``num_samples`` input samples."""
        return int(round(num_samples / self.sample_rate * self.frame_rate))

    def roundtrip(self, wave: np.ndarray) -> np.ndarray:
        """decode(encode(wave)), trimmed/padded to the input length (the codec ceiling)."""
        from auralens.audio import fix_length

        return fix_length(self.decode(self.encode(wave)), wave.shape[-1])

    def describe(self) -> dict[str, object]:
        return {"name": self.name, "sample_rate": self.sample_rate,
                "frame_rate": self.frame_rate, "latent_dim": self.latent_dim,
                "revision": self.revision}


CODECS: Registry[Codec] = Registry("codec", default="mel")

# Lazy registrations: the module is imported only when the backend is built.
CODECS.register("mel", "auralens.codecs.mel:build")
CODECS.register("dac", "auralens.codecs.dac:build")
CODECS.register("encodec", "auralens.codecs.encodec:build")
CODECS.register("oobleck", "auralens.codecs.oobleck:build")
CODECS.register("hf", "auralens.codecs.neural:build_hf_codec")
CODECS.register("dac_44khz", "auralens.codecs.dac:build_44khz")
CODECS.register("dac_24khz", "auralens.codecs.dac:build_24khz")
CODECS.register("dac_16khz", "auralens.codecs.dac:build_16khz")
