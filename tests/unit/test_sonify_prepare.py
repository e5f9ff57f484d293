"""``sonify prepare`` and the cache: each entry's header is read once per clip."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from auralens.cache import ArrayCache


def _dataset(root: Path, n: int = 3) -> Path:
    import soundfile as sf

    root.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        sf.write(root / f"clip{i}.wav", 0.1 * rng.standard_normal(16000).astype(np.float32), 16000)
    return root


def test_prepare_reads_each_cache_header_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from auralens.codecs.base import CODECS
    from auralens.encoders.base import Extractor
    from auralens.io import read_jsonl
    from auralens.sonify.prepare import prepare

    class Frames(Extractor):
        name, layer, sample_rate, frame_rate, dim = "frames", "features", 16000, 50.0, 4

        def embed(self, wave: np.ndarray) -> np.ndarray:
            return np.ones((len(wave) // 320 + 1, 4), np.float32)

    data = _dataset(tmp_path / "data")
    reads: Counter[str] = Counter()
    shapes = ArrayCache.shapes

    def counting(self: ArrayCache, key: str) -> dict[str, list[int]] | None:
        reads[key] += 1
        return shapes(self, key)

    monkeypatch.setattr(ArrayCache, "shapes", counting)

    def run(out: str) -> list[dict]:
        reads.clear()
        res = prepare(data, Frames(), CODECS.build("mel"), None, tmp_path / out, duration=1.0,
                      cache_dir=tmp_path / "cache")
        assert res.n_ok == 3
        return read_jsonl(tmp_path / out / "index.jsonl")

    first = run("first")  # everything computed: the shapes come from the arrays just stored
    assert len(reads) == 6 and set(reads.values()) == {1}
    second = run("second")  # everything cached: one header read says "present" and the shape
    assert len(reads) == 6 and set(reads.values()) == {1}
    emb = ArrayCache(tmp_path / "cache", "embeddings")
    lat = ArrayCache(tmp_path / "cache", "latents")
    for a, b in zip(first, second, strict=True):
        assert a["emb_shape"] == b["emb_shape"] == list(emb.get(a["emb_key"])["embedding"].shape)
        assert a["lat_shape"] == b["lat_shape"] == list(lat.get(a["lat_key"])["latent"].shape)


def test_a_built_extractor_with_another_layer_is_refused(tmp_path: Path) -> None:
    """prepare(data, <extractor built for layer 4>, codec, "patch") used to prepare layer 4."""
    from auralens.encoders.base import EXTRACTORS
    from auralens.sonify.prepare import PrepareError, build_extractor, prepare

    extractor = EXTRACTORS.build("classifier")  # the offline classifier, layer 4 by default
    assert build_extractor(extractor, None) is extractor
    assert build_extractor(extractor, 4) is extractor and build_extractor(extractor, "4") is extractor
    last = extractor.num_layers()
    assert build_extractor(EXTRACTORS.build("classifier", layer=last), -1).layer == last
    data = _dataset(tmp_path / "data")
    with pytest.raises(PrepareError, match=r"layer 'patch' was asked for, but the given .* layer 4"):
        prepare(data, extractor, "mel", "patch", tmp_path / "out", duration=1.0,
                cache_dir=tmp_path / "cache")
    assert not (tmp_path / "out").exists()
