"""Neural codecs (DAC, EnCodec, Oobleck) with tiny random models, through CODECS.build."""

from __future__ import annotations

import json

import numpy as np
import pytest

from auralens.codecs.base import CODECS
from auralens.errors import AuralensError, ModelUnavailableError


@pytest.fixture
def wave() -> np.ndarray:
    t = np.arange(1003) / 16000
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)  # 1003 samples: not a hop multiple


@pytest.mark.parametrize("name,kind,dim", [("dac", "DacCodec", 32), ("encodec", "EncodecCodec", 16),
                                           ("oobleck", "OobleckCodec", 8)])
def test_codec_shapes_and_roundtrip(tiny_model, wave, name, kind, dim) -> None:
    path = tiny_model(name)
    codec = CODECS.build(f"{name}:{path}")
    assert type(codec).__name__ == kind
    assert codec.sample_rate == 16000 and codec.hop_length == 8 and codec.latent_dim == dim
    assert codec.frame_rate == pytest.approx(2000.0)
    z = codec.encode(wave)
    assert z.shape == (dim, 126) == (dim, codec.num_frames(len(wave)))  # ceil(1003 / 8)
    assert z.dtype == np.float32 and np.all(np.isfinite(z))
    y = codec.decode(z)
    assert y.shape == (126 * 8,) and np.all(np.isfinite(y))
    np.testing.assert_array_equal(codec.encode(wave), z)  # deterministic
    assert codec.roundtrip(wave).shape == wave.shape
    # a bare local dir is dispatched by its config
    assert type(CODECS.build(str(path))).__name__ == kind
    with pytest.raises(AuralensError):
        codec.decode(np.zeros((dim + 1, 4), np.float32))


def test_dac_quantized_latent_is_what_the_decoder_consumes(tiny_model, wave) -> None:
    import torch

    path = tiny_model("dac")
    codec = CODECS.build(f"dac:{path}")
    z = codec.encode(wave)
    with torch.no_grad():
        x = torch.from_numpy(np.pad(wave, (0, 5)))[None, None]  # zero-padded to 126 hops
        ref = codec.model.encode(x).quantized_representation[0].numpy()
        audio = codec.model.decode(quantized_representation=torch.from_numpy(z)[None]).audio_values
    np.testing.assert_allclose(z, ref, atol=1e-5)
    np.testing.assert_allclose(codec.decode(z), audio[0, :1008].numpy(), atol=1e-5)
    pre = CODECS.build(f"dac:{path}@latent=encoder").encode(wave)
    assert pre.shape == z.shape and not np.allclose(pre, z)
    coarse = CODECS.build(f"dac:{path}@n_quantizers=1").encode(wave)
    assert not np.allclose(coarse, z)


def test_oobleck_mean_vs_sample(tiny_model, wave) -> None:
    path = tiny_model("oobleck")
    mean = CODECS.build(f"oobleck:{path}").encode(wave)
    s1 = CODECS.build(f"oobleck:{path}@sample=true,seed=1").encode(wave)
    s1b = CODECS.build(f"oobleck:{path}@sample=true,seed=1").encode(wave)
    np.testing.assert_array_equal(s1, s1b)
    assert not np.allclose(s1, mean)


def test_oobleck_sample_takes_real_bools_only(tiny_model, wave) -> None:
    """``sample`` goes through the shared bool check: a numpy bool (Python API) is a bool,
    as for the other true/false options (it used to be refused); text is refused."""
    path = tiny_model("oobleck")
    codec = CODECS.build(f"oobleck:{path}", sample=np.bool_(True), seed=1)
    assert codec.sample is True and codec.name.endswith("@sample=true,seed=1")
    np.testing.assert_array_equal(codec.encode(wave),
                                  CODECS.build(f"oobleck:{path}@sample=true,seed=1").encode(wave))
    for bad in ("true", 1):
        with pytest.raises(AuralensError, match=r"^oobleck option sample must be true or false"):
            CODECS.build(f"oobleck:{path}", sample=bad)


def test_oobleck_pipeline_dir_with_vae_subfolder(tiny_model, tmp_path, wave) -> None:
    import shutil

    root = tmp_path / "stable-audio"
    shutil.copytree(tiny_model("oobleck"), root / "vae")
    (root / "model_index.json").write_text(json.dumps({"_class_name": "StableAudioPipeline"}))
    codec = CODECS.build(str(root))
    assert codec.latent_dim == 8 and codec.encode(wave).shape == (8, 126)


def test_missing_codec_is_model_unavailable(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError):
        CODECS.build("dac:nobody/no-such-dac-model")
    for preset in ("dac", "dac_16khz", "dac_24khz", "dac_44khz", "dac:dac_16khz"):
        with pytest.raises(ModelUnavailableError, match="descript/dac_"):
            CODECS.build(preset)  # not in the (empty) hub cache of the test machine
    with pytest.raises(ModelUnavailableError):
        CODECS.build(str(tmp_path))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_oobleck_loads_without_the_casting_warning(tiny_model, wave, capfd, dtype) -> None:
    import torch

    path = tiny_model("oobleck")
    capfd.readouterr()
    codec = CODECS.build(f"oobleck:{path}@dtype={dtype},device=cpu")
    err = capfd.readouterr().err
    assert "should be kept in float32" not in err
    # the model still computes in the requested dtype
    assert next(codec.model.parameters()).dtype == getattr(torch, dtype)
    z = codec.encode(wave)
    assert z.dtype == np.float32 and z.shape == (8, 126) and np.all(np.isfinite(z))


