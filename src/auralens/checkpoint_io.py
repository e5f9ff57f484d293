"""Safetensors files with a JSON header: the container of every auralens checkpoint.

The header is stored as JSON under the metadata key ``auralens``; what the tensors and
header fields mean is up to each format (gates: :mod:`auralens.sonify.checkpoint`;
separators: :mod:`auralens.scene.separate.tdcnpp`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from auralens.errors import AuralensError
from auralens.io import atomic_path

#: Metadata key holding the JSON header.
HEADER_KEY = "auralens"


def write_checkpoint(path: str | Path, tensors: dict[str, torch.Tensor], header: dict[str, Any]) -> Path:
    """Atomically write ``tensors`` (copied to contiguous CPU memory) with ``header``."""
    from safetensors.torch import save_file

    data = {k: v.detach().cpu().contiguous().clone() for k, v in tensors.items()}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(data, str(tmp), metadata={HEADER_KEY: json.dumps(header, default=str)})
    return path


def _open_error(path: Path, what: str, error: type[AuralensError], exc: Exception) -> AuralensError:
    return error(f"{path}: unreadable {what} checkpoint ({str(exc).splitlines()[0] if str(exc) else exc!r})")


def _parse_header(path: Path, meta: dict[str, str], what: str, error: type[AuralensError]) -> dict[str, Any]:
    if HEADER_KEY not in meta:
        raise error(f"{path}: no auralens header; not a {what} checkpoint")
    try:
        header = json.loads(meta[HEADER_KEY])
    except json.JSONDecodeError as exc:
        raise error(f"{path}: corrupt {what} checkpoint header ({exc})") from exc
    if not isinstance(header, dict):
        raise error(f"{path}: corrupt {what} checkpoint header (not a mapping)")
    return header


def _read(path: str | Path, what: str, error: type[AuralensError], device: str | None
          ) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Header and (unless ``device`` is None) tensors, from one opening of the file."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {what} checkpoint not found")
    try:
        with safe_open(str(path), framework="pt", device=device or "cpu") as fh:
            meta = fh.metadata() or {}
            header = _parse_header(path, meta, what, error)
            tensors = {} if device is None else {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    except AuralensError:
        raise
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types
        raise _open_error(path, what, error, exc) from exc
    return header, tensors


def read_header(path: str | Path, what: str, error: type[AuralensError]) -> dict[str, Any]:
    """The JSON header only (no tensor is read).

    Raises:
        error: the file is missing, not safetensors, or has no auralens header (``what``
            names the expected kind in the message).
    """
    return _read(path, what, error, None)[0]


def read_checkpoint(path: str | Path, what: str, error: type[AuralensError],
                    device: str = "cpu") -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """``(header, tensors)`` of a checkpoint, read in one pass; errors as in :func:`read_header`."""
    return _read(path, what, error, device)
