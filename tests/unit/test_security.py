"""Security properties of the code base and its network/UI edges.

* ``trust_remote_code`` is only ever True because the user asked for it (AST scan + behaviour);
* no unpickling: ``torch.load`` always with ``weights_only=True``, no ``pickle``/``dill``/
  ``joblib``, no ``np.load(allow_pickle=True)``;
* the web UI's pure validation functions reject oversized uploads and never read a path the
  client made up (outside the upload folder, traversal, symlinks out, run keys as paths);
* the OpenAI-compatible HTTP backend never puts its API key into logs, reprs or exceptions
  (checked against a stub server on 127.0.0.1).
"""

from __future__ import annotations

import ast
import json
import logging
import traceback
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from launch import local_server

SRC = Path(__file__).resolve().parents[2] / "src" / "auralens"
SECRET = "sk-test-5ecret-DO-NOT-LOG-7f3a9c"


def _modules() -> list[tuple[Path, ast.Module]]:
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 30, "the source tree was not found"
    return [(f, ast.parse(f.read_text(encoding="utf-8"), filename=str(f))) for f in files]


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(SRC.parent)}:{getattr(node, 'lineno', '?')}"


def _is_true(node: ast.AST | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is True


def _mentions(node: ast.AST, name: str) -> bool:
    return any((isinstance(n, ast.Constant) and n.value == name) or (isinstance(n, ast.Name) and n.id == name)
               or (isinstance(n, ast.keyword) and n.arg == name) for n in ast.walk(node))


# --------------------------------------------------------------------------- trust_remote_code


def _guarded(parents: list[ast.AST]) -> bool:
    """Inside an ``if`` whose condition looks at the user's trust_remote_code option."""
    return any(isinstance(p, ast.If) and _mentions(p.test, "trust_remote_code") for p in parents)


def _walk_with_parents(tree: ast.AST) -> Iterator[tuple[ast.AST, list[ast.AST]]]:
    stack: list[tuple[ast.AST, list[ast.AST]]] = [(tree, [])]
    while stack:
        node, parents = stack.pop()
        yield node, parents
        for child in ast.iter_child_nodes(node):
            stack.append((child, [*parents, node]))


def _trust_problems(modules: list[tuple[Path, ast.Module]]) -> tuple[list[str], int]:
    problems: list[str] = []
    seen = 0
    for path, tree in modules:
        for node, parents in _walk_with_parents(tree):
            # f(..., trust_remote_code=True)
            if isinstance(node, ast.keyword) and node.arg == "trust_remote_code":
                seen += 1
                if _is_true(node.value) and not _guarded(parents):
                    problems.append(f"{_where(path, node.value)}: trust_remote_code=True")
            # {"trust_remote_code": True} and kwargs["trust_remote_code"] = True
            if isinstance(node, ast.Dict):
                for k, v in zip(node.keys, node.values, strict=True):
                    if isinstance(k, ast.Constant) and k.value == "trust_remote_code" and _is_true(v) \
                            and not _guarded(parents):
                        problems.append(f"{_where(path, node)}: dict with trust_remote_code True")
            if isinstance(node, ast.Assign) and _is_true(node.value):
                for target in node.targets:
                    if isinstance(target, ast.Subscript) and _mentions(target.slice, "trust_remote_code") \
                            and not _guarded(parents):
                        problems.append(f"{_where(path, node)}: sets trust_remote_code True unconditionally")
            # def f(..., trust_remote_code=True)
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                args = node.args
                positional = [*args.posonlyargs, *args.args]
                pairs = list(zip(positional[len(positional) - len(args.defaults):], args.defaults,
                                 strict=True))
                pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults, strict=True) if d]
                for arg, default in pairs:
                    if arg.arg == "trust_remote_code" and not (
                            isinstance(default, ast.Constant) and default.value in (False, None)):
                        problems.append(f"{_where(path, node)}: {node.name}() defaults trust_remote_code on")
    return problems, seen


