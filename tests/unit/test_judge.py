"""Judge: strict parsing, retry, missing answers, US/ES/OS and accuracy on a known case.

The LLM judge talks to a stub OpenAI-compatible server on 127.0.0.1 (http.server in a thread)
that returns fixed replies chosen from the description text in the prompt.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest
from launch import local_server

from auralens.evaluate.judge import (
    JUDGES,
    KeywordJudge,
    LLMJudge,
    accuracy,
    build_messages,
    judge_description,
    parse_answer,
    perception_rates,
    recognition_per_caption,
)

# description → reply for each metric; "GARBLED" descriptions never answer in format.
REPLIES = {
    "A dog barks.": {"count": "One dog.\nANSWER: 1", "recognition": "ANSWER: Yes"},
    "A dog barks in the rain.": {"count": "ANSWER: 2", "recognition": "ANSWER: No"},
    "Waves, rain and a rooster.": {"count": "ANSWER: 3", "recognition": "**ANSWER: Yes**"},
    "A baby cries.": {"count": "ANSWER: 4", "recognition": "ANSWER: yes"},
}


def _metric_of(prompt: str) -> str:
    if "How many different sound sources" in prompt:
        return "count"
    if "known to be present" in prompt:
        return "recognition"
    return "coherence"


class _Handler(BaseHTTPRequestHandler):
    calls: list[dict] = []
    auth: list[str | None] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Handler.calls.append(body)
        _Handler.auth.append(self.headers.get("Authorization"))
        first_user = next(m["content"] for m in body["messages"] if m["role"] == "user")
        text = first_user.split('"""')[1]
        if text.startswith("GARBLED"):
            reply = "I think it is probably three or so."
        elif text.startswith("LATE"):  # well-formed only after the reminder
            reply = "ANSWER: 7" if len(body["messages"]) > 2 else "seven out of ten"
        else:
            reply = REPLIES.get(text, {}).get(_metric_of(first_user), "Fine.\nANSWER: 8")
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": reply}}]})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(data.encode())

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def stub_url() -> Iterator[str]:
    with local_server(_Handler) as url:
        yield url


@pytest.fixture
def judge(stub_url: str) -> LLMJudge:
    return JUDGES.build(f"openai:stub-judge@base_url={stub_url},timeout=5")


@pytest.mark.parametrize(("reply", "metric", "value"), [
    ("ANSWER: 3", "count", 3),
    ("Reasoning...\n\nanswer: 2\n", "count", 2),
    ("ANSWER: 5", "count", None),          # out of the 1–4 range
    ("ANSWER: 0", "count", None),
    ("ANSWER: 3\nHope this helps", "count", None),  # must be the last line
    ("The answer is 3", "count", None),
    ("ANSWER: Yes", "recognition", True),
    ("ANSWER: no.", "recognition", False),
    ("ANSWER: maybe", "recognition", None),
    ("ANSWER: 10", "visual_detail", 10),
    ("ANSWER: 11", "imagination", None),
    ("ANSWER: seven", "coherence", None),
    ("", "coherence", None),
])
def test_parse_answer_is_strict(reply: str, metric: str, value: object) -> None:
    assert parse_answer(reply, metric) == value


