"""Audio LLM behind an OpenAI-compatible server: the clip travels as a valid base64 WAV
``input_audio`` part, and both the captioner and the end-to-end baseline use it."""

from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from launch import chat_server
from scipy.io import wavfile

from auralens.scene.allm import load_audio_llm
from auralens.scene.caption.base import CAPTIONERS

ANSWER = "Reasoning: a dog and rain.\nFinal description: A wet backyard where a dog barks."


@pytest.fixture
def server():
    seen: list[dict] = []

    def answer(body: dict) -> str:
        seen.append(body)
        return ANSWER

    with chat_server(answer) as url:
        yield seen, url


def _audio_part(body: dict) -> np.ndarray:
    user = [m for m in body["messages"] if m["role"] == "user"][-1]
    parts = [p for p in user["content"] if p.get("type") == "input_audio"]
    assert len(parts) == 1 and parts[0]["input_audio"]["format"] == "wav"
    sr, pcm = wavfile.read(io.BytesIO(base64.b64decode(parts[0]["input_audio"]["data"])))
    assert sr == 16000
    return pcm.astype(np.float32) / 32767.0


def test_allm_sends_the_clip_and_parses_cot(server, sine):
    seen, url = server
    allm = load_audio_llm(f"openai-audio:qwen2-audio@base_url={url},retries=0")
    desc = allm.describe(sine, technique="cot")
    assert desc.text == "A wet backyard where a dog barks."
    assert "dog and rain" in desc.reasoning
    received = _audio_part(seen[-1])
    np.testing.assert_allclose(received, sine, atol=1e-4)  # the clip arrives intact (16-bit)
    assert seen[-1]["model"] == "qwen2-audio"


def test_captioner_backend(server, noise):
    seen, url = server
    cap = CAPTIONERS.build(f"openai-audio:served@base_url={url}")
    assert cap.caption(noise) == ANSWER
    assert len(_audio_part(seen[-1])) == len(noise)
    assert cap.name == "openai-audio:served"


def test_imagine_cli_allm_mode_uses_the_server(server, sine, tmp_path):
    """The command line reaches the served audio LLM through --allm."""
    from auralens.audio import write
    from auralens.cli import main

    seen, url = server
    clip = write(tmp_path / "mix.wav", sine, 16000)
    code = main(["imagine", str(clip), "--out", str(tmp_path / "o"), "--mode", "allm",
                 "--technique", "cot", "--allm", f"openai-audio:served@base_url={url},retries=0"])
    assert code == 0
    assert (tmp_path / "o" / "description.txt").read_text().strip() == "A wet backyard where a dog barks."
    assert len(_audio_part(seen[-1])) == len(sine)


@pytest.fixture
def answering():
    """A server that answers with ``state["content"]`` (None for a null content)."""
    state: dict = {"content": None}
    with chat_server(lambda body: state["content"]) as url:
        yield state, url


@pytest.mark.parametrize("content", [None, "", "   "])
def test_an_empty_caption_fails_the_run_instead_of_becoming_a_label(answering, noise, tmp_path,
                                                                    capsys, content):
    from auralens.audio import write
    from auralens.cli import main
    from auralens.scene.caption.base import EmptyCaptionError

    state, url = answering
    state["content"] = content
    cap = CAPTIONERS.build(f"openai-audio:served@base_url={url},retries=0")
    with pytest.raises(EmptyCaptionError, match="openai-audio:served: the model gave an empty "
                                                "caption for a 1.00 s clip"):
        cap.caption(noise)
    clip = write(tmp_path / "mix.wav", noise, 16000)
    code = main(["imagine", str(clip), "--out", str(tmp_path / "o"), "--separator", "nmf",
                 "--captioner", f"openai-audio:served@base_url={url},retries=0"])
    err = capsys.readouterr().err
    assert code != 0 and "the model gave an empty caption" in err
    assert "source of the  sound" not in err
    assert not (tmp_path / "o" / "description.txt").exists()


@pytest.mark.parametrize("content", [None, "Final description:", "Reasoning.\nFinal description: **"])
def test_allm_answer_without_a_description_is_an_error(answering, sine, content):
    from auralens.errors import AuralensError

    state, url = answering
    state["content"] = content
    allm = load_audio_llm(f"openai-audio:served@base_url={url},retries=0")
    with pytest.raises(AuralensError, match="the model gave no description"):
        allm.describe(sine, technique="cot")
