"""Chat LLM loading shared by the composer, the audio-LLM baseline and the judge.

Two kinds of backends behind one tiny protocol:

- ``hf:<hub id | preset | local dir>``: a transformers causal LM driven through its tokenizer's
  chat template (dtype/device chosen automatically, optional 4/8-bit quantisation, optional
  CPU offload).
- ``openai:<model>``: any OpenAI-compatible ``/chat/completions`` endpoint (vLLM, Ollama,
  llama.cpp server …) over urllib with a timeout, retries with backoff and a concurrency cap.

Example:
    >>> model = load_chat_model("hf:qwen2.5@quantize=4bit")            # doctest: +SKIP
    >>> model.chat([{"role": "user", "content": "Hello"}], max_new_tokens=32)  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from auralens.checks import is_number, is_whole
from auralens.errors import AuralensError, MissingModelDirError, ModelUnavailableError
from auralens.io import unclosed_json
from auralens.specs import ModelSpec, SpecError, parse_spec

log = logging.getLogger(__name__)

Message = dict[str, Any]

#: Short names for the chat LLMs the studies used.
CHAT_PRESETS: dict[str, str] = {
    "qwen2.5": "Qwen/Qwen2.5-7B-Instruct",
    "mistral": "mistralai/Mistral-7B-Instruct-v0.3",
    "falcon3": "tiiuae/Falcon3-7B-Instruct",
}

#: Options understood by :func:`hf_load_kwargs` (everything else is a generation option).
LOAD_OPTIONS = ("dtype", "device", "quantize", "offload", "trust_remote_code", "revision")
#: Generation options the transformers backends understand (see :func:`generation_kwargs`).
GENERATION_OPTIONS = ("max_new_tokens", "temperature", "top_p", "seed", "repetition_penalty")
#: Connection options of :class:`OpenAIChatModel`.
OPENAI_OPTIONS = ("base_url", "api_key", "api_key_env", "timeout", "retries", "backoff",
                  "max_retry_after", "max_concurrency")
#: Generation options an OpenAI-compatible request carries (see ``OpenAIChatModel._payload``).
OPENAI_GENERATION_OPTIONS = ("max_new_tokens", "temperature", "top_p", "seed", "stop")


class LLMRequestError(AuralensError):
    """An OpenAI-compatible endpoint kept failing after all retries."""


@runtime_checkable
class ChatModel(Protocol):
    """Anything that answers a list of chat messages with one string.

    Messages are ``{"role": "system" | "user" | "assistant", "content": str}`` dicts.
    Generation options (``max_new_tokens``, ``temperature``, ``seed`` …) are keyword arguments;
    backends ignore the ones they do not know.
    """

    name: str

    def chat(self, messages: Sequence[Message], **gen: Any) -> str:
        """Return the assistant's reply to ``messages``."""
        ...


# --------------------------------------------------------------------------- spec checks


def error_line(exc: BaseException, limit: int = 300) -> str:
    """``"TypeError: first line of the message"``, shortened: a library's failure as part of
    a one-line error (multi-line text would break ``errors.jsonl`` and the CLI's one line)."""
    text = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
    text = f"{type(exc).__name__}: {text}" if text else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


def check_options(backend: str, params: Mapping[str, Any], allowed: Iterable[str]) -> None:
    """Refuse spec options a backend would silently ignore (``hf:…@temprature=0.5``).

    Raises:
        SpecError: one line naming the unknown options and the allowed ones.
    """
    allowed = set(allowed)
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise SpecError(f"unknown {backend} option(s) {', '.join(unknown)}; use "
                        f"{', '.join(sorted(allowed))}")


Rule = tuple[Callable[[Any], bool], str]


def whole_rule(low: int, *, optional: bool = False) -> Rule:
    """A value rule: a whole number ≥ ``low`` (or None when ``optional``)."""
    def test(v: Any) -> bool:
        return (optional and v is None) or is_whole(v, low)
    return test, f"a whole number ≥ {low}"


def number_rule(low: float, *, above: bool = False, high: float | None = None,
                optional: bool = False, unit: str = "") -> Rule:
    """A value rule: a finite number ≥ ``low`` (> when ``above``), at most ``high``."""
    def test(v: Any) -> bool:
        if optional and v is None:
            return True
        if not is_number(v):
            return False
        return (v > low if above else v >= low) and (high is None or v <= high)
    if high is not None:
        wording = f"a number in {'(' if above else '['}{low:g}, {high:g}]"
    else:
        wording = f"a number{unit} {'>' if above else '≥'} {low:g}"
    return test, wording


#: A value rule: true or false.
BOOL_RULE: Rule = (lambda v: isinstance(v, bool), "true or false")
#: A value rule: text (a file path, a prompt …).
TEXT_RULE: Rule = (lambda v: isinstance(v, str), "text")

