"""The ``Separator`` protocol: a mixture → M source estimates."""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

from auralens.registry import Registry


class Separator(ABC):
    """Universal sound separation.

    Attributes:
        name: backend + checkpoint (run.json).
        sample_rate: rate of input and output (16 kHz for FUSS models).
        num_sources: M, the number of estimates returned.
    """

    name: str = "separator"
    sample_rate: int = 16000
    num_sources: int = 4

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
