"""Torch device names checked against the machine, with one-line errors."""

from __future__ import annotations

from typing import Any

from auralens.errors import AuralensError

# The device types auralens runs models on.
_TYPES = ("cpu", "cuda", "mps")


def check_device(name: str, error: type[AuralensError] = AuralensError, what: str = "device") -> Any:
    """``auto`` → cuda when available, else cpu; any other name must be a device this machine has.

    Args:
        name: ``auto``, ``cpu``, ``cuda``, ``cuda:N``, ``mps`` …
        error: the error class to raise (a stage's own, e.g. ``TrainError``).
        what: how the option is called in messages (``--device``).

    Returns:
        the ``torch.device``.

    Raises:
        error: an unknown name, or a device this machine does not have.
    """
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        dev = None
    if dev is None or dev.type not in _TYPES:
        # torch knows more types (meta, xla, hpu …) that cannot run a model here.
        raise error(f"{what}: unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise error(f"{what} {name}: CUDA is not available on this machine; use cpu or auto")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise error(f"{what} {name}: only {torch.cuda.device_count()} CUDA device(s) present")
    elif dev.type == "mps" and not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        raise error(f"{what} {name}: MPS is not available on this machine; use cpu or auto")
    return dev
