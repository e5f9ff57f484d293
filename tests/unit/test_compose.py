"""Composers: template knowledge base, prompt templates, CoT answer parsing, chat composers
(tiny HF chat LM, OpenAI-compatible stub, and a recording fake)."""

from __future__ import annotations

import json
import re

import pytest

from auralens.errors import AuralensError
from auralens.scene.caption.base import readable_label
from auralens.scene.compose.base import COMPOSERS, TECHNIQUES, Description
from auralens.scene.compose.chat import ChatComposer
from auralens.scene.compose.prompting import (
    TemplateError,
    load_template,
    parse_answer,
    parse_template,
)
from auralens.scene.compose.template import KNOWLEDGE, TemplateComposer, label_from_caption

ESC50 = ("dog rooster pig cow frog cat hen insects sheep crow rain sea_waves crackling_fire "
         "crickets chirping_birds water_drops wind pouring_water toilet_flush thunderstorm "
         "crying_baby sneezing clapping breathing coughing footsteps laughing brushing_teeth "
         "snoring drinking_sipping door_wood_knock mouse_click keyboard_typing door_wood_creaks "
         "can_opening washing_machine vacuum_cleaner clock_alarm clock_tick glass_breaking "
         "helicopter chainsaw siren car_horn engine train church_bells airplane fireworks "
         "hand_saw").split()
PROCEDURAL = ["siren", "bird chirps", "rain", "engine hum", "clock ticks", "bell", "wind",
              "footsteps", "water drops", "voice"]


class FakeChat:
    name = "fake"

    def __init__(self, answer: str) -> None:
        self.answer = answer
        self.calls: list[list[dict]] = []

    def chat(self, messages, **gen):
        self.calls.append(list(messages))
        return self.answer


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize("answer,text,reasoning", [
    ("1. a dog\n2. a farm\nFinal description: A dog on a farm.", "A dog on a farm.",
     "1. a dog\n2. a farm"),
    ("steps...\n**Final Description:** \"A quiet beach.\"", "A quiet beach.", "steps..."),
    ("Final answer: first\nmore thinking\nFinal answer: second", "second",
     "Final answer: first\nmore thinking"),
    ("Thinking about it.\n\nA busy street at night.", "A busy street at night.",
     "Thinking about it."),
    ("", "", ""),
])
def test_parse_cot_answer(answer, text, reasoning):
    assert parse_answer(answer, cot=True) == Description(text, reasoning)


def test_parse_plain_answer_keeps_everything():
    assert parse_answer("A farm.\n\nWith cows.", cot=False).text == "A farm.\n\nWith cows."


# ---------------------------------------------------------------- templates


def test_builtin_templates_exist_for_every_technique():
    for task in ("compose", "allm"):
        for technique in TECHNIQUES:
            tpl = load_template(task, technique)
            assert tpl.messages[-1]["role"] == "user"
    assert "{captions}" in load_template("compose", "cot").messages[-1]["content"]
    few = load_template("compose", "few-shot").messages
    assert [m["role"] for m in few].count("assistant") == 2
    with pytest.raises(TemplateError, match="technique"):
        load_template("compose", "telepathy")


def test_user_template_file_and_placeholders(tmp_path):
    path = tmp_path / "mine.txt"
    path.write_text("### system\nBe brief {not a placeholder}.\n### user\nSounds: {captions} "
                    "({n_sources})\n")
    msgs = load_template("compose", "cot", path).render(captions="1. dog", n_sources="1")
    assert msgs == [{"role": "system", "content": "Be brief {not a placeholder}."},
                    {"role": "user", "content": "Sounds: 1. dog (1)"}]
    assert parse_template("just a user prompt").messages == [
        {"role": "user", "content": "just a user prompt"}]
    with pytest.raises(TemplateError, match="last turn"):
        parse_template("### user\nq\n### assistant\na\n")
    with pytest.raises(TemplateError, match="not found"):
        load_template("compose", path=tmp_path / "missing.txt")


# ---------------------------------------------------------------- template composer


