"""The ``Separator`` protocol: a mixture → M source estimates."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from auralens.registry import Registry

#: Inputs shorter than this are zero-padded for the separator and the estimates cut back
#: (an STFT with centred frames needs more samples than half its window).
MIN_SEPARATE_SAMPLES = 2048


class Separator(ABC):
    """Universal sound separation.

    Attributes:
        name: backend + checkpoint (run.json).
        sample_rate: rate of input and output (16 kHz for FUSS models).
        num_sources: M, the number of estimates returned.
        min_samples: shortest input ``separate`` accepts; shorter mixtures are zero-padded to
            it and the estimates cut back (an STFT with centred frames needs more samples than
            half its window).
    """

    name: str = "separator"
    sample_rate: int = 16000
    num_sources: int = 4
    min_samples: int = MIN_SEPARATE_SAMPLES

    @abstractmethod
    def separate(self, mix: np.ndarray) -> np.ndarray:
        """``[T]`` float32 mixture → ``[M, T]`` float32 estimates (same length)."""


class ReferenceSeparator(Separator):
    """An oracle that needs the reference sources (evaluation upper bounds only).

    ``separate`` without references is refused; evaluation calls :meth:`separate_with_refs`.
    """

    def separate(self, mix: np.ndarray) -> np.ndarray:
        from auralens.errors import AuralensError

        raise AuralensError(f"{self.name} needs the reference sources; it is usable in evaluation only")

    @abstractmethod
    def separate_with_refs(self, mix: np.ndarray, refs: np.ndarray) -> np.ndarray:
        """``[T]`` mixture and ``[N, T]`` references → ``[max(N, M), T]`` estimates."""


SEPARATORS: Registry[Separator] = Registry("separator", default="tdcnpp")

SEPARATORS.register("tdcnpp", "auralens.scene.separate.tdcnpp:build_tdcnpp")
SEPARATORS.register("nmf", "auralens.scene.separate.nmf:build_nmf")
SEPARATORS.register("oracle-irm", "auralens.scene.separate.oracle:build_irm", aliases=("irm",))
SEPARATORS.register("oracle-ibm", "auralens.scene.separate.oracle:build_ibm", aliases=("ibm",))
# A bare checkpoint path ("/runs/x/best.safetensors") is a TDCN++ checkpoint.
SEPARATORS.register("path", "auralens.scene.separate.tdcnpp:build_tdcnpp")


def check_options(backend: str, params: dict[str, Any], allowed: dict[str, type],
                  minimum: dict[str, int] | None = None) -> dict[str, Any]:
    """Spec options of a separator backend, checked by name and type before anything is built.

    Whole-number options must be at least 1 (sizes, counts) unless ``minimum`` says otherwise
    (``{"seed": 0}``).

    Raises:
        SpecError: an unknown option or a value of the wrong type (one line).
    """
    from auralens.specs import SpecError

    unknown = sorted(set(params) - set(allowed))
    if unknown:
        raise SpecError(f"unknown {backend} options {unknown}; use {', '.join(sorted(allowed))}")
    for key, value in params.items():
        want, low = allowed[key], (minimum or {}).get(key, 1)
        if isinstance(value, bool) or not isinstance(value, want) or (want is int and value < low):
            kind = f"a whole number ≥ {low}" if want is int else want.__name__
            raise SpecError(f"{backend} option {key} must be {kind}, got {value!r}")
    return params
