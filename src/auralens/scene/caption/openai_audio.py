"""An audio LLM behind an OpenAI-compatible endpoint (e.g. vLLM serving Qwen2-Audio).

The clip travels inside the chat request as an ``input_audio`` content part (base64 WAV), the
format OpenAI-compatible servers accept for audio chat models. Transport, retries with backoff,
concurrency limits and key handling come from :class:`~auralens.scene.llm.OpenAIChatModel`, so
the captioner and the end-to-end baseline can share one serving engine for throughput.

Specs: ``openai-audio:<served model>@base_url=http://127.0.0.1:8000/v1,max_concurrency=8``.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

import numpy as np

from auralens.scene.caption.base import mono_wave
from auralens.scene.caption.qwen2audio import AudioChatCaptioner
from auralens.scene.llm import check_openai_spec, check_values, whole_rule
from auralens.specs import ModelSpec

#: Rate clips are sent at (Qwen2-Audio's feature extractor rate).
DEFAULT_RATE = 16000


def wav_base64(wave: np.ndarray, sample_rate: int) -> str:
    """``[T]`` float32 → base64 of a 16-bit PCM WAV file."""
    from scipy.io import wavfile

    pcm = (np.clip(np.asarray(wave, dtype=np.float32), -1.0, 1.0) * 32767.0).astype(np.int16)
    buf = io.BytesIO()
    wavfile.write(buf, sample_rate, pcm)
    return base64.b64encode(buf.getvalue()).decode("ascii")


class OpenAIAudioLM:
    """Same interface as :class:`~auralens.scene.caption.qwen2audio.AudioChatLM` (``ask``),
    answered by a remote OpenAI-compatible server.

    Args:
        model: the served model name.
        sample_rate: rate of the waves given to :meth:`ask`.
        **params: :class:`~auralens.scene.llm.OpenAIChatModel` options (``base_url``,
            ``api_key``, ``timeout``, ``retries``, ``backoff``, ``max_concurrency``) and
            generation defaults.
    """

    def __init__(self, model: str = "", *, sample_rate: int = DEFAULT_RATE, **params: Any) -> None:
        from auralens.scene.llm import OpenAIChatModel

        self.client = OpenAIChatModel(model, **params)
        self.model_id = self.client.model
        self.sample_rate = int(sample_rate)

    def __repr__(self) -> str:
        return f"OpenAIAudioLM({self.client!r})"

    def request(self, wave: np.ndarray, messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Chat turns with the clip attached to the last user turn (earlier turns stay text)."""
        last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
        audio = {"type": "input_audio",
                 "input_audio": {"data": wav_base64(wave, self.sample_rate), "format": "wav"}}
        out: list[dict[str, Any]] = []
        for i, m in enumerate(messages):
            if i == last_user:
                out.append({"role": "user",
                            "content": [audio, {"type": "text", "text": str(m["content"])}]})
            else:
                out.append({"role": m["role"], "content": str(m["content"])})
        return out

    def ask(self, wave: np.ndarray, messages: Sequence[dict[str, Any]], **gen: Any) -> str:
        """Answer ``messages`` about ``wave`` (``[T]`` float32 at :attr:`sample_rate`)."""
        wave = mono_wave(wave, self.client.name)
        return self.client.chat(self.request(wave, messages), **gen)


def check_spec(spec: ModelSpec, **params: Any) -> None:
    """Option names and values, the model name and URL (no request is sent)."""
    check_values("openai-audio", params, {"sample_rate": whole_rule(1)})
    check_openai_spec("openai-audio", spec.id, params, ("instruction", "sample_rate"))


def build(spec: ModelSpec, **params: Any) -> AudioChatCaptioner:
    """Registry factory: ``openai-audio:<model>@base_url=…`` as a captioner."""
    check_spec(spec, **params)
    instruction = params.pop("instruction", None)
    return AudioChatCaptioner(OpenAIAudioLM(spec.id, **params), instruction=instruction,
                              kind="openai-audio")
