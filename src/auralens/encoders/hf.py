"""Shared plumbing for Hugging Face audio models: resolving, loading, devices, revisions.

A model is named by a hub id (``facebook/hubert-base-ls960``) or a local directory (one saved
with ``save_pretrained``). :func:`build_hf` is the generic ``hf`` backend: it reads
``config.json`` and hands the spec to the backend that matches ``config.model_type``.

Offline behaviour: ``from_pretrained`` honours ``HF_HUB_OFFLINE``; any failure to find the
files becomes :class:`~auralens.errors.ModelUnavailableError` with a one-line hint.
Remote code is never trusted unless ``trust_remote_code=true`` is passed in the spec.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from auralens.checks import as_bool, is_whole
from auralens.errors import AuralensError, MissingModelDirError, ModelUnavailableError
from auralens.specs import ModelSpec, SpecError

log = logging.getLogger(__name__)

#: ``config.model_type`` → extractor backend name.
MODEL_TYPES: dict[str, str] = {
    "audio-spectrogram-transformer": "ast",
    "hubert": "hubert",
    "wav2vec2": "wav2vec2",
    "wavlm": "wavlm",
    "data2vec-audio": "data2vec-audio",
    "whisper": "whisper",
    "clap": "clap",
}

#: Accepted dtype names (lower case) → the torch dtype's name.
DTYPES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16",
           "half": "float16", "bfloat16": "bfloat16", "bf16": "bfloat16"}


class LayerError(AuralensError, ValueError):
    """A layer name or index the model does not have."""


class NotAModelFolderError(ModelUnavailableError):
    """A local directory that holds no saved model (no ``config.json``, no weights file).

    A :class:`ModelUnavailableError` for callers that catch that, but worded for a folder:
    "not available offline" would send the user looking at the hub cache.
    """

    def __init__(self, path: str, detail: str) -> None:
        AuralensError.__init__(self, f"{path}: not a model folder ({detail})")
        self.model = path


class ModelFolderError(ModelUnavailableError):
    """A local model folder that lacks a file the model needs, or holds another kind of model
    (``"<dir>: no tokenizer (…)"``). A :class:`ModelUnavailableError` for callers that catch
    that, worded for the folder the user gave."""

    def __init__(self, path: str, detail: str) -> None:
        AuralensError.__init__(self, f"{path}: {detail}")
        self.model = path


#: Names of the files ``from_pretrained`` reads weights from.
_WEIGHT_FILES = re.compile(r".*\.(?:safetensors|bin|pt|pth|ckpt|msgpack|h5)(?:\.index\.json)?")


def has_weights(folder: Path) -> bool:
    """True when ``folder`` holds a weights file (or a sharded checkpoint's index)."""
    try:
        return any(f.is_file() and _WEIGHT_FILES.fullmatch(f.name) for f in folder.iterdir())
    except OSError:
        return False


#: Files a saved tokenizer is read from: the fast ``tokenizer.json``, BPE/WordPiece
#: vocabularies, sentencepiece and tiktoken models.
_TOKENIZER_FILES = re.compile(r"tokenizer\.json|vocab.*\.(?:json|txt)|merges\.txt|.*\.model"
                              r"|.*\.tiktoken|.*\.spm")
#: Files a saved feature extractor / image processor is read from.
PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")


def has_tokenizer_files(folder: Path) -> bool:
    """True when ``folder`` holds a saved tokenizer's vocabulary (not only its config)."""
    try:
        return any(f.is_file() and _TOKENIZER_FILES.fullmatch(f.name) for f in folder.iterdir())
    except OSError:
        return False


def check_tokenizer_files(source: str) -> None:
    """Refuse a local model folder without tokenizer files: transformers then builds a
    tokenizer of a few special tokens only, and every text gets the same ids.
    Hub ids pass (their files are checked when they load).

    Raises:
        ModelFolderError: ``"<dir>: no tokenizer (tokenizer.json / vocab files missing)"``.
    """
    folder = Path(os.path.expanduser(source))
    if folder.is_dir() and not has_tokenizer_files(folder):
        raise ModelFolderError(source, "no tokenizer (tokenizer.json / vocab files missing)")


def check_processor_files(source: str) -> None:
    """Refuse a local model folder without a saved feature extractor / processor config
    (transformers' own message points at huggingface.co). Hub ids pass.

    Raises:
        ModelFolderError: ``"<dir>: no preprocessor_config.json / processor_config.json"``.
    """
    folder = Path(os.path.expanduser(source))
    if folder.is_dir() and not any((folder / name).is_file() for name in PROCESSOR_FILES):
        raise ModelFolderError(source, f"no {' / '.join(PROCESSOR_FILES)}")


def weights_file_problem(exc: BaseException) -> str | None:
    """How to describe what a bad weights file raised while loading (``"corrupt weights
    file (…)"``), or None for any other error, so real bugs still show as they are.

    Covers safetensors' header/data errors and torch's zip reader, EOF and unpickling errors
    (``.bin``); an unpickling error can also be a sound file torch refuses to unpickle, so it
    is called unreadable, not corrupt.
    """
    try:
        import safetensors
    except ImportError:
        safetensors = None
    cls = getattr(safetensors, "SafetensorError", None)
    if (isinstance(cls, type) and isinstance(exc, cls)) or isinstance(exc, EOFError) or (
            isinstance(exc, RuntimeError) and "PytorchStreamReader" in str(exc)):
        what = "corrupt weights file"
    elif type(exc).__name__ == "UnpicklingError":  # by name: this package never imports pickle
        what = "unreadable weights file"
    else:
        return None
    detail = short_error(exc)
    return f"{what} ({detail if len(detail) <= 200 else detail[:199] + '…'})"


def raise_for_bad_weights(exc: BaseException, source: str, what: str) -> None:
    """Raise ``"<source>: cannot load as <what>: corrupt weights file (…)"`` (an
    AuralensError, from ``exc``) when ``exc`` is what a bad weights file raised while loading
    (:func:`weights_file_problem`); return for any other error, which the caller re-raises
    as it is.
    """
    problem = weights_file_problem(exc)
    if problem is not None:
        raise AuralensError(f"{source}: cannot load as {what}: {problem}") from exc


def model_source(spec: ModelSpec, default: str | None = None) -> str:
    """The string to pass to ``from_pretrained``: a local directory or a hub id.

    Raises:
        ModelUnavailableError: no id given and no default.
        MissingModelDirError: a path (``/``, ``./``, ``../``, ``~``) that does not exist.
    """
    if spec.path is not None:
        return str(spec.path)
    ident = spec.id or default
    if not ident:
        raise ModelUnavailableError(str(spec), "no model id or directory given")
    if ident.startswith(("/", "./", "../", "~")) and not Path(os.path.expanduser(ident)).exists():
        # a path, not a hub id: the offline-cache hint would send the user to the wrong place
        raise MissingModelDirError(os.path.expanduser(ident))
    return ident


def read_config(source: str) -> dict[str, Any]:
    """``config.json`` of a local dir or a cached hub model (no network when offline)."""
    from auralens.io import read_json

    path = Path(source)
    if path.is_dir():
        cfg = path / "config.json"
        if not cfg.is_file():
            raise NotAModelFolderError(source, "no config.json")
    else:
        try:
            from huggingface_hub import hf_hub_download

            cfg = Path(hf_hub_download(source, "config.json"))
        except Exception as exc:  # offline, missing, gated …
            raise ModelUnavailableError(source, short_error(exc)) from exc
    # JSONFileError (an AuralensError) names the file; the registry passes it through as is
    data = read_json(cfg)
    if not isinstance(data, dict):
        raise AuralensError(f"{cfg}: not a JSON object")
    return data


def short_error(exc: BaseException) -> str:
    """``"TypeName: first line of the message"``, for one-line error messages."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def expected_model_type(cls: Any) -> str | None:
    """The ``model_type`` a transformers model/config class loads (None for other classes)."""
    for holder in (cls, getattr(cls, "config_class", None)):
        value = getattr(holder, "model_type", None)
        if isinstance(value, str) and value:
            return value
    return None


def check_checkpoint_kind(cls: Any, source: str, subfolder: str | None = None) -> None:
    """Refuse a local model directory whose config names another architecture than ``cls``.

    Without this, ``from_pretrained`` builds ``cls`` from the foreign config and leaves most
    weights randomly initialised (only a log warning) or fails deep inside with an
    AttributeError. Hub ids and directories without a readable ``config.json`` pass through.

    Raises:
        CheckpointMismatchError: ``model_type`` (transformers) or ``_class_name`` (diffusers)
            differs from what ``cls`` loads.
    """
    from auralens.errors import CheckpointMismatchError
    from auralens.io import read_json

    folder = Path(source) / subfolder if subfolder else Path(source)
    try:
        # a corrupt config.json fails here (JSONFileError names it), not inside transformers
        config = read_json(folder / "config.json")
    except OSError:
        return  # hub id, or no config: from_pretrained reports it
    if not isinstance(config, dict):
        return
    want = expected_model_type(cls)
    if want is not None:
        have = config.get("model_type")
        if have != want:
            if not have:
                raise CheckpointMismatchError(f"{source}: config.json has no model_type, not "
                                              f"a {want!r} checkpoint")
            hint = matching_backend(str(have))
            raise CheckpointMismatchError(
                f"{source}: config.json has model_type {have!r}, not a {want!r} checkpoint"
                + (f"; use the {hint[0]} backend that matches it ('{hint[1]}:{source}')"
                   if hint else ""))
        return
    if not str(getattr(cls, "__module__", "")).startswith("diffusers"):
        return  # a processor / feature extractor: its own files say nothing of the model
    have_class = config.get("_class_name")
    if "model_type" in config or (have_class and have_class != cls.__name__):
        found = f"class {have_class!r}" if have_class else f"model_type {config.get('model_type')!r}"
        raise CheckpointMismatchError(f"{folder}: config.json describes {found}, not a "
                                      f"{cls.__name__} checkpoint")


def matching_backend(model_type: str) -> tuple[str, str] | None:
    """``(stage, backend name)`` of a registered extractor or codec that loads checkpoints of
    ``model_type`` (``"hubert"`` → extractor ``hubert``, ``"dac"`` → codec ``dac``), or None:
    a suggestion must name a backend that exists."""
    from auralens.codecs.base import CODECS
    from auralens.encoders.base import EXTRACTORS

    extractor = MODEL_TYPES.get(model_type)
    if extractor and extractor in EXTRACTORS:
        return "extractor", extractor
    if model_type != "hf" and model_type in CODECS:
        return "codec", model_type
    return None


def warn_missing_weights(model: Any, source: str, missing: Any) -> None:
    """One warning line when ``from_pretrained`` had to initialise weights at random."""
    names = sorted(str(k) for k in (missing or ()))
    if names:
        log.warning("%s: %d weight(s) of %s were not in the checkpoint and are random (e.g. %s)",
                    source, len(names), type(model).__name__, names[0])


def load_pretrained(cls: Any, source: str, **kwargs: Any) -> Any:
    """``cls.from_pretrained(source)`` with the checkpoint kind checked and offline failures
    mapped to ModelUnavailableError (a local directory that fails to load: AuralensError)."""
    check_checkpoint_kind(cls, source, kwargs.get("subfolder"))
    is_model = hasattr(cls, "base_model_prefix")  # a PreTrainedModel, not a config/processor
    try:
        if is_model:
            model, info = cls.from_pretrained(source, output_loading_info=True, **kwargs)
            warn_missing_weights(model, source, info.get("missing_keys"))
            return model
        return cls.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        if Path(source).is_dir():
            folder = Path(source) / kwargs["subfolder"] if kwargs.get("subfolder") else Path(source)
            if is_model and isinstance(exc, OSError) and not has_weights(folder):
                raise NotAModelFolderError(str(folder), "no weights file") from exc
            raise AuralensError(f"{source}: cannot load as {cls.__name__}: {short_error(exc)}") from exc
        raise ModelUnavailableError(source, short_error(exc)) from exc
    except Exception as exc:
        raise_for_bad_weights(exc, source, cls.__name__)
        raise


def pick_device(device: str | None = None) -> str:
    """``"auto"``/None → ``"cuda"`` when available else ``"cpu"``; otherwise the name, checked.

    Raises:
        AuralensError: an unknown device type or one this machine does not have (one line,
            see :func:`auralens.devices.check_device`).
    """
    from auralens.devices import check_device

    return str(check_device(str(device or "auto")))


def torch_dtype(name: str | None) -> Any:
    """``"float16"``/``"bf16"``/… → a torch dtype (None → float32)."""
    import torch

    if name in (None, ""):
        return torch.float32
    key = DTYPES.get(str(name).lower())
    if key is None:
        raise AuralensError(f"unknown dtype {name!r}; use one of {sorted(set(DTYPES.values()))}")
    return getattr(torch, key)


# Files whose bytes decide what a model directory computes: weights and the configs of the
# model, feature extractor, processor and tokenizer. Bookkeeping that training writes beside
# them (run.json, history, optimizer state, training_args.bin) is left out, so rewriting it
# does not invalidate cached embeddings.
_REVISION_FILES = re.compile(
    r"(?:.*\.safetensors|(?:diffusion_)?pytorch_model.*\.bin|model.*\.(?:pt|pth|ckpt)"
    r"|.*\.(?:safetensors|bin)\.index\.json|config\.json"
    r"|(?:preprocessor|processor|feature_extractor|generation|tokenizer)_config\.json"
    r"|(?:tokenizer|special_tokens_map|added_tokens|chat_template)\.json|chat_template\.jinja"
    r"|vocab.*\.(?:txt|json)|merges\.txt|.*\.model|.*\.tiktoken)")
_DIGESTS: dict[tuple[str, int, int, int], str] = {}


def _digest_memo_path() -> Path:
    from auralens.cache import default_cache_dir

    return default_cache_dir() / "file-digests.json"


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes, remembered by (resolved path, size, mtime, ctime).

    Weight files can be gigabytes, so a digest is computed once per version of the file and
    kept in memory and in ``<cache>/file-digests.json``; a rewritten file is hashed again (the
    change time counts too: copies that keep the modification time, ``cp -p`` or
    ``rsync -a``, still change it).
    """
    from auralens.cache import hash_file
    from auralens.io import read_json, write_json

    st = path.stat()
    ident = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if ident in _DIGESTS:
        return _DIGESTS[ident]
    memo_path = _digest_memo_path()
    try:
        memo = read_json(memo_path) if memo_path.is_file() else {}
    except Exception:  # noqa: BLE001 - an unreadable memo is rebuilt, never trusted
        memo = {}
    if not isinstance(memo, dict):
        memo = {}
    entry = memo.get(ident[0])
    if isinstance(entry, dict) and (entry.get("size"), entry.get("mtime_ns"), entry.get("ctime_ns")) \
            == ident[1:]:
        digest = str(entry.get("sha256", ""))
    else:
        digest = ""
    if len(digest) != 64:
        digest = hash_file(path)
        memo[ident[0]] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns,
                          "sha256": digest}
        try:
            write_json(memo_path, memo)
        except OSError as exc:  # a read-only cache only costs re-hashing next time
            log.debug("could not save %s: %s", memo_path, exc)
    _DIGESTS[ident] = digest
    return digest


