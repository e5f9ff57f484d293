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
import json
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from auralens.errors import AuralensError, ModelUnavailableError
from auralens.specs import ModelSpec

log = logging.getLogger(__name__)

#: ``config.model_type`` → extractor backend name.
MODEL_TYPES: dict[str, str] = {
    "audio-spectrogram-transformer": "ast",
    "hubert": "hubert",
    "wav2vec2": "wav2vec2",
    "wavlm": "wavlm",
    "data2vec-audio": "wav2vec2",
    "whisper": "whisper",
    "clap": "clap",
}

_DTYPES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16",
           "half": "float16", "bfloat16": "bfloat16", "bf16": "bfloat16"}


class LayerError(AuralensError, ValueError):
    """A layer name or index the model does not have."""


def model_source(spec: ModelSpec, default: str | None = None) -> str:
    """The string to pass to ``from_pretrained``: a local directory or a hub id.

    Raises:
        ModelUnavailableError: no id given and no default, or a path that does not exist.
    """
    if spec.path is not None:
        return str(spec.path)
    ident = spec.id or default
    if not ident:
        raise ModelUnavailableError(str(spec), "no model id or directory given")
    if ident.startswith(("/", "./", "../", "~")) and not Path(os.path.expanduser(ident)).exists():
        raise ModelUnavailableError(ident, "directory does not exist")
    return ident


def read_config(source: str) -> dict[str, Any]:
    """``config.json`` of a local dir or a cached hub model (no network when offline)."""
    path = Path(source)
    if path.is_dir():
        cfg = path / "config.json"
        if not cfg.exists():
            raise ModelUnavailableError(source, "the directory has no config.json")
        return json.loads(cfg.read_text(encoding="utf-8"))
    try:
        from huggingface_hub import hf_hub_download

        return json.loads(Path(hf_hub_download(source, "config.json")).read_text(encoding="utf-8"))
    except Exception as exc:  # offline, missing, gated …
        raise ModelUnavailableError(source, _short(exc)) from exc


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def load_pretrained(cls: Any, source: str, **kwargs: Any) -> Any:
    """``cls.from_pretrained(source)`` with offline failures mapped to ModelUnavailableError."""
    try:
        return cls.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelUnavailableError(source, _short(exc)) from exc


def pick_device(device: str | None = None) -> str:
    """``"auto"``/None → ``"cuda"`` when available else ``"cpu"``; otherwise unchanged."""
    import torch

    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    return str(device)


def torch_dtype(name: str | None) -> Any:
    """``"float16"``/``"bf16"``/… → a torch dtype (None → float32)."""
    import torch

    if name in (None, ""):
        return torch.float32
    key = _DTYPES.get(str(name).lower())
    if key is None:
        raise AuralensError(f"unknown dtype {name!r}; use one of {sorted(set(_DTYPES.values()))}")
    return getattr(torch, key)


def model_revision(source: str) -> str:
    """A short identifier of the exact weights, for cache keys.

    The hub commit hash when ``source`` lives in a hub cache snapshot; otherwise a hash of
    ``config.json`` plus the size and first/last 64 KiB of every weight file (cheap even for
    multi-GB checkpoints, and different for two random initialisations).
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
        if f.name == "config.json" or f.suffix in {".safetensors", ".bin", ".pt", ".pth", ".ckpt"}:
            size = f.stat().st_size
            h.update(f"{f.name}:{size}".encode())
            with open(f, "rb") as fh:
                h.update(fh.read(1 << 16))
                if size > 1 << 17:
                    fh.seek(-(1 << 16), os.SEEK_END)
                    h.update(fh.read())
    return h.hexdigest()[:16]


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
