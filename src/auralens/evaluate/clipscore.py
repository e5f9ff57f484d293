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


def _as_rgb(image: Any) -> Any:
    from PIL import Image

    if isinstance(image, (str, Path)):
        try:
            with Image.open(image) as im:
                return im.convert("RGB")
        except (OSError, ValueError) as exc:
            raise AuralensError(f"{image}: cannot read image ({exc})") from exc
    if isinstance(image, np.ndarray):
        return Image.fromarray(image).convert("RGB")
    return image.convert("RGB")


class ClipScorer(TextTower):
    """Embed texts and images with CLIP and compare them.

    Args:
        model: hub id or local directory of a ``CLIPModel`` + ``CLIPProcessor``.
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
            model, CLIPModel, _load_processor, device)
        self.max_tokens = int(self.model.config.text_config.max_position_embeddings)  # 77
        self._torch = torch

    @property
    def name(self) -> str:
        return f"clip:{self.model_id}"

    def embed_images(self, images: list[Any]) -> np.ndarray:
        """PIL images, arrays ``[H, W, 3]`` uint8 or paths → L2-normalised ``[N, D]``."""
        out = []
        for i in range(0, len(images), self.batch_size):
            chunk = [_as_rgb(im) for im in images[i : i + self.batch_size]]
            inputs = self.processor(images=chunk, return_tensors="pt")
            inputs = {k: v.to(self.device) for k, v in inputs.items()}
            with self._torch.inference_mode():
                emb = pooled(self.model.get_image_features(**inputs))
            out.append(emb.float().cpu().numpy())
        return _normalise(np.concatenate(out, axis=0)) if out else np.zeros((0, 0))

    def cosine(self, texts: list[str], images: list[Any]) -> np.ndarray:
        """Cosine of each (text, image) pair → ``[N]``."""
        if len(texts) != len(images):
            raise ValueError(f"{len(texts)} texts but {len(images)} images")
        if not texts:
            return np.zeros(0)
        return cosine(self.embed_text(texts), self.embed_images(images))

    def score(self, texts: list[str], images: list[Any], w: float = CLIPSCORE_W) -> dict[str, np.ndarray]:
        """``{"cos": [N], "clipscore": [N]}`` with ``clipscore = w * max(cos, 0)``."""
        cos = self.cosine(texts, images)
        return {"cos": cos, "clipscore": clipscore_from_cosine(cos, w)}
