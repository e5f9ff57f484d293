"""Benchmark FAD and KAD against straightforward reference implementations.

Data: synthetic Gaussian frames, ``dim`` = 128, reference and evaluated sets of
``--n`` frames each (default 100 000 + 100 000 = 200k frames), the evaluated set shifted
and rescaled a little so the distances are not 0.

* FAD — ours (float64 covariance, eigendecomposition-based trace term) vs the common
  reference (``np.cov`` + ``scipy.linalg.sqrtm(Σ₁ Σ₂)``), both on the full sets.
* KAD — ours (torch, blocked, symmetric blocks, float64 accumulation) vs a plain numpy
  O(n²) implementation that builds the three full kernel matrices, on ``--n-ref-impl``
  frames per set (default 5000: three 5000² float64 matrices, 600 MB; at most ``--n``). Ours is then run on
  the full sets in float32 (float64 accumulation); the reference's time at full size is an
  extrapolation (× (n / n_ref_impl)², stated as such), the reference cannot hold the
  100 000² matrices (80 GB each) in memory.

Budget: KAD costs about ``N² · D`` multiply-adds plus ``N²`` exponentials (three
terms, the two within-set terms on upper-triangle blocks only). On 2 CPU cores in float32 the
measured 30k + 30k run took 47 CPU-seconds, so 200k frames (100k + 100k, 11× the pairs) is
budgeted at ≈ 9 CPU-minutes (≈ 5 minutes wall on 2 idle cores); on a GPU
(``--device cuda``) the same blocks are matmuls of a few ms each, so seconds. Times are
reported both as wall time and as process CPU time, because on a shared machine the wall
time mostly measures the load (printed as ``load_avg_1min``).

Prints a human-readable table and one final JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

import numpy as np


def reference_fad(x: np.ndarray, y: np.ndarray) -> float:
    import scipy.linalg

    mu1, mu2 = x.mean(0), y.mean(0)
    s1, s2 = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = np.real(covmean)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def reference_kad(x: np.ndarray, y: np.ndarray, sigma: float) -> float:
    """Direct unbiased MMD² ×100 with full kernel matrices (numpy, float64)."""
    def gram(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        d2 = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2 * a @ b.T
        return np.exp(-np.maximum(d2, 0) / (2 * sigma * sigma))

    n, m = len(x), len(y)
    kxx, kyy, kxy = gram(x, x), gram(y, y), gram(x, y)
    return 100 * ((kxx.sum() - np.trace(kxx)) / (n * (n - 1))
                  + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean())


CPU_TIMES: list[float] = []


def timed(fn, *args, **kw):  # noqa: ANN001, ANN201
    """Wall time returned; process CPU time (all threads) appended to CPU_TIMES.

    On a shared machine the wall time depends on the load; the CPU time does much less.
    """
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn(*args, **kw)
    CPU_TIMES.append(time.process_time() - c0)
    return out, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=100_000, help="frames per set (reference and evaluated)")
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--n-ref-impl", type=int, default=5000, help="frames per set for the reference KAD (at most --n)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", help="dtype of our full-size KAD matmuls")
    ap.add_argument("--chunk", type=int, default=4096)
    ap.add_argument("--skip-full-kad", action="store_true")
    args = ap.parse_args(argv)

    import torch

    from auralens.evaluate.fad import fad
    from auralens.evaluate.kad import kad, median_pairwise_distance

    rng = np.random.default_rng(0)
    mix = rng.standard_normal((args.dim, args.dim)) / np.sqrt(args.dim)
    x = rng.standard_normal((args.n, args.dim)) @ mix
    y = (rng.standard_normal((args.n, args.dim)) * 1.1 + 0.05) @ mix
    res: dict[str, object] = {"load_avg_1min": os.getloadavg()[0], "n_per_set": args.n, "dim": args.dim, "device": args.device,
                              "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(),
                              "platform": platform.platform()}

    ours_fad, t_ours_fad = timed(fad, x, y)
    ref_fad, t_ref_fad = timed(reference_fad, x, y)
    res.update(fad_ours=ours_fad, fad_reference=ref_fad, fad_abs_diff=abs(ours_fad - ref_fad),
               fad_ours_s=t_ours_fad, fad_reference_s=t_ref_fad,
               fad_speed_ratio=t_ref_fad / t_ours_fad, fad_ours_cpu_s=CPU_TIMES[0],
               fad_reference_cpu_s=CPU_TIMES[1])
    print(f"FAD  n={args.n}+{args.n} dim={args.dim}: ours {ours_fad:.6f} in {t_ours_fad:.2f}s, "
          f"reference {ref_fad:.6f} in {t_ref_fad:.2f}s (ratio {t_ref_fad / t_ours_fad:.2f}x)")

    k = min(args.n_ref_impl, args.n)  # the frames that exist: the label says what was used
    if k < args.n_ref_impl:
        print(f"note: --n-ref-impl {args.n_ref_impl} > --n {args.n}; the reference KAD uses {k} frames per set")
    xs, ys = x[:k], y[:k]
    sigma = median_pairwise_distance(xs)
    ref_kad, t_ref_kad = timed(reference_kad, xs, ys, sigma)
    ours_small, t_ours_small = timed(kad, xs, ys, sigma=sigma, device=args.device, chunk=args.chunk)
    res.update(kad_small_n=k, kad_small_ours=ours_small.value, kad_small_reference=ref_kad,
               kad_small_abs_diff=abs(ours_small.value - ref_kad), kad_small_ours_s=t_ours_small,
               kad_small_reference_s=t_ref_kad, kad_small_speed_ratio=t_ref_kad / t_ours_small,
               kad_small_reference_cpu_s=CPU_TIMES[2], kad_small_ours_cpu_s=CPU_TIMES[3])
    print(f"KAD  n={k}+{k} (float64): ours {ours_small.value:.8f} in {t_ours_small:.2f}s, reference "
          f"{ref_kad:.8f} in {t_ref_kad:.2f}s (ratio {t_ref_kad / t_ours_small:.2f}x, "
          f"|diff| {abs(ours_small.value - ref_kad):.2e})")

    if not args.skip_full_kad:
        full, t_full = timed(kad, x, y, device=args.device, dtype=args.dtype, chunk=args.chunk)
        extrapolated = t_ref_kad * (args.n / k) ** 2
        res.update(kad_full=full.value, kad_full_sigma=full.sigma, kad_full_s=t_full,
                   kad_full_cpu_s=CPU_TIMES[4],
                   kad_reference_extrapolated_cpu_s=CPU_TIMES[2] * (args.n / k) ** 2,
                   kad_full_dtype=args.dtype, kad_reference_extrapolated_s=extrapolated,
                   kad_reference_full_matrix_gb=3 * args.n * args.n * 8 / 1e9)
        print(f"KAD  n={args.n}+{args.n} ({args.dtype}, {args.device}): {full.value:.6f} in "
              f"{t_full:.1f}s; the reference would need ~{extrapolated:.0f}s (extrapolated) and "
              f"{3 * args.n * args.n * 8 / 1e9:.0f} GB for its kernel matrices")
    res["load_avg_1min_end"] = os.getloadavg()[0]
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