def test_template_composer_refuses_an_unknown_technique():
    """It used to answer zero-shot for any technique name, a typo included."""
    from auralens.errors import AuralensError

    comp = TemplateComposer()
    for technique in ("zero-shot", "cot", "role", "few-shot"):
        assert comp.compose(["a dog barking"], technique).text
    with pytest.raises(AuralensError, match="unknown technique 'chain-of-thought'; use one of"):
        comp.compose(["a dog barking"], "chain-of-thought")


def test_knowledge_base_covers_esc50_and_procedural_classes():
    comp = TemplateComposer()
    vocab = comp.kb.vocabulary
    for label in [*ESC50, *PROCEDURAL]:
        assert readable_label(label) in vocab, label
    data = json.loads(KNOWLEDGE.read_text())
    names = {s["name"] for s in data["settings"]}
    assert {"farm", "city street", "forest", "kitchen", "beach"} <= names


@pytest.mark.parametrize("labels,setting", [
    (["rooster", "cow", "pig"], "farm"),
    (["siren", "car_horn", "footsteps"], "city street"),
    (["sea_waves", "wind"], "beach"),
    (["toilet_flush", "brushing_teeth"], "bathroom"),
    (["chirping_birds", "frog", "insects", "wind"], "forest"),
    # sounds many settings accept are placed by the one they are most typical of (the
    # procedural library's classes all landed on the farm, first in file order)
    (["rain"], "stormy countryside"),
    (["water_drops"], "bathroom"),
    (["wind", "voice"], "village square"),
    (["engine", "rain"], "city street"),
])
def test_template_picks_most_compatible_setting(labels, setting):
    comp = TemplateComposer()
    chosen, fit = comp.choose_setting([readable_label(x) for x in labels])
    assert chosen.name == setting and len(fit) == len(labels)


def test_template_mentions_every_label_and_is_deterministic():
    comp = COMPOSERS.build("template")
    for labels in (ESC50[i:i + 4] for i in range(0, len(ESC50), 4)):
        caps = [f"the sound of {x}" for x in labels]
        d1 = comp.compose(caps, "zero-shot", labels=labels)
        assert d1 == comp.compose(caps, "zero-shot", labels=labels)
        for x in labels:
            assert readable_label(x) in d1.text.lower()
        assert d1.reasoning == ""
    d = comp.compose(["a", "b", "c"], "cot", labels=["siren", "mystery_thing", "siren"])
    assert "mystery thing" in d.text and d.text.count("siren") == 1
    # one thing seen once, heard twice: no repeated sentence and no "its siren sound"
    assert "an emergency vehicle with a siren and flashing blue lights, heard from several " \
           "places at once." in d.text
    assert d.reasoning.startswith("1. Sources: siren, mystery thing, siren")
    with pytest.raises(AuralensError, match="no captions"):
        comp.compose([], "zero-shot")


def test_template_reads_labels_from_captions():
    vocab = TemplateComposer().kb.vocabulary
    assert label_from_caption("the sound of a dog (confidence 0.91)", vocab) == "dog"
    assert label_from_caption("the sound of engine hum (0.40), possibly also wind (0.2)",
                              vocab) == "engine hum"
    assert label_from_caption("Heavy rain falls on a tin roof.", vocab) == "rain"
    d = COMPOSERS.build("template").compose(["the sound of a rooster (confidence 0.7)",
                                             "A cow moos loudly."])
    assert "rooster" in d.text and "cow" in d.text and "farmyard" in d.text


def test_custom_knowledge_file(tmp_path):
    kb = tmp_path / "kb.json"
    kb.write_text(json.dumps({"settings": [
        {"name": "moon", "place": "a silent lunar plain", "mood": "Stars everywhere.",
         "labels": ["beep"]}], "visuals": {"beep": "a rover blinking a beep light"},
        "positions": ["Up front"]}))
    d = COMPOSERS.build(f"template@knowledge={kb}").compose(["x"], labels=["beep"])
    assert d.text == "A silent lunar plain. Up front, a rover blinking a beep light. Stars everywhere."


# ---------------------------------------------------------------- chat composers


