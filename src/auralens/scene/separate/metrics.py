"""Separation metrics reported the way FUSS reports them.

Per mixture (``x [T]``, references ``[N, T]``, estimates ``[M, T]``):

1. Estimates are aligned to the references by the assignment that maximises the summed
   SI-SNR (Hungarian on the ``[N, M]`` SI-SNR matrix; FUSS permutes its ``M`` outputs the same
   way). Only references that are non-zero (RMS > 1e-8) take part.
2. A (reference, estimate) pair counts as *active* when its estimate's power exceeds 1 % of
   the quietest active reference's power (FUSS: −20 dB), so silent outputs paired with quiet
   references do not produce meaningless numbers.
3. ``si_snr`` of each active pair (FUSS's gain-invariant SNR, :func:`si_snr`: no mean
   removed, within ±80 dB), ``si_snri`` = ``si_snr`` minus the SI-SNR of the mixture itself
   as an estimate of that reference.

Aggregates (:func:`summarize`): ``1S`` = mean absolute SI-SNR over the active pairs of
single-source mixtures (there SI-SNRi is meaningless: the mixture *is* the source);
``MSi`` = mean SI-SNRi over the active pairs of 2–4-source mixtures. Both are also reported
per true source count, with SDR/SIR/SAR (BSS Eval v4, :func:`bss_eval`) and
under/equal/over-separation rates from the activity filter.
"""

from __future__ import annotations

import csv
import logging
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: References with RMS at most this are absent (FUSS).
ACTIVE_REF_RMS = 1e-8
#: An estimate is active when its power exceeds this × the quietest reference power (FUSS).
ACTIVE_SEP_RATIO = 0.01
#: Taps of the bss_eval distortion filter (the BSS-Eval and fast_bss_eval default).
BSS_FILTER_TAPS = 512
#: bss_eval metrics are clamped to ±this many dB.
BSS_CLAMP_DB = 100.0


