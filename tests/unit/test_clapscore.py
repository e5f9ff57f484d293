"""CLAPScore on a tiny random CLAP: equals a direct cosine of the model's own embeddings."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from auralens.errors import ModelUnavailableError
from auralens.evaluate.clapscore import ClapScorer, cosine


def test_cosine_known_values() -> None:
    a = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 2.0]])
    b = np.array([[2.0, 0.0], [-1.0, -1.0], [3.0, 0.0]])
    np.testing.assert_allclose(cosine(a, b), [1.0, -1.0, 0.0], atol=1e-12)


def test_clapscore_matches_direct_cosine(tiny_model) -> None:
    from transformers import ClapModel, ClapProcessor

    path = tiny_model("clap_tiny")
    scorer = ClapScorer(path)
    assert scorer.sample_rate == 48000
    rng = np.random.default_rng(0)
    sr = 16000
    waves = [0.1 * rng.standard_normal(sr).astype(np.float32),
             np.sin(2 * np.pi * 440 * np.arange(sr) / sr).astype(np.float32),
             0.1 * rng.standard_normal(3 * sr).astype(np.float32)]  # longer than 2 s: cropped
    texts = ["a dog barks", "a pure tone", "rain on a roof at night"]
    scores = scorer.score(waves, texts, sr)
    assert scores.shape == (3,) and np.all(np.abs(scores) <= 1 + 1e-6)

    # direct computation with the raw model on the same 48 kHz, centre-cropped inputs
    model = ClapModel.from_pretrained(path).eval()
    proc = ClapProcessor.from_pretrained(path)
    prepared = [scorer._prepare(w, sr) for w in waves]
    assert prepared[2].shape == (2 * 48000,)
    with torch.inference_mode():
        a = model.get_audio_features(**proc(audio=prepared, sampling_rate=48000,
                                            return_tensors="pt"))
        t = model.get_text_features(**proc(text=texts, return_tensors="pt", padding=True))
    a = getattr(a, "pooler_output", a).numpy()
    t = getattr(t, "pooler_output", t).numpy()
    direct = (a * t).sum(-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(t, axis=-1))
    np.testing.assert_allclose(scores, direct, atol=1e-5)
    # pairs are scored row by row, not all-against-all
    swapped = scorer.score(waves[::-1], texts, sr)
    assert not np.allclose(swapped, scores)


def test_missing_model_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(ModelUnavailableError, match="not available offline"):
        ClapScorer(tmp_path / "no-such-model")
