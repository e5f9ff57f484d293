"""Content-addressed cache for embeddings, latents and other per-clip arrays.

The key is a hash of the audio *content* (not its path) plus everything that changes the
result: backend name, model revision, sample rate, layer, dtype and any extra options. Entries
are safetensors files written atomically, so a killed job never leaves a corrupt entry.
The cache lives in one directory: ``$AURALENS_CACHE`` or the user cache dir.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from auralens.io import atomic_path


def default_cache_dir() -> Path:
    """``$AURALENS_CACHE`` or ``$XDG_CACHE_HOME/auralens`` (``~/.cache/auralens``)."""
    env = os.environ.get("AURALENS_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "auralens"


def hash_array(wave: np.ndarray) -> str:
    """SHA-256 of an array's dtype, shape and bytes."""
    arr = np.ascontiguousarray(wave)
    h = hashlib.sha256()
    h.update(str(arr.dtype).encode())
    h.update(str(arr.shape).encode())
    h.update(arr.tobytes())
    return h.hexdigest()


def hash_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _key_part(value: Any) -> Any:
    # numpy prints long arrays with "...", so str() would let arrays that differ in the
    # middle share a key: hash their content instead.
    if isinstance(value, np.ndarray):
        return f"ndarray:{hash_array(value)}"
    return str(value)


def make_key(content_hash: str, **parts: Any) -> str:
    """Combine a content hash with the settings that determine the result."""
    blob = json.dumps({"content": content_hash, **parts}, sort_keys=True, default=_key_part)
    return hashlib.sha256(blob.encode()).hexdigest()


class ArrayCache:
    """A directory of safetensors entries keyed by :func:`make_key`.

    Args:
        root: cache directory; default :func:`default_cache_dir`.
        namespace: sub-directory ("embeddings", "latents" …).
    """

    def __init__(self, root: str | Path | None = None, namespace: str = "arrays") -> None:
        self.root = Path(root) if root is not None else default_cache_dir()
        self.dir = self.root / namespace
        self.hits = 0
        self.misses = 0

    def path_for(self, key: str) -> Path:
        return self.dir / key[:2] / f"{key}.safetensors"

    def __contains__(self, key: str) -> bool:
        """True when the entry exists and is readable: a truncated one is dropped (and so is
        recomputed by callers that trust presence)."""
        return self.shapes(key) is not None

    def shapes(self, key: str) -> dict[str, list[int]] | None:
        """The stored arrays' shapes, read from the entry's header, or None when it is missing
        or unreadable (then it is dropped, as :meth:`get` does)."""
        from safetensors import safe_open

        path = self.path_for(key)
        if not path.is_file():
            return None
        try:
            with safe_open(str(path), framework="numpy") as fh:
                return {name: list(fh.get_slice(name).get_shape()) for name in fh.keys()}
        except Exception:
            path.unlink(missing_ok=True)
            return None

    def get(self, key: str) -> dict[str, np.ndarray] | None:
        """Return the stored arrays, or None when missing or unreadable (then it is dropped)."""
        from safetensors.numpy import load_file

        path = self.path_for(key)
        if not path.exists():
            self.misses += 1
            return None
        try:
            out = load_file(str(path))
        except Exception:
            path.unlink(missing_ok=True)  # a damaged entry is recomputed, never trusted
            self.misses += 1
            return None
        self.hits += 1
        return out

    def put(self, key: str, arrays: dict[str, np.ndarray], meta: dict[str, str] | None = None) -> Path:
        """Atomically store named arrays under ``key``."""
        from safetensors.numpy import save_file

        path = self.path_for(key)
        with atomic_path(path) as tmp:
            save_file({k: np.ascontiguousarray(v) for k, v in arrays.items()}, str(tmp),
                      metadata=meta)
        return path