#: What the shared load / generation / connection options must be.
VALUE_RULES: dict[str, Rule] = {
    "max_new_tokens": whole_rule(1),
    "temperature": number_rule(0.0, optional=True),
    "top_p": number_rule(0.0, above=True, high=1.0, optional=True),
    "seed": whole_rule(0, optional=True),
    "repetition_penalty": number_rule(0.0, above=True, optional=True),
    "offload": BOOL_RULE,
    "trust_remote_code": BOOL_RULE,
    "device": (lambda v: v is None or isinstance(v, str), "a device name such as cpu, cuda or cuda:0"),
    "timeout": number_rule(0.0, above=True, unit=" of seconds"),
    "retries": whole_rule(0),
    "backoff": number_rule(0.0, unit=" of seconds"),
    "max_retry_after": number_rule(0.0, unit=" of seconds"),
    "max_concurrency": whole_rule(1),
    "base_url": (lambda v: isinstance(v, str), "a URL such as http://127.0.0.1:8000/v1"),
    "api_key_env": (lambda v: isinstance(v, str), "the name of an environment variable"),
    "instruction": (lambda v: v is None or isinstance(v, str), "text"),
    "template": (lambda v: v is None or isinstance(v, (str, Path)), "a file path"),
}


def check_values(backend: str, params: Mapping[str, Any],
                 rules: Mapping[str, Rule] | None = None) -> None:
    """Check the values of known options (:data:`VALUE_RULES`, then ``rules``) without
    loading anything, so ``max_new_tokens=abc`` fails before any work instead of at the first
    ``generate``.

    Raises:
        SpecError: ``"<backend> option <name> must be …, got …"``.
    """
    for key, value in params.items():
        rule = (rules or {}).get(key) or VALUE_RULES.get(key)
        if rule is not None and not rule[0](value):
            raise SpecError(f"{backend} option {key} must be {rule[1]}, got {value!r}")
    device = params.get("device")
    if isinstance(device, str) and device != "auto":
        # a device this machine lacks fails here, not after separation ran
        from auralens.devices import check_device

        check_device(device, SpecError, f"{backend} option device")
    if params.get("dtype") not in (None, "auto"):
        try:
            resolve_dtype(params["dtype"], "cpu")
        except AuralensError as exc:
            raise SpecError(f"{backend} option dtype: {exc}") from exc
    quantize = params.get("quantize")
    if quantize and str(quantize).lower().replace("-", "") not in ("4bit", "8bit", "4", "8"):
        raise SpecError(f"{backend} option quantize must be 4bit or 8bit, got {quantize!r}")


def local_dir(model_id: str) -> Path | None:
    """``model_id`` as an existing local path, or None for a hub id (checked when it loads)."""
    path = Path(os.path.expanduser(model_id))
    try:
        return path if path.exists() else None
    except (OSError, ValueError):
        return None


def read_json_file(path: Path) -> dict[str, Any]:
    """A model folder's JSON file as a dict (one-line error when it is not JSON)."""
    from auralens.io import read_json

    try:
        data = read_json(path)  # JSONFileError: "<file>: not valid JSON (line L column C: …)"
    except OSError as exc:
        raise AuralensError(f"{path}: not a readable JSON file ({exc})") from exc
    if not isinstance(data, dict):
        raise AuralensError(f"{path}: not a JSON object")
    return data


def check_model_dir(model_id: str) -> Path | None:
    """Cheap check that a local ``model_id`` is a transformers model folder (``config.json``);
    no weights are read. Returns the folder, or None for a hub id.

    Raises:
        AuralensError: a file, or a folder without ``config.json``.
    """
    path = local_dir(model_id)
    if path is None:
        return None
    if not path.is_dir():
        raise AuralensError(f"{model_id}: not a model folder (a file; give the folder that "
                            "holds config.json)")
    if not (path / "config.json").is_file():
        raise AuralensError(f"{model_id}: not a model folder (no config.json)")
    return path


def model_kind(path: Path) -> str:
    """``model_type`` and ``architectures`` of a model folder's ``config.json``, as one string."""
    return config_kind(read_json_file(path / "config.json"))


def config_kind(cfg: dict[str, Any]) -> str:
    """:func:`model_kind` of an already parsed ``config.json``."""
    return " ".join([str(cfg.get("model_type", "")), *map(str, cfg.get("architectures") or [])])