# ---------------------------------------------------------------- wrong checkpoint kind
@pytest.mark.parametrize("registry,spec,model,found", [
    ("codec", "dac", "encodec", "encodec"),
    ("codec", "encodec", "dac", "dac"),  # used to fail deep inside with an AttributeError
    ("codec", "oobleck", "dac", "dac"),
    ("extractor", "ast", "hubert", "hubert"),
    ("extractor", "hubert", "dac", "dac"),  # used to say "not available offline"
])
def test_a_checkpoint_of_another_kind_is_refused_in_one_line(tiny_model, registry, spec, model, found) -> None:
    from auralens.encoders.base import EXTRACTORS
    from auralens.errors import CheckpointMismatchError

    path = tiny_model(model)
    reg = CODECS if registry == "codec" else EXTRACTORS
    with pytest.raises(CheckpointMismatchError) as info:
        reg.build(f"{spec}:{path}")
    msg = str(info.value)
    assert msg.startswith(str(path)) and repr(found) in msg and "\n" not in msg


def test_missing_weights_are_reported(tiny_model, tmp_path, caplog) -> None:
    import shutil

    from safetensors.numpy import load_file, save_file

    src = tiny_model("hubert")
    dst = tmp_path / "partial"
    shutil.copytree(src, dst)
    weights = load_file(dst / "model.safetensors")
    dropped = sorted(k for k in weights if k.endswith("final_layer_norm.weight"))[0]
    del weights[dropped]
    save_file(weights, dst / "model.safetensors", metadata={"format": "pt"})
    from auralens.encoders.base import EXTRACTORS

    with caplog.at_level("WARNING"):
        EXTRACTORS.build(f"hubert:{dst}")
    lines = [r.getMessage() for r in caplog.records if "were not in the checkpoint" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith(f"{dst}: 1 weight(s)")
    caplog.clear()
    with caplog.at_level("WARNING"):
        EXTRACTORS.build(f"hubert:{src}")
    assert not [r for r in caplog.records if "were not in the checkpoint" in r.getMessage()]


def test_a_bare_codec_directory_is_a_codec_metric_embedder(tiny_model) -> None:
    from auralens.evaluate.embedders import CodecLatentEmbedder, build_embedder

    for name in ("oobleck", "dac"):
        emb = build_embedder(str(tiny_model(name)))
        assert isinstance(emb, CodecLatentEmbedder), name
    assert not isinstance(build_embedder(str(tiny_model("hubert"))), CodecLatentEmbedder)


def test_a_pipeline_folders_codec_revision_follows_its_vae(tiny_model, tmp_path) -> None:
    import shutil

    from safetensors.numpy import load_file, save_file

    pipe = tmp_path / "pipe"
    shutil.copytree(tiny_model("oobleck"), pipe / "vae")
    (pipe / "model_index.json").write_text('{"_class_name": "StableAudioPipeline"}')
    before = CODECS.build(f"oobleck:{pipe}").revision
    weights = next((pipe / "vae").glob("*.safetensors"))
    tensors = load_file(weights)
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + 1.0
    save_file(tensors, weights)
    assert CODECS.build(f"oobleck:{pipe}").revision != before


def test_oobleck_sample_seed_is_part_of_the_name(tiny_model, wave) -> None:
    """The name keys the latent cache, so two seeds must not share cached latents."""
    path = tiny_model("oobleck")
    one, two = (CODECS.build(f"oobleck:{path}@sample=true,seed={s}") for s in (1, 2))
    assert one.name != two.name and "seed=1" in one.name
    assert not np.allclose(one.encode(wave), two.encode(wave))
    assert "seed" not in CODECS.build(f"oobleck:{path}").name  # the mean has no seed


@pytest.mark.parametrize(("spec", "match"), [
    ("oobleck:{p}@sample=maybe", "sample must be true or false"),
    ("oobleck:{p}@sample=true,seed=1.5", "seed must be a whole number"),
    ("oobleck:{p}@seed=-1", "seed must be a whole number"),
])
def test_oobleck_refuses_bad_options(tiny_model, spec, match) -> None:
    with pytest.raises(AuralensError, match=match) as exc:
        CODECS.build(spec.format(p=tiny_model("oobleck")))
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize(("option", "match"), [
    ("n_quantizers=0", "from 1 to"), ("n_quantizers=-1", "from 1 to"), ("n_quantizers=abc", "from 1 to"),
    ("n_quantizers=99", "from 1 to"), ("latent=encoder,n_quantizers=1", "latent=quantized only"),
])
def test_dac_refuses_impossible_quantizer_counts(tiny_model, option, match) -> None:
    """0 or -1 failed every clip inside torch; 99 was accepted and named as if used."""
    with pytest.raises(AuralensError, match=match) as exc:
        CODECS.build(f"dac:{tiny_model('dac')}@{option}")
    assert "\n" not in str(exc.value)


def test_decoding_an_empty_latent_is_refused(tiny_model) -> None:
    codec = CODECS.build(f"encodec:{tiny_model('encodec')}")
    with pytest.raises(AuralensError, match="frames ≥ 1"):
        codec.decode(np.zeros((codec.latent_dim, 0), np.float32))


def test_oobleck_seed_zero_keeps_the_earlier_name(tiny_model) -> None:
    """Checkpoints trained before the seed was named recorded ``@sample=true``; the default
    seed must still match them."""
    path = tiny_model("oobleck")
    assert CODECS.build(f"oobleck:{path}@sample=true").name == f"oobleck:{path}@sample=true"
    assert CODECS.build(f"oobleck:{path}@sample=true,seed=3").name.endswith("@sample=true,seed=3")