def test_chat_composer_builds_prompt_and_separates_reasoning():
    fake = FakeChat("1. dog\n2. farm\nFinal description: A dog runs across a farmyard.")
    comp = ChatComposer(fake)
    d = comp.compose(["the sound of a dog", "the sound of a rooster"], "cot")
    assert d == Description("A dog runs across a farmyard.", "1. dog\n2. farm")
    sent = fake.calls[0][-1]["content"]
    assert "1. the sound of a dog\n2. the sound of a rooster" in sent
    assert "Final description:" in sent
    fake.answer = "Intro line.\n\nA dog runs across a farmyard."
    d = comp.compose(["x"], "zero-shot")  # no marker: the whole answer is the description
    assert d == Description("Intro line.\n\nA dog runs across a farmyard.", "")


def test_chat_composer_uses_user_template(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("### user\nCaptions:\n{captions}\nGo.")
    fake = FakeChat("A scene.")
    ChatComposer(fake, template=path).compose(["a", "b"], "role")
    assert fake.calls[0] == [{"role": "user", "content": "Captions:\n1. a\n2. b\nGo."}]


def test_hf_composer_with_tiny_chat_lm(tiny_model, monkeypatch):
    comp = COMPOSERS.build(f"hf:{tiny_model('tiny_chat_lm')}@max_new_tokens=8")
    captions = ["the sound of a dog", "the sound of rain"]
    calls: list[tuple[list[dict[str, str]], dict, str]] = []
    real = comp.llm.chat

    def spy(messages, **gen):
        answer = real(messages, **gen)
        calls.append((messages, gen, answer))
        return answer

    monkeypatch.setattr(comp.llm, "chat", spy)
    prompts = []
    for technique in TECHNIQUES:
        d = comp.compose(captions, technique)
        messages, gen, answer = calls[-1]
        assert gen == {"max_new_tokens": 8}
        assert messages == comp.messages(captions, technique)
        prompt = "\n".join(m["content"] for m in messages)
        assert "1. the sound of a dog\n2. the sound of rain" in prompt
        prompts.append(prompt)
        assert d == parse_answer(answer, cot=technique == "cot") and d.text.strip()
        assert comp.compose(captions, technique) == d  # greedy decoding repeats
        assert calls[-1][2] == answer
    assert len(calls) == 2 * len(TECHNIQUES)
    assert len(set(prompts)) == len(TECHNIQUES)


def test_openai_composer_against_stub(tmp_path):
    from http.server import BaseHTTPRequestHandler

    from launch import local_server

    seen = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_POST(self):  # noqa: N802
            seen.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            data = json.dumps({"choices": [{"message": {
                "content": "Steps here.\nFinal description: Rain over a farm."}}]}).encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    with local_server(Handler) as url:
        comp = COMPOSERS.build(f"openai:qwen2.5-7b@base_url={url},max_new_tokens=99")
        d = comp.compose(["the sound of rain"], "cot")
        assert d == Description("Rain over a farm.", "Steps here.")
        assert seen[0]["model"] == "qwen2.5-7b" and seen[0]["max_tokens"] == 99


def test_preset_names_resolve_to_hub_ids(monkeypatch):
    from auralens.errors import ModelUnavailableError

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for preset, hub in (("mistral", "mistralai/Mistral-7B-Instruct-v0.3"),
                        ("falcon3", "tiiuae/Falcon3-7B-Instruct")):
        with pytest.raises(ModelUnavailableError, match=hub):
            COMPOSERS.build(preset)


# ---------------------------------------------------------------- empty descriptions


@pytest.mark.parametrize("answer, reasoning", [
    ("Final description:", ""),
    ("1. a dog\n2. a farm\n**Final description:** ", "1. a dog\n2. a farm"),
    ("Thinking.\nFinal description: \"\"", "Thinking."),
])
def test_a_marker_with_nothing_after_it_is_no_description(answer, reasoning):
    for cot in (True, False):
        assert parse_answer(answer, cot=cot) == Description("", reasoning)  # never the marker
    with pytest.raises(AuralensError) as err:
        ChatComposer(FakeChat(answer)).compose(["the sound of a dog"], "cot")
    assert str(err.value).startswith("fake: the model gave no description (its answer starts "
                                     "with ")
    assert "\n" not in str(err.value)


def test_chat_composer_refuses_an_empty_answer_and_empty_captions():
    with pytest.raises(AuralensError, match=r"fake: the model gave no description \(its "
                                            r"answer was empty; if it was cut off"):
        ChatComposer(FakeChat("")).compose(["the sound of a dog"])
    fake = FakeChat("A farm.")
    with pytest.raises(AuralensError, match="caption 2 is empty"):
        ChatComposer(fake).compose(["the sound of a dog", " "])
    assert fake.calls == []  # nothing was asked


def test_template_composer_refuses_a_caption_without_a_sound():
    comp = COMPOSERS.build("template")
    with pytest.raises(AuralensError) as err:
        comp.compose(["the sound of a dog", ""])
    assert str(err.value) == "caption 2 ('') names no sound: nothing to describe for it"
    assert "dog" in comp.compose(["the sound of a dog"]).text


# ---------------------------------------------------------------- checked up front


@pytest.mark.parametrize("data, message", [
    ({"settings": [{"name": "x", "place": "", "labels": ["dog"]}]},
     "knowledge base settings[0].place must be non-empty text"),
    ({"settings": [{"name": "x", "place": "a park", "labels": ["dog"]}],
      "positions": "In the foreground"},
     "knowledge base positions must be a list of non-empty phrases"),
    ({"settings": [{"name": "x", "place": "a park", "labels": "dog"}]},
     "knowledge base settings[0].labels must be a list of non-empty labels"),
    ({"settings": []}, "knowledge base settings must be a non-empty list of settings"),
    ({"settings": [{"name": "x", "place": "a park"}], "visuals": {"dog": ""}},
     "knowledge base visuals must be an object of label → non-empty phrase"),
    ([1, 2], "knowledge base must be a JSON object"),
])
def test_a_bad_knowledge_base_fails_when_checked(tmp_path, data, message):
    from auralens.scene.pipeline import check_stage

    kb = tmp_path / "kb.json"
    kb.write_text(json.dumps(data))
    with pytest.raises(AuralensError) as err:
        check_stage("composer", f"template@knowledge={kb}")  # before any work
    assert str(err.value) == f"{kb}: {message}"
    with pytest.raises(AuralensError, match=re.escape(message)):
        TemplateComposer(kb)


def test_llm_composer_template_is_read_before_any_work(tiny_model, tmp_path):
    from auralens.scene.pipeline import ImagineConfig, Stages, check_stage

    chat = tiny_model("tiny_chat_lm")
    no_user = tmp_path / "no_user.txt"
    no_user.write_text("### system\nYou are helpful.\n")
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00bad")
    missing = tmp_path / "nope.txt"
    for spec, message in ((f"hf:{chat}@template={missing}", f"{missing}: template file not found"),
                          (f"hf:{chat}@template={no_user}", f"{no_user}: no user turn"),
                          (f"hf:{chat}@template={binary}", f"{binary}: template file cannot be "
                                                           "read as UTF-8 text"),
                          (f"openai:m@base_url=http://127.0.0.1:9/v1,template={no_user}",
                           f"{no_user}: no user turn")):
        with pytest.raises(AuralensError) as err:
            check_stage("composer", spec)
        assert str(err.value).startswith(message)
        with pytest.raises(AuralensError, match=re.escape(message)):
            COMPOSERS.build(spec)  # before the model loads
    # --template reaches the LLM composer's check, and the audio LLM's
    with pytest.raises(AuralensError, match=re.escape(f"{no_user}: no user turn")):
        Stages(ImagineConfig(separator="nmf", composer=f"hf:{chat}", template=str(no_user))).check()
    allm = Stages(ImagineConfig(mode="allm", allm=str(tiny_model("tiny_qwen2audio")),
                                template=str(no_user)))
    with pytest.raises(AuralensError) as err:
        allm.check()
    assert str(err.value) == f"{no_user}: no user turn (--template)"
