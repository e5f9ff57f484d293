"""Kernel Audio Distance (KAD): an unbiased kernel MMD² between embedding-frame sets.

Estimator (Gretton et al. 2012, unbiased U-statistic), for reference frames ``x`` (N of
them) and evaluated frames ``y`` (M)::

    MMD²ᵤ = 1/(N(N−1)) Σ_{i≠j} k(xᵢ,xⱼ) + 1/(M(M−1)) Σ_{i≠j} k(yᵢ,yⱼ) − 2/(NM) Σ_{i,j} k(xᵢ,yⱼ)

reported ×100 (``scale``) as the KAD toolkit does. Being unbiased it is ≈ 0 (and may be
slightly negative) for two samples of one distribution; it needs no covariance, so it
works with few frames and high dimensions where FAD cannot.

Kernels (``d = ‖a − b‖``; all equal 1 at d = 0):

* ``"rbf"`` (default): ``exp(−γd²)``
* ``"iq"`` inverse quadratic: ``1 / (1 + γd²)``
* ``"imq"`` inverse multiquadric: ``1 / √(1 + γd²)``

with ``γ = 1 / (2σ²)`` for all three, as in the KAD toolkit.

Bandwidth σ: fixed by the user, or the **median pairwise distance of the reference set**.
As in the public KAD toolkit (an earlier version of its code took it from the evaluated set),
every score computed against one reference then uses the same kernel, so scores of different
systems (and per-file scores) are comparable. When the reference has more than ``sigma_max_samples`` frames the median is taken
over all pairs of a seeded random subsample of that many frames (a 5000-frame subsample
gives 12.5 M pairs; the median of that many pairs is stable to well under 1 %). Pairs of
identical frames are set to exactly 0 apart (the fast ``‖a‖² + ‖b‖² − 2a·b`` expansion would
leave them ~1e-6 apart). When more than half the pairs are identical frames (runs of silence give
many equal frames) the median is 0, which would make the kernel useless; σ is then the median
of the **non-zero** distances (logged as a warning). Only a reference whose frames are all
identical has no bandwidth: that is an error, and a fixed σ must be given.

Computation: torch, in blocks of ``chunk`` rows (memory ``chunk² `` per block), squared
distances from ``‖a‖² + ‖b‖² − 2 a·b`` in ``dtype`` (float64 by default; float32 is ~2×
faster on CPU and much faster on GPU), kernel sums accumulated in float64. The two
within-set sums visit only the upper-triangle blocks (symmetry halves the work). The time
grows with the square of the frame count: a sum of :data:`PROGRESS_BLOCKS` blocks or more
shows a progress bar, and a CPU run of more than :data:`LARGE_PAIRS` kernel pairs logs a
warning first (240k frames a side are ~10¹¹ pairs, about 20 minutes on a CPU).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from auralens.checks import is_number
from auralens.evaluate.fad import MetricInputError, as_frames

log = logging.getLogger(__name__)

KERNELS = ("rbf", "iq", "imq")
#: A CPU computation of more kernel pairs than this logs a warning before it starts.
LARGE_PAIRS = 1e9
#: A kernel sum of at least this many blocks shows a progress bar.
PROGRESS_BLOCKS = 16
#: Fewer frames than this in a set make a KAD too noisy to mean much (a warning, not an error).
FEW_FRAMES = 10


@dataclass
class KadResult:
    """One KAD value and how it was computed.

    Attributes:
        value: scaled unbiased MMD² (``scale × MMD²``).
        sigma: kernel bandwidth used.
        kernel: kernel name.
        n_ref: reference frames.
        n_eval: evaluated frames.
        scale: multiplier applied.
    """

    value: float
    sigma: float
    kernel: str
    n_ref: int
    n_eval: int
    scale: float = 100.0


def _torch_dtype(dtype: str):  # noqa: ANN202 - torch imported lazily
    import torch

    return {"float64": torch.float64, "float32": torch.float32}[dtype]


def median_pairwise_distance(frames: np.ndarray | Sequence[np.ndarray], *, max_samples: int = 5000,
                             seed: int = 0, device: str = "cpu") -> float:
    """Median Euclidean distance over all distinct pairs (of a seeded subsample when large).

    When that median is 0 (more than half of the pairs are identical frames, e.g. silence),
    the median of the non-zero distances is returned instead, with a warning: frames
    ``[0, 0]`` ×6, ``[3, 4]``, ``[6, 8]`` give 15 zero, 7 five and 6 ten distances, so the
    median is 0 and the bandwidth 5.

    Raises:
        MetricInputError: fewer than 2 frames or all frames identical (σ would be 0).
    """
    import torch

    x = as_frames(frames, "reference")
    if x.shape[0] < 2:
        raise MetricInputError("the median-distance bandwidth needs at least 2 reference frames")
    if x.shape[0] > max_samples:
        idx = np.random.default_rng(seed).choice(x.shape[0], size=max_samples, replace=False)
        x = x[np.sort(idx)]
    t = torch.from_numpy(x).to(device)
    d = torch.cdist(t, t)  # the fast matmul expansion; exact duplicates are set to 0 below
    iu = torch.triu_indices(t.shape[0], t.shape[0], offset=1, device=t.device)
    dist = d[iu[0], iu[1]]
    # The expansion leaves identical frames ~1e-6 apart instead of 0, and those would pass for
    # a (tiny, meaningless) bandwidth: pairs of identical rows are exactly 0 apart.
    _, group = torch.unique(t, dim=0, return_inverse=True)
    dist[group[iu[0]] == group[iu[1]]] = 0.0
    dist = dist.cpu().numpy()
    # numpy's median averages the two middle values of an even count (torch's takes the lower).
    med = float(np.median(dist))
    if med > 0:
        return med
    nonzero = dist[dist > 0]
    if nonzero.size == 0:
        raise MetricInputError("reference frames are all identical: the median distance is 0; "
                               "pass a fixed sigma")
    med = float(np.median(nonzero))
    log.warning("%d of %d reference frame pairs are identical (e.g. silence), so the median "
                "distance is 0; using the median of the non-zero distances as sigma = %.6g",
                dist.size - nonzero.size, dist.size, med)
    return med


def _kernel(d2, sigma: float, kernel: str):  # noqa: ANN001, ANN202 - torch tensors
    import torch

    d2 = d2.clamp_min(0)  # the expansion can give tiny negatives
    if kernel == "rbf":
        return torch.exp(d2 * (-1.0 / (2.0 * sigma * sigma)))
    two_var = 2.0 * sigma * sigma  # γ = 1 / (2σ²) for every kernel, as the KAD toolkit has it
    if kernel == "iq":
        return two_var / (two_var + d2)
    if kernel == "imq":
        return torch.rsqrt(1.0 + d2 / two_var)
    raise MetricInputError(f"unknown kernel {kernel!r}; choose one of {', '.join(KERNELS)}")


def kernel_sum(a, b, sigma: float, kernel: str = "rbf", *, chunk: int = 4096,  # noqa: ANN001
               symmetric: bool = False, desc: str = "KAD kernel") -> float:
    """Σ k(aᵢ, bⱼ) over all pairs, or over ``i ≠ j`` when ``symmetric`` (``a is b``).

    Args:
        a: ``[N, D]`` torch tensor.
        b: ``[M, D]`` torch tensor (ignored when ``symmetric``).
        symmetric: ``b`` is ``a``: only upper-triangle blocks are computed and the diagonal
            (``k = 1`` for every kernel here) is excluded.
        desc: label of the progress bar shown for :data:`PROGRESS_BLOCKS` blocks or more.
    Returns:
        the sum as a Python float (float64 accumulation).
    """
    import torch

    from auralens.progress import progress

    if symmetric:
        b = a
    an = (a * a).sum(1)
    bn = an if symmetric else (b * b).sum(1)
    total = torch.zeros((), dtype=torch.float64, device=a.device)
    blocks = [(i, j) for i in range(0, a.shape[0], chunk)
              for j in range(i if symmetric else 0, b.shape[0], chunk)]
    quiet = True if len(blocks) < PROGRESS_BLOCKS else None  # None: unless AURALENS_NO_PROGRESS
    for i, j in progress(blocks, desc=desc, total=len(blocks), disable=quiet):
        ai, ani = a[i:i + chunk], an[i:i + chunk]
        bj, bnj = b[j:j + chunk], bn[j:j + chunk]
        d2 = ani[:, None] + bnj[None, :] - 2.0 * (ai @ bj.T)
        k = _kernel(d2, sigma, kernel)
        s = k.sum(dtype=torch.float64)
        if symmetric:
            if j == i:  # diagonal block: off-diagonal entries only, counted twice
                s = s - torch.diagonal(k).sum(dtype=torch.float64)
            else:
                s = 2.0 * s
        total += s
    return float(total.item())


def _warn_if_slow(n_ref: int, n_eval: int, pairs: int, device: str) -> None:
    """Log a warning before a CPU computation of more than :data:`LARGE_PAIRS` kernel pairs."""
    import torch

    if pairs > LARGE_PAIRS and torch.device(device).type == "cpu":
        log.warning("KAD of %d reference and %d evaluated frames computes %.2g kernel pairs; the "
                    "time grows with the square of the frame count and this may take long on the "
                    "CPU: use --device cuda (device='cuda' in Python), or fewer or shorter files",
                    n_ref, n_eval, pairs)


def check_kernel(sigma: float | None, kernel: str) -> None:
    """Refuse a kernel or a fixed bandwidth :func:`kad` cannot use (callers check them
    before any audio is embedded).

    Raises:
        MetricInputError: an unknown kernel, or a sigma that is not a positive finite number.
    """
    if kernel not in KERNELS:
        raise MetricInputError(f"unknown kernel {kernel!r}; choose one of {', '.join(KERNELS)}")
    if sigma is not None and not (is_number(sigma) and sigma > 0):
        raise MetricInputError(f"kernel bandwidth sigma must be positive and finite, got {sigma}")


def kad(reference: np.ndarray | Sequence[np.ndarray], evaluated: np.ndarray | Sequence[np.ndarray],
        *, sigma: float | None = None, kernel: str = "rbf", scale: float = 100.0,
        chunk: int = 4096, dtype: str = "float64", device: str = "cpu",
        sigma_max_samples: int = 5000, seed: int = 0,
        _ref_sum: tuple[float, int] | None = None) -> KadResult:
    """Unbiased KAD between reference and evaluated frames.

    Args:
        reference: ``[N, D]`` frames or a list of per-clip frames (pooled).
        evaluated: ``[M, D]`` frames or a list.
        sigma: kernel bandwidth; None → median pairwise distance of the reference (of its
            non-zero distances when that median is 0, see :func:`median_pairwise_distance`).
        kernel: ``"rbf"``, ``"iq"`` or ``"imq"``.
        scale: multiplier (100 as in the KAD toolkit).
        chunk: rows per block (memory ≈ chunk² × 8 bytes per block in float64).
        dtype: ``"float64"`` (default) or ``"float32"`` for the distance matmuls.
        device: torch device (``"cuda"`` when available makes 200k frames take seconds).
        sigma_max_samples: subsample size for the median bandwidth.
        seed: subsample seed.

    Raises:
        MetricInputError: fewer than 2 frames on a side, dims differ, bad kernel/sigma.
    """
    import torch

    check_kernel(sigma, kernel)
    x = as_frames(reference, "reference")
    y = as_frames(evaluated, "evaluated")
    if x.shape[1] != y.shape[1]:
        raise MetricInputError(f"embedding dims differ: {x.shape[1]} vs {y.shape[1]}")
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise MetricInputError(f"KAD needs at least 2 frames per set (got {x.shape[0]} reference and "
                               f"{y.shape[0]} evaluated frame(s)); the clips are too short")
    if sigma is None:
        sigma = median_pairwise_distance(x, max_samples=sigma_max_samples, seed=seed, device=device)
    if not (sigma > 0 and np.isfinite(sigma)):
        raise MetricInputError(f"kernel bandwidth sigma must be positive and finite, got {sigma}")
    # Distances do not change under a shift; centring on the reference keeps ‖a‖²+‖b‖²−2a·b
    # from cancelling catastrophically in float32 when the embeddings share a large offset.
    centre = x.mean(0, keepdims=True)
    x, y = x - centre, y - centre
    td = _torch_dtype(dtype)
    xt = torch.from_numpy(x).to(device=device, dtype=td)
    yt = torch.from_numpy(y).to(device=device, dtype=td)
    n, m = x.shape[0], y.shape[0]
    cached = _ref_sum is not None and _ref_sum[1] == n
    if _ref_sum is None:  # kad_per_file warns once for all its files
        _warn_if_slow(n, m, n * (n - 1) // 2 + m * (m - 1) // 2 + n * m, device)
    if cached:
        kxx = _ref_sum[0]
    else:
        kxx = kernel_sum(xt, xt, sigma, kernel, chunk=chunk, symmetric=True,
                         desc="KAD reference kernel")
    kyy = kernel_sum(yt, yt, sigma, kernel, chunk=chunk, symmetric=True,
                     desc="KAD evaluated kernel")
    kxy = kernel_sum(xt, yt, sigma, kernel, chunk=chunk, desc="KAD cross kernel")
    mmd = kxx / (n * (n - 1)) + kyy / (m * (m - 1)) - 2.0 * kxy / (n * m)
    return KadResult(scale * mmd, float(sigma), kernel, n, m, scale)


def kad_per_file(reference: np.ndarray | Sequence[np.ndarray], files: Mapping[str, np.ndarray], *,
                 sigma: float | None = None, kernel: str = "rbf", scale: float = 100.0,
                 chunk: int = 4096, dtype: str = "float64", device: str = "cpu",
                 sigma_max_samples: int = 5000, seed: int = 0) -> dict[str, KadResult]:
    """KAD of every evaluated file against the whole reference set, with ONE bandwidth.

    σ is fixed once (given, or the reference's median distance) so the per-file values are
    on the same kernel and comparable; the reference's within-set kernel sum is computed once.

    Args:
        reference: reference frames (pooled).
        files: name → ``[frames, D]`` embeddings of one evaluated file (≥ 2 frames each).

    Returns:
        name → :class:`KadResult` (every result has the same ``sigma``).

    Raises:
        MetricInputError: an unknown kernel or a sigma that is not positive and finite.
    """
    import torch

    check_kernel(sigma, kernel)  # before the reference's kernel sum, which would divide by sigma
    x = as_frames(reference, "reference")
    if sigma is None:
        sigma = median_pairwise_distance(x, max_samples=sigma_max_samples, seed=seed, device=device)
    centre = x.mean(0, keepdims=True)  # as kad() does; shifting both sides changes no distance
    x = x - centre
    n = x.shape[0]
    frames_of = {name: as_frames(frames, name) for name, frames in files.items()}
    for name, frames in frames_of.items():  # before the reference's kernel sum, not after it
        if frames.shape[1] != x.shape[1]:
            raise MetricInputError(f"{name}: embedding dims differ from the reference's: "
                                   f"{frames.shape[1]} vs {x.shape[1]}")
    sizes = [f.shape[0] for f in frames_of.values()]
    _warn_if_slow(n, sum(sizes), n * (n - 1) // 2 + sum(m * (m - 1) // 2 + n * m for m in sizes),
                  device)
    xt = torch.from_numpy(x).to(device=device, dtype=_torch_dtype(dtype))
    kxx = kernel_sum(xt, xt, sigma, kernel, chunk=chunk, symmetric=True,
                     desc="KAD reference kernel")
    out: dict[str, KadResult] = {}
    for name, frames in frames_of.items():
        out[name] = kad(x, frames - centre, sigma=sigma, kernel=kernel, scale=scale, chunk=chunk,
                        dtype=dtype, device=device, _ref_sum=(kxx, x.shape[0]))
    return out
