"""Oracle masks computed from the reference sources: upper bounds for mask-based separation.

Both use the same STFT as TDCN++ (512-sample Hann window, hop 128 at 16 kHz), so they bound
what a perfect masking network with that front end could reach.

* IRM (ideal ratio mask): ``M_i = |S_i| / Σ_j |S_j|`` — masks sum to one in every bin, so the
  estimates sum to the mixture.
* IBM (ideal binary mask): ``M_i = 1`` where source ``i`` has the largest magnitude, else 0.

The estimates are the masked mixture STFT inverted; rows follow the reference order and are
zero-padded to ``num_sources`` rows.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from auralens.errors import AuralensError
from auralens.scene.separate.base import MIN_SEPARATE_SAMPLES, ReferenceSeparator, check_options
from auralens.scene.separate.tdcnpp import TDCNppConfig, istft, stft
from auralens.specs import ModelSpec


class OracleMaskSeparator(ReferenceSeparator):
    """Ideal ratio (``kind="irm"``) or binary (``kind="ibm"``) masks from the references."""

    def __init__(self, kind: str = "irm", num_sources: int = 4, n_fft: int = 512, hop: int = 128,
                 sample_rate: int = 16000) -> None:
        if kind not in ("irm", "ibm"):
            raise AuralensError(f"unknown oracle mask {kind!r}; use irm or ibm")
        self.kind = kind
        self.name = f"oracle-{kind}"
        self.num_sources = num_sources
        self.sample_rate = sample_rate
        self.stft_cfg = TDCNppConfig(sample_rate=sample_rate, n_fft=n_fft, hop=hop)
        # A window longer than the default padding would still be refused by torch.stft.
        self.min_samples = max(MIN_SEPARATE_SAMPLES, n_fft)

    def masks(self, refs: np.ndarray) -> torch.Tensor:
        """``[N, T]`` references → ``[N, F, K]`` masks."""
        mags = stft(torch.from_numpy(np.asarray(refs, np.float32)), self.stft_cfg).abs()
        if self.kind == "irm":
            return mags / (mags.sum(0, keepdim=True) + 1e-8)
        winner = mags.argmax(0, keepdim=True)
        return (torch.arange(mags.shape[0])[:, None, None] == winner).float()

    def separate_with_refs(self, mix: np.ndarray, refs: np.ndarray) -> np.ndarray:
        mix_t = torch.from_numpy(np.asarray(mix, np.float32))
        refs = np.asarray(refs, np.float32)[:, : mix_t.shape[-1]]
        spec = stft(mix_t, self.stft_cfg)
        est = istft(self.masks(refs) * spec.unsqueeze(0), self.stft_cfg, mix_t.shape[-1]).numpy()
        rows = max(est.shape[0], self.num_sources)
        out = np.zeros((rows, mix_t.shape[-1]), np.float32)
        out[: est.shape[0]] = est
        return out


_OPTIONS = dict.fromkeys(("num_sources", "n_fft", "hop", "sample_rate"), int)


def build_irm(spec: ModelSpec, **params: Any) -> OracleMaskSeparator:
    """Registry factory for ``oracle-irm`` (params: num_sources, n_fft, hop)."""
    return OracleMaskSeparator("irm", **check_options("oracle-irm", params, _OPTIONS))


def build_ibm(spec: ModelSpec, **params: Any) -> OracleMaskSeparator:
    """Registry factory for ``oracle-ibm`` (params: num_sources, n_fft, hop)."""
    return OracleMaskSeparator("ibm", **check_options("oracle-ibm", params, _OPTIONS))
