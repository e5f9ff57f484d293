"""The sonify pipeline with real backends: tiny random AST/HuBERT + the mel codec, and the
offline defaults (classifier + mel) on the procedural library when the classifier exists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from factories.sonify import write_library

from auralens.io import read_json, read_jsonl
from auralens.sonify.prepare import load_prepared, prepare
from auralens.sonify.render import load_run, render, render_split
from auralens.sonify.train import TrainConfig, train

MEL = "mel@n_mels=32,n_iter=4"


pytestmark = pytest.mark.usefixtures("torch_single_thread")


@pytest.fixture(scope="module")
def library(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_library(tmp_path_factory.mktemp("lib"), per_class=6, seconds=1.0)


def test_tiny_ast_patch_layer_time_major(tiny_model, library: Path, tmp_path: Path) -> None:
    ast_dir = tiny_model("ast")
    prep = tmp_path / "prep"
    prepare(library, f"ast:{ast_dir}", MEL, "patch", prep, duration=1.0, cache_dir=tmp_path / "c")
    info = read_json(prep / "run.json")["prepared"]
    # 64 mels × 128 frames → 5 frequency × 12 time patches, flattened frequency-major.
    assert info["extractor"]["freq_patches"] == 5 and info["extractor"]["layout"] == "flat"
    assert info["emb_shape"] == [60, 32]  # the full padded grid is cached
    # 1 s = 98 fbank frames → 10 of the 12 time patches hold audio; the rest is padding.
    assert info["extractor"]["valid_time_patches"] == 10
    data = load_prepared(prep)
    assert data.emb["train"].shape[1:] == (32, 50)
    # The gate input is the time-major reordering of the cached tokens, cropped, transposed.
    from auralens.cache import ArrayCache

    rec = data.records["train"][0]
    raw = ArrayCache(info["cache_root"], "embeddings").get(rec["emb_key"])["embedding"]
    grid = raw.reshape(5, 12, 32)  # [F, T, dim], frequency-major as AST flattens it
    assert np.allclose(data.emb["train"][0][:, 0:5], grid[:, 0, :].T)  # time step 0
    assert np.allclose(data.emb["train"][0][:, 45:50], grid[:, 9, :].T)  # last time step with audio
    assert data.lat["train"].shape[1:] == (32, 1 + 22050 // 256)
    run = tmp_path / "run"
    train(prep, run, TrainConfig(gate="attn", lr=1e-2, epochs=2, batch_size=4, tensorboard=False))
    out = render(load_run(run), np.zeros(16000, np.float32), 16000)
    assert out.shape == (22050,) and np.all(np.isfinite(out))


def test_tiny_hubert_features_layer(tiny_model, library: Path, tmp_path: Path) -> None:
    hub = tiny_model("hubert")
    prep = tmp_path / "prep"
    prepare(library, f"hubert:{hub}", MEL, "features", prep, duration=1.0, cache_dir=tmp_path / "c")
    info = read_json(prep / "run.json")["prepared"]
    assert info["emb_shape"] == [49, 32]  # 1 s at 16 kHz, stride 320
    run = tmp_path / "run"
    train(prep, run, TrainConfig(gate="conv", lr=1e-2, epochs=2, batch_size=4, tensorboard=False))
    renders = render_split(run, "test", ["minmax"], limit=1)
    wav = next((renders / "minmax").glob("*.wav"))
    import soundfile as sf

    assert sf.info(str(wav)).frames == 22050 and sf.info(str(wav)).samplerate == 22050


@pytest.mark.slow
def test_offline_defaults_learn_on_procedural_library(tmp_path: Path) -> None:
    from auralens.data.synth import synthesize
    from auralens.encoders.base import EXTRACTORS

    EXTRACTORS.build("classifier")  # committed preset: must load
    lib = synthesize(tmp_path / "lib", clips_per_class=3, duration=2.0, seed=1)
    prep = tmp_path / "prep"
    prepare(lib, "classifier", "mel", None, prep, duration=2.0, cache_dir=tmp_path / "c")
    run = tmp_path / "run"
    train(prep, run, TrainConfig(gate="lin", lr=1e-2, epochs=10, batch_size=8, tensorboard=False))
    hist = read_jsonl(run / "history.jsonl")
    assert min(h["val_loss"] for h in hist) < 0.5 * hist[0]["val_loss"]
    loaded = load_run(run)
    wave = np.random.default_rng(0).standard_normal(3 * 22050).astype(np.float32) * 0.1
    out = render(loaded, wave, 22050)
    assert out.shape == (3 * 22050,) and np.all(np.isfinite(out))


def test_render_refuses_a_model_folder_changed_since_training(tiny_model, library: Path,
                                                              tmp_path: Path) -> None:
    """The header records the extractor's revision; weights changed after training used to
    render silently through a gate fitted to other embeddings."""
    import shutil

    from safetensors.numpy import load_file, save_file

    from auralens.errors import CheckpointMismatchError

    hub = tmp_path / "hubert"
    shutil.copytree(tiny_model("hubert"), hub)
    prep, run = tmp_path / "prep", tmp_path / "run"
    prepare(library, f"hubert:{hub}", MEL, "features", prep, duration=1.0, limit=12,
            cache_dir=tmp_path / "c")
    train(prep, run, TrainConfig(gate="lin", lr=1e-2, epochs=1, batch_size=4, tensorboard=False))
    assert render(load_run(run), np.zeros(16000, np.float32), 16000).shape == (22050,)
    weights = load_file(hub / "model.safetensors")
    name = next(k for k, v in weights.items() if v.dtype == np.float32)
    weights[name] = weights[name] + np.float32(0.5)
    save_file(weights, hub / "model.safetensors")
    with pytest.raises(CheckpointMismatchError, match=r"the extractor .*hubert.* has changed since "
                                                      r"this gate was trained \(revision "):
        load_run(run)
