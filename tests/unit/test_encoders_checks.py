"""Extractor layers and options: one name per layer, bad options refused, empty waves refused."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from auralens.encoders.base import EXTRACTORS
from auralens.errors import AuralensError


def _tone(sr: int, seconds: float) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def test_whisper_layer_zero_is_the_features_layer(tiny_model) -> None:
    from auralens.sonify.prepare import embedding_key

    path = tiny_model("whisper")  # 2 blocks
    wave = _tone(16000, 1.0)
    feats = EXTRACTORS.build(f"whisper:{path}@layer=features")
    ref = feats.embed(wave)
    for spelling in ("0", "-3"):
        ext = EXTRACTORS.build(f"whisper:{path}@layer={spelling}")
        # recorded as "features": cache keys of the old, wrong layer-0 entries are not reused
        assert ext.layer == "features"
        assert ext.check_layer(spelling) == "features"
        assert embedding_key("c", ext, "float16", None) == embedding_key("c", feats, "float16", None)
        np.testing.assert_array_equal(ext.embed(wave), ref)
    last = EXTRACTORS.build(f"whisper:{path}@layer=2").embed(wave)
    assert np.abs(last - ref).max() > 1e-3


@pytest.mark.parametrize("model,spec,first,zero", [
    ("ast", "ast", "patch", "patch"),
    ("whisper", "whisper", "features", "features"),
    ("hubert", "hubert", "features", 0),  # hidden_states[0] is another layer than the features
])
def test_check_layer_gives_the_layer_the_built_extractor_records(tiny_model, model, spec,
                                                                  first, zero) -> None:
    from auralens.sonify.sweep import check_layers, parse_layers, unique_layers

    enc = f"{spec}:{tiny_model(model)}"
    ext = EXTRACTORS.build(enc)
    for layer in ("0", 0, -3, first, "last", 1):
        assert ext.check_layer(layer) == EXTRACTORS.build(enc, layer=layer).layer, layer
    assert ext.check_layer("0") == zero
    layers = parse_layers(f"0,{first},2")
    plan = unique_layers(layers, check_layers(enc, layers))
    assert [layer for _, layer in plan] == ([first, 2] if zero == first else [0, first, 2])


@pytest.mark.parametrize("model,options,match", [
    ("hubert", "batch_size=0", r"batch_size must be a whole number ≥ 1, got 0"),
    ("hubert", "batch_size=-3", r"batch_size must be a whole number ≥ 1, got -3"),
    ("ast", "batch_size=2.5", r"batch_size must be a whole number ≥ 1, got 2.5"),
    ("whisper", "batch_size=0", r"batch_size must be a whole number ≥ 1, got 0"),
    ("clap_tiny", "batch_size=-1", r"batch_size must be a whole number ≥ 1, got -1"),
    ("ast", "trim=nope", r"trim must be true or false, got 'nope'"),
    ("ast", "trim=2", r"trim must be true or false, got 2"),
    ("clap_tiny", "layer=true", r"CLAP layer must be 'embed', 'pooled' or 0\.\.\d, got True"),
    ("clap_tiny", "layer=1.5", r"CLAP layer must be 'embed', 'pooled' or 0\.\.\d, got 1\.5"),
    ("clap_tiny", "layer=--1", r"CLAP layer must be 'embed', 'pooled' or 0\.\.\d, got '--1'"),
])
def test_bad_spec_options_are_refused_not_coerced(tiny_model, model, options, match) -> None:
    kind = "clap" if model.startswith("clap") else model
    with pytest.raises(AuralensError, match=match):
        EXTRACTORS.build(f"{kind}:{tiny_model(model)}@{options}")


def test_good_spec_options_still_apply(tiny_model) -> None:
    ast = EXTRACTORS.build(f"ast:{tiny_model('ast')}@trim=true,batch_size=3")
    assert ast.trim is True and ast.batch_size == 3
    assert EXTRACTORS.build(f"clap:{tiny_model('clap_tiny')}@layer=2").layer == 2


@pytest.mark.parametrize("model,sr", [("whisper", 16000), ("clap_tiny", 48000)])
def test_empty_waves_are_refused(tiny_model, model, sr) -> None:
    kind = "clap" if model.startswith("clap") else model
    ext = EXTRACTORS.build(f"{kind}:{tiny_model(model)}")
    with pytest.raises(AuralensError, match=r"\.embed: empty audio \(0 samples\)"):
        ext.embed(np.zeros(0, np.float32))
    assert ext.embed(_tone(sr, 0.1)).shape[0] >= 1  # a short clip still embeds


def test_hf_data2vec_audio_loads_without_a_mismatch_warning(tmp_path, caplog) -> None:
    from factories.audio_models import _seed, _ssl_fe, _ssl_kwargs
    from transformers import Data2VecAudioConfig, Data2VecAudioModel

    _seed()
    kwargs = {**_ssl_kwargs(), "num_conv_pos_embeddings": 2, "conv_pos_kernel_size": 5}
    Data2VecAudioModel(Data2VecAudioConfig(**kwargs)).save_pretrained(tmp_path)
    _ssl_fe(tmp_path, layer_norm=True)
    with caplog.at_level(logging.WARNING):
        ext = EXTRACTORS.build(f"hf:{tmp_path}@layer=1")
    assert ext.family == "data2vec-audio" and ext.name == f"data2vec-audio:{tmp_path}"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert ext.embed(_tone(16000, 1.0)).shape == (49, 32)
