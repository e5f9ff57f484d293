"""The cheap checks of a local model folder parse its ``config.json`` once: the audio-model
and chat-model checks hand what they parsed to :func:`auralens.scene.llm.auto_class_loads`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from auralens.errors import AuralensError
from auralens.scene import llm
from auralens.scene.caption._hf import check_audio_model


def _count_config_reads(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    reads: list[Path] = []
    real = llm.read_json_file

    def counting(path: Path) -> dict[str, Any]:
        if path.name == "config.json":
            reads.append(path)
        return real(path)

    monkeypatch.setattr(llm, "read_json_file", counting)
    return reads


def test_the_audio_language_model_check_reads_config_json_once(tiny_model, monkeypatch):
    qwen = tiny_model("tiny_qwen2audio")
    reads = _count_config_reads(monkeypatch)
    config = check_audio_model(str(qwen), "audio-language model")
    assert config is not None and config["model_type"] == "qwen2_audio"
    assert reads == [qwen / "config.json"]


def test_the_chat_model_check_reads_config_json_once(tiny_model, monkeypatch):
    chat = tiny_model("tiny_chat_lm")
    reads = _count_config_reads(monkeypatch)
    llm.check_chat_model_dir("hf", str(chat))
    assert reads == [chat / "config.json"]
    qwen = tiny_model("tiny_qwen2audio")
    reads.clear()
    with pytest.raises(AuralensError, match="not a causal language model"):
        llm.check_chat_model_dir("hf", str(qwen))
    assert reads == [qwen / "config.json"]  # the message's model kind comes from the same parse


def test_auto_class_loads_judges_a_parsed_config(tiny_model):
    from transformers import AutoModelForCausalLM

    chat, qwen = tiny_model("tiny_chat_lm"), tiny_model("tiny_qwen2audio")
    for folder, loads in ((chat, True), (qwen, False)):
        parsed = llm.read_json_file(folder / "config.json")
        assert llm.auto_class_loads(parsed, [AutoModelForCausalLM]) is loads
