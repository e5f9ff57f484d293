"""CLIPScore on a tiny random CLIP: cosine identity and the 2.5·max(cos, 0) variant."""

from __future__ import annotations

import sys

import numpy as np
import torch
from PIL import Image

from auralens.evaluate.clipscore import ClipScorer, clipscore_from_cosine


def test_clipscore_formula() -> None:
    np.testing.assert_allclose(clipscore_from_cosine([-0.3, 0.0, 0.4]), [0.0, 0.0, 1.0])


def test_clipscore_matches_direct_cosine(tiny_model, tmp_path) -> None:
    from transformers import CLIPModel, CLIPProcessor

    path = tiny_model("clip_tiny")
    scorer = ClipScorer(path)
    rng = np.random.default_rng(1)
    arrays = [(rng.random((48, 40, 3)) * 255).astype(np.uint8) for _ in range(3)]
    images = [Image.fromarray(arrays[0]), arrays[1], tmp_path / "frame.png"]
    Image.fromarray(arrays[2]).save(images[2])
    texts = ["a dog in a garden", "a helicopter over the sea", "a fire at night " * 30]  # >77 tokens
    out = scorer.score(texts, images)
    assert out["cos"].shape == (3,)
    np.testing.assert_allclose(out["clipscore"], 2.5 * np.maximum(out["cos"], 0))

    model = CLIPModel.from_pretrained(path).eval()
    proc = CLIPProcessor.from_pretrained(path)
    pil = [Image.fromarray(a) for a in arrays]
    with torch.inference_mode():
        i = model.get_image_features(**proc(images=pil, return_tensors="pt"))
        t = model.get_text_features(**proc(text=texts, return_tensors="pt", padding=True, max_length=77,
                                           truncation=True))
    i = getattr(i, "pooler_output", i).numpy()
    t = getattr(t, "pooler_output", t).numpy()
    direct = (i * t).sum(-1) / (np.linalg.norm(i, axis=-1) * np.linalg.norm(t, axis=-1))
    np.testing.assert_allclose(out["cos"], direct, atol=1e-5)
    assert "torchvision" not in sys.modules