def model_revision(source: str) -> str:
    """A short identifier of the exact weights and preprocessing, for cache keys.

    The hub commit hash when ``source`` lives in a hub cache snapshot; otherwise a hash of the
    full bytes of every weight file and every model, feature-extractor, processor and
    tokenizer config at the top of the directory, so changing any weight or preprocessing
    option gives a new key, while training bookkeeping beside them (run.json, optimizer state)
    does not (each file's digest is remembered, see :func:`file_digest`).
    """
    path = Path(source)
    if not path.is_dir():
        try:
            from huggingface_hub import hf_hub_download

            path = Path(hf_hub_download(source, "config.json")).parent
        except Exception:
            return ""
    m = re.search(r"snapshots/([0-9a-f]{40})", str(path.resolve()))
    if m:
        return m.group(1)
    h = hashlib.sha256()
    for f in sorted(path.iterdir()):
        if f.is_file() and _REVISION_FILES.fullmatch(f.name):
            h.update(f"{f.name}:{file_digest(f)}\n".encode())
    return h.hexdigest()[:16]


def weights_revision(source: str | Path | None) -> str:
    """What identifies the weights at ``source``, for run.json; never downloads.

    A local model folder: :func:`model_revision` (for a diffusers pipeline folder, with
    ``model_index.json``, its component subfolders count too); a local checkpoint file: the
    first 16 hex digits of its SHA-256; a hub id: the commit of its snapshot in the local hub
    cache. ``""`` when unknown (a hub id not in the cache, a server-side model).
    """
    if source is None or str(source) == "":
        return ""
    path = Path(str(source)).expanduser()
    try:
        if path.is_file():
            return file_digest(path)[:16]
        if path.is_dir():
            if not (path / "model_index.json").is_file():
                return model_revision(str(path))
            h = hashlib.sha256(model_revision(str(path)).encode())
            for sub in sorted(p for p in path.iterdir() if p.is_dir()):
                h.update(f"{sub.name}:{model_revision(str(sub))}\n".encode())
            return h.hexdigest()[:16]
        from huggingface_hub import try_to_load_from_cache

        for name in ("config.json", "model_index.json"):
            hit = try_to_load_from_cache(str(source), name)
            found = re.search(r"snapshots/([0-9a-f]{40})", hit) if isinstance(hit, str) else None
            if found:
                return found.group(1)
    except (OSError, ValueError) as exc:  # a revision is informative only
        log.debug("no revision for %s: %s", source, exc)
    return ""


