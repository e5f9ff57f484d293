"""Extractors: tiny random models loaded through EXTRACTORS.build with path specs."""

from __future__ import annotations

import numpy as np
import pytest

from auralens.encoders.base import EXTRACTORS
from auralens.encoders.hf import LayerError
from auralens.errors import ModelUnavailableError


@pytest.fixture
def clip() -> np.ndarray:
    t = np.arange(16000) / 16000
    return (0.3 * np.sin(2 * np.pi * 330 * t) + 0.05 * np.sin(2 * np.pi * 2100 * t)).astype(
        np.float32)


# ---------------------------------------------------------------- AST
def test_ast_patch_layer_drops_special_tokens(tiny_model, clip) -> None:
    path = tiny_model("ast")
    ext = EXTRACTORS.build(f"{path}@layer=patch")
    assert type(ext).__name__ == "ASTExtractor" and ext.layer == "patch"
    assert (ext.freq_patches, ext.time_patches) == (5, 12)
    emb = ext.embed(clip)
    assert emb.shape == (60, 32) and emb.dtype == np.float32  # 5 × 12 patches, no CLS/dist
    # the first hidden state of the model, minus its first two tokens
    import torch

    with torch.no_grad():
        hs = ext.model(ext.features([clip]), output_hidden_states=True).hidden_states
    np.testing.assert_allclose(emb, hs[0][0, 2:].numpy(), atol=1e-5)
    assert hs[0].shape[1] == 62
    block1 = EXTRACTORS.build(f"ast:{path}@layer=1").embed(clip)
    assert block1.shape == emb.shape and not np.allclose(block1, emb, atol=1e-3)
    np.testing.assert_allclose(block1, hs[1][0, 2:].numpy(), atol=1e-5)
    assert ext.num_layers() == 2 and ext.revision


def test_ast_time_layout_is_a_transpose_of_the_grid(tiny_model, clip) -> None:
    path = tiny_model("ast")
    flat = EXTRACTORS.build(f"{path}@layer=2").embed(clip)
    timed = EXTRACTORS.build(f"{path}@layer=2,layout=time,trim=false").embed(clip)
    assert timed.shape == (12, 5 * 32)
    # frequency-major flat index f*T'+t  ↔  time-major row t, columns f*dim:(f+1)*dim
    f, t = 4, 7
    np.testing.assert_allclose(timed[t, f * 32 : (f + 1) * 32], flat[f * 12 + t], atol=1e-6)
    ext = EXTRACTORS.build(f"{path}@layer=last,layout=time")
    assert ext.frame_rate == pytest.approx(10.0) and ext.dim == 160
    assert ext.name.endswith("@layout=time") and ext.describe()["freq_patches"] == 5
    assert "@" not in EXTRACTORS.build(f"{path}@layer=2").name
    # trimmed to the audio: 0.5 s → 49 fbank frames → 5 time patches
    assert ext.embed(clip[:8000]).shape == (5, 160)
    assert ext.embed(clip).shape == (10, 160)


def test_ast_embed_batch_matches_single(tiny_model, clip) -> None:
    ext = EXTRACTORS.build(f"{tiny_model('ast')}@layer=1,batch_size=2")
    waves = [clip, clip[:9000] * 0.5, np.roll(clip, 300)]
    batched = ext.embed_batch(waves)
    for w, b in zip(waves, batched, strict=True):
        np.testing.assert_allclose(b, ext.embed(w), atol=1e-4)


def test_ast_refuses_clips_shorter_than_one_filterbank_window(tiny_model, clip) -> None:
    from auralens.errors import AuralensError

    ext = EXTRACTORS.build(f"{tiny_model('ast')}@layer=1")
    for n in (1, 399):
        with pytest.raises(AuralensError, match=f"AST needs at least 400 samples \\(25 ms\\), got {n}"):
            ext.embed(clip[:n])
    assert ext.embed(clip[:400]).shape[0] >= 1


def test_ast_classifier_checkpoint_and_hf_dispatch(tiny_model, clip) -> None:
    path = tiny_model("ast_classifier")
    ext = EXTRACTORS.build(f"hf:{path}@layer=patch")
    assert type(ext).__name__ == "ASTExtractor"
    assert ext.labels == ["dog", "rain", "siren", "church_bells"]
    probs = ext.classify([clip, clip * 0.1])
    assert probs.shape == (2, 4)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    # the classifier's trunk and a bare trunk with the same seed share the patch embedding code
    assert ext.embed(clip).shape == (60, 32)
    assert EXTRACTORS.build(f"classifier:{path}@layer=1").embed(clip).shape == (60, 32)


def test_layer_errors(tiny_model) -> None:
    path = tiny_model("ast")
    with pytest.raises(LayerError):
        EXTRACTORS.build(f"{path}@layer=3")
    with pytest.raises(LayerError):
        EXTRACTORS.build(f"{path}@layer=bogus")
    assert EXTRACTORS.build(f"{path}@layer=-1").layer == 2


def test_missing_model_offline_is_a_clear_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError):
        EXTRACTORS.build("hubert:nobody/definitely-not-cached-model")
    with pytest.raises(ModelUnavailableError):
        EXTRACTORS.build(f"{tmp_path}")  # a directory without config.json
    with pytest.raises(ModelUnavailableError, match="train-classifier"):
        EXTRACTORS.build(f"classifier:{tmp_path}")


