"""Whisper and CLAP extractors with tiny random models."""

from __future__ import annotations

import numpy as np
import pytest

from auralens.encoders.base import EXTRACTORS
from auralens.encoders.hf import LayerError


def _tone(sr: int, seconds: float) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def test_whisper_frames_follow_duration_and_windows(tiny_model) -> None:
    path = tiny_model("whisper")
    ext = EXTRACTORS.build(f"whisper:{path}@layer=2")
    assert ext.frame_rate == pytest.approx(50.0) and ext.dim == 32 and ext.num_layers() == 2
    short = ext.embed(_tone(16000, 1.0))
    assert short.shape == (50, 32)
    # 3 s spans two 2 s windows: 150 frames, the first 100 equal to encoding the first window
    long = _tone(16000, 3.0)
    emb = ext.embed(long)
    assert emb.shape == (150, 32)
    np.testing.assert_allclose(emb[:100], ext.embed(long[:32000]), atol=1e-4)
    feats = EXTRACTORS.build(f"{path}@layer=features").embed(long[:16000])  # hf dispatch
    assert feats.shape == (50, 32) and not np.allclose(feats, short, atol=1e-3)
    batched = ext.embed_batch([long, long[:8000]])
    assert [b.shape[0] for b in batched] == [150, 25]
    np.testing.assert_allclose(batched[1], ext.embed(long[:8000]), atol=1e-4)


def test_clap_embed_pooled_and_stages(tiny_model) -> None:
    path = tiny_model("clap_tiny")
    wave = _tone(48000, 1.0)
    emb = EXTRACTORS.build(f"clap:{path}").embed(wave)
    assert emb.shape == (1, 16)
    assert np.linalg.norm(emb) == pytest.approx(1.0, abs=1e-4)  # normalised joint embedding
    pooled = EXTRACTORS.build(f"clap:{path}@layer=pooled")
    assert pooled.embed(wave).shape == (1, 32) and pooled.dim == 32
    stage1 = EXTRACTORS.build(f"{path}@layer=1")  # hf dispatch by model_type
    grid = stage1.embed(wave)
    assert grid.ndim == 2 and grid.shape[1] == stage1.dim
    two = EXTRACTORS.build(f"clap:{path}").embed_batch([wave, wave[::-1].copy()])
    np.testing.assert_allclose(two[0], emb, atol=1e-5)
    with pytest.raises(LayerError):
        EXTRACTORS.build(f"clap:{path}@layer=9")
