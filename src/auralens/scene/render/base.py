"""The ``ImageGenerator`` protocol: text → image.

A backend module may also define ``check_spec(spec, **params)``: cheap checks of a spec (option
names and values, a local folder's files; no weights, no network) that
:func:`auralens.scene.pipeline.check_stage` runs for every configured stage before any work,
and that the backend's ``build`` calls first.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from auralens.errors import AuralensError
from auralens.registry import Registry
from auralens.specs import SpecError


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

def check_spec(spec: Any, **params: Any) -> None:
    """The ``none`` backend takes no options (``none@steps=4`` is a mistake, not a setting)."""
    if params:
        raise SpecError(f"unknown none image option(s) {', '.join(sorted(params))}; the none "
                        "backend takes no options (use diffusers:<id or dir>@… for an image)")


def _no_image(spec: Any, **params: Any) -> NoImage:
    check_spec(spec, **params)
    return NoImage()


IMAGE_GENERATORS.register("none", _no_image)
IMAGE_GENERATORS.register("diffusers", "auralens.scene.render.diffusers_t2i:build",
                          aliases=("sd3.5",))
