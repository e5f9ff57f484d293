"""Unsupervised NMF baseline (no training data, numpy only).

1. ``V = |STFT(x)|`` with the TDCN++ front end (512 / 128 at 16 kHz), ``[F, K]``.
2. KL-divergence NMF ``V ≈ W H`` with ``n_components`` components by multiplicative updates
   (Lee & Seung), ``W [F, C]`` spectral templates, ``H [C, K]`` activations.
3. The components are grouped into ``M`` sources by k-means (k-means++ start, seeded) on
   their log spectral templates, normalised to unit norm: components with similar spectra
   are assumed to belong to one sound. (Clustering activations instead is available with
   ``cluster="activations"``.)
4. Each group's model ``W_g H_g`` gives a soft (Wiener-like) mask ``W_g H_g / W H`` applied to
   the complex mixture STFT; masks sum to one, so the estimates sum to the mixture.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from auralens.errors import AuralensError
from auralens.scene.separate.base import MIN_SEPARATE_SAMPLES, Separator, check_options
from auralens.scene.separate.tdcnpp import TDCNppConfig, istft, stft
from auralens.specs import ModelSpec

EPS = 1e-10


def nmf_kl(v: np.ndarray, n_components: int, n_iter: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """KL-NMF by multiplicative updates: ``v [F, K] ≈ W [F, C] @ H [C, K]``."""
    f, k = v.shape
    scale = np.sqrt(v.mean() / n_components + EPS)
    w = (rng.uniform(0.5, 1.5, (f, n_components)) * scale).astype(v.dtype)
    h = (rng.uniform(0.5, 1.5, (n_components, k)) * scale).astype(v.dtype)
    ones = np.ones_like(v)
    for _ in range(n_iter):
        h *= (w.T @ (v / (w @ h + EPS))) / (w.T @ ones + EPS)
        w *= ((v / (w @ h + EPS)) @ h.T) / (ones @ h.T + EPS)
        norm = w.sum(0, keepdims=True) + EPS  # keep templates unit-sum, move scale into H
        w /= norm
        h *= norm.T
    return w, h


def kmeans(x: np.ndarray, k: int, rng: np.random.Generator, n_iter: int = 50) -> np.ndarray:
    """Labels ``[N]`` of k-means on rows of ``x [N, D]`` (k-means++ init); k ≤ N."""
    n = x.shape[0]
    centers = [x[rng.integers(n)]]
    for _ in range(1, k):
        d2 = np.min(((x[:, None, :] - np.array(centers)[None]) ** 2).sum(-1), axis=1)
        p = d2 / d2.sum() if d2.sum() > 0 else np.full(n, 1 / n)
        centers.append(x[rng.choice(n, p=p)])
    c = np.array(centers)
    labels = np.zeros(n, int)
    for _ in range(n_iter):
        new = ((x[:, None, :] - c[None]) ** 2).sum(-1).argmin(1)
        if np.array_equal(new, labels) and _ > 0:
            break
        labels = new
        for j in range(k):
            if np.any(labels == j):
                c[j] = x[labels == j].mean(0)
    return labels


class NMFSeparator(Separator):
    """KL-NMF + k-means grouping into ``num_sources`` estimates (see module docstring)."""

    def __init__(self, num_sources: int = 4, n_components: int = 16, n_iter: int = 100,
                 cluster: str = "templates", seed: int = 0, n_fft: int = 512, hop: int = 128,
                 sample_rate: int = 16000) -> None:
        if cluster not in ("templates", "activations"):
            raise AuralensError(f"nmf cluster must be templates or activations, got {cluster!r}")
        if n_components < num_sources:
            raise AuralensError("nmf needs n_components >= num_sources")
        self.name = f"nmf(C={n_components},{cluster})"
        self.num_sources = num_sources
        self.n_components = n_components
        self.n_iter = n_iter
        self.cluster = cluster
        self.seed = seed
        self.sample_rate = sample_rate
        self.stft_cfg = TDCNppConfig(sample_rate=sample_rate, n_fft=n_fft, hop=hop)
        # A window longer than the default padding would still be refused by torch.stft.
        self.min_samples = max(MIN_SEPARATE_SAMPLES, n_fft)

    def separate(self, mix: np.ndarray) -> np.ndarray:
        mix_t = torch.from_numpy(np.ascontiguousarray(mix, np.float32))
        spec = stft(mix_t, self.stft_cfg)  # [F, K]
        v = spec.abs().numpy().astype(np.float32) + np.float32(EPS)  # float32: twice as fast
        rng = np.random.default_rng(self.seed)
        w, h = nmf_kl(v, self.n_components, self.n_iter, rng)
        if self.cluster == "templates":
            feats = np.log(w.T + 1e-6)
        else:
            feats = np.log(h + 1e-6)
        feats = feats - feats.mean(1, keepdims=True)
        feats /= np.linalg.norm(feats, axis=1, keepdims=True) + EPS
        labels = kmeans(feats, self.num_sources, rng)
        full = w @ h + EPS
        masks = np.stack([(w[:, labels == g] @ h[labels == g]) / full for g in range(self.num_sources)])
        est = istft(torch.from_numpy(masks.astype(np.float32)) * spec.unsqueeze(0), self.stft_cfg,
                    mix_t.shape[-1])
        return est.numpy()


def build_nmf(spec: ModelSpec, **params: Any) -> NMFSeparator:
    """Registry factory for ``nmf`` (params: num_sources, n_components, n_iter, cluster, seed)."""
    ints = dict.fromkeys(("num_sources", "n_components", "n_iter", "n_fft", "hop", "sample_rate"), int)
    check_options("nmf", params, {**ints, "cluster": str, "seed": int}, minimum={"seed": 0})
    return NMFSeparator(**params)
