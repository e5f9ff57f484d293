"""CLIPScore: cosine similarity of CLIP text and image embeddings.

Two numbers per pair: the raw cosine and the reference-free CLIPScore of Hessel et al.
(2021), ``w * max(cos, 0)`` with ``w = 2.5``. Used to compare a description with the image
generated from it and with a reference frame of the source video.

The slow PIL/numpy image processor is used on purpose: the fast one needs torchvision,
which this project never imports.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from auralens.errors import AuralensError
from auralens.evaluate.clapscore import (
    TextTower,
    _normalise,
    cosine,
    load_model_and_processor,
    pooled,
)
from auralens.evaluate.fad import MetricInputError

log = logging.getLogger(__name__)

DEFAULT_CLIP = "openai/clip-vit-base-patch32"
CLIPSCORE_W = 2.5


def clipscore_from_cosine(cos: np.ndarray | float, w: float = CLIPSCORE_W) -> np.ndarray:
    """``w * max(cos, 0)`` element-wise."""
    return w * np.maximum(np.asarray(cos, dtype=np.float64), 0.0)


def _load_processor(model_id: str) -> Any:
    import transformers
    from transformers import CLIPProcessor

    major = int(transformers.__version__.split(".")[0])
    # transformers 5 names the PIL/numpy processor backend "pil"; 4.x calls it the slow one
    kwargs = {"backend": "pil"} if major >= 5 else {"use_fast": False}
    try:
        return CLIPProcessor.from_pretrained(model_id, **kwargs)
    except TypeError:
        return CLIPProcessor.from_pretrained(model_id)


def _as_rgb(image: Any, what: str = "image") -> Any:
    """A PIL RGB image from a PIL image, an ``[H, W]`` / ``[H, W, 3|4]`` array (uint8 0..255,
    or float in [0, 1]) or a file path; ``what`` names the image in errors.

    Raises:
        MetricInputError: any other value, an empty image, or values out of range.
        AuralensError: an unreadable image file.
    """
    from PIL import Image

    if isinstance(image, (str, Path)):
        try:
            with Image.open(image) as im:
                image = im.convert("RGB")
        except (OSError, ValueError) as exc:
            raise AuralensError(f"{image}: cannot read image ({exc})") from exc
    elif isinstance(image, np.ndarray):
        image = Image.fromarray(_as_uint8(image, what))
    elif not isinstance(image, Image.Image):
        raise MetricInputError(f"{what}: expected a PIL image, an [H, W, 3] array or an image "
                               f"file path, got {type(image).__name__}")
    if image.width == 0 or image.height == 0:  # the processor's resize divides by the size
        raise MetricInputError(f"{what}: empty image ({image.width}×{image.height} pixels)")
    return image.convert("RGB")


def _as_uint8(array: np.ndarray, what: str) -> np.ndarray:
    """An image array as uint8 ``[H, W]`` / ``[H, W, C]``; floats in [0, 1] are scaled."""
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (1, 3, 4)):
        raise MetricInputError(f"{what}: expected an [H, W, 3] (or [H, W]) image array, "
                               f"got shape {array.shape}")
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.size == 0:
        raise MetricInputError(f"{what}: empty image (shape {array.shape})")
    if array.dtype == np.uint8:
        return array
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)):
            raise MetricInputError(f"{what}: image contains NaN or inf values")
        low, high = float(array.min()), float(array.max())
        if low < 0.0 or high > 1.0:
            raise MetricInputError(f"{what}: float image values must lie in [0, 1], got "
                                   f"{low:g}..{high:g} (pass uint8 for 0..255)")
        return np.round(array * 255.0).astype(np.uint8)
    if array.dtype.kind in "iu":
        if array.min() < 0 or array.max() > 255:
            raise MetricInputError(f"{what}: integer image values must lie in 0..255, got "
                                   f"{array.min()}..{array.max()}")
        return array.astype(np.uint8)
    raise MetricInputError(f"{what}: unsupported image array dtype {array.dtype}")


class ClipScorer(TextTower):
    """Embed texts and images with CLIP and compare them.

    Args:
        model: hub id or local directory of a ``CLIPModel`` + ``CLIPProcessor`` (also as
            ``hf:…`` or ``clip:…``).
        device: torch device string.
        batch_size: items per forward pass.
    """

    def __init__(self, model: str | Path = DEFAULT_CLIP, device: str = "cpu",
                 batch_size: int = 8) -> None:
        import torch
        from transformers import CLIPModel

        self.device = device
        self.batch_size = batch_size
        self.model_id, self.processor, self.model = load_model_and_processor(
            model, CLIPModel, _load_processor, device, kind="clip", default=DEFAULT_CLIP)
        self.max_tokens = int(self.model.config.text_config.max_position_embeddings)  # 77
        self._torch = torch

    @property
    def name(self) -> str:
        return f"clip:{self.model_id}"

    def embed_images(self, images: list[Any]) -> np.ndarray:
        """PIL images, arrays ``[H, W, 3]`` (uint8, or float in [0, 1]) or paths →
        L2-normalised ``[N, D]``.

        Raises:
            MetricInputError: an image :func:`_as_rgb` refuses (its index named).
        """
        out = []
        for i in range(0, len(images), self.batch_size):
            chunk = [_as_rgb(im, f"image {i + k}")
                     for k, im in enumerate(images[i : i + self.batch_size])]
            inputs = self.processor(images=chunk, return_tensors="pt")
            inputs = {k: v.to(self.device) for k, v in inputs.items()}
            with self._torch.inference_mode():
                emb = pooled(self.model.get_image_features(**inputs))
            out.append(emb.float().cpu().numpy())
        return _normalise(np.concatenate(out, axis=0)) if out else np.zeros((0, 0))

    def cosine(self, texts: list[str], images: list[Any]) -> np.ndarray:
        """Cosine of each (text, image) pair → ``[N]``."""
        if len(texts) != len(images):
            raise MetricInputError(f"{len(texts)} texts but {len(images)} images")
        if not texts:
            return np.zeros(0)
        return cosine(self.embed_text(texts), self.embed_images(images))

    def score(self, texts: list[str], images: list[Any], w: float = CLIPSCORE_W) -> dict[str, np.ndarray]:
        """``{"cos": [N], "clipscore": [N]}`` with ``clipscore = w * max(cos, 0)``."""
        cos = self.cosine(texts, images)
        return {"cos": cos, "clipscore": clipscore_from_cosine(cos, w)}