def has_audio_feature_extractor(path: Path) -> bool:
    """True when a model folder saves an audio feature extractor (``preprocessor_config.json``,
    or a ``processor_config.json`` with a ``feature_extractor``), as audio models do."""
    pre = path / "preprocessor_config.json"
    if pre.is_file():
        data = read_json_file(pre)
        if "feature_extractor_type" in data or "sampling_rate" in data:
            return True
    proc = path / "processor_config.json"
    return proc.is_file() and isinstance(read_json_file(proc).get("feature_extractor"), dict)


def has_chat_template(path: Path) -> bool:
    """True when a model folder's tokenizer carries a chat template."""
    if (path / "chat_template.jinja").is_file() or (path / "chat_template.json").is_file():
        return True
    tok = path / "tokenizer_config.json"
    return tok.is_file() and bool(read_json_file(tok).get("chat_template"))


def check_hf_chat_spec(backend: str, model_id: str, params: Mapping[str, Any],
                       extra: Iterable[str] = ()) -> None:
    """Cheap checks of a transformers chat-model spec: option names and values, and for a
    local folder those of :func:`check_chat_model_dir` (no weights are read).

    Args:
        backend: registry name for messages (``hf``).
        model_id: resolved hub id or local folder.
        params: the spec's options.
        extra: options the caller takes besides the load and generation options.
    """
    check_options(backend, params, (*LOAD_OPTIONS, *GENERATION_OPTIONS, *extra))
    check_values(backend, params)
    check_chat_model_dir(backend, model_id)


def check_chat_model_dir(backend: str, model_id: str) -> None:
    """Cheap checks that a local folder is a text chat LLM (no weights read): ``config.json``
    of a causal-LM ``model_type``, tokenizer files and a chat template. Hub ids pass.

    The model kind is checked first: a codec or audio encoder has no tokenizer either, and
    "not a causal language model" says what is wrong with it.

    Raises:
        AuralensError: one line naming the folder and what it lacks.
    """
    from auralens.encoders.hf import check_tokenizer_files

    path = check_model_dir(model_id)
    if path is None:
        return
    from transformers import AutoModelForCausalLM

    config = read_json_file(path / "config.json")
    # e.g. an audio-language model has a chat template too, but no causal-LM class
    if auto_class_loads(config, [AutoModelForCausalLM]) is False:
        raise AuralensError(f"{model_id}: not a causal language model (config.json: "
                            f"{config_kind(config).strip() or 'no model_type'}); {backend} "
                            "needs a text chat LLM")
    # without its files transformers builds an empty tokenizer: generation fails only
    # after every stage before it has run
    check_tokenizer_files(model_id)
    if not has_chat_template(path):
        raise AuralensError(f"{model_id}: tokenizer has no chat template; use an "
                            "instruction-tuned (chat) model")


def auto_class_loads(cfg: Mapping[str, Any], auto_classes: Iterable[Any]) -> bool | None:
    """Whether one of transformers' ``AutoModelFor…`` classes loads a model folder, judged
    from its parsed ``config.json`` (``cfg``) alone (its ``model_type``, or an ``auto_map``
    entry for remote code); None when the installed transformers does not expose its
    mappings."""
    auto_map = cfg.get("auto_map") if isinstance(cfg.get("auto_map"), dict) else {}
    known = False
    for cls in auto_classes:
        if cls.__name__ in auto_map:
            return True
        names = getattr(getattr(cls, "_model_mapping", None), "_model_mapping", None)
        if isinstance(names, Mapping):
            known = True
            if cfg.get("model_type") in names:
                return True
    return False if known else None


def check_openai_spec(backend: str, model: str, params: Mapping[str, Any],
                      extra: Iterable[str] = ()) -> None:
    """Cheap checks of an OpenAI-compatible spec: option names and values, the model name,
    the URL and ``api_key_env`` (no request is sent)."""
    extra = tuple(extra)
    check_options(backend, params, (*OPENAI_OPTIONS, *OPENAI_GENERATION_OPTIONS, *extra))
    check_values(backend, params)
    OpenAIChatModel(model, **{k: v for k, v in params.items() if k not in extra})


# --------------------------------------------------------------------------- HF loading utils


def resolve_device(device: str | None = "auto") -> str:
    """``"auto"`` → ``"cuda"`` when available, else ``"mps"`` or ``"cpu"``."""
    import torch

    if device and device != "auto":
        from auralens.devices import check_device

        return str(check_device(str(device)))  # one line, not torch's error at .to(device)
    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def resolve_dtype(dtype: Any = "auto", device: str = "cpu") -> Any:
    """``"auto"`` → bfloat16 on CUDA with bf16 support, float16 on other GPUs, float32 on CPU.

    Raises:
        AuralensError: a name other than auto, float32, float16 or bfloat16 (and their short
            forms fp32, fp16, half, bf16).
    """
    import torch

    floats = (torch.float32, torch.float16, torch.bfloat16)

    if dtype is None or dtype == "auto":
        if device.startswith("cuda"):
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if device == "mps":
            return torch.float16
        return torch.float32
    if isinstance(dtype, torch.dtype) and dtype in floats:
        return dtype
    names = {"fp32": "float32", "fp16": "float16", "half": "float16", "bf16": "bfloat16"}
    name = names.get(str(dtype), str(dtype))
    value = getattr(torch, name, None)
    # Weights in an integer or bool dtype load but cannot run; other float widths are not
    # supported by the backends.
    if value not in floats:
        raise AuralensError(f"unknown dtype {dtype!r}; use auto, float32, float16 or bfloat16")
    return value


