"""The ``Separator`` protocol: a mixture → M source estimates."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from auralens.registry import Registry


class Separator(ABC):
    """Universal sound separation.

    Attributes:
        name: backend + checkpoint (run.json).
        sample_rate: rate of input and output (16 kHz for FUSS models).
        num_sources: M, the number of estimates returned.
    """

    name: str = "separator"
    sample_rate: int = 16000
    num_sources: int = 4

    @abstractmethod
    def separate(self, mix: np.ndarray) -> np.ndarray:
        """``[T]`` float32 mixture → ``[M, T]`` float32 estimates (same length)."""


SEPARATORS: Registry[Separator] = Registry("separator", default="tdcnpp")
