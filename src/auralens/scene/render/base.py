"""The ``ImageGenerator`` protocol: text → image."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from auralens.errors import AuralensError
from auralens.registry import Registry


class ImageSkipped(AuralensError):
    """No image model is configured or available; the image stage is skipped (never faked)."""


class ImageGenerator(ABC):
    """Text-to-image rendering (diffusers pipelines).

    Attributes:
        name: backend + model id.
        available: False for the ``none`` backend (the pipeline skips the stage).
    """

    name: str = "image"
    available: bool = True

    @abstractmethod
    def generate(self, prompt: str, seed: int = 0) -> Any:
        """Return a ``PIL.Image`` for ``prompt``."""


class NoImage(ImageGenerator):
    """The offline default: no text-to-image model, so no image; says how to get one."""

    name = "none"
    available = False
    reason = ("image stage skipped: no text-to-image model configured (use --image "
              "diffusers:sd3.5 or diffusers:<local diffusers dir>)")

    def generate(self, prompt: str, seed: int = 0) -> Any:
        raise ImageSkipped(self.reason)


IMAGE_GENERATORS: Registry[ImageGenerator] = Registry("image generator", default="none")

IMAGE_GENERATORS.register("none", lambda spec, **params: NoImage())
IMAGE_GENERATORS.register("diffusers", "auralens.scene.render.diffusers_t2i:build",
                          aliases=("sd3.5",))