def bitsandbytes_available() -> bool:
    """True when CUDA and the bitsandbytes package are both present (quantised loading)."""
    import importlib.util

    import torch

    return torch.cuda.is_available() and importlib.util.find_spec("bitsandbytes") is not None


def hf_load_kwargs(params: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Translate our load options into ``from_pretrained`` keyword arguments.

    Args:
        params: ``dtype`` (auto), ``device`` (auto), ``quantize`` (None | "4bit" | "8bit"),
            ``offload`` (bool: ``device_map="auto"`` spilling to CPU), ``trust_remote_code``
            (only when explicitly true), ``revision``.

    Returns:
        ``(kwargs, device)``: where the model should be moved afterwards, or ``""`` when
        ``device_map`` placed it already.
    """
    device = resolve_device(params.get("device", "auto"))
    kwargs: dict[str, Any] = {"dtype": resolve_dtype(params.get("dtype", "auto"), device)}
    if params.get("trust_remote_code") is True:
        kwargs["trust_remote_code"] = True
    if params.get("revision"):
        kwargs["revision"] = str(params["revision"])
    quantize = params.get("quantize")
    placed = False
    if quantize:
        q = str(quantize).lower().replace("-", "")
        if q not in ("4bit", "8bit", "4", "8"):
            raise AuralensError(f"quantize must be 4bit or 8bit, not {quantize!r}")
        if bitsandbytes_available():
            from transformers import BitsAndBytesConfig

            if q.startswith("4"):
                kwargs["quantization_config"] = BitsAndBytesConfig(
                    load_in_4bit=True, bnb_4bit_compute_dtype=kwargs["dtype"],
                    bnb_4bit_quant_type="nf4")
            else:
                kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=True)
            kwargs["device_map"] = "auto"
            placed = True
        else:
            log.warning("quantize=%s needs CUDA and bitsandbytes; loading unquantised", quantize)
    if params.get("offload") and not placed:
        from auralens.cache import default_cache_dir

        kwargs["device_map"] = "auto"
        kwargs["offload_folder"] = str(default_cache_dir() / "offload")
        placed = True
    return kwargs, "" if placed else device


def resolve_model_id(spec: ModelSpec, presets: dict[str, str] | None = None,
                     default: str | None = None) -> str:
    """The hub id or local directory a spec points at (presets expanded).

    Raises:
        MissingModelDirError: the id is a local path (``/``, ``./``, ``../``, ``~``) that
            does not exist (rather than a hub lookup's confusing repo-id error).
    """
    ident = spec.id or default or ""
    if not ident:
        raise AuralensError(f"model spec {spec.raw or spec!s} names no model")
    if presets and ident.lower() in presets:
        return presets[ident.lower()]
    path = os.path.expanduser(ident) if ident.startswith("~") else ident
    if ident.startswith(("/", "./", "../", "~")) and not os.path.exists(path):
        raise MissingModelDirError(path)
    return path


def from_pretrained(loader: Callable[..., Any], model_id: str, **kwargs: Any) -> Any:
    """Call ``loader(model_id, **kwargs)``, turning "not found offline" into a clear error.

    Raises:
        ModelUnavailableError: when the files are neither a local directory nor in the cache.
    """
    from auralens.encoders.hf import raise_for_bad_weights

    try:
        return loader(model_id, **kwargs)
    except OSError as exc:  # hub/cache misses surface as OSError subclasses
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelUnavailableError(model_id, detail[:300]) from exc
    except Exception as exc:
        owner = getattr(loader, "__self__", None)
        what = getattr(owner, "__name__", None) or getattr(loader, "__qualname__", "a model")
        raise_for_bad_weights(exc, model_id, what)
        raise


# --------------------------------------------------------------------------- HF generation


def generation_kwargs(opts: dict[str, Any], pad_token_id: int | None) -> dict[str, Any]:
    """``generate()`` keyword arguments from our generation options.

    Args:
        opts: ``max_new_tokens`` (required), ``temperature`` (0/None → greedy), ``top_p``
            (used when sampling), ``repetition_penalty``; other keys are ignored (``seed``
            goes to :func:`seeded`).
        pad_token_id: the tokenizer's pad id (or its eos id).
    """
    temperature = float(opts.get("temperature") or 0.0)
    kwargs: dict[str, Any] = {"max_new_tokens": int(opts["max_new_tokens"]),
                              "do_sample": temperature > 0}
    if temperature > 0:
        kwargs["temperature"] = temperature
        if opts.get("top_p") is not None:
            kwargs["top_p"] = float(opts["top_p"])
    if opts.get("repetition_penalty") is not None:
        kwargs["repetition_penalty"] = float(opts["repetition_penalty"])
    kwargs["pad_token_id"] = pad_token_id
    return kwargs


@contextlib.contextmanager
def seeded(seed: Any, device: Any = None) -> Iterator[None]:
    """Run the block with torch's RNGs seeded by ``seed`` (no-op when None).

    The RNG state from before is restored afterwards, so a seeded call neither depends on
    nor disturbs any other random draw in the process; the same seed gives the same samples.

    Args:
        seed: integer seed or None.
        device: the model's device; CUDA generators are forked too when it is a GPU.
    """
    if seed is None:
        yield
        return
    import torch

    on_cuda = str(device).startswith("cuda") and torch.cuda.is_available()
    devices = list(range(torch.cuda.device_count())) if on_cuda else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        yield


# --------------------------------------------------------------------------- HF chat model


def _merge_system(messages: Sequence[Message]) -> list[Message]:
    """Fold a system message into the first user turn (for templates without a system role)."""
    system = "\n\n".join(str(m["content"]) for m in messages if m["role"] == "system")
    rest = [dict(m) for m in messages if m["role"] != "system"]
    if system:
        for m in rest:
            if m["role"] == "user":
                m["content"] = f"{system}\n\n{m['content']}"
                break
        else:
            rest.insert(0, {"role": "user", "content": system})
    return rest


class HFChatModel:
    """A transformers causal LM answered through its chat template.

    Args:
        model_id: hub id, preset name (``qwen2.5``, ``mistral``, ``falcon3``) or local dir.
        **params: load options (see :func:`hf_load_kwargs`) and default generation options
            (``max_new_tokens`` 512, ``temperature`` 0 = greedy).
    """

    def __init__(self, model_id: str, **params: Any) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_id = CHAT_PRESETS.get(model_id.lower(), model_id)
        self.name = f"hf:{self.model_id}"
        load = {k: v for k, v in params.items() if k in LOAD_OPTIONS}
        self.gen_defaults = {k: v for k, v in params.items() if k not in LOAD_OPTIONS}
        kwargs, device = hf_load_kwargs(load)
        check_chat_model_dir("hf", self.model_id)  # a local folder: its files before any load
        tok_kw = {k: v for k, v in kwargs.items() if k in ("trust_remote_code", "revision")}
        self.tokenizer = from_pretrained(AutoTokenizer.from_pretrained, self.model_id, **tok_kw)
        if not getattr(self.tokenizer, "chat_template", None):
            raise AuralensError(f"{self.model_id}: tokenizer has no chat template; use an "
                                "instruction-tuned (chat) model")
        self.model = from_pretrained(AutoModelForCausalLM.from_pretrained, self.model_id, **kwargs)
        if device:
            self.model.to(device)
        self.model.eval()
        self._lock = threading.Lock()  # generate is not re-entrant on one model

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def _encode(self, messages: Sequence[Message]) -> Any:
        try:
            return self.tokenizer.apply_chat_template(
                list(messages), add_generation_prompt=True, return_tensors="pt", return_dict=True)
        except Exception as exc:  # e.g. Mistral templates reject the system role
            if not any(m["role"] == "system" for m in messages):
                raise AuralensError(f"{self.model_id}: chat template failed "
                                    f"({error_line(exc)})") from exc
        try:
            return self.tokenizer.apply_chat_template(
                _merge_system(messages), add_generation_prompt=True, return_tensors="pt",
                return_dict=True)
        except Exception as exc:  # noqa: BLE001 - a template that fails either way
            raise AuralensError(f"{self.model_id}: chat template failed "
                                f"({error_line(exc)})") from exc

    def _fit_context(self, prompt: int, new: int) -> int:
        """``new`` tokens, fewer when the prompt and ``new`` overrun the model's context.

        Past its context a model with learned positions fails deep inside generation, and
        others continue on positions they were never trained on.

        Raises:
            AuralensError: the prompt alone fills the context.
        """
        cfg = getattr(self.model, "config", None)
        cfg = getattr(cfg, "get_text_config", lambda: cfg)() if cfg is not None else None
        limit = next((int(v) for v in (getattr(cfg, k, None) for k in
                      ("max_position_embeddings", "n_positions")) if isinstance(v, int) and v > 0), None)
        if limit is None or prompt + new <= limit:
            return new
        if prompt >= limit:
            raise AuralensError(f"{self.model_id}: the prompt is {prompt} tokens, the model's whole "
                                f"context is {limit}; use a shorter template or technique, or a model "
                                "with a longer context")
        log.warning("%s: the prompt is %d tokens of a %d-token context; generating at most %d new "
                    "tokens instead of %d", self.model_id, prompt, limit, limit - prompt, new)
        return limit - prompt

    def chat(self, messages: Sequence[Message], **gen: Any) -> str:
        """Generate the assistant reply.

        Args:
            messages: chat turns.
            **gen: ``max_new_tokens`` (512; fewer when the prompt leaves less of the model's
                context), ``temperature`` (0 → greedy), ``top_p``, ``seed``,
                ``repetition_penalty``.
        """
        import torch

        opts = {**{"max_new_tokens": 512, "temperature": 0.0}, **self.gen_defaults, **gen}
        inputs = self._encode(messages).to(self.device)
        opts["max_new_tokens"] = self._fit_context(int(inputs["input_ids"].shape[1]),
                                                   int(opts["max_new_tokens"]))
        pad = self.tokenizer.pad_token_id
        kwargs = generation_kwargs(opts, pad if pad is not None else self.tokenizer.eos_token_id)
        try:
            with self._lock, torch.inference_mode(), seeded(opts.get("seed"), self.device):
                out = self.model.generate(**inputs, **kwargs)
        except Exception as exc:  # noqa: BLE001 - one line naming the model, not a traceback
            raise AuralensError(f"{self.model_id}: generation failed ({error_line(exc)})") from exc
        new = out[0, inputs["input_ids"].shape[1]:]
        return self.tokenizer.decode(new, skip_special_tokens=True).strip()


# --------------------------------------------------------------------------- OpenAI-compatible


def _env(*names: str) -> str | None:
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    return None


#: Longest wait a server's ``Retry-After`` may impose before a retry (seconds).
MAX_RETRY_AFTER = 60.0
#: Characters of a server's error text kept in an error message.
ERROR_TEXT_LIMIT = 300


def _error_message(data: Any) -> str | None:
    """The error text of a JSON error body (``{"error": {"message": …}}``, ``{"error": "…"}``
    or vLLM's ``{"object": "error", "message": …}``), or None when it carries none."""
    if not isinstance(data, dict):
        return None
    err = data.get("error")
    if isinstance(err, dict):
        msg = err.get("message") or err.get("type") or err.get("code")
        return str(msg) if msg else json.dumps(err)[:ERROR_TEXT_LIMIT]
    if isinstance(err, str) and err:
        return err
    if data.get("object") == "error" and data.get("message"):
        return str(data["message"])
    return None


def _retry_after(value: str | None, limit: float) -> float | None:
    """Seconds from a ``Retry-After`` header (delay seconds or an HTTP date), capped at
    ``limit``; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        from email.utils import parsedate_to_datetime

        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            return None
        seconds = when.timestamp() - time.time()
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), limit)


class OpenAIChatModel:
    """An OpenAI-compatible chat endpoint.

    Errors name what the server said: a rejected request (4xx other than 429) or a reply
    that carries an ``error`` object instead of ``choices`` raises :class:`LLMRequestError`
    with the server's error message (or the first line of its body), shortened and with the
    API key masked. 429 and 5xx are retried; on 429/503 a ``Retry-After`` header (at most
    ``max_retry_after`` seconds) replaces the backoff wait.

    Args:
        model: model name served by the endpoint (else ``$AURALENS_OPENAI_MODEL``).
        base_url: e.g. ``http://127.0.0.1:8000/v1`` (else ``$AURALENS_OPENAI_BASE_URL``,
            ``$OPENAI_BASE_URL``, then that local default).
        api_key: bearer token (else read from ``api_key_env``, else
            ``$AURALENS_OPENAI_API_KEY`` / ``$OPENAI_API_KEY``); never logged.
        api_key_env: name of an environment variable holding the key (an error when it is
            not set), e.g. ``openai:gpt-4o@api_key_env=MY_KEY``.
        timeout: seconds per request.
        retries: extra attempts on connection errors, 429 and 5xx.
        backoff: first wait in seconds; doubles each retry.
        max_retry_after: longest ``Retry-After`` honoured (seconds).
        max_concurrency: simultaneous requests from this object (``chat_many`` and threads).
        **gen: default generation options (``max_new_tokens``, ``temperature`` …).
    """

    def __init__(self, model: str = "", *, base_url: str | None = None, api_key: str | None = None,
                 api_key_env: str | None = None, timeout: float = 120.0, retries: int = 3,
                 backoff: float = 1.0, max_retry_after: float = MAX_RETRY_AFTER,
                 max_concurrency: int = 4, **gen: Any) -> None:
        self.model = model or _env("AURALENS_OPENAI_MODEL") or ""
        if not self.model:
            raise AuralensError("openai backend needs a model name: openai:<model> or "
                                "$AURALENS_OPENAI_MODEL")
        self.base_url = (base_url or _env("AURALENS_OPENAI_BASE_URL", "OPENAI_BASE_URL")
                         or "http://127.0.0.1:8000/v1").rstrip("/")
        parts = urllib.parse.urlsplit(str(self.base_url))
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise SpecError(f"base_url {self.base_url!r} is not an http(s) URL such as "
                                "http://127.0.0.1:8000/v1")
        if not api_key and api_key_env:
            api_key = _env(str(api_key_env))
            if not api_key:
                raise AuralensError(f"api_key_env={api_key_env}: the environment variable "
                                    f"{api_key_env} is not set")
        self._api_key = api_key or _env("AURALENS_OPENAI_API_KEY", "OPENAI_API_KEY")
        self.timeout = float(timeout)
        self.retries = max(0, int(retries))
        self.backoff = float(backoff)
        self.max_retry_after = max(0.0, float(max_retry_after))
        self.max_concurrency = max(1, int(max_concurrency))
        self._slots = threading.BoundedSemaphore(self.max_concurrency)
        self.gen_defaults = gen
        self.name = f"openai:{self.model}"

    def __repr__(self) -> str:  # keeps the key out of logs and tracebacks
        return f"OpenAIChatModel(model={self.model!r}, base_url={self.base_url!r})"

    def _payload(self, messages: Sequence[Message], gen: dict[str, Any]) -> dict[str, Any]:
        opts = {**{"max_new_tokens": 512, "temperature": 0.0}, **self.gen_defaults, **gen}
        body: dict[str, Any] = {"model": self.model, "messages": list(messages),
                                "max_tokens": int(opts["max_new_tokens"]),
                                "temperature": float(opts["temperature"] or 0.0)}
        for key in ("top_p", "seed", "stop"):
            if opts.get(key) is not None:
                body[key] = opts[key]
        return body

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        data = json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        req = urllib.request.Request(f"{self.base_url}/chat/completions", data=data,
                                     headers=headers, method="POST")
        with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310 - user URL
            text = resp.read().decode("utf-8", "replace")
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:  # a proxy's HTML page, a cut-off body …
            if unclosed_json(text):
                # JSON that ends early: a body cut short with no Content-Length to tell
                # (the connection closed mid-reply); retried like IncompleteRead
                raise http.client.IncompleteRead(text.encode("utf-8")) from exc
            start = self._clean(text.lstrip()[:40]) or "an empty body"
            raise LLMRequestError(f"{self.base_url}: the server did not return JSON (its "
                                  f"reply starts with {start!r})") from exc
        except (ValueError, RecursionError) as exc:  # JSON that Python cannot hold (huge ints)
            raise LLMRequestError(f"{self.base_url}: the server's reply could not be read "
                                  f"({self._clean(error_line(exc))})") from exc

    def _reply_text(self, answer: Any) -> str:
        """The assistant text of a chat-completion reply: ``content`` as a string, or the
        text parts of a list of content parts joined.

        Raises:
            LLMRequestError: a reply without ``choices``, or content of another shape.
        """
        if not isinstance(answer, dict) or "choices" not in answer:
            error = _error_message(answer)
            if error is not None:
                raise LLMRequestError(f"{self.base_url}: the server reported an error "
                                      f"({self._clean(error)})")
            keys = ", ".join(sorted(map(str, answer))) if isinstance(answer, dict) else \
                type(answer).__name__
            raise LLMRequestError(f"{self.base_url}: the server's reply has no 'choices' "
                                  f"({self._clean(keys) or 'empty'})")
        choices = answer["choices"]
        first = choices[0] if isinstance(choices, list) and choices else None
        message = first.get("message") if isinstance(first, dict) else None
        if not isinstance(message, dict):
            raise LLMRequestError(f"{self.base_url}: the server's reply has no message in "
                                  "'choices'")
        if first.get("finish_reason") == "length":  # the answer stopped at max_tokens
            log.warning("%s: the answer of %s was cut off at the token limit; raise "
                        "max_new_tokens", self.base_url, self.model)
        content = message.get("content")
        if content is None or isinstance(content, str):
            return content or ""
        if isinstance(content, list):  # content parts: [{"type": "text", "text": "…"}, …]
            texts = [p.get("text") for p in content
                     if isinstance(p, dict) and p.get("type") in ("text", "output_text")]
            if (texts or not content) and all(isinstance(t, str) for t in texts):
                return "".join(texts)
            kinds = sorted({str(p.get("type")) if isinstance(p, dict) else type(p).__name__
                            for p in content})
            raise LLMRequestError(f"{self.base_url}: the server's reply content has no text "
                                  f"parts (parts of type {', '.join(kinds)})")
        raise LLMRequestError(f"{self.base_url}: the server's reply content is a "
                              f"{type(content).__name__}, not text")

    def _clean(self, text: str) -> str:
        """Server text fit for an error message: one line, shortened, the key masked."""
        if self._api_key:
            text = text.replace(self._api_key, "***")
        text = " ".join(text.split())
        if len(text) > ERROR_TEXT_LIMIT:
            text = text[: ERROR_TEXT_LIMIT - 1] + "…"
        return text

    def _http_error_text(self, exc: urllib.error.HTTPError) -> str:
        """The server's explanation of an HTTP error: ``error.message`` of a JSON body, else
        the body's first non-empty line; ``""`` when there is none."""
        try:
            raw = exc.read(16384) or b""
        except (OSError, ValueError, http.client.HTTPException):
            return ""
        text = raw.decode("utf-8", "replace")
        try:
            msg = _error_message(json.loads(text))
        except ValueError:
            msg = None
        if msg is None:
            msg = next((ln for ln in text.splitlines() if ln.strip()), "")
        return self._clean(msg)

    def chat(self, messages: Sequence[Message], **gen: Any) -> str:
        """POST one chat completion, retrying transient failures with exponential backoff."""
        body = self._payload(messages, gen)
        last = ""
        for attempt in range(self.retries + 1):
            wait = self.backoff * (2 ** attempt)
            try:
                with self._slots:
                    answer = self._post(body)
                return self._reply_text(answer).strip()
            except urllib.error.HTTPError as exc:
                detail = self._http_error_text(exc)
                last = f"HTTP {exc.code}: {detail}" if detail else f"HTTP {exc.code}"
                if exc.code != 429 and exc.code < 500:
                    raise LLMRequestError(f"{self.base_url}: request rejected ({last})") from exc
                if exc.code in (429, 503):
                    after = _retry_after(exc.headers.get("Retry-After") if exc.headers else None,
                                         self.max_retry_after)
                    wait = wait if after is None else after
            except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
                last = str(getattr(exc, "reason", exc))
            except http.client.HTTPException as exc:  # a body cut short, a garbled status line
                last = ("the reply was cut short" if isinstance(exc, http.client.IncompleteRead)
                        else self._clean(error_line(exc)))
            except (KeyError, IndexError, TypeError, AttributeError) as exc:
                raise LLMRequestError(f"{self.base_url}: unexpected response ({exc})") from exc
            if attempt < self.retries:
                log.info("%s: %s; retrying in %.1f s", self.base_url, last, wait)
                time.sleep(wait)
        raise LLMRequestError(f"{self.base_url}: no answer after {self.retries + 1} attempts "
                              f"({last})")

    def chat_many(self, conversations: Sequence[Sequence[Message]], **gen: Any) -> list[str]:
        """Answer several conversations concurrently (at most ``max_concurrency`` at once)."""
        with ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
            return list(pool.map(lambda m: self.chat(m, **gen), conversations))


# --------------------------------------------------------------------------- entry point


def load_chat_model(spec: str | ModelSpec, **overrides: Any) -> ChatModel:
    """Build a :class:`ChatModel` from a spec.

    Specs:
        ``hf:qwen2.5`` / ``qwen2.5`` / ``hf:org/model`` / ``/local/dir`` (+ ``@quantize=4bit``,
        ``@offload=true``, ``@dtype=bfloat16``, ``@trust_remote_code=true``) and
        ``openai:<model>@base_url=http://host:port/v1,timeout=60,max_concurrency=8``.

    Raises:
        ModelUnavailableError: an ``hf`` model that is not available offline.
    """
    parsed = parse_spec(spec)
    params = {**parsed.params, **overrides}
    kind = parsed.kind
    if kind == "openai":
        return OpenAIChatModel(parsed.id, **params)
    if kind in CHAT_PRESETS and not parsed.id:
        return HFChatModel(CHAT_PRESETS[kind], **params)
    if kind in ("hf", "path"):
        return HFChatModel(resolve_model_id(parsed, CHAT_PRESETS), **params)
    raise AuralensError(f"unknown chat model spec {parsed.raw or spec!s}; use hf:<id>, a preset "
                        f"({', '.join(CHAT_PRESETS)}), a local dir or openai:<model>")