# ---------------------------------------------------------------- HuBERT family
@pytest.mark.parametrize("family", ["hubert", "wav2vec2", "wavlm"])
def test_ssl_features_and_blocks(tiny_model, clip, family) -> None:
    path = tiny_model(family)
    feats = EXTRACTORS.build(f"{family}:{path}@layer=features")
    assert feats.frame_rate == pytest.approx(50.0) and feats.dim == 32
    f = feats.embed(clip)
    assert f.shape == (49, 32)  # 1 s at 16 kHz
    block1 = EXTRACTORS.build(f"{family}:{path}@layer=1").embed(clip)
    assert block1.shape == (49, 32) and not np.allclose(block1, f, atol=1e-3)
    # 'features' is the projection output the encoder starts from
    import torch

    with torch.no_grad():
        x = torch.from_numpy(clip)[None]
        x = (x - x.mean()) / (x.std() + 1e-7) if feats.feature_extractor.do_normalize else x
        proj = feats.model.feature_projection(feats.model.feature_extractor(x).transpose(1, 2))
        proj = proj[0] if isinstance(proj, tuple) else proj
    np.testing.assert_allclose(f, proj[0].numpy(), atol=1e-4)
    assert feats.num_layers() == 2


def test_ssl_generic_hf_dispatch_and_batching(tiny_model, clip) -> None:
    path = tiny_model("wav2vec2")  # layer-norm encoder: batches use an attention mask
    ext = EXTRACTORS.build(f"{path}@layer=2,batch_size=4")
    assert type(ext).__name__ == "SSLExtractor" and ext.family == "wav2vec2"
    assert ext.use_attention_mask
    waves = [clip, clip[:8000]]
    batched = ext.embed_batch(waves)
    assert [b.shape[0] for b in batched] == [49, 24]
    for w, b in zip(waves, batched, strict=True):
        np.testing.assert_allclose(b, ext.embed(w), atol=1e-4)
    hub = EXTRACTORS.build(f"{tiny_model('hubert')}@layer=features")
    out = hub.embed_batch(waves)
    assert [o.shape for o in out] == [(49, 32), (24, 32)]


@pytest.mark.parametrize("layer", ["features", "last"])
def test_group_norm_ssl_batch_equals_one_by_one(tiny_model, clip, layer) -> None:
    # HuBERT base: group-norm feature encoder, no attention mask; its first GroupNorm
    # normalises over time, so zero padding would change the shorter clips' frames.
    ext = EXTRACTORS.build(f"hubert:{tiny_model('hubert')}@layer={layer},batch_size=3")
    assert not ext.use_attention_mask and not ext.pads_exactly
    rng = np.random.default_rng(1)
    short = (0.2 * rng.standard_normal(7000)).astype(np.float32)
    waves = [clip, short, clip[::-1].copy(), short * 0.5, clip[:12000]]
    batched = ext.embed_batch(waves)
    assert [b.shape[0] for b in batched] == [ext.num_frames(len(w)) for w in waves]
    for w, b in zip(waves, batched, strict=True):
        np.testing.assert_allclose(b, ext.embed(w), atol=1e-5)
    # equal-length clips still share a pass, and batch_size does not change the result
    one = EXTRACTORS.build(f"hubert:{tiny_model('hubert')}@layer={layer},batch_size=1")
    for a, b in zip(one.embed_batch(waves), batched, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_dtype_and_device_options(tiny_model, clip) -> None:
    path = tiny_model("hubert")
    ref = EXTRACTORS.build(f"{path}@layer=2,device=cpu").embed(clip)
    half = EXTRACTORS.build(f"{path}@layer=2,device=cpu,dtype=bfloat16")
    assert half.device == "cpu" and str(half.torch_dtype) == "torch.bfloat16"
    out = half.embed(clip)
    assert out.dtype == np.float32 and out.shape == ref.shape
    assert np.abs(out - ref).mean() < 0.1 * np.abs(ref).mean()
    with pytest.raises(Exception, match="unknown dtype"):
        EXTRACTORS.build(f"{path}@dtype=float8")


# ---------------------------------------------------------------- cache identity
def test_model_revision_follows_every_weight_byte_and_preprocessing(tmp_path, monkeypatch) -> None:
    from auralens import cache
    from auralens.encoders import hf

    monkeypatch.setenv("AURALENS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(hf, "_DIGESTS", {})
    d = tmp_path / "model"
    d.mkdir()
    weights = bytearray(np.random.default_rng(0).bytes(400_000))
    (d / "model.safetensors").write_bytes(bytes(weights))
    (d / "config.json").write_text('{"model_type": "hubert"}')
    (d / "preprocessor_config.json").write_text('{"do_normalize": false}')
    base = hf.model_revision(str(d))
    assert len(base) == 16 and hf.model_revision(str(d)) == base
    (d / "README.md").write_text("notes")  # not part of what the model computes
    (d / "run.json").write_text('{"timings_s": {"train": 1.0}}')  # training bookkeeping
    (d / "train_state.pt").write_bytes(b"optimizer state")
    assert hf.model_revision(str(d)) == base
    (d / "preprocessor_config.json").write_text('{"do_normalize": true}')
    changed_fe = hf.model_revision(str(d))
    assert changed_fe != base
    weights[200_000] ^= 1  # one bit in the middle, same size
    (d / "model.safetensors").write_bytes(bytes(weights))
    assert hf.model_revision(str(d)) not in (base, changed_fe)
    # digests are remembered on disk: a new process does not re-read unchanged files
    monkeypatch.setattr(hf, "_DIGESTS", {})
    calls: list[object] = []
    real = cache.hash_file
    monkeypatch.setattr(cache, "hash_file", lambda p, *a: calls.append(p) or real(p, *a))
    again = hf.model_revision(str(d))
    assert calls == [] and (tmp_path / "cache" / "file-digests.json").is_file()
    (d / "model.safetensors").write_bytes(bytes(weights) + b"\0")  # rewritten: hashed again
    assert hf.model_revision(str(d)) != again and len(calls) == 1