def test_trust_remote_code_is_never_switched_on_by_the_code() -> None:
    problems, seen = _trust_problems(_modules())
    assert seen, "no trust_remote_code keyword found at all: the scan is not looking at the code"
    assert not problems, "\n".join(problems)


BAD_SNIPPETS = {
    "trust": [
        "m = Auto.from_pretrained(x, trust_remote_code=True)",
        "kw = {'trust_remote_code': True}",
        "kw['trust_remote_code'] = True",
        "def load(x, trust_remote_code=True): pass",
        "def load(x, *, trust_remote_code=True): pass",
    ],
    "pickle": [
        "import pickle",
        "from joblib import load",
        "state = torch.load(p)",
        "state = torch.load(p, weights_only=False)",
        "a = np.load(p, allow_pickle=True)",
        "a = numpy.load(p, allow_pickle=flag)",
    ],
}
GOOD_SNIPPETS = {
    "trust": ["if params.get('trust_remote_code') is True:\n    kw['trust_remote_code'] = True",
              "m = Auto.from_pretrained(x, trust_remote_code=trust_remote_code)",
              "def load(x, trust_remote_code=False): pass"],
    "pickle": ["state = torch.load(p, weights_only=True)", "a = np.load(p, allow_pickle=False)"],
}


@pytest.mark.parametrize(("kind", "code", "bad"), [
    (k, c, True) for k, cs in BAD_SNIPPETS.items() for c in cs] + [
    (k, c, False) for k, cs in GOOD_SNIPPETS.items() for c in cs])
def test_the_scans_flag_what_they_should(kind: str, code: str, bad: bool) -> None:
    modules = [(SRC / "snippet.py", ast.parse(code))]
    problems = _trust_problems(modules)[0] if kind == "trust" else _pickle_problems(modules)[0]
    assert bool(problems) is bad, problems


def test_trust_remote_code_only_from_an_explicit_spec_option() -> None:
    from auralens.scene.caption._hf import processor_kwargs
    from auralens.scene.llm import hf_load_kwargs
    from auralens.specs import parse_spec

    def kw(spec: str) -> dict:
        params = parse_spec(spec).params
        return {**hf_load_kwargs({**params, "device": "cpu"})[0], **processor_kwargs(params)}

    assert "trust_remote_code" not in kw("hf:org/model")
    assert "trust_remote_code" not in kw("hf:org/model@trust_remote_code=false")
    assert "trust_remote_code" not in kw("hf:org/model@trust_remote_code=1")  # only a real yes
    assert "trust_remote_code" not in kw("hf:org/model@trust_remote_code=maybe")
    assert kw("hf:org/model@trust_remote_code=true")["trust_remote_code"] is True


def test_encoder_loading_passes_trust_remote_code_only_when_asked(tiny_model, monkeypatch) -> None:
    import transformers

    from auralens.encoders.base import EXTRACTORS

    seen: list[object] = []
    original = transformers.HubertModel.from_pretrained.__func__

    def spy(cls, *args, **kwargs):  # noqa: ANN001, ANN202
        seen.append(kwargs.get("trust_remote_code", "absent"))
        return original(cls, *args, **kwargs)

    monkeypatch.setattr(transformers.HubertModel, "from_pretrained", classmethod(spy))
    path = tiny_model("hubert")
    EXTRACTORS.build(f"hubert:{path}")
    assert seen and seen[-1] in (False, "absent")
    EXTRACTORS.build(f"hubert:{path}@trust_remote_code=true")
    assert seen[-1] is True


# --------------------------------------------------------------------------- unpickling