def backend_record(backend: Any) -> dict[str, str]:
    """``{"name", "revision"}`` of a built stage backend, for run.json's ``models``.

    The revision is the backend's own ``revision`` when it has one, otherwise
    :func:`weights_revision` of the model it loaded (``model_id``, or that of the language
    model it wraps); ``""`` for weight-free backends and models served elsewhere.
    """
    name = str(getattr(backend, "name", type(backend).__name__))
    revision = str(getattr(backend, "revision", "") or "")
    if not revision:
        for holder in (backend, getattr(backend, "lm", None), getattr(backend, "llm", None)):
            model_id = getattr(holder, "model_id", None) if holder is not None else None
            if isinstance(model_id, (str, Path)) and not str(model_id).startswith(("http:", "https:")):
                revision = weights_revision(model_id)
                break
    return {"name": name, "revision": revision}


def parse_layer(layer: Any, first_name: str, num_layers: int) -> str | int:
    """Normalise a layer option.

    Accepts the first-state name (``"patch"`` / ``"features"``), ``"last"``, or an int k with
    ``0 <= k <= num_layers`` (negative k counts from the end, ``-1`` = last block).

    Raises:
        LayerError: unknown name or out-of-range index.
    """
    if layer is None:
        return num_layers
    if isinstance(layer, str):
        low = layer.strip().lower()
        if low in {first_name, "first"}:
            return first_name
        if low == "last":
            return num_layers
        try:
            layer = int(low)
        except ValueError:
            raise LayerError(
                f"unknown layer {layer!r}; use {first_name!r}, 'last', 0..{num_layers} or -1..-{num_layers + 1}"
            ) from None
    if isinstance(layer, bool) or not isinstance(layer, int):
        raise LayerError(f"layer must be {first_name!r}, 'last' or an int, got {layer!r}")
    k = layer + num_layers + 1 if layer < 0 else layer
    if not 0 <= k <= num_layers:
        raise LayerError(f"layer {layer} is out of range; the model has blocks 1..{num_layers} "
                         f"(0: {first_name}; negative counts from the end)")
    return k


