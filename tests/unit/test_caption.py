"""Captioners: classifier, CLAP zero-shot, Qwen2-Audio, Whisper AAC and generic audio-text
models, each built tiny from a config and loaded from disk through the registry."""

from __future__ import annotations

import re

import numpy as np
import pytest

from auralens.errors import ModelUnavailableError
from auralens.scene.caption import qwen2audio
from auralens.scene.caption.base import CAPTIONERS, Captioner, readable_label, sound_of
from auralens.scene.caption.clap_zeroshot import AUDIOSET_LABELS, read_labels


def _noise(sr: int, seconds: float, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(sr * seconds))).astype(np.float32)


def test_label_helpers():
    assert readable_label("church_bells") == "church bells"
    assert sound_of("dog") == "the sound of a dog"
    assert sound_of("engine") == "the sound of an engine"
    assert sound_of("church_bells") == "the sound of church bells"
    assert sound_of("rain") == "the sound of rain"
    assert sound_of("engine hum") == "the sound of engine hum"


def test_audioset_vocabulary_is_complete():
    labels = read_labels(AUDIOSET_LABELS)
    assert len(labels) == 527 and len(set(labels)) == 527
    assert labels[0] == "Speech" and labels[-1] == "Field recording"
    assert "Dog" in labels and "Siren" in labels


def test_registry_knows_all_backends():
    for name in ("classifier", "clap-zeroshot", "qwen2-audio", "whisper-aac", "hf-audio-text"):
        assert name in CAPTIONERS


def test_classifier_captioner(tiny_model):
    path = tiny_model("ast_classifier")
    cap = CAPTIONERS.build(f"classifier:{path}")
    assert isinstance(cap, Captioner) and cap.sample_rate == 16000
    res = cap.describe(_noise(16000, 1.5))
    assert res.label in {"dog", "rain", "siren", "church bells"}
    assert res.text.startswith("the sound of") and res.label in res.text
    assert 0.0 < res.score <= 1.0
    assert [t[1] for t in res.top] == sorted((t[1] for t in res.top), reverse=True)
    assert cap.caption(_noise(16000, 1.5)) == res.text  # deterministic
    # A bare directory is routed to the classifier backend by its config.
    assert type(CAPTIONERS.build(str(path))).__name__ == "ClassifierCaptioner"


@pytest.mark.parametrize("spec, named", [
    ("classifier:{ast_classifier}@top_kk=2", "classifier option(s) top_kk; use confidence"),
    ("clap-zeroshot:{clap_tiny}@label=x.txt", "clap-zeroshot option(s) label; use device, dtype, labels"),
    ("whisper-aac:{tiny_whisper_aac}@beams=2", "whisper-aac option(s) beams; use device, dtype, max_new_tokens"),
])
def test_unknown_captioner_options_are_refused(tiny_model, spec, named):
    from auralens.errors import AuralensError

    name = spec.split("{")[1].split("}")[0]
    with pytest.raises(AuralensError, match=re.escape(f"unknown {named}")):
        CAPTIONERS.build(spec.replace("{" + name + "}", str(tiny_model(name))))


def test_unknown_template_composer_options_are_refused():
    from auralens.errors import AuralensError
    from auralens.scene.compose.base import COMPOSERS

    with pytest.raises(AuralensError, match="unknown template composer option"):
        COMPOSERS.build("template@x=1")
    assert COMPOSERS.build("template").name


ESC10_CLASSES = ["dog", "rooster", "rain", "sea_waves", "crackling_fire", "crying_baby", "sneezing",
                 "clock_tick", "helicopter", "chainsaw"]


def test_classifier_default_is_the_committed_esc10_preset():
    from auralens.scene.caption.classifier import PRESET_DIR

    cap = CAPTIONERS.build("classifier")
    assert cap.labels == ESC10_CLASSES
    assert cap.name == f"classifier:{PRESET_DIR}"


