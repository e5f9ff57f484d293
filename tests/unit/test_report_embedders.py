"""Metric embedders: weight-free frames, names, registry wrappers and run-config lookups."""

from __future__ import annotations

import numpy as np
import pytest

from auralens.evaluate.embedders import EMBEDDERS, MetricEmbedder, build_embedder
from auralens.evaluate.sonify_eval import config_value


def test_logmel_and_mfcc_frames(sine: np.ndarray, sr: int) -> None:
    lm = build_embedder("logmel")
    f = lm.embed(sine)
    assert f.shape == (1 + sr // 160, 64) and f.dtype == np.float32
    assert lm.name == "logmel@sample_rate=16000,n_mels=64,n_fft=400,hop_length=160"
    # 440 Hz energy peaks in a low band, far above the floor of silence.
    assert np.argmax(f.mean(0)) < 20 and f.max() > np.log(1e-5) + 5
    mf = build_embedder("mfcc@n_mfcc=13,n_mels=40")
    assert mf.embed(sine).shape == (1 + sr // 160, 13) and "n_mfcc=13" in mf.name
    assert np.all(np.isfinite(lm.embed(np.zeros(100, dtype=np.float32))))


def test_bad_option_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="bad option for metric embedder"):
        build_embedder("logmel@colour=3")


def test_embed_file_uses_cache(tmp_path, sine: np.ndarray, sr: int) -> None:
    from auralens import audio
    from auralens.cache import ArrayCache

    p = audio.write(tmp_path / "a.wav", sine, sr)
    cache = ArrayCache(tmp_path / "cache")
    emb = build_embedder("logmel")
    a = emb.embed_file(p, cache=cache)
    b = emb.embed_file(p, cache=cache)
    assert cache.hits == 1 and np.array_equal(a, b)


def test_extractor_and_codec_wrappers_use_the_other_registries(sine: np.ndarray) -> None:
    from auralens.codecs.base import CODECS
    from auralens.encoders.base import EXTRACTORS, Extractor

    class Fake(Extractor):
        name = "fakeenc:tiny"
        sample_rate = 16000
        dim = 3
        layer = 2

        def embed(self, wave: np.ndarray) -> np.ndarray:
            return np.ones((7, 3), dtype=np.float32)

    if "fakeenc" not in EXTRACTORS:  # an extractor kind unknown to EMBEDDERS is wrapped
        EXTRACTORS.register("fakeenc", lambda spec, **kw: Fake())
    assert "fakeenc" not in EMBEDDERS
    emb = build_embedder("fakeenc:tiny")
    assert isinstance(emb, MetricEmbedder) and emb.embed(sine).shape == (7, 3)
    assert emb.name == "fakeenc:tiny@layer=2"
    assert "mel" in CODECS
    cod = build_embedder("codec:mel@n_mels=32")
    assert cod.embed(np.zeros(22050, dtype=np.float32)).shape[1] == 32
    assert cod.name.startswith("codec-latent:mel@")


def test_config_value_finds_nested_entries() -> None:
    rec = {"config": {"encoder": {"spec": "hf:MIT/ast@layer=4"}, "codec": "mel", "gate": "mlp"},
           "models": {"extractor": {"name": "x"}}}
    assert config_value(rec, "encoder") == "hf:MIT/ast@layer=4"
    assert config_value(rec, "layer") == 4
    assert config_value({"config": {"extractor": "e", "learning_rate": 0.1}}, "lr") == 0.1
    assert config_value({}, "codec") is None
