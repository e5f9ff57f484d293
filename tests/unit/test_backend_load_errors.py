"""Bad model folders and device names fail in one line, in the up-front stage checks where
those can see the problem, instead of with a library traceback after separation ran."""

from __future__ import annotations

import shutil

import pytest

from auralens.encoders.base import EXTRACTORS
from auralens.errors import AuralensError, ModelUnavailableError
from auralens.scene.pipeline import check_stage

NO_CUDA = "device cuda: CUDA is not available on this machine; use cpu or auto"


def _one_line(err: pytest.ExceptionInfo) -> str:
    msg = str(err.value)
    assert "\n" not in msg
    return msg


def _copy(src, tmp_path, name: str):
    dst = tmp_path / name
    shutil.copytree(src, dst)
    return dst


# ---------------------------------------------------------------- devices


@pytest.mark.parametrize("stage,spec", [
    ("captioner", "qwen2-audio:{qwen}@device=cuda"),
    ("captioner", "clap-zeroshot@device=cuda"),
    ("captioner", "whisper-aac@device=cuda"),
    ("captioner", "classifier:{ast}@device=cuda"),
    ("composer", "hf:{chat}@device=cuda"),
    ("allm", "qwen2-audio:{qwen}@device=cuda"),
    ("image", "diffusers:sd3.5@device=cuda"),
])
def test_a_missing_cuda_device_fails_in_the_stage_check(tiny_model, monkeypatch, stage, spec):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    spec = spec.format(qwen=tiny_model("tiny_qwen2audio"), chat=tiny_model("tiny_chat_lm"),
                       ast=tiny_model("ast_classifier"))
    with pytest.raises(AuralensError) as err:
        check_stage(stage, spec)
    assert _one_line(err).endswith(NO_CUDA)


def test_an_unknown_device_name_fails_in_the_stage_check(tiny_model):
    with pytest.raises(AuralensError) as err:
        check_stage("composer", f"hf:{tiny_model('tiny_chat_lm')}@device=banana")
    assert _one_line(err) == ("hf composer option device: unknown device 'banana'; use auto, "
                              "cpu, cuda, cuda:N or mps")


def test_resolve_device_checks_names_given_in_python(monkeypatch):
    import torch

    from auralens.scene.llm import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("cpu") == "cpu"
    with pytest.raises(AuralensError, match="CUDA is not available"):
        resolve_device("cuda")


# ---------------------------------------------------------------- corrupt weights


def test_truncated_safetensors_is_named_by_the_encoder(tiny_model, tmp_path):
    path = _copy(tiny_model("hubert"), tmp_path, "hubert")
    (path / "model.safetensors").write_bytes((path / "model.safetensors").read_bytes()[:1000])
    with pytest.raises(AuralensError) as err:
        EXTRACTORS.build(f"hubert:{path}")
    assert _one_line(err).startswith(f"{path}: cannot load as HubertModel: corrupt weights file (")


def test_truncated_safetensors_is_named_by_the_chat_and_audio_models(tiny_model, tmp_path):
    from auralens.scene.caption.base import CAPTIONERS
    from auralens.scene.llm import load_chat_model

    chat = _copy(tiny_model("tiny_chat_lm"), tmp_path, "chat")
    qwen = _copy(tiny_model("tiny_qwen2audio"), tmp_path, "qwen")
    for path in (chat, qwen):
        with open(path / "model.safetensors", "r+b") as fh:
            fh.truncate(1000)
    with pytest.raises(AuralensError) as err:
        load_chat_model(str(chat))
    assert _one_line(err).startswith(f"{chat}: cannot load as AutoModelForCausalLM: corrupt "
                                     "weights file (")
    with pytest.raises(AuralensError) as err:
        CAPTIONERS.build(f"qwen2-audio:{qwen}")
    assert "corrupt weights file" in _one_line(err) and str(qwen) in str(err.value)


def test_other_load_errors_are_not_called_corrupt_weights():
    from auralens.encoders.hf import weights_file_problem

    assert weights_file_problem(RuntimeError("shape mismatch")) is None
    assert weights_file_problem(KeyError("x")) is None


# ---------------------------------------------------------------- corrupt JSON


@pytest.mark.parametrize("spec", ["{path}", "hubert:{path}"])
def test_corrupt_config_json_names_the_file(tiny_model, tmp_path, spec):
    path = _copy(tiny_model("hubert"), tmp_path, "hubert")
    (path / "config.json").write_text('{"model_type": ')
    with pytest.raises(AuralensError) as err:
        EXTRACTORS.build(spec.format(path=path))
    msg = _one_line(err)
    assert msg.startswith(f"{path / 'config.json'}: not valid JSON (line ")
    assert "invalid options" not in msg


def test_corrupt_model_index_fails_in_the_image_check(tmp_path):
    (tmp_path / "model_index.json").write_text("{oops")
    with pytest.raises(AuralensError) as err:
        check_stage("image", f"diffusers:{tmp_path}")
    assert _one_line(err).startswith(f"{tmp_path / 'model_index.json'}: not valid JSON (line 1")


# ---------------------------------------------------------------- wrong kind of folder


def test_an_audio_language_model_is_refused_as_composer(tiny_model):
    qwen = tiny_model("tiny_qwen2audio")
    with pytest.raises(AuralensError) as err:
        check_stage("composer", f"hf:{qwen}")
    msg = _one_line(err)
    assert msg.startswith(f"{qwen}: not a causal language model (config.json: qwen2_audio")
    check_stage("composer", f"hf:{tiny_model('tiny_chat_lm')}")  # a chat LLM passes


@pytest.mark.parametrize("stage", ["captioner", "allm"])
def test_an_audio_encoder_is_refused_as_audio_language_model(tiny_model, stage):
    ast = tiny_model("ast")
    with pytest.raises(AuralensError) as err:
        check_stage(stage, str(ast))
    assert _one_line(err).startswith(f"{ast}: not an audio-language model (config.json: "
                                     "audio-spectrogram-transformer")
    check_stage(stage, f"hf-audio-text:{tiny_model('tiny_qwen2audio')}")


# ---------------------------------------------------------------- wording


def test_mismatch_hint_names_a_real_backend(tiny_model):
    from auralens.errors import CheckpointMismatchError

    hubert = tiny_model("hubert")
    with pytest.raises(CheckpointMismatchError) as err:
        EXTRACTORS.build(f"ast:{hubert}")
    assert _one_line(err).endswith(f"use the extractor backend that matches it ('hubert:{hubert}')")
    ast = tiny_model("ast")
    with pytest.raises(CheckpointMismatchError) as err:
        EXTRACTORS.build(f"hubert:{ast}")
    assert f"'ast:{ast}'" in _one_line(err)  # not audio-spectrogram-transformer:…
    qwen = tiny_model("tiny_qwen2audio")
    with pytest.raises(CheckpointMismatchError) as err:
        EXTRACTORS.build(f"hubert:{qwen}")
    assert "backend" not in _one_line(err)  # no backend loads it: no suggestion


def test_local_folder_without_model_files_is_not_called_offline(tiny_model, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelUnavailableError) as err:  # still caught by such callers
        EXTRACTORS.build(str(empty))
    assert _one_line(err) == f"{empty}: not a model folder (no config.json)"
    path = _copy(tiny_model("hubert"), tmp_path, "hubert")
    (path / "model.safetensors").unlink()
    with pytest.raises(AuralensError) as err:
        EXTRACTORS.build(f"hubert:{path}")
    assert _one_line(err) == f"{path}: not a model folder (no weights file)"
