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


def test_clap_long_clip_is_centre_cropped_like_clapscore(tiny_model) -> None:
    from auralens.encoders.clap import centre_crop
    from auralens.evaluate.clapscore import ClapScorer

    path = tiny_model("clap_tiny")  # unfused, 2 s window, feature extractor says rand_trunc
    ext = EXTRACTORS.build(f"clap:{path}")
    assert ext.max_samples == 2 * 48000
    rng = np.random.default_rng(3)
    # 5 s whose level changes over time, so different crops give different embeddings
    wave = (rng.standard_normal(5 * 48000) * np.linspace(0.01, 0.5, 5 * 48000)).astype(np.float32)
    runs = [ext.embed(wave) for _ in range(3)]
    for r in runs[1:]:
        np.testing.assert_array_equal(r, runs[0])
    middle = wave[int(1.5 * 48000) : int(3.5 * 48000)]
    np.testing.assert_array_equal(centre_crop(wave, ext.max_samples), middle)
    np.testing.assert_allclose(runs[0], ext.embed(middle), atol=1e-6)
    assert not np.allclose(ext.embed(wave[: 2 * 48000]), runs[0], atol=1e-4)
    # the same crop as CLAPScore: the extractor's joint embedding is the scorer's audio one
    scorer = ClapScorer(path)
    np.testing.assert_allclose(scorer.embed_audio([wave], 48000), runs[0], atol=1e-5)
    # clips within the window are left alone
    short = wave[:48000]
    assert centre_crop(short, ext.max_samples) is short


def test_whisper_last_is_the_raw_last_block_output(tiny_model) -> None:
    import torch

    path = tiny_model("whisper")
    last = EXTRACTORS.build(f"whisper:{path}")  # default layer: last (= 2)
    assert last.layer == 2
    wave = _tone(16000, 1.0)
    emb = last.embed(wave)
    # reference: the blocks run by hand on the encoder's own input
    enc = last.encoder
    feats = last.feature_extractor([wave], sampling_rate=16000, return_tensors="pt")
    with torch.inference_mode():
        out = enc(feats["input_features"], output_hidden_states=True)
        h = out.hidden_states[0]
        blocks = []
        for layer in enc.layers:
            h = layer(h, None)
            h = h[0] if isinstance(h, tuple) else h
            blocks.append(h[0, :50].numpy())
    np.testing.assert_allclose(emb, blocks[1], atol=1e-5)
    # not the final layer norm's output (what last_hidden_state holds)
    normed = out.last_hidden_state[0, :50].numpy()
    assert np.abs(emb - normed).max() > 0.1
    np.testing.assert_allclose(EXTRACTORS.build(f"whisper:{path}@layer=1").embed(wave), blocks[0],
                               atol=1e-5)
    np.testing.assert_allclose(EXTRACTORS.build(f"whisper:{path}@layer=-1").embed(wave), emb,
                               atol=1e-6)
