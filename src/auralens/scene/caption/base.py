"""The ``Captioner`` protocol: one source's audio → a short text caption."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from auralens.registry import Registry


class Captioner(ABC):
    """Audio captioning (an audio-language model, a zero-shot CLAP, or a classifier).

    Attributes:
        name: backend + model id.
        sample_rate: rate the captioner expects.
    """

    name: str = "captioner"
    sample_rate: int = 16000

    @abstractmethod
    def caption(self, wave: np.ndarray) -> str:
        """``[T]`` float32 at :attr:`sample_rate` → caption text."""

    def caption_batch(self, waves: list[np.ndarray]) -> list[str]:
        return [self.caption(w) for w in waves]


CAPTIONERS: Registry[Captioner] = Registry("captioner", default="classifier")