def _pickle_problems(modules: list[tuple[Path, ast.Module]]) -> tuple[list[str], int]:
    problems: list[str] = []
    loads = 0
    for path, tree in modules:
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom)
                                                        and node.module else [])
                for name in names:
                    if name.split(".")[0] in {"pickle", "cPickle", "_pickle", "dill", "joblib", "cloudpickle",
                                              "shelve", "marshal"}:
                        problems.append(f"{_where(path, node)}: imports {name}")
            if not isinstance(node, ast.Call):
                continue
            func = node.func
            kws = {k.arg: k.value for k in node.keywords}
            if isinstance(func, ast.Attribute) and func.attr == "load" and isinstance(func.value, ast.Name):
                if func.value.id == "torch":
                    loads += 1
                    if not _is_true(kws.get("weights_only")):
                        problems.append(f"{_where(path, node)}: torch.load without weights_only=True")
            allow = kws.get("allow_pickle")
            if allow is not None and not (isinstance(allow, ast.Constant) and allow.value is False):
                problems.append(f"{_where(path, node)}: allow_pickle is not False")
            if isinstance(func, ast.Name) and func.id == "load" and "weights_only" in kws \
                    and not _is_true(kws["weights_only"]):
                problems.append(f"{_where(path, node)}: load(weights_only=...) not True")
    return problems, loads


def test_no_unpickling_anywhere_in_src() -> None:
    problems, loads = _pickle_problems(_modules())
    assert loads >= 1, "no torch.load call found: the scan is not looking at the code"
    assert not problems, "\n".join(problems)


# --------------------------------------------------------------------------- web UI inputs


@pytest.fixture
def ui(tmp_path: Path):
    from auralens.ui_app.core import UISettings

    uploads = tmp_path / "uploads"
    uploads.mkdir()
    settings = UISettings(work_root=tmp_path / "work", upload_roots=[uploads], max_upload_mb=0.05,
                          max_duration_s=5.0)
    return settings, uploads


def _wav(path: Path, seconds: float, sr: int = 16000) -> Path:
    t = np.arange(int(seconds * sr)) / sr
    sf.write(path, (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), sr, subtype="PCM_16")
    return path


def test_upload_validation_rejects_oversized_and_foreign_files(ui, tmp_path: Path) -> None:
    from auralens.ui_app.core import UIError, validate_upload

    settings, uploads = ui
    ok = validate_upload(str(_wav(uploads / "ok.wav", 1.0)), settings)  # 32 kB < 50 kB
    assert ok.name == "ok.wav" and ok.duration == pytest.approx(1.0)

    big = _wav(uploads / "big.wav", 2.0)  # 64 kB > the 0.05 MB limit
    with pytest.raises(UIError, match="upload limit"):
        validate_upload(str(big), settings)

    outside = _wav(tmp_path / "secret.wav", 0.5)
    link = uploads / "link.wav"
    link.symlink_to(outside)
    for client_path in (str(outside), "/etc/passwd", str(uploads / ".." / "secret.wav"), str(link)):
        with pytest.raises(UIError, match="not an uploaded file") as err:
            validate_upload(client_path, settings)
        assert str(tmp_path) not in str(err.value)  # never echoes server paths

    with pytest.raises(UIError, match="empty"):
        (uploads / "empty.wav").write_bytes(b"")
        validate_upload(str(uploads / "empty.wav"), settings)
    garbage = uploads / "junk.wav"
    garbage.write_bytes(b"RIFF" + bytes(range(200)))
    with pytest.raises(UIError) as err:
        validate_upload(str(garbage), settings)
    assert str(uploads) not in str(err.value) and "junk.wav" in str(err.value)

    from auralens.ui_app.core import UISettings

    with pytest.raises(UIError, match="not enabled"):
        validate_upload(str(uploads / "ok.wav"), UISettings(work_root=tmp_path / "w2"))


def test_run_and_choice_keys_are_looked_up_never_used_as_paths(tmp_path: Path) -> None:
    from auralens.ui_app.core import RunInfo, UIError, discover_runs, resolve_choice, resolve_run

    runs_dir = tmp_path / "runs"
    (runs_dir / "a").mkdir(parents=True)
    (runs_dir / "a" / "run.json").write_text(json.dumps({"config": {}}))
    (runs_dir / "a" / "history.jsonl").write_text("")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "run.json").write_text("{}")
    (elsewhere / "history.jsonl").write_text("")
    (runs_dir / "escape").symlink_to(elsewhere, target_is_directory=True)
    runs = discover_runs(runs_dir)
    assert list(runs) == ["a"]  # the symlink out of the runs folder is not followed
    assert isinstance(resolve_run("a", runs), RunInfo)
    for key in ("../elsewhere", str(elsewhere), "escape", "a/../../elsewhere", ""):
        with pytest.raises(UIError):
            resolve_run(key, runs)
    assert resolve_choice("minmax", ["minmax", "none"], "post") == "minmax"
    with pytest.raises(UIError):
        resolve_choice("../../etc/passwd", ["minmax"], "post")