def si_snr(est: np.ndarray, ref: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Gain-invariant SNR in dB over the last axis (broadcasts), computed in float64, as the
    FUSS evaluation computes it (``signal_to_noise_ratio_gain_invariant``).

    With ``c`` the cosine of ``est`` and ``ref`` (no mean removed), the signal power is
    ``c²`` and the noise power ``1 − c²`` of unit-norm signals (taken as ``‖ê − c r̂‖²`` when
    below 0.01, where the difference loses precision); ``eps`` is added to both, so results
    lie within ±10·log10(1/eps) dB (±80 dB) whatever the level. ``est = ref`` gives 80 dB,
    a silent ``est`` −80 dB.
    """
    est = np.asarray(est, np.float64)
    ref = np.asarray(ref, np.float64)
    est_n = est / np.sqrt(np.maximum((est * est).sum(-1, keepdims=True), 1e-16))
    ref_n = ref / np.sqrt(np.maximum((ref * ref).sum(-1, keepdims=True), 1e-16))
    cos = (est_n * ref_n).sum(-1)
    signal = cos * cos
    noise = 1.0 - signal
    direct = ((est_n - ref_n * cos[..., None]) ** 2).sum(-1)
    noise = np.where(noise >= 0.01, noise, direct)
    return 10 * np.log10((signal + eps) / (noise + eps))


def si_sdr_zero_mean(est: np.ndarray, ref: np.ndarray, eps: float = 1e-8) -> np.ndarray:
    """Scale-invariant SDR in dB (Le Roux et al. 2019) over the last axis (broadcasts), of
    zero-mean signals, ``eps`` added to the raw energies (so not capped), in float64."""
    est = np.asarray(est, np.float64)
    ref = np.asarray(ref, np.float64)
    est = est - est.mean(-1, keepdims=True)
    ref = ref - ref.mean(-1, keepdims=True)
    scale = (est * ref).sum(-1, keepdims=True) / ((ref * ref).sum(-1, keepdims=True) + eps)
    target = scale * ref
    noise = est - target
    return 10 * np.log10(((target**2).sum(-1) + eps) / ((noise**2).sum(-1) + eps))


def si_snr_matrix(refs: np.ndarray, est: np.ndarray) -> np.ndarray:
    """``[N, T]`` × ``[M, T]`` → ``[N, M]`` SI-SNR of every (reference, estimate) pair."""
    return si_snr(est[None, :, :], refs[:, None, :])


def pit_align(refs: np.ndarray, est: np.ndarray) -> np.ndarray:
    """Indices ``[N]`` of the estimate assigned to each reference (max summed SI-SNR).

    Requires ``M >= N``; each estimate is used at most once.
    """
    from scipy.optimize import linear_sum_assignment

    if refs.ndim != 2 or est.ndim != 2 or refs.shape[-1] != est.shape[-1]:
        raise ValueError(f"pit_align needs refs [N, T] and est [M, T] of one length, got "
                         f"{refs.shape} and {est.shape}")
    if est.shape[0] < refs.shape[0]:
        raise ValueError(f"{est.shape[0]} estimates cannot cover {refs.shape[0]} references")
    rows, cols = linear_sum_assignment(-si_snr_matrix(refs, est))
    order = np.empty(refs.shape[0], dtype=int)
    order[rows] = cols
    return order


@dataclass
class MixtureScore:
    """Metrics of one mixture.

    Attributes:
        id: mixture id.
        n_sources: true number of active references.
        si_snr: SI-SNR per active pair (dB).
        si_snri: SI-SNR improvement per active pair (dB).
        pairs: ``(reference index, estimate index)`` of those pairs.
        sdr, sir, sar: bss_eval per active pair (dB), empty when not computed.
        n_active_est: estimates kept by the activity filter (None when not run).
        n_dropped: estimates dropped by the activity filter.
    """

    id: str
    n_sources: int
    si_snr: list[float] = field(default_factory=list)
    si_snri: list[float] = field(default_factory=list)
    pairs: list[tuple[int, int]] = field(default_factory=list)
    sdr: list[float] = field(default_factory=list)
    sir: list[float] = field(default_factory=list)
    sar: list[float] = field(default_factory=list)
    n_active_est: int | None = None
    n_dropped: int | None = None

    @property
    def separation(self) -> str | None:
        """``under`` / ``equal`` / ``over`` from the activity filter's kept count."""
        if self.n_active_est is None:
            return None
        if self.n_active_est < self.n_sources:
            return "under"
        return "equal" if self.n_active_est == self.n_sources else "over"


def score_mixture(mix: np.ndarray, refs: np.ndarray, est: np.ndarray, *, id: str = "",
                  bss: bool = False, kept: np.ndarray | None = None) -> MixtureScore:
    """FUSS-style metrics of one separated mixture.

    Args:
        mix: ``[T]`` mixture.
        refs: ``[N, T]`` references (zero rows allowed; they are ignored).
        est: ``[M, T]`` estimates; when there are fewer than active references, silent rows
            are added, so the references left over meet a silent output (an inactive pair,
            not scored, as FUSS counts it) and the mixture is still scored.
        id: mixture id.
        bss: also compute SDR/SIR/SAR (:func:`bss_eval`) on the active pairs.
        kept: ``[M]`` bool from the activity filter (for the under/over-separation rates).

    Returns:
        A :class:`MixtureScore`.

    Raises:
        ValueError: wrong shapes or non-finite samples (a NaN reference would otherwise
            count as silent and leave the mixture unscored without a word).
    """
    refs = np.asarray(refs, np.float64)
    est = np.asarray(est, np.float64)
    mix = np.asarray(mix, np.float64)
    where = f"mixture {id!r}: " if id else ""
    if mix.ndim != 1 or refs.ndim != 2 or est.ndim != 2:
        raise ValueError(f"{where}score_mixture needs mix [T], refs [N, T] and est [M, T], got "
                         f"{mix.shape}, {refs.shape} and {est.shape}")
    for name, arr in (("mixture", mix), ("references", refs), ("estimates", est)):
        if not np.isfinite(arr).all():
            raise ValueError(f"{where}the {name} contain NaN or Inf samples")
    if kept is not None and len(kept) != est.shape[0]:
        raise ValueError(f"{where}kept has {len(kept)} flags for {est.shape[0]} estimates")
    # lengths may differ by an STFT round trip's few samples: score the common part
    t = min(refs.shape[-1], est.shape[-1], mix.shape[-1])
    refs, est, mix = refs[:, :t], est[:, :t], mix[:t]
    ref_rms = np.sqrt((refs**2).mean(-1))
    active = np.flatnonzero(ref_rms > ACTIVE_REF_RMS)
    score = MixtureScore(id=id, n_sources=int(active.size))
    if kept is not None:
        score.n_active_est = int(np.sum(kept))
        score.n_dropped = int(len(kept) - np.sum(kept))
    if active.size == 0:
        return score
    refs_a = refs[active]
    if est.shape[0] < active.size:
        est = np.concatenate([est, np.zeros((active.size - est.shape[0], t))])
    order = pit_align(refs_a, est)
    aligned = est[order]
    p_ref = (refs_a**2).mean(-1)
    p_est = (aligned**2).mean(-1)
    pair_ok = p_est > ACTIVE_SEP_RATIO * p_ref.min()
    sep = si_snr(aligned, refs_a)
    base = si_snr(np.broadcast_to(mix, refs_a.shape), refs_a)
    for i in np.flatnonzero(pair_ok):
        score.si_snr.append(float(sep[i]))
        score.si_snri.append(float(sep[i] - base[i]))
        score.pairs.append((int(active[i]), int(order[i])))
    if bss and pair_ok.any():
        sdr, sir, sar = bss_eval(refs_a, aligned)
        score.sdr = [float(sdr[i]) for i in np.flatnonzero(pair_ok)]
        score.sir = [float(sir[i]) for i in np.flatnonzero(pair_ok)]
        score.sar = [float(sar[i]) for i in np.flatnonzero(pair_ok)]
    return score


def bss_eval(refs: np.ndarray, est: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SDR/SIR/SAR (dB) of already aligned ``[N, T]`` estimates (BSS Eval v4, sources), over
    the whole signal as ``fast_bss_eval`` computes them (museval instead reports the median
    over 1 s frames).

    Estimate ``n`` is projected onto its reference filtered by a 512-tap FIR (the BSS-Eval
    default) for SDR, and onto all references so filtered for SAR; SIR compares the two.
    Definitions, normalisation and the ±100 dB clamp are those of
    ``fast_bss_eval.bss_eval_sources(..., compute_permutation=False)`` (equal to ~1e-5 dB), but
    the systems are solved one at a time in numpy: torch's batched float64 solve (oneMKL) fails
    once ``torch.set_num_threads`` has been called in the process. With a single reference SIR
    is undefined; we report NaN.

    Returns:
        ``(sdr, sir, sar)``, each ``[N]``.
    """
    from scipy.linalg import toeplitz

    refs = np.asarray(refs, np.float64)
    est = np.asarray(est, np.float64)
    if refs.ndim != 2 or refs.shape != est.shape:
        raise ValueError(f"bss_eval needs [N, T] references and estimates, got {refs.shape} "
                         f"and {est.shape}")
    # Tiny noise keeps the filter's Gram matrix invertible for digitally silent stretches. It
    # is relative to each reference's RMS (−114 dB), so quiet references are not biased.
    rng = np.random.default_rng(0)
    rms = np.maximum(np.sqrt((refs**2).mean(-1, keepdims=True)), ACTIVE_REF_RMS)
    refs = refs + 2e-6 * rms * rng.standard_normal(refs.shape)
    acf, xcorr = _bss_correlations(_unit_norm(refs), _unit_norm(est), BSS_FILTER_TAPS)
    n_src, _, taps = acf.shape
    # SDR: estimate n onto its own filtered reference (a symmetric Toeplitz system per source).
    coh_sdr = np.empty(n_src)
    for i in range(n_src):
        b = xcorr[i, i]
        coh_sdr[i] = b @ np.linalg.solve(toeplitz(acf[i, i]), b)
    # SAR: every estimate onto all filtered references. Block (r, c) of the Gram matrix holds
    # acf_rc(j - i); a negative lag of acf_rc is the positive lag of acf_cr.
    gram = np.empty((n_src * taps, n_src * taps))
    for r in range(n_src):
        for c in range(n_src):
            gram[r * taps:(r + 1) * taps, c * taps:(c + 1) * taps] = toeplitz(acf[c, r], acf[r, c])
    rhs = xcorr.transpose(0, 2, 1).reshape(n_src * taps, n_src)  # [(r, lag), estimate]
    coh_sar = np.einsum("kn,kn->n", rhs, np.linalg.solve(gram, rhs))
    with np.errstate(divide="ignore", invalid="ignore"):
        sdr, sir, sar = (_coherence_db(c) for c in (coh_sdr, coh_sdr / coh_sar, coh_sar))
    sir = np.where(np.isfinite(sir) & (n_src > 1), sir, np.nan)
    return sdr, sir, sar


def _unit_norm(x: np.ndarray) -> np.ndarray:
    """``[N, T]`` rows scaled to unit L2 norm (norms floored at 1e-6, as fast_bss_eval)."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-6)


def _bss_correlations(refs: np.ndarray, est: np.ndarray, taps: int) -> tuple[np.ndarray, np.ndarray]:
    """Correlations at lags ``0..taps-1`` of ``[N, T]`` references and estimates.

    Returns:
        ``acf [N, N, taps]`` with ``acf[r, c, k] = sum_t refs[r, t + k] refs[c, t]`` and
        ``xcorr [N, N, taps]`` with ``xcorr[r, n, k] = sum_t refs[r, t] est[n, t + k]``.
    """
    t = refs.shape[-1]
    # Zero-padding to T + taps - 1 keeps lags |k| < taps free of circular wrap-around.
    n_fft = 1 << math.ceil(math.log2(t + taps - 1))
    ref_f = np.fft.rfft(refs, n_fft)
    est_f = np.fft.rfft(est, n_fft)
    acf = np.fft.irfft(ref_f[:, None, :] * ref_f[None, :, :].conj(), n_fft)[..., :taps]
    xcorr = np.fft.irfft(ref_f[:, None, :].conj() * est_f[None, :, :], n_fft)[..., :taps]
    return acf, xcorr


def _coherence_db(coh: np.ndarray) -> np.ndarray:
    """Squared cosine ``coh`` in [0, 1] → ``10 log10(coh / (1 - coh))`` clamped to ±BSS_CLAMP_DB."""
    e = 10.0 ** (-BSS_CLAMP_DB / 10.0)
    eps = e / (1.0 + e)
    coh = np.clip(coh, eps, 1.0 - eps)
    return 10.0 * np.log10(coh / (1.0 - coh))


def _mean(values: list[float]) -> float:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else float("nan")


def summarize(scores: list[MixtureScore]) -> dict[str, Any]:
    """FUSS aggregates plus a per-source-count breakdown.

    Returns:
        ``{"1S", "MSi", "n_mixtures", "by_count": {n: {...}}}`` where each ``by_count`` entry
        holds ``n_mixtures, n_pairs, si_snr, si_snri, sdr, sir, sar, under, equal, over``.
    """
    by: dict[int, list[MixtureScore]] = defaultdict(list)
    for s in scores:
        by[s.n_sources].append(s)
    table: dict[int, dict[str, Any]] = {}
    for n in sorted(by):
        group = by[n]
        row: dict[str, Any] = {
            "n_mixtures": len(group),
            "n_pairs": sum(len(s.si_snr) for s in group),
            "si_snr": _mean([v for s in group for v in s.si_snr]),
            # SI-SNRi of a one-source mixture compares with a perfect "mixture estimate": skip it.
            "si_snri": _mean([v for s in group for v in s.si_snri]) if n >= 2 else float("nan"),
            "sdr": _mean([v for s in group for v in s.sdr]),
            "sir": _mean([v for s in group for v in s.sir]),
            "sar": _mean([v for s in group for v in s.sar]),
        }
        seps = [s.separation for s in group if s.separation is not None]
        for kind in ("under", "equal", "over"):
            row[kind] = (sum(k == kind for k in seps) / len(seps)) if seps else float("nan")
        row["dropped_per_mixture"] = _mean([float(s.n_dropped) for s in group
                                            if s.n_dropped is not None])
        table[n] = row
    one = [v for s in by.get(1, []) for v in s.si_snr]
    multi = [v for n, g in by.items() if n >= 2 for s in g for v in s.si_snri]
    seps_all = [s.separation for s in scores if s.separation is not None]
    return {
        "1S": _mean(one),
        "MSi": _mean(multi),
        "n_mixtures": len(scores),
        "equal_rate": (sum(k == "equal" for k in seps_all) / len(seps_all)) if seps_all else float("nan"),
        "by_count": table,
    }


CSV_COLUMNS = ("n_sources", "n_mixtures", "n_pairs", "si_snr", "si_snri", "sdr", "sir", "sar",
               "under", "equal", "over", "dropped_per_mixture")


def write_csv(path: str | Path, summary: dict[str, Any]) -> Path:
    """Per-source-count table of :func:`summarize` as CSV (atomic)."""
    from auralens.io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(CSV_COLUMNS)
        for n, row in summary["by_count"].items():
            writer.writerow([n, *(_fmt(row[c]) for c in CSV_COLUMNS[1:])])
    return path


def _fmt(v: Any) -> Any:
    return round(v, 4) if isinstance(v, float) and math.isfinite(v) else ("" if isinstance(v, float) else v)


def plot_summary(path: str | Path, summary: dict[str, Any], title: str = "") -> Path:
    """Bar plots of SI-SNR(i) and separation rates per true source count (PNG, atomic)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from auralens.io import atomic_path

    counts = list(summary["by_count"])
    rows = [summary["by_count"][n] for n in counts]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    vals = [r["si_snr"] if n == 1 else r["si_snri"] for n, r in zip(counts, rows, strict=True)]
    axes[0].bar([str(n) for n in counts], np.nan_to_num(vals), color="tab:blue")
    axes[0].set_xlabel("true number of sources")
    axes[0].set_ylabel("dB (1: SI-SNR, ≥2: SI-SNRi)")
    axes[0].axhline(0, color="k", lw=0.6)
    axes[0].set_title(f"1S {summary['1S']:.2f} dB · MSi {summary['MSi']:.2f} dB")
    bottom = np.zeros(len(counts))
    for kind, color in (("under", "tab:orange"), ("equal", "tab:green"), ("over", "tab:red")):
        v = np.nan_to_num([r[kind] for r in rows])
        axes[1].bar([str(n) for n in counts], v, bottom=bottom, color=color, label=kind)
        bottom += v
    axes[1].set_xlabel("true number of sources")
    axes[1].set_ylabel("fraction of mixtures")
    axes[1].set_title("activity filter: under / equal / over")
    axes[1].legend(loc="upper right", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110)
    plt.close(fig)
    return path
