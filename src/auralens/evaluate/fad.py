"""Fréchet Audio Distance (FAD) and its extrapolation to infinite sample size (FAD∞).

FAD fits one Gaussian to the embedding *frames* of a reference set and one to those of an
evaluated set and reports the Fréchet (2-Wasserstein) distance between the two fits::

    FAD = ‖μ₁ − μ₂‖² + tr(Σ₁) + tr(Σ₂) − 2 tr((Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2})

It is a *set* metric: a covariance of ``dim`` dimensions needs clearly more than ``dim``
frames. Computing it on one short clip (e.g. 5 s of a 768-dim model at 50 frames/s = 250
frames) gives a singular covariance, and the usual ``scipy.linalg.sqrtm(Σ₁ Σ₂)`` then
returns complex values, NaN or ±inf. Here:

* Everything is float64.
* The trace term uses the symmetric positive semi-definite matrix ``M = Σ₁^{1/2} Σ₂ Σ₁^{1/2}``
  (similar to ``Σ₁ Σ₂``, so it has the same eigenvalues). ``Σ₁^{1/2}`` comes from a
  symmetric eigendecomposition with eigenvalues clipped at 0, ``M`` is symmetrised and its
  eigenvalues (clipped at 0, removing round-off negatives) give
  ``tr(M^{1/2}) = Σ √λᵢ``. No complex arithmetic, no NaN.
* Too few frames (``n <= dim``) raises :class:`InsufficientFramesError` unless a
  shrinkage estimate is asked for: ``shrinkage="ledoit-wolf"`` (Ledoit & Wolf 2004, optimal
  intensity towards ``(tr Σ / dim) I``) or a fixed intensity ``float`` in ``[0, 1]``.
* A result that round-off pushes a hair below zero is reported as 0.

FAD∞ (Chong & Forsyth 2020, "Effectively Unbiased FID"): FAD is biased upwards by a term
that shrinks like ``1/n``. :func:`fad_inf` computes FAD for several evaluated-subset sizes
``n``, fits ``FAD(n) = a + b / n`` by least squares and reports the intercept ``a``.
Subsets are drawn without replacement, at sizes evenly spaced in ``1/n``; fadtk draws with
replacement at sizes evenly spaced in ``n`` from 500, and a draw with replacement repeats
frames, which keeps part of the ``1/n`` bias in its intercept. Values therefore differ from
fadtk's FAD-inf (ours is ≈ 0 for two samples of one distribution).
The extrapolation is not clamped: a negative intercept (FAD itself is never negative), or a
fit with ``r² <`` :data:`FAD_INF_MIN_R2` (the points do not follow ``a + b / n``, e.g. when
every FAD(n) is sampling noise around 0 for two samples of one distribution), is reported as
it is, with a warning (:attr:`FadInfResult.warnings` and the log).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from auralens.checks import is_number
from auralens.errors import AuralensError

log = logging.getLogger(__name__)

Shrinkage = str | float | None

#: Below this r² of the ``FAD(n) = a + b / n`` fit, FAD∞ comes with a warning: under half of
#: the spread of the FAD(n) points follows the ``1/n`` line, so the intercept is mostly noise.
FAD_INF_MIN_R2 = 0.5


class InsufficientFramesError(AuralensError, ValueError):
    """A covariance was requested from too few frames (``n <= dim``)."""


class MetricInputError(AuralensError, ValueError):
    """Embeddings that cannot be scored (wrong shape, NaN/inf, dims that differ)."""


@dataclass(frozen=True)
class GaussianStats:
    """Mean and covariance of a set of embedding frames (reusable, cacheable).

    Attributes:
        mu: ``[D]`` float64 mean.
        sigma: ``[D, D]`` float64 covariance (unbiased, possibly shrunk).
        n: number of frames the statistics were computed from.
        shrinkage: intensity actually applied (0.0 when none).
        embedder: name of the embedder that produced the frames ("" when unknown).
    """

    mu: np.ndarray
    sigma: np.ndarray
    n: int
    shrinkage: float = 0.0
    embedder: str = ""

    @property
    def dim(self) -> int:
        return int(self.mu.shape[0])

    def save(self, path: str | Path) -> Path:
        """Atomically write the statistics to an ``.npz`` file."""
        from auralens.io import atomic_path

        path = Path(path)
        with atomic_path(path) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, mu=self.mu, sigma=self.sigma, n=np.int64(self.n),
                     shrinkage=np.float64(self.shrinkage), embedder=np.str_(self.embedder))
        return path

    @classmethod
    def load(cls, path: str | Path) -> GaussianStats:
        """Read statistics written by :meth:`save`."""
        with np.load(Path(path), allow_pickle=False) as z:
            return cls(z["mu"].astype(np.float64), z["sigma"].astype(np.float64), int(z["n"]),
                       float(z["shrinkage"]), str(z["embedder"]))

    def to_arrays(self) -> dict[str, np.ndarray]:
        """Arrays for :class:`auralens.cache.ArrayCache`."""
        return {"mu": self.mu, "sigma": self.sigma, "n": np.array([self.n], dtype=np.int64),
                "shrinkage": np.array([self.shrinkage])}

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], embedder: str = "") -> GaussianStats:
        return cls(arrays["mu"].astype(np.float64), arrays["sigma"].astype(np.float64),
                   int(arrays["n"][0]), float(arrays["shrinkage"][0]), embedder)


def as_frames(frames: np.ndarray | Sequence[np.ndarray], what: str = "frames") -> np.ndarray:
    """Stack frames (one ``[N, D]`` array or a list of per-clip ``[n_i, D]``) to float64 ``[N, D]``.

    Raises:
        MetricInputError: not 2-D, dims differ, empty, or NaN/inf values.
    """
    if isinstance(frames, np.ndarray):
        arr = frames
    else:
        parts = [np.asarray(f) for f in frames]
        if not parts:
            raise MetricInputError(f"{what}: no embeddings given")
        dims = {p.shape[-1] for p in parts if p.ndim == 2}
        if len(dims) > 1 or any(p.ndim != 2 for p in parts):
            raise MetricInputError(f"{what}: every clip must be [frames, dim] with one dim, "
                                   f"got shapes {[p.shape for p in parts][:5]}")
        arr = np.concatenate(parts, axis=0)
    if arr.ndim != 2:
        raise MetricInputError(f"{what}: expected [frames, dim], got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise MetricInputError(f"{what}: empty embedding array {arr.shape}")
    arr = np.asarray(arr, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        raise MetricInputError(f"{what}: embeddings contain NaN or inf")
    return arr


def ledoit_wolf_intensity(x: np.ndarray) -> float:
    """Ledoit–Wolf optimal shrinkage intensity towards ``(tr S / D) I``.

    Args:
        x: ``[N, D]`` frames (float64).
    Returns:
        intensity in ``[0, 1]`` (the closed form of Ledoit & Wolf 2004, as in scikit-learn).
    """
    n, d = x.shape
    xc = x - x.mean(axis=0)
    s = xc.T @ xc / n  # biased covariance, as in the estimator's derivation
    mu = np.trace(s) / d
    # δ² = ‖S − μI‖²_F / d ; β̄² = (1/n²) Σ_k ‖x_k x_kᵀ − S‖²_F / d
    delta = (np.sum(s * s) - 2 * mu * np.trace(s) + d * mu * mu) / d
    x2 = xc * xc
    beta = (np.sum(x2.T @ x2) / n - np.sum(s * s)) / (n * d)
    beta = min(beta, delta)
    return 0.0 if delta <= 0 else float(np.clip(beta / delta, 0.0, 1.0))


def check_shrinkage(shrinkage: Shrinkage) -> None:
    """Refuse a shrinkage :func:`compute_stats` cannot use (callers check it before embedding).

    Raises:
        MetricInputError: not None, ``"ledoit-wolf"`` (``"lw"``) or a number in ``[0, 1]``.
    """
    if shrinkage is None:
        return
    if isinstance(shrinkage, str):
        if shrinkage.lower().replace("_", "-") not in {"ledoit-wolf", "lw"}:
            raise MetricInputError(f"unknown shrinkage {shrinkage!r}; use 'ledoit-wolf' or a float")
    elif not (is_number(shrinkage) and 0.0 <= shrinkage <= 1.0):
        raise MetricInputError(f"shrinkage intensity must be in [0, 1], got {shrinkage!r}")


def compute_stats(frames: np.ndarray | Sequence[np.ndarray], *, shrinkage: Shrinkage = None,
                  embedder: str = "") -> GaussianStats:
    """Gaussian fit of embedding frames.

    Args:
        frames: ``[N, D]`` or a list of ``[n_i, D]`` arrays (pooled).
        shrinkage: None (plain unbiased covariance; requires ``N > D``), ``"ledoit-wolf"``
            (data-driven intensity) or a float in ``[0, 1]``; the shrunk covariance is
            ``(1 − α) S + α (tr S / D) I`` where ``S`` is the unbiased sample covariance.
        embedder: name recorded in the stats.

    Raises:
        InsufficientFramesError: ``N <= D`` without shrinkage, or ``N < 2``.
        MetricInputError: bad shapes / non-finite values / bad shrinkage.
    """
    check_shrinkage(shrinkage)
    x = as_frames(frames)
    n, d = x.shape
    if n < 2:
        raise InsufficientFramesError(f"a covariance needs at least 2 frames, got {n}")
    if shrinkage is None and n <= d:
        raise InsufficientFramesError(
            f"FAD needs more frames than embedding dimensions: got {n} frames of dim {d}. "
            "FAD is a set metric: pool frames over many clips, use a lower-dimensional "
            "embedder, or use --shrinkage ledoit-wolf (shrinkage='ledoit-wolf' in Python)")
    mu = x.mean(axis=0)
    xc = x - mu
    with np.errstate(over="ignore", invalid="ignore"):
        sigma = xc.T @ xc / (n - 1)
    if not (np.all(np.isfinite(mu)) and np.all(np.isfinite(sigma))):
        raise MetricInputError("embedding frames are too large: their covariance overflows "
                               "float64 (rescale the embeddings)")
    alpha = 0.0
    if shrinkage is not None:
        alpha = ledoit_wolf_intensity(x) if isinstance(shrinkage, str) else float(shrinkage)
        if n <= d and alpha == 0.0:
            raise InsufficientFramesError(
                f"shrinkage intensity 0 leaves a singular covariance ({n} frames, dim {d})")
        target = np.trace(sigma) / d
        sigma = (1.0 - alpha) * sigma
        sigma[np.diag_indices(d)] += alpha * target
    return GaussianStats(mu, sigma, n, alpha, embedder)


def _sqrt_psd(a: np.ndarray) -> np.ndarray:
    """Symmetric PSD square root via eigendecomposition (negative round-off clipped)."""
    w, v = np.linalg.eigh((a + a.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """``tr((Σ₁ Σ₂)^{1/2})`` computed as ``Σ √eig(Σ₁^{1/2} Σ₂ Σ₁^{1/2})`` (float64, real)."""
    s1 = _sqrt_psd(np.asarray(sigma1, dtype=np.float64))
    m = s1 @ np.asarray(sigma2, dtype=np.float64) @ s1
    w = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sum(np.sqrt(np.clip(w, 0.0, None))))


def frechet_distance(a: GaussianStats, b: GaussianStats) -> float:
    """Fréchet distance between two Gaussian fits (finite, ``>= 0``).

    Raises:
        MetricInputError: the two fits have different dimensions.
    """
    for side, stats in (("first", a), ("second", b)):
        if not isinstance(stats, GaussianStats):  # frames go through compute_stats first
            raise MetricInputError(f"frechet_distance takes two GaussianStats; the {side} is a "
                                   f"{type(stats).__name__} (fit frames with compute_stats)")
    if a.dim != b.dim:
        raise MetricInputError(f"embedding dims differ: {a.dim} vs {b.dim}")
    diff = a.mu - b.mu
    value = float(diff @ diff + np.trace(a.sigma) + np.trace(b.sigma)
                  - 2.0 * trace_sqrt_product(a.sigma, b.sigma))
    if not np.isfinite(value):  # only reachable with absurd magnitudes (overflow)
        raise MetricInputError("Fréchet distance overflowed; embeddings are too large in magnitude")
    # Round-off can give -1e-12 for identical sets; a distance is never negative.
    return max(value, 0.0)


def fad(reference: np.ndarray | Sequence[np.ndarray] | GaussianStats,
        evaluated: np.ndarray | Sequence[np.ndarray] | GaussianStats, *,
        shrinkage: Shrinkage = None) -> float:
    """FAD between a reference and an evaluated set of frames (or precomputed stats).

    Args:
        reference: ``[N, D]`` frames, a list of per-clip frames, or :class:`GaussianStats`.
        evaluated: same forms.
        shrinkage: used for whichever side is given as frames (see :func:`compute_stats`).
    """
    ra = reference if isinstance(reference, GaussianStats) else compute_stats(reference, shrinkage=shrinkage)
    ea = evaluated if isinstance(evaluated, GaussianStats) else compute_stats(evaluated, shrinkage=shrinkage)
    return frechet_distance(ra, ea)


@dataclass
class FadInfResult:
    """Result of :func:`fad_inf`.

    Attributes:
        fad_inf: intercept ``a`` of ``FAD(n) = a + b/n`` (the extrapolation to n → ∞).
        slope: ``b``.
        r2: coefficient of determination of the linear fit in ``1/n``.
        points: ``[(n, FAD(n))]`` the fit used.
        fad_full: FAD with every evaluated frame (the largest n).
        warnings: why the value is not to be trusted: a negative intercept, or a poor fit
            (``r2`` below :data:`FAD_INF_MIN_R2`); empty when neither.
    """

    fad_inf: float
    slope: float
    r2: float
    points: list[tuple[int, float]] = field(default_factory=list)
    fad_full: float = float("nan")
    warnings: list[str] = field(default_factory=list)


def fad_inf_warnings(value: float, r2: float) -> list[str]:
    """Warnings for an extrapolated FAD∞ ``value`` from a fit of ``r2`` (see the module
    docstring): a negative value, and a fit with ``r2 <`` :data:`FAD_INF_MIN_R2`."""
    out = []
    if value < 0:
        out.append(f"FAD∞ is negative ({value:.4g}): the extrapolation to infinitely many frames "
                   "went below 0, which a distance cannot be (the sets are likely as close as "
                   "FAD can tell); read it as about 0, and use more frames for a steadier fit")
    if r2 < FAD_INF_MIN_R2:
        out.append(f"FAD∞ fit is poor (r² {r2:.2f} < {FAD_INF_MIN_R2:g}): FAD(n) does not follow "
                   "a + b/n over the subset sizes, so the extrapolated value is unreliable")
    return out


def fit_inf(ns: Sequence[float], values: Sequence[float]) -> tuple[float, float, float]:
    """Least-squares fit ``value = a + b / n``.

    Returns:
        ``(a, b, r2)``.

    Raises:
        MetricInputError: fewer than 2 distinct sizes.
    """
    n = np.asarray(ns, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if len(np.unique(n)) < 2:
        raise MetricInputError("FAD∞ needs at least two different subset sizes")
    x = 1.0 / n
    design = np.stack([np.ones_like(x), x], axis=1)
    (a, b), *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - (a + b * x)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum(resid ** 2)) / ss_tot if ss_tot > 0 else 1.0
    return float(a), float(b), r2


def fad_inf(reference: np.ndarray | Sequence[np.ndarray] | GaussianStats,
            evaluated: np.ndarray | Sequence[np.ndarray], *,
            sizes: Sequence[int] | None = None, num_points: int = 10, draws: int = 1,
            shrinkage: Shrinkage = None, seed: int = 0) -> FadInfResult:
    """Extrapolated FAD (FAD∞).

    The reference statistics are fixed; for each size ``n`` a random subset of ``n``
    evaluated frames (without replacement, seeded) is scored, averaged over ``draws``.

    Args:
        reference: reference frames or stats.
        evaluated: evaluated frames ``[M, D]`` or per-clip list.
        sizes: subset sizes; default ``num_points`` sizes evenly spaced in ``1/n`` between
            ``max(2 D + 2, M / 5)`` (capped at M) and ``M``.
        num_points: number of default sizes.
        draws: random subsets averaged per size.
        shrinkage: covariance shrinkage for every fit (needed when sizes reach ``<= D``).
        seed: subset sampling seed.

    A negative intercept or an ``r²`` below :data:`FAD_INF_MIN_R2` is returned as it is, with
    a line in :attr:`FadInfResult.warnings` (also logged).
    """
    ref = reference if isinstance(reference, GaussianStats) else compute_stats(reference, shrinkage=shrinkage)
    x = as_frames(evaluated, "evaluated")
    m, d = x.shape
    if sizes is None:
        lo = min(m, max(2 * d + 2, m // 5))
        if lo >= m:
            raise InsufficientFramesError(
                f"FAD∞ needs clearly more evaluated frames than dims (got {m} frames, dim {d})")
        inv = np.linspace(1.0 / lo, 1.0 / m, num_points)
        sizes = sorted({int(round(1.0 / v)) for v in inv})
    sizes = [int(s) for s in sizes if 2 <= int(s) <= m]
    rng = np.random.default_rng(seed)
    points: list[tuple[int, float]] = []
    for n in sizes:
        vals = []
        for _ in range(max(1, draws) if n < m else 1):
            idx = rng.choice(m, size=n, replace=False) if n < m else slice(None)
            vals.append(frechet_distance(ref, compute_stats(x[idx], shrinkage=shrinkage)))
        points.append((n, float(np.mean(vals))))
    a, b, r2 = fit_inf([p[0] for p in points], [p[1] for p in points])
    full = points[-1][1] if points and points[-1][0] == m else float("nan")
    warnings = fad_inf_warnings(a, r2)
    for line in warnings:
        log.warning("%s", line)
    return FadInfResult(a, b, r2, points, full, warnings)
