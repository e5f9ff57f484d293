"""The ``ImageGenerator`` protocol: text → image."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from auralens.registry import Registry


class ImageGenerator(ABC):
    """Text-to-image rendering (diffusers pipelines)."""

    name: str = "image"

    @abstractmethod
    def generate(self, prompt: str, seed: int = 0) -> Any:
        """Return a ``PIL.Image`` for ``prompt``."""


IMAGE_GENERATORS: Registry[ImageGenerator] = Registry("image generator", default="none")
