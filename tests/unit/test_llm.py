"""Chat LLM loading: HF chat models through their template, the OpenAI-compatible client
against a local stub server, load options and clear offline errors."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler

import pytest
from launch import local_server

from auralens.errors import AuralensError, ModelUnavailableError
from auralens.scene import llm
from auralens.scene.llm import (
    ChatModel,
    HFChatModel,
    LLMRequestError,
    OpenAIChatModel,
    hf_load_kwargs,
    load_chat_model,
)


class StubState:
    def __init__(self) -> None:
        # status codes (or (status, body bytes, headers) replies) sent before answering 200
        self.script: list = []
        self.requests: list[dict] = []
        self.times: list[float] = []
        self.active = 0
        self.max_active = 0
        self.delay = 0.0
        self.lock = threading.Lock()


def _serve(state: StubState):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output quiet
            pass

        def do_POST(self):  # noqa: N802 - http.server API
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with state.lock:
                state.requests.append({"path": self.path, "body": body,
                                       "auth": self.headers.get("Authorization")})
                state.times.append(time.monotonic())
                state.active += 1
                state.max_active = max(state.max_active, state.active)
                status = state.script.pop(0) if state.script else 200
            time.sleep(state.delay)
            with state.lock:
                state.active -= 1
            if isinstance(status, tuple):
                status, payload, headers = status
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)
                return
            if status != 200:
                self.send_response(status)
                self.end_headers()
                return
            last = body["messages"][-1]["content"]
            answer = {"choices": [{"message": {"role": "assistant",
                                               "content": f"echo: {last[:20]}"}}]}
            data = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler


@pytest.fixture
def stub():
    state = StubState()
    with local_server(_serve(state)) as url:
        yield state, url


def test_openai_client_answers_and_sends_key_only_in_header(stub):
    state, url = stub
    model = load_chat_model(f"openai:tiny@base_url={url},timeout=5", api_key="sekret-123")
    assert isinstance(model, ChatModel)
    out = model.chat([{"role": "user", "content": "hello there"}], max_new_tokens=7)
    assert out == "echo: hello there"
    req = state.requests[0]
    assert req["path"] == "/v1/chat/completions"
    assert req["body"]["model"] == "tiny" and req["body"]["max_tokens"] == 7
    assert req["body"]["temperature"] == 0.0
    assert req["auth"] == "Bearer sekret-123"
    assert "sekret" not in repr(model) and "sekret" not in model.name


def test_openai_client_retries_5xx_then_succeeds(stub):
    state, url = stub
    state.script = [500, 503]
    model = OpenAIChatModel("m", base_url=url, retries=2, backoff=0.01, timeout=5)
    assert model.chat([{"role": "user", "content": "x"}]) == "echo: x"
    assert len(state.requests) == 3


def test_openai_client_gives_up_after_retries_and_does_not_retry_4xx(stub):
    state, url = stub
    state.script = [500, 500, 500]
    model = OpenAIChatModel("m", base_url=url, retries=1, backoff=0.01, timeout=5)
    with pytest.raises(LLMRequestError, match="2 attempts"):
        model.chat([{"role": "user", "content": "x"}])
    assert len(state.requests) == 2
    state.script = [400]
    with pytest.raises(LLMRequestError, match="HTTP 400"):
        model.chat([{"role": "user", "content": "x"}])
    assert len(state.requests) == 3  # a 400 is not retried


def _error_body(message: str) -> bytes:
    return json.dumps({"error": {"message": message, "type": "invalid_request_error"}}).encode()


def test_openai_client_reports_the_servers_error_text(stub):
    state, url = stub
    key = "sk-secret-777"
    model = OpenAIChatModel("tiny", base_url=url, api_key=key, retries=2, backoff=0.01, timeout=5)
    msgs = [{"role": "user", "content": "x"}]
    state.script = [(404, _error_body("The model `tiny` does not exist"), {})]
    with pytest.raises(LLMRequestError, match=r"HTTP 404: The model `tiny` does not exist\)"):
        model.chat(msgs)
    # not JSON: the first non-empty line of the body; the key is masked, long text shortened
    state.script = [(401, f"\n  bad key {key} given\nsecond line".encode(), {})]
    with pytest.raises(LLMRequestError) as err:
        model.chat(msgs)
    assert "HTTP 401: bad key *** given)" in str(err.value) and key not in str(err.value)
    assert "second line" not in str(err.value)
    state.script = [(400, _error_body("max_tokens is too large " + "x" * 2000), {})]
    with pytest.raises(LLMRequestError, match="max_tokens is too large") as err:
        model.chat(msgs)
    assert len(str(err.value)) < llm.ERROR_TEXT_LIMIT + len(url) + 60
    # a 200 reply carrying an error object instead of choices
    state.script = [(200, _error_body("backend overloaded"), {"Content-Type": "application/json"})]
    with pytest.raises(LLMRequestError, match=r"reported an error \(backend overloaded\)"):
        model.chat(msgs)
    # retried 5xx: the last server text ends up in the final message
    state.script = [(500, _error_body("out of memory"), {})] * 3
    with pytest.raises(LLMRequestError, match=r"3 attempts \(HTTP 500: out of memory\)"):
        model.chat(msgs)
    assert len(state.requests) == 4 + 3  # rejections and error bodies are not retried


def _reply(payload) -> tuple[int, bytes, dict]:
    data = payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
    return 200, data, {"Content-Type": "application/json"}


@pytest.mark.parametrize("content, text", [
    ([{"type": "text", "text": "A rainy "}, {"type": "text", "text": "street at night."}],
     "A rainy street at night."),
    ([{"type": "text", "text": "A farm."}, {"type": "image_url", "image_url": {"url": "x"}}],
     "A farm."),
    ([], ""),
    (None, ""),
])
def test_openai_reply_content_parts_are_joined(stub, content, text):
    state, url = stub
    model = OpenAIChatModel("m", base_url=url, retries=0, timeout=5)
    state.script = [_reply({"choices": [{"message": {"role": "assistant", "content": content}}]})]
    assert model.chat([{"role": "user", "content": "x"}]) == text  # never a Python repr


@pytest.mark.parametrize("payload, message", [
    ({"choices": [{"message": {"content": [{"type": "image_url", "image_url": {}}]}}]},
     "the server's reply content has no text parts (parts of type image_url)"),
    ({"choices": [{"message": {"content": {"text": "x"}}}]},
     "the server's reply content is a dict, not text"),
    ({"id": "x", "object": "chat.completion"}, "the server's reply has no 'choices' (id, object)"),
    ({"choices": []}, "the server's reply has no message in 'choices'"),
    ("<html><body>proxy login</body></html>",
     "the server did not return JSON (its reply starts with '<html><body>proxy login"),
])
def test_openai_reply_of_another_shape_is_a_clear_error(stub, payload, message):
    state, url = stub
    model = OpenAIChatModel("m", base_url=url, retries=2, backoff=0.01, timeout=5)
    state.script = [_reply(payload)]
    with pytest.raises(LLMRequestError) as err:
        model.chat([{"role": "user", "content": "x"}])
    assert str(err.value).startswith(f"{url}: {message}")
    assert "\n" not in str(err.value) and len(state.requests) == 1  # not retried


def test_openai_client_honours_retry_after(stub, monkeypatch):
    state, url = stub
    waits: list[float] = []
    real_sleep, me = time.sleep, threading.current_thread()

    def sleep(seconds: float) -> None:  # record the client's waits; the stub server sleeps too
        if threading.current_thread() is me:
            waits.append(seconds)
        else:
            real_sleep(seconds)

    monkeypatch.setattr(llm.time, "sleep", sleep)
    model = OpenAIChatModel("m", base_url=url, retries=3, backoff=0.01, timeout=5,
                            max_retry_after=5)
    state.script = [(429, b"slow down", {"Retry-After": "2"}),
                    (503, b"busy", {"Retry-After": "3600"}),  # capped
                    (500, b"oops", {"Retry-After": "9"})]  # only 429/503 carry a wait
    assert model.chat([{"role": "user", "content": "x"}]) == "echo: x"
    assert waits == [2.0, 5.0, 0.04]
    waits.clear()
    state.script = [(429, b"", {"Retry-After": "soon"})]  # unreadable: the backoff
    assert model.chat([{"role": "user", "content": "y"}]) == "echo: y"
    assert waits == [0.01]


def test_openai_client_reads_the_key_from_api_key_env(stub, monkeypatch):
    state, url = stub
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("AURALENS_OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("MY_JUDGE_KEY", "k-from-env")
    model = load_chat_model(f"openai:tiny@base_url={url},api_key_env=MY_JUDGE_KEY")
    assert "api_key_env" not in model.gen_defaults
    assert model.chat([{"role": "user", "content": "hi"}]) == "echo: hi"
    assert state.requests[-1]["auth"] == "Bearer k-from-env"
    assert "api_key_env" not in state.requests[-1]["body"]
    with pytest.raises(AuralensError, match="NO_SUCH_KEY_VAR is not set"):
        load_chat_model(f"openai:tiny@base_url={url},api_key_env=NO_SUCH_KEY_VAR")


def test_openai_client_unreachable_server_is_a_clear_error():
    model = OpenAIChatModel("m", base_url="http://127.0.0.1:9/v1", retries=1, backoff=0.01,
                            timeout=1)
    with pytest.raises(LLMRequestError, match="no answer after 2 attempts"):
        model.chat([{"role": "user", "content": "x"}])


def test_openai_concurrency_is_capped(stub):
    state, url = stub
    state.delay = 0.15
    model = OpenAIChatModel("m", base_url=url, max_concurrency=2, timeout=5)
    convs = [[{"role": "user", "content": f"q{i}"}] for i in range(6)]
    answers = model.chat_many(convs)
    assert answers == [f"echo: q{i}" for i in range(6)]
    assert state.max_active == 2


def test_openai_settings_from_environment(stub, monkeypatch):
    state, url = stub
    monkeypatch.setenv("AURALENS_OPENAI_BASE_URL", url)
    monkeypatch.setenv("AURALENS_OPENAI_MODEL", "env-model")
    monkeypatch.setenv("OPENAI_API_KEY", "k2")
    model = load_chat_model("openai:")
    assert model.chat([{"role": "user", "content": "hi"}]) == "echo: hi"
    assert state.requests[0]["body"]["model"] == "env-model"
    assert state.requests[0]["auth"] == "Bearer k2"


def test_hf_chat_model_from_tiny_dir_is_deterministic(tiny_model):
    path = tiny_model("tiny_chat_lm")
    model = load_chat_model(f"hf:{path}@max_new_tokens=6")
    assert isinstance(model, HFChatModel) and isinstance(model, ChatModel)
    msgs = [{"role": "system", "content": "you are helpful"},
            {"role": "user", "content": "describe the scene"}]
    a = model.chat(msgs)
    b = model.chat(msgs)
    assert isinstance(a, str) and a == b  # greedy decoding
    # A bare local path goes to the same backend.
    assert isinstance(load_chat_model(str(path)), HFChatModel)



def test_hf_chat_model_keeps_within_its_context(tiny_model, caplog):
    """A prompt that fills the context is refused in one line; one that leaves too little room
    generates fewer new tokens, with a warning (the model used to run past its positions)."""
    import logging

    from auralens.errors import AuralensError

    model = load_chat_model(f"hf:{tiny_model('tiny_chat_lm')}@max_new_tokens=6")
    msgs = [{"role": "user", "content": "describe the scene"}]
    prompt = int(model._encode(msgs)["input_ids"].shape[1])
    model.model.config.max_position_embeddings = prompt + 3
    with caplog.at_level(logging.WARNING, logger="auralens.scene.llm"):
        model.chat(msgs)
    assert f"the prompt is {prompt} tokens of a {prompt + 3}-token context; generating at most 3" in caplog.text
    model.model.config.max_position_embeddings = prompt
    with pytest.raises(AuralensError, match=rf"the prompt is {prompt} tokens, the model's whole context is {prompt}"):
        model.chat(msgs)


def test_missing_model_names_model_and_remedy(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError) as err:
        load_chat_model("hf:qwen2.5")
    msg = str(err.value)
    assert "Qwen/Qwen2.5-7B-Instruct" in msg and "local directory" in msg
    with pytest.raises(ModelUnavailableError, match="no-such-dir"):
        load_chat_model("/tmp/no-such-dir/model")


def test_missing_local_dir_is_named_for_every_scene_stage(tmp_path, monkeypatch):
    from auralens.errors import MissingModelDirError
    from auralens.evaluate.judge import build_judge
    from auralens.scene.caption.base import CAPTIONERS
    from auralens.scene.compose.base import COMPOSERS
    from auralens.scene.render.base import IMAGE_GENERATORS

    missing = tmp_path / "no-such-model"
    monkeypatch.chdir(tmp_path)
    builders = [(CAPTIONERS.build, f"qwen2-audio:{missing}"),
                (CAPTIONERS.build, f"clap-zeroshot:{missing}"),
                (CAPTIONERS.build, "hf-audio-text:./no-such-model"),
                (COMPOSERS.build, f"hf:{missing}"),
                (IMAGE_GENERATORS.build, "diffusers:./no-such-model"),
                (build_judge, f"hf:{missing}"),
                (load_chat_model, str(missing))]
    for build, spec in builders:
        with pytest.raises(MissingModelDirError) as err:
            build(spec)
        path = str(missing) if str(missing) in spec else "./no-such-model"
        assert str(err.value) == f"{path}: directory does not exist", spec
        assert isinstance(err.value, ModelUnavailableError)  # callers that catch it still do


def test_unknown_spec_is_rejected():
    with pytest.raises(AuralensError, match="unknown chat model spec"):
        load_chat_model("banana")


def test_load_kwargs_cpu_quantize_falls_back_and_offload(caplog):
    kw, device = hf_load_kwargs({"dtype": "auto", "device": "cpu", "quantize": "4bit"})
    import torch

    assert device == "cpu" and kw["dtype"] == torch.float32
    assert "quantization_config" not in kw  # no CUDA/bitsandbytes here → full precision
    assert "trust_remote_code" not in kw  # never on unless asked
    kw, device = hf_load_kwargs({"offload": True, "trust_remote_code": True, "dtype": "bf16"})
    assert kw["device_map"] == "auto" and device == "" and kw["trust_remote_code"] is True
    assert kw["dtype"] == torch.bfloat16
    with pytest.raises(AuralensError):
        hf_load_kwargs({"quantize": "3bit"})
    with pytest.raises(AuralensError):
        llm.resolve_dtype("float7")


def test_merge_system_folds_into_first_user_turn():
    out = llm._merge_system([{"role": "system", "content": "S"},
                             {"role": "user", "content": "U"},
                             {"role": "assistant", "content": "A"}])
    assert out == [{"role": "user", "content": "S\n\nU"}, {"role": "assistant", "content": "A"}]


def test_template_without_system_role_gets_system_folded_in(tiny_model, tmp_path):
    import shutil

    src = tiny_model("tiny_chat_lm")
    dst = tmp_path / "no-system"
    shutil.copytree(src, dst)
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(dst)
    tok.chat_template = ("{% for m in messages %}{% if m['role'] == 'system' %}"
                         "{{ raise_exception('system role not supported') }}{% endif %}"
                         "<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
                         "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n"
                         "{% endif %}")
    tok.save_pretrained(dst)
    model = load_chat_model(str(dst), max_new_tokens=3)
    enc = model._encode([{"role": "system", "content": "dog"},
                         {"role": "user", "content": "rain"}])
    text = model.tokenizer.decode(enc["input_ids"][0])
    assert "dog" in text and "rain" in text and "system" not in text
    assert isinstance(model.chat([{"role": "system", "content": "dog"},
                                  {"role": "user", "content": "rain"}]), str)


@pytest.mark.parametrize("url", ["notaurl", "ftp://host/v1", "http://", "127.0.0.1:8000/v1"])
def test_base_url_must_be_http(url):
    with pytest.raises(AuralensError, match=r"base_url .* is not an http\(s\) URL"):
        OpenAIChatModel("m", base_url=url)
    assert OpenAIChatModel("m", base_url="https://example.org/v1/").base_url == "https://example.org/v1"


def _raw_server(replies: list[bytes]):
    """A server that writes each raw HTTP reply in turn (the last one repeats) and closes."""
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):  # noqa: N802 - http.server API
            self.rfile.read(int(self.headers["Content-Length"]))
            seen.append(self.path)
            self.wfile.write(replies[min(len(seen), len(replies)) - 1])
            self.wfile.flush()
            self.close_connection = True

    seen: list[str] = []
    return Handler, seen


def _http(body: bytes, length: int | None = None) -> bytes:
    head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body) if length is None else length}\r\n\r\n")
    return head.encode() + body


OK_BODY = json.dumps({"choices": [{"message": {"content": "a farm"}}]}).encode()


@pytest.mark.parametrize("bad, said", [
    (_http(b'{"choices":', length=500), "the reply was cut short"),  # IncompleteRead
    (_http(b'{"choices": [ {"message": '), "the reply was cut short"),  # whole, but unclosed JSON
    (b"GARBAGE\r\n\r\n", "BadStatusLine: GARBAGE"),
    # no Content-Length: the body ends where the connection closed, mid-JSON
    (b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + OK_BODY[:20],
     "the reply was cut short"),
])
def test_openai_client_retries_a_cut_or_garbled_reply(bad, said):
    handler, seen = _raw_server([bad, _http(OK_BODY)])
    with local_server(handler) as url:
        model = OpenAIChatModel("m", base_url=url, retries=1, backoff=0.01, timeout=5)
        assert model.chat([{"role": "user", "content": "x"}]) == "a farm"  # retried
        assert len(seen) == 2
    handler, seen = _raw_server([bad])
    with local_server(handler) as url:
        model = OpenAIChatModel("m", base_url=url, retries=1, backoff=0.01, timeout=5)
        with pytest.raises(LLMRequestError) as err:
            model.chat([{"role": "user", "content": "x"}])
    assert str(err.value) == f"{url}: no answer after 2 attempts ({said})"


def test_openai_reply_json_python_cannot_read_is_a_clear_error():
    body = b'{"choices": [{"message": {"content": "a"}}], "x": ' + b"9" * 5000 + b"}"
    handler, seen = _raw_server([_http(body)])
    with local_server(handler) as url:
        model = OpenAIChatModel("m", base_url=url, retries=2, backoff=0.01, timeout=5)
        with pytest.raises(LLMRequestError) as err:
            model.chat([{"role": "user", "content": "x"}])
    assert str(err.value).startswith(f"{url}: the server's reply could not be read "
                                     "(ValueError: Exceeds the limit")
    assert "\n" not in str(err.value) and len(seen) == 1  # a reply of the same shape: not retried


def test_openai_answer_cut_at_the_token_limit_is_reported(stub, caplog):
    state, url = stub
    model = OpenAIChatModel("m", base_url=url, retries=0, timeout=5)
    state.script = [_reply({"choices": [{"finish_reason": "length",
                                         "message": {"content": "A long"}}]})]
    with caplog.at_level("WARNING", logger="auralens.scene.llm"):
        assert model.chat([{"role": "user", "content": "x"}]) == "A long"
    assert "cut off at the token limit" in caplog.text and "max_new_tokens" in caplog.text


def test_template_failing_with_the_system_turn_folded_in_is_a_one_line_error(tiny_model,
                                                                              tmp_path):
    import shutil

    from transformers import AutoTokenizer

    dst = tmp_path / "broken-template"
    shutil.copytree(tiny_model("tiny_chat_lm"), dst)
    tok = AutoTokenizer.from_pretrained(dst)
    tok.chat_template = "{{ raise_exception('this template is broken') }}"
    tok.save_pretrained(dst)
    model = load_chat_model(str(dst), max_new_tokens=3)
    with pytest.raises(AuralensError) as err:
        model.chat([{"role": "system", "content": "s"}, {"role": "user", "content": "u"}])
    assert str(err.value) == (f"{dst}: chat template failed "
                              "(TemplateError: this template is broken)")


@pytest.mark.parametrize("dtype", ["int8", "bool", "int64", "float64", "uint8"])
def test_only_float_dtypes_pass_the_spec_check(dtype):
    import torch

    from auralens.specs import SpecError

    with pytest.raises(SpecError, match=f"hf option dtype: unknown dtype '{dtype}'; use auto"):
        llm.check_values("hf", {"dtype": dtype})
    with pytest.raises(AuralensError):
        llm.resolve_dtype(getattr(torch, dtype))
    for good, want in (("float16", torch.float16), ("bf16", torch.bfloat16),
                       ("fp32", torch.float32), (torch.bfloat16, torch.bfloat16)):
        assert llm.resolve_dtype(good) == want
    llm.check_values("hf", {"dtype": "auto"})