def batch_size_option(value: Any) -> int:
    """The ``batch_size`` option: a whole number ≥ 1 (``0`` or ``-3`` is refused, not run as 1).

    Raises:
        SpecError: any other value.
    """
    if not is_whole(value, 1):
        raise SpecError(f"batch_size must be a whole number ≥ 1, got {value!r}")
    return int(value)


def bool_option(name: str, value: Any) -> bool:
    """A true/false option (``trim=nope`` or ``trim=2`` is refused, not read as true).

    Raises:
        SpecError: anything but a bool (see :func:`auralens.checks.is_bool`).
    """
    flag = as_bool(value)
    if flag is None:
        raise SpecError(f"{name} must be true or false, got {value!r}")
    return flag


def build_hf(spec: ModelSpec, **params: Any) -> Any:
    """Generic ``hf`` backend: pick the extractor backend from ``config.model_type``.

    Examples:
        ``hf:MIT/ast-finetuned-audioset-10-10-0.4593@layer=4``, ``/local/dir@layer=2``.

    Raises:
        ModelUnavailableError: the config cannot be found offline.
        AuralensError: the model type is not an audio encoder auralens supports.
    """
    from auralens.encoders.base import EXTRACTORS

    source = model_source(spec)
    cfg = read_config(source)
    model_type = str(cfg.get("model_type", ""))
    backend = MODEL_TYPES.get(model_type)
    if backend is None:
        raise AuralensError(
            f"{source}: model_type {model_type!r} is not a supported audio encoder "
            f"(supported: {', '.join(sorted(MODEL_TYPES))})"
        )
    factory: Callable[..., Any] = EXTRACTORS.get(backend)
    return factory(ModelSpec(backend, source, dict(params), spec.raw), **params)
