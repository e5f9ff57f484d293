"""Type tests for option values from YAML, ``--set`` and the Python API.

YAML turns ``true`` into a bool, and a bool is an ``int`` to Python, so ``epochs: true`` would
pass a plain ``isinstance(value, int)`` test as 1. These predicates refuse bools and accept
numpy scalars, which the Python API may be handed. The other way round, a true/false option
takes only a real bool: ``bool("false")`` and ``bool(2)`` are both True. Option text
(``@sample=true``, ``--set data.reverb=no``) is turned into bools where it is parsed
(:mod:`auralens.specs`, :mod:`auralens.config`), before these checks see it.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def is_whole(value: Any, low: int | None = None) -> bool:
    """True for an integer (not a bool) that is ≥ ``low`` when given."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        return False
    return low is None or bool(value >= low)


def is_number(value: Any) -> bool:
    """True for a finite int or float (numpy scalars included), not a bool."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond float range (``lr=1e400`` spelt out in digits)
        return False


def is_bool(value: Any) -> bool:
    """True for a bool (numpy's included); False for ``0``/``1``, ``"true"``, None …"""
    return isinstance(value, (bool, np.bool_))


def as_bool(value: Any) -> bool | None:
    """``value`` as a Python bool when :func:`is_bool`, else None (so a caller can name the
    option in its own error)."""
    return bool(value) if is_bool(value) else None


def as_whole(value: Any, low: int = 0) -> int | None:
    """``value`` as a whole number ≥ ``low``: an integer, or a whole-valued float (``1.0`` →
    1); None for anything else (``1.5``, ``"3"``, a bool)."""
    if is_whole(value, low):
        return int(value)
    if is_number(value) and float(value).is_integer() and value >= low:
        return int(value)
    return None


def plain(value: Any) -> Any:
    """``value`` with numpy scalars (also inside lists) turned into Python numbers, so
    settings that passed the checks above can be written as JSON."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value