def test_judge_api_key_env_sends_that_key(stub_url: str, monkeypatch) -> None:
    from auralens.errors import AuralensError

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("AURALENS_OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("JUDGE_TEST_KEY", "judge-key-1")
    judge = JUDGES.build(f"openai:stub-judge@base_url={stub_url},api_key_env=JUDGE_TEST_KEY")
    _Handler.auth.clear()
    assert judge.score("count", "A dog barks.") == 1
    assert _Handler.auth == ["Bearer judge-key-1"]
    assert "api_key_env" not in _Handler.calls[-1] and "judge-key-1" not in judge.name
    with pytest.raises(AuralensError, match="UNSET_JUDGE_KEY is not set"):
        JUDGES.build(f"openai:stub-judge@base_url={stub_url},api_key_env=UNSET_JUDGE_KEY")


def test_prompts_carry_text_and_labels() -> None:
    msgs = build_messages("recognition", "A dog barks.", ["dog", "crackling_fire"])
    assert msgs[0]["role"] == "system" and "ANSWER:" in msgs[0]["content"]
    assert "A dog barks." in msgs[1]["content"] and "dog, crackling fire" in msgs[1]["content"]


def test_rates_and_accuracy_on_constructed_case(judge: LLMJudge) -> None:
    texts = ["A dog barks.", "A dog barks in the rain.", "Waves, rain and a rooster.",
             "A baby cries.", "GARBLED text"]
    true = [1, 1, 4, 2, 3]
    labels = [["dog"], ["dog", "rain"], ["sea_waves", "rain", "rooster", "dog"],
              ["crying_baby", "dog"], ["clock_tick"]]
    counts = [judge.score("count", t) for t in texts]
    assert counts == [1, 2, 3, 4, None]
    rates = perception_rates(counts, true)
    # pairs (1,1) ES, (2,1) OS, (3,4) US, (4,2) OS; the garbled one is missing
    assert rates == {"US": 0.25, "ES": 0.25, "OS": 0.5, "n": 4, "missing": 1}
    recog = [judge.score("recognition", t, lab) for t, lab in zip(texts, labels, strict=True)]
    assert recog == [True, False, True, True, None]
    assert accuracy(recog) == {"acc": 0.75, "n": 4, "missing": 1}
    assert judge.missing == {"count": 1, "recognition": 1}


def test_malformed_reply_is_retried_then_missing(judge: LLMJudge) -> None:
    _Handler.calls.clear()
    answer = judge.ask("coherence", "GARBLED scene")
    assert answer.value is None and answer.attempts == 2
    assert len(_Handler.calls) == 2
    second = _Handler.calls[1]["messages"]
    assert second[-2]["role"] == "assistant" and "ANSWER" in second[-1]["content"]
    assert judge.stats()["missing"] == {"coherence": 1}
    # a reply that becomes well-formed after the reminder is kept
    late = judge.ask("coherence", "LATE scene")
    assert late.value == 7 and late.attempts == 2
    assert judge.stats()["retried"] == {"coherence": 2}


def test_judge_description_pipeline_mode(judge: LLMJudge) -> None:
    out = judge_description(judge, "A dog barks.", ["dog"], ("count", "recognition", "coherence"),
                            n_kept=3, captions=["A dog barks.", "A baby cries."])
    assert out["count"] == 3 and out["count_source"] == "kept_sources"
    assert out["recognition"] is True and out["recognition_source"] == "per_caption"
    assert out["coherence"] == 8


def test_recognition_per_caption_with_chat_callable() -> None:
    def chat(messages: list[dict]) -> str:
        user = messages[1]["content"]
        cap, labels = user.split('"""')[1], user.split("present in the recording: ")[1]
        return "ANSWER: Yes" if labels.split(".")[0] in cap else "ANSWER: No"

    judge = LLMJudge(chat=chat, name="fn")
    assert recognition_per_caption(judge, ["a dog", "some rain"], ["dog", "rain"]) is True
    assert recognition_per_caption(judge, ["a dog", "some rain"], ["dog", "rooster"]) is False


def test_keyword_judge_is_a_labelled_heuristic() -> None:
    judge = JUDGES.build("keyword")
    assert isinstance(judge, KeywordJudge) and not judge.is_llm and "not an LLM" in judge.name
    text = "A dog barks near a crackling campfire while rain falls at dusk on the wooden porch."
    assert judge.score("count", text) == 3
    assert judge.score("recognition", text, ["dog", "crackling_fire"]) is True
    assert judge.score("recognition", text, ["dog", "helicopter"]) is False
    assert judge.score("visual_detail", text) == 1 + 3  # near, dusk, wooden
    assert judge.score("count", "Nothing to hear.") is None
    with pytest.raises(Exception, match="cannot score 'coherence'"):
        judge.score("coherence", text)
    out = judge_description(judge, text, ["dog"])
    assert set(out) == {"count", "count_source", "recognition", "recognition_source",
                        "visual_detail"}


def test_mistral_preset_names_the_study_model() -> None:
    from auralens.errors import AuralensError

    # offline: the hub is unreachable, so the preset fails with the model id in the message
    with pytest.raises(AuralensError, match="Mistral-7B-Instruct-v0.3"):
        JUDGES.build("mistral")


def test_hf_judge_with_tiny_chat_model_counts_garbage_as_missing(tiny_model) -> None:
    # a random-weight LM never writes "ANSWER: n": asked twice, stored as missing, never 0
    judge = JUDGES.build(f"hf:{tiny_model('tiny_chat_lm')}@max_new_tokens=6")
    answer = judge.ask("count", "A dog barks while rain falls.")
    assert answer.value is None and answer.attempts == 2
    assert judge.missing["count"] == 1


@pytest.mark.parametrize(("spec", "unknown", "allowed"), [
    ("openai:stub@base_url={url},timeuot=2", "timeuot", "timeout"),
    ("openai:stub@base_url={url},max_new_token=5", "max_new_token", "max_new_tokens"),
    ("hf:{model}@max_new_token=5", "max_new_token", "max_new_tokens"),
])
def test_misspelt_judge_options_are_refused(stub_url: str, tiny_model, spec: str, unknown: str,
                                            allowed: str) -> None:
    from auralens.specs import SpecError

    spec = spec.format(url=stub_url, model=tiny_model("tiny_chat_lm"))
    with pytest.raises(SpecError, match=rf"unknown \w+ judge option\(s\) {unknown}; use .*{allowed}") as err:
        JUDGES.build(spec)
    assert "\n" not in str(err.value)


def test_judge_options_are_kept_out_of_the_chat_model(stub_url: str) -> None:
    # retries and name are the judge's own: they reach LLMJudge, not the endpoint's options
    judge = JUDGES.build(f"openai:stub-judge@base_url={stub_url},retries=0,name=my-judge,timeout=5")
    assert judge.retries == 0 and judge.name == "my-judge"
    # retries=0, from a spec or given to LLMJudge: a malformed reply is asked once, not again
    for no_retry in (judge, LLMJudge(f"openai:stub@base_url={stub_url}", retries=0)):
        _Handler.calls.clear()
        answer = no_retry.ask("count", "GARBLED")
        assert answer.value is None and answer.attempts == 1
        assert len(_Handler.calls) == 1
        assert not {"retries", "name"} & set(_Handler.calls[0])
        assert no_retry.missing == {"count": 1}
    with pytest.raises(Exception, match="retries must be a whole number ≥ 0, got -1"):
        JUDGES.build(f"openai:stub-judge@base_url={stub_url},retries=-1")