def test_classifier_without_its_preset_is_a_clear_error(tmp_path, monkeypatch):
    from auralens.scene.caption import classifier

    monkeypatch.setattr(classifier, "PRESET_DIR", tmp_path)
    with pytest.raises(ModelUnavailableError) as err:
        CAPTIONERS.build("classifier")
    assert str(err.value) == (
        f"model {str(tmp_path)!r} is not available offline: pass a local directory (e.g. one saved "
        "with save_pretrained) or pre-populate the Hugging Face cache (HF_HOME) on a machine with "
        "access (the committed offline classifier is missing; pass --captioner classifier:<dir> "
        "with any audio-classification model directory)")


def test_clap_zeroshot_with_label_file(tiny_model, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("# my vocabulary\ndog\nrain\nsiren\n\nbird chirps\n")
    cap = CAPTIONERS.build(f"clap-zeroshot:{tiny_model('clap_tiny')}@top_k=2",
                           labels=str(labels))
    assert cap.sample_rate == 48000
    wave = _noise(48000, 1.0)
    probs = cap.scores(wave)
    assert probs.shape == (4,) and np.isclose(probs.sum(), 1.0, atol=1e-5)
    res = cap.describe(wave)
    best = ["dog", "rain", "siren", "bird chirps"][int(np.argmax(probs))]
    assert res.label == best and len(res.top) == 2
    assert res.text.startswith(sound_of(best)) and "possibly also" in res.text


def test_clap_zeroshot_long_clip_is_deterministic(tiny_model):
    cap = CAPTIONERS.build(f"clap-zeroshot:{tiny_model('clap_tiny')}")
    rng = np.random.default_rng(4)
    sr = cap.sample_rate  # 2 s window in the tiny model
    wave = (rng.standard_normal(5 * sr) * np.linspace(0.01, 0.5, 5 * sr)).astype(np.float32)
    first = cap.scores(wave)
    np.testing.assert_array_equal(cap.scores(wave), first)
    # the loudest 2 s (the last, as the level rises), not the centre the CLAP extractor takes
    np.testing.assert_allclose(first, cap.scores(wave[3 * sr:]), rtol=0, atol=1e-9)
    assert not np.allclose(first, cap.scores(wave[int(1.5 * sr) : int(3.5 * sr)]), rtol=0, atol=1e-6)


def test_clap_zeroshot_full_audioset_vocabulary(tiny_model):
    cap = CAPTIONERS.build(f"clap:{tiny_model('clap_tiny')}")
    assert cap.text_embeds.shape[0] == 527
    assert cap.describe(_noise(48000, 0.5)).top[0][0] in cap.labels


def test_qwen2audio_captioner(tiny_model):
    cap = CAPTIONERS.build(f"qwen2-audio:{tiny_model('tiny_qwen2audio')}@max_new_tokens=5")
    assert cap.sample_rate == 16000 and cap.name.startswith("qwen2-audio:")
    out = cap.caption(_noise(16000, 2.0))
    assert isinstance(out, str) and out == cap.caption(_noise(16000, 2.0))


def test_long_input_is_chunked_and_joined(tiny_model, monkeypatch):
    cap = CAPTIONERS.build(f"qwen2-audio:{tiny_model('tiny_qwen2audio')}")
    seen: list[int] = []

    def fake_ask(wave, messages, **gen):
        seen.append(wave.shape[0])
        assert messages[-1]["content"] == qwen2audio.CAPTION_INSTRUCTION
        return f"part{len(seen)}"

    monkeypatch.setattr(cap.lm, "ask", fake_ask)
    out = cap.caption(np.zeros(16000 * 65, np.float32))
    assert seen == [16000 * 30, 16000 * 30, 16000 * 5]
    assert out == "part1 Then: part2 Then: part3"


def test_audio_chat_places_audio_in_last_user_turn(tiny_model, monkeypatch):
    lm = qwen2audio.load_qwen2audio(str(tiny_model("tiny_qwen2audio")), max_new_tokens=3)
    msgs = [{"role": "user", "content": "example question"},
            {"role": "assistant", "content": "example answer"},
            {"role": "user", "content": "describe"}]
    seen: list[list[dict]] = []
    rendered: list[str] = []
    real = lm.processor.apply_chat_template

    def spy(conversation, *args, **kwargs):
        seen.append(conversation)
        rendered.append(real(conversation, *args, **kwargs))
        return rendered[-1]

    monkeypatch.setattr(lm.processor, "apply_chat_template", spy)
    # 35 s → two audio items in the last turn; the processor checks audio tokens == audios.
    out = lm.ask(_noise(16000, 35.0), msgs)
    assert isinstance(out, str)
    [conv] = seen
    assert [turn["role"] for turn in conv] == ["user", "assistant", "user"]
    assert conv[0]["content"] == [{"type": "text", "text": "example question"}]
    assert conv[1]["content"] == [{"type": "text", "text": "example answer"}]
    assert conv[2]["content"] == [{"type": "audio", "audio_url": "clip-0.wav"},
                                  {"type": "audio", "audio_url": "clip-1.wav"},
                                  {"type": "text", "text": "describe"}]
    # the prompt the model reads: both audio slots sit after the few-shot answer
    [text] = rendered
    earlier, last = text.split("example answer")
    assert "<|AUDIO|>" not in earlier and last.count("<|AUDIO|>") == 2


def test_audio_chat_sampling_options_reach_generate(tiny_model):
    import torch

    path = tiny_model("tiny_qwen2audio")
    wave = _noise(16000, 1.0)
    spec = f"qwen2-audio:{path}@max_new_tokens=8,temperature=2.0"
    seeded = CAPTIONERS.build(f"{spec},seed=1")
    before = torch.get_rng_state()
    first = seeded.caption(wave)
    assert torch.equal(torch.get_rng_state(), before)  # the global RNG is left alone
    assert first and seeded.caption(wave) == first  # the spec's seed makes sampling repeat
    others = {CAPTIONERS.build(f"{spec},seed={s}").caption(wave) for s in (2, 3, 4)}
    assert others - {first}  # and it is a real sample: other seeds give other text
    # top_p this small keeps only the most likely token: sampling becomes greedy decoding
    greedy = CAPTIONERS.build(f"qwen2-audio:{path}@max_new_tokens=8").caption(wave)
    assert CAPTIONERS.build(f"{spec},top_p=1e-9,seed=5").caption(wave) == greedy


def test_hf_audio_text_and_allm_pass_generation_options(tiny_model, monkeypatch):
    from auralens.scene.allm import load_audio_llm

    path = tiny_model("tiny_qwen2audio")
    cap = CAPTIONERS.build(f"hf-audio-text:{path}@max_new_tokens=4,temperature=0.7,top_p=0.9,"
                           "repetition_penalty=1.3,seed=7")
    allm = load_audio_llm(f"qwen2-audio:{path}@max_new_tokens=4,temperature=0.7,top_p=0.9,"
                          "repetition_penalty=1.3,seed=7")
    for lm, run in ((cap.lm, lambda: cap.caption(_noise(16000, 1.0))),
                    (allm.lm, lambda: allm.describe(_noise(16000, 1.0)))):
        seen: list[dict] = []
        real = lm.model.generate

        def spy(*args, _real=real, _seen=seen, **kwargs):
            _seen.append(kwargs)
            return _real(*args, **kwargs)

        monkeypatch.setattr(lm.model, "generate", spy)
        first = run()
        assert run() == first
        assert seen[0]["do_sample"] is True and seen[0]["temperature"] == 0.7
        assert seen[0]["top_p"] == 0.9 and seen[0]["repetition_penalty"] == 1.3


def test_hf_audio_text_generic_backend(tiny_model):
    cap = CAPTIONERS.build(f"hf-audio-text:{tiny_model('tiny_qwen2audio')}@max_new_tokens=4")
    assert cap.name.startswith("hf-audio-text:")
    assert isinstance(cap.caption(_noise(16000, 1.0)), str)


def test_whisper_aac_captioner(tiny_model):
    path = tiny_model("tiny_whisper_aac")
    cap = CAPTIONERS.build(f"whisper-aac:{path}@max_new_tokens=5")
    out = cap.caption(_noise(16000, 1.0))
    assert isinstance(out, str) and 0 < len(out.split()) <= 5
    assert type(CAPTIONERS.build(str(path))).__name__ == "WhisperCaptioner"


def test_unavailable_hub_model_is_clear(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError, match="Qwen/Qwen2-Audio-7B-Instruct"):
        CAPTIONERS.build("qwen2-audio")


@pytest.mark.parametrize("n", [1, 80, 800])
def test_qwen2audio_pads_clips_shorter_than_the_model_needs(tiny_model, n):
    # Under ~0.05 s the processor gives one audio token and Qwen2-Audio's forward pass used
    # to fail inside transformers ("'NoneType' object is not subscriptable").
    from auralens.scene.allm import load_audio_llm

    path = tiny_model("tiny_qwen2audio")
    cap = CAPTIONERS.build(f"qwen2-audio:{path}@max_new_tokens=3")
    wave = _noise(16000, n / 16000)
    assert wave.shape == (n,) and isinstance(cap.caption(wave), str)
    allm = load_audio_llm(f"qwen2-audio:{path}@max_new_tokens=3")
    assert isinstance(allm.describe(wave).text, str)


def test_audio_chat_model_failures_are_one_line_errors_naming_the_model(tiny_model, monkeypatch):
    from auralens.errors import AuralensError

    path = tiny_model("tiny_qwen2audio")
    lm = qwen2audio.load_qwen2audio(str(path), max_new_tokens=2)

    def broken(**kwargs):
        raise RuntimeError("CUDA error: device-side assert\nsecond line of a long trace")

    monkeypatch.setattr(lm.model, "generate", broken)
    with pytest.raises(AuralensError) as err:
        lm.ask(np.zeros(24000, np.float32), [{"role": "user", "content": "describe"}])
    assert str(err.value) == (f"{path}: the model failed on a 1.50 s clip "
                              "(RuntimeError: CUDA error: device-side assert)")


def test_whisper_aac_caps_max_new_tokens_to_the_decoder_positions(tiny_model, caplog):
    path = tiny_model("tiny_whisper_aac")  # max_target_positions=64
    with caplog.at_level("WARNING"):
        cap = CAPTIONERS.build(f"whisper-aac:{path}@max_new_tokens=500")
    assert cap.max_new_tokens == 63  # the start token takes one position
    assert "max_new_tokens=500" in caplog.text and "using 63" in caplog.text
    assert isinstance(cap.caption(_noise(16000, 0.5)), str)  # used to be a ValueError
    prefixed = CAPTIONERS.build(f"whisper-aac:{path}@max_new_tokens=64,prefix=the sound")
    assert prefixed.max_new_tokens == 61 and isinstance(prefixed.caption(_noise(16000, 0.5)), str)


def test_text_only_llm_is_refused_as_an_audio_model_before_its_weights_load(tiny_model,
                                                                            monkeypatch):
    from auralens.errors import AuralensError
    from auralens.scene.allm import load_audio_llm
    from auralens.scene.caption.hf_audio_text import load_audio_text

    chat = tiny_model("tiny_chat_lm")
    message = f"{chat}: not an audio-language model (no audio feature extractor)"
    for build in (lambda: CAPTIONERS.build(str(chat)),
                  lambda: CAPTIONERS.build(f"hf-audio-text:{chat}"),
                  lambda: load_audio_llm(str(chat))):
        with pytest.raises(AuralensError, match=re.escape(message)):
            build()

    def no_weights(*args, **kwargs):
        raise AssertionError("weights were loaded")

    monkeypatch.setattr(qwen2audio, "load_model", no_weights)
    with pytest.raises(AuralensError, match=re.escape(message)):
        load_audio_text(str(chat))  # the loader itself, past the spec checks


def test_a_folder_without_config_is_not_a_model(tmp_path):
    from auralens.errors import AuralensError

    (tmp_path / "emptydir").mkdir()
    with pytest.raises(AuralensError, match=re.escape(f"{tmp_path / 'emptydir'}: not a model "
                                                      "folder (no config.json)")):
        CAPTIONERS.build(str(tmp_path / "emptydir"))


def test_long_input_chunks_cover_every_sample() -> None:
    from auralens.scene.caption._hf import chunks

    sr = 100
    wave = np.arange(6050, dtype=np.float32)  # 60.5 s: a 0.5 s tail
    pieces = chunks(wave, sr, seconds=30.0)
    assert [len(p) for p in pieces] == [3000, 3000, 3000]
    assert pieces[-1][-1] == wave[-1] and pieces[-1][0] == wave[-3000]  # the last 30 s, not dropped
    pieces = chunks(np.arange(6200, dtype=np.float32), sr, seconds=30.0)  # a 2 s tail: its own piece
    assert [len(p) for p in pieces] == [3000, 3000, 200]
    short = chunks(wave[:2500], sr)
    assert len(short) == 1 and short[0] is not None and len(short[0]) == 2500


def test_an_empty_answer_is_a_failed_caption_never_an_empty_one(tiny_model, monkeypatch):
    from auralens.scene.caption.base import EmptyCaptionError

    cap = CAPTIONERS.build(f"qwen2-audio:{tiny_model('tiny_qwen2audio')}")
    answers = iter(["", "  ", "rain on a roof"])
    monkeypatch.setattr(cap.lm, "ask", lambda wave, messages, **gen: next(answers))
    with pytest.raises(EmptyCaptionError) as err:
        cap.caption(_noise(16000, 1.0))
    assert str(err.value) == f"{cap.name}: the model gave an empty caption for a 1.00 s clip"
    # an empty chunk among others is dropped; the others still make the caption
    assert cap.caption(_noise(16000, 35.0)) == "rain on a roof"

    whisper = CAPTIONERS.build(f"whisper-aac:{tiny_model('tiny_whisper_aac')}")
    monkeypatch.setattr(whisper, "_one", lambda wave: "")
    with pytest.raises(EmptyCaptionError, match="empty caption for a 0.50 s clip"):
        whisper.caption(_noise(16000, 0.5))


def test_whisper_aac_chunks_at_the_extractors_window(tiny_model, monkeypatch):
    cap = CAPTIONERS.build(f"whisper-aac:{tiny_model('tiny_whisper_aac')}")
    monkeypatch.setattr(cap.extractor, "chunk_length", 10)  # a checkpoint with a 10 s window
    seen: list[int] = []

    def one(wave):
        seen.append(wave.shape[0])
        return f"part{len(seen)}"

    monkeypatch.setattr(cap, "_one", one)
    assert cap.caption(np.zeros(16000 * 25, np.float32)) == "part1 part2 part3"
    assert seen == [16000 * 10, 16000 * 10, 16000 * 5]  # every second is heard


@pytest.mark.parametrize("name, spec", [
    ("ast_classifier", "classifier:{}"), ("clap_tiny", "clap-zeroshot:{}"),
    ("tiny_qwen2audio", "qwen2-audio:{}@max_new_tokens=2"),
    ("tiny_whisper_aac", "whisper-aac:{}@max_new_tokens=2"),
])
def test_captioners_refuse_audio_that_is_not_one_channel_of_samples(tiny_model, name, spec):
    from auralens.errors import AuralensError

    cap = CAPTIONERS.build(spec.format(tiny_model(name)))
    sr = cap.sample_rate
    stereo = np.zeros((sr // 10, 2), np.float32)  # [T, 2]: would be read as T clips
    with pytest.raises(AuralensError) as err:
        cap.describe(stereo)
    assert str(err.value) == (f"{cap.name}: expected mono audio of shape [T], got shape "
                              f"({sr // 10}, 2); mix the channels down first")
    with pytest.raises(AuralensError) as err:  # CLAP used to divide by zero
        cap.describe(np.zeros(0, np.float32))
    assert str(err.value) == f"{cap.name}: empty audio (0 samples)"


@pytest.mark.parametrize("prompt, message", [
    ("a sound", "clap-zeroshot option prompt 'a sound' must contain {label} (else every label "
                "gets the same text)"),
    ("{x} {label}", "clap-zeroshot option prompt '{x} {label}' has unknown field(s) x; only "
                    "{label} is filled in"),
    ("{} {label}", "has unknown field(s) {}"),
    ("sound of {label", "is not a valid template"),
])
def test_clap_prompt_must_name_the_label_and_nothing_else(tiny_model, prompt, message):
    from auralens.scene.pipeline import check_stage
    from auralens.specs import SpecError

    path = tiny_model("clap_tiny")
    with pytest.raises(SpecError) as err:  # before any work
        check_stage("captioner", {"backend": f"clap-zeroshot:{path}", "params": {"prompt": prompt}})
    assert message in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(SpecError, match=re.escape(message)):
        CAPTIONERS.build(f"clap-zeroshot:{path}", prompt=prompt)
    cap = CAPTIONERS.build(f"clap-zeroshot:{path}", prompt="the {label} sound")
    assert cap.describe(_noise(48000, 0.5)).label


def test_imagine_refuses_an_empty_caption_from_any_captioner(tmp_path, noise):
    from auralens.audio import write
    from auralens.scene.caption.base import CaptionResult
    from auralens.scene.pipeline import ImagineError, imagine

    class Silent(Captioner):  # a captioner object given through the Python API
        name = "silent"

        def caption(self, wave):
            return ""

        def describe(self, wave):
            return CaptionResult(" ", label=None)

    clip = write(tmp_path / "mix.wav", noise, 16000)
    with pytest.raises(ImagineError, match="captioning source 0: silent gave an empty caption"):
        imagine(clip, tmp_path / "o", {"separator": "nmf@n_iter=5", "captioner": Silent(),
                                       "report": False})
    assert not (tmp_path / "o" / "description.txt").exists()


def test_loudest_segment_finds_the_event():
    from auralens.audio import loudest_segment

    wave = np.full(16000 * 12, 1e-3, np.float32)
    wave[16000 * 9:16000 * 10] = 0.5  # one loud second late in the clip
    seg = loudest_segment(wave, 16000 * 3, 160)
    assert seg.shape == (48000,) and np.shares_memory(seg, wave)
    assert np.count_nonzero(seg == 0.5) == 16000  # the whole event is inside
    steady = np.ones(50000, np.float32)
    assert np.array_equal(loudest_segment(steady, 1000, 160), steady[:1000])  # ties: opening
    assert loudest_segment(wave[:100], 1000).shape == (100,)  # shorter: as it is
    tail = np.zeros(10007, np.float32)
    tail[-5:] = 1.0
    assert loudest_segment(tail, 1000, 160)[-1] == 1.0  # a start near the end is reachable


def test_classifier_captioner_labels_the_loudest_window(tiny_model):
    from auralens.scene.caption.classifier import fbank_window

    cap = CAPTIONERS.build(f"classifier:{tiny_model('ast_classifier')}")
    window = fbank_window(cap.extractor)
    frames = cap.extractor.max_length
    assert window == 400 + 160 * (frames - 1)
    event = _noise(16000, window / 16000, seed=3) * 20
    quiet = np.zeros(3 * window, np.float32)
    late = quiet.copy()
    late[2 * window:] = event  # the event is past the extractor's opening window
    seen = []
    real = cap.extractor

    def spy(wave, **kw):
        seen.append(np.asarray(wave).copy())
        return real(wave, **kw)

    cap.extractor = spy
    res = cap.describe(late)
    cap.extractor = real
    assert seen[0].shape == (window,) and np.array_equal(seen[0], event)
    assert res.text == cap.describe(event).text