# --------------------------------------------------------------------------- API keys


class _Stub(BaseHTTPRequestHandler):
    """/chat/completions: 200, or the status in ``plan`` (popped per request)."""

    plan: list[int] = []
    auth: list[str] = []

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        length = int(self.headers.get("Content-Length", 0))
        self.rfile.read(length)
        type(self).auth.append(self.headers.get("Authorization", ""))
        status = type(self).plan.pop(0) if type(self).plan else 200
        if status == 200:
            body = json.dumps({"choices": [{"message": {"content": "a quiet street"}}]}).encode()
        elif status == 299:  # a 200 with a body the client cannot use
            status, body = 200, b"<html>not json</html>"
        else:
            body = json.dumps({"error": {"message": "nope"}}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def stub_url() -> Iterator[str]:
    _Stub.plan, _Stub.auth = [], []
    with local_server(_Stub) as url:
        yield url


def _text_of(exc: BaseException) -> str:
    parts = ["".join(traceback.format_exception(exc))]
    while exc is not None:
        parts += [str(exc), repr(exc), repr(exc.args)]
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return "\n".join(parts)


def test_openai_backend_never_logs_the_api_key(stub_url: str, caplog, monkeypatch) -> None:
    from auralens.scene.llm import LLMRequestError, OpenAIChatModel, load_chat_model

    caplog.set_level(logging.DEBUG)
    model = OpenAIChatModel("tiny", base_url=stub_url, api_key=SECRET, retries=2, backoff=0.01)
    assert SECRET not in repr(model) and SECRET not in str(model.__dict__.get("name", ""))
    messages = [{"role": "user", "content": "describe"}]
    texts: list[str] = []

    _Stub.plan = [500, 503]  # two retries logged, then an answer
    assert model.chat(messages) == "a quiet street"
    for plan in ([401], [500, 500, 500], [299]):  # rejected, exhausted, unusable body
        _Stub.plan = list(plan)
        with pytest.raises(LLMRequestError) as err:
            model.chat(messages)
        texts.append(_text_of(err.value))
    # a dead endpoint: connection refused
    dead = OpenAIChatModel("tiny", base_url="http://127.0.0.1:9/v1", api_key=SECRET, retries=0)
    with pytest.raises(LLMRequestError) as err:
        dead.chat(messages)
    texts.append(_text_of(err.value))

    # the key reaches the server (so the check below is not vacuous) …
    assert _Stub.auth and all(a == f"Bearer {SECRET}" for a in _Stub.auth)
    # … and nowhere else
    assert "retrying" in caplog.text
    assert SECRET not in caplog.text
    for text in texts:
        assert SECRET not in text

    # the same through a spec and the environment variable, as a user configures it
    monkeypatch.setenv("AURALENS_OPENAI_API_KEY", SECRET)
    caplog.clear()
    spec_model = load_chat_model(f"openai:tiny@base_url={stub_url},retries=0")
    assert spec_model.chat(messages) == "a quiet street"
    assert SECRET not in repr(spec_model) and SECRET not in caplog.text


def test_composer_over_openai_keeps_the_key_out_of_logs(stub_url: str, caplog, monkeypatch) -> None:
    from auralens.scene.compose.base import COMPOSERS

    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("AURALENS_OPENAI_API_KEY", SECRET)
    composer = COMPOSERS.build(f"openai:tiny@base_url={stub_url},retries=1,backoff=0.01")
    _Stub.plan = [502]
    out = composer.compose(["a dog barking", "rain"], "zero-shot")
    assert "quiet street" in out.text
    assert SECRET not in caplog.text and SECRET not in repr(composer)
