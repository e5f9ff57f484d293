"""Active-source filter: which of the M estimates hold a real source.

Rules (``ActivityConfig.rule``):

* ``"study"`` (default, the rule the original study used): keep an estimate when
  ``(Σ_t |s_t|) · max_t |s_t| > threshold`` **and** ``RMS(s) ≥ min_rms_ratio · RMS(x)``.
  The first score grows with the clip length and level, so on its own it only removes
  near-silent outputs; the RMS condition does most of the work.
* ``"relative_db"``: keep when the estimate's energy relative to the mixture,
  ``10·log10(‖s‖²/‖x‖²)``, is at least ``min_db`` (length- and level-independent).
* ``"frames"``: keep when the estimate dominates locally: in at least ``min_active_frac`` of
  the mixture's audible 32 ms frames (digital silence is not counted) its energy is within
  ``frame_db`` dB of the mixture frame's energy.
  Short events (a single bark in 10 s) have a small global RMS but are locally dominant.

Whatever the rule, an estimate with nothing to hear is never kept: non-finite samples, all
zeros (``"silent (all zeros)"``) or a constant, a DC offset and no sound (``"constant (no
sound)"``: its mean-removed RMS, ``ac_rms``, is at most :data:`CONSTANT_REL` of its RMS).
When the mixture itself is silent or constant, no estimate is kept either: whatever a
separator makes of it is not a source. Such decisions have ``"audible": False``.

Each decision records every score, so a report can show why an estimate was dropped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

RULES = ("study", "relative_db", "frames")
#: A signal whose mean-removed RMS is at most this fraction of its RMS (−120 dB) is a constant:
#: a DC offset with no sound. Float rounding leaves a constant far below it.
CONSTANT_REL = 1e-6


@dataclass
class ActivityConfig:
    """Thresholds of the active-source filter (see the module docstring)."""

    rule: str = "study"
    threshold: float = 0.1
    min_rms_ratio: float = 0.1
    min_db: float = -20.0
    frame_db: float = -6.0
    min_active_frac: float = 0.02
    frame: int = 512

    def __post_init__(self) -> None:
        if self.rule not in RULES:
            raise ValueError(f"unknown activity rule {self.rule!r}; choose one of {RULES}")
        # Messages start with the option's name: activity_config prefixes where it came from.
        for key in ("threshold", "min_rms_ratio"):
            if not getattr(self, key) >= 0:  # NaN fails too
                raise ValueError(f"{key} must be ≥ 0, got {getattr(self, key)!r}")
        if not 0 <= self.min_active_frac <= 1:
            raise ValueError(f"min_active_frac must be from 0 to 1 (a fraction of the frames), "
                             f"got {self.min_active_frac!r}")


#: Samples of one signal scored at a time (rounded down to whole frames): the scores are
#: float64 sums over samples and frames, gathered block by block, so a 30-minute input needs a
#: few megabytes here rather than float64 copies of every ``[M, T]`` estimate.
BLOCK = 1 << 18


def _frame_energy(x: np.ndarray, frame: int) -> np.ndarray:
    n = max(1, x.shape[-1] // frame)
    x = x[..., : n * frame] if x.shape[-1] >= frame else np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, frame - x.shape[-1])])
    return (x.reshape(*x.shape[:-1], -1, frame) ** 2).sum(-1)


@dataclass
class _Stats:
    """Sums over one ``[T]`` signal (float64): RMS, mean-removed RMS, Σ|x|, max|x|, whether
    every sample is finite, and the energies of its ``frame``-long frames (``[max(1, T //
    frame)]``; None when no frame length was asked for)."""

    rms: float
    ac_rms: float
    sum_abs: float
    peak: float
    finite: bool
    frames: np.ndarray | None = None


def _stats(x: np.ndarray, frame: int | None = None) -> _Stats:
    """:class:`_Stats` of the ``[T]`` signal ``x``, read :data:`BLOCK` samples at a time.

    Non-finite samples give non-finite sums, as whole-array sums do; an empty signal has NaN
    RMS values (the mean of nothing), a peak of 0 and one zero frame.
    """
    n = x.shape[-1]
    if n == 0:  # no samples: one zero frame, as _frame_energy pads
        return _Stats(float("nan"), float("nan"), 0.0, 0.0, True,
                      None if frame is None else np.zeros(1))
    # Blocks start on frame boundaries, so each frame's energy is summed as in one piece.
    step = BLOCK if frame is None else frame * max(1, BLOCK // frame)
    n_framed = 0 if frame is None or n < frame else n // frame * frame
    total = squares = sum_abs = 0.0
    peak, finite, frames = 0.0, True, []
    for i in range(0, n, step):
        b = x[i:i + step].astype(np.float64)  # a copy: changed in place below
        finite = finite and bool(np.isfinite(b).all())
        total += float(b.sum())
        sq = b * b
        squares += float(sq.sum())
        k = (min(i + step, n_framed) - i) // frame if n_framed > i else 0
        if k:
            frames.append(sq[: k * frame].reshape(k, frame).sum(-1))
        np.abs(b, out=b)
        sum_abs += float(b.sum())
        peak = float(np.maximum(peak, b.max()))  # np.maximum keeps a NaN, max() may not
    mean = total / n
    centred = float("nan")  # NaN or Inf samples: no mean to remove (x − mean is NaN too)
    if np.isfinite(mean):
        centred = 0.0
        for i in range(0, n, step):  # a second pass: Σ(x − mean)² keeps a DC offset's residue exact
            b = x[i:i + step].astype(np.float64)
            b -= mean
            b *= b
            centred += float(b.sum())
    if frame is not None and n < frame:  # shorter than one frame: one zero-padded frame
        frames = [_frame_energy(x.astype(np.float64), frame)]
    return _Stats(float(np.sqrt(squares / n)), float(np.sqrt(centred / n)), sum_abs, peak,
                  finite, None if frame is None else np.concatenate(frames))


def activity_scores(est: np.ndarray, mix: np.ndarray, frame: int = 512,
                    frame_db: float = -6.0) -> list[dict[str, float]]:
    """Scores of every estimate (``[M, T]``) against the mixture (``[T]``).

    Sums are float64, taken block by block (:data:`BLOCK`): no full-length float64 copy of
    the estimates or the mixture is made.
    """
    mix = np.asarray(mix).reshape(-1)
    return _scores(np.asarray(est), _stats(mix, frame), frame, frame_db)


def _scores(est: np.ndarray, mix: _Stats, frame: int, frame_db: float) -> list[dict[str, float]]:
    """:func:`activity_scores` given the mixture's :class:`_Stats` (with ``frame``'s energies)."""
    if est.shape[-1] == 0:  # nothing to hear: every estimate scores zero (and is dropped)
        keys = ("sum_abs_times_peak", "rms", "ac_rms", "rms_ratio", "energy_db",
                "active_frame_fraction")
        return [dict.fromkeys(keys, 0.0) | {"energy_db": -240.0} for _ in range(est.shape[0])]
    mix_rms = mix.rms + 1e-12
    assert mix.frames is not None
    audible = mix.frames > 1e-10  # ignore digitally silent frames of the mixture
    out = []
    for k in range(est.shape[0]):
        st = _stats(est[k], frame)  # one estimate at a time, block by block
        assert st.frames is not None
        ratio_db = 10 * np.log10(st.frames / np.maximum(mix.frames, 1e-20) + 1e-20)
        # The share of the *audible* frames: a short event in a file that is otherwise digital
        # silence dominates all the frames there is anything to hear in.
        frac = float(np.sum((ratio_db >= frame_db) & audible) / audible.sum()) if audible.any() else 0.0
        out.append({
            "sum_abs_times_peak": float(st.sum_abs * st.peak),
            "rms": st.rms,
            "ac_rms": st.ac_rms,
            "rms_ratio": st.rms / mix_rms,
            "energy_db": float(20 * np.log10(st.rms / mix_rms + 1e-12)),
            "active_frame_fraction": frac,
        })
    return out


def no_sound(rms: float, ac_rms: float) -> str | None:
    """Why a signal with this RMS and mean-removed RMS holds no sound, or None when it does."""
    if rms == 0.0:
        return "silent (all zeros)"
    if ac_rms <= CONSTANT_REL * rms:
        return "constant (no sound)"
    return None


def nothing_to_hear(x: np.ndarray) -> str | None:
    """Why the ``[T]`` signal ``x`` holds no sound (all zeros, or constant), or None."""
    st = _stats(np.asarray(x).reshape(-1))
    return no_sound(st.rms, st.ac_rms)


def _inaudible(scores: dict[str, float]) -> str | None:
    """Why an estimate with these scores has nothing to hear (non-finite, silent or
    constant), or None when it has."""
    if not all(np.isfinite(v) for v in scores.values()):
        return "non-finite samples (NaN or Inf) in the estimate"
    return no_sound(scores["rms"], scores.get("ac_rms", scores["rms"]))


def decide(scores: dict[str, float], cfg: ActivityConfig) -> tuple[bool, str]:
    """``(kept, reason)`` for one estimate's scores."""
    silent = _inaudible(scores)
    if silent is not None:
        return False, silent
    if cfg.rule == "study":
        if scores["sum_abs_times_peak"] <= cfg.threshold:
            return False, f"(Σ|s|)·max|s| = {scores['sum_abs_times_peak']:.3g} ≤ {cfg.threshold:g}"
        if scores["rms_ratio"] < cfg.min_rms_ratio:
            return False, f"RMS is {scores['rms_ratio']:.1%} of the mixture's < {cfg.min_rms_ratio:.0%}"
        return True, "passes (Σ|s|)·max|s| and RMS rules"
    if cfg.rule == "relative_db":
        if scores["energy_db"] < cfg.min_db:
            return False, f"energy {scores['energy_db']:.1f} dB re mixture < {cfg.min_db:g} dB"
        return True, f"energy {scores['energy_db']:.1f} dB re mixture ≥ {cfg.min_db:g} dB"
    if scores["active_frame_fraction"] < cfg.min_active_frac:
        return False, (f"dominant in {scores['active_frame_fraction']:.1%} of frames "
                       f"< {cfg.min_active_frac:.0%}")
    return True, f"dominant in {scores['active_frame_fraction']:.1%} of frames"


def filter_estimates(est: np.ndarray, mix: np.ndarray, cfg: ActivityConfig | None = None) -> list[dict[str, Any]]:
    """Per estimate ``{"index", "kept", "reason", "audible", "scores"}`` under ``cfg``'s rule.

    ``audible`` is False for an estimate with nothing to hear (non-finite, silent or
    constant) and for every estimate of a mixture that is silent or constant.
    """
    cfg = cfg or ActivityConfig()
    m = np.asarray(mix).reshape(-1)
    ms = _stats(m, cfg.frame)  # once, for the mixture's own check and every estimate's scores
    mix_silent = no_sound(ms.rms, ms.ac_rms) if m.size and ms.finite else None
    out = []
    for k, sc in enumerate(_scores(np.asarray(est), ms, cfg.frame, cfg.frame_db)):
        kept, reason = decide(sc, cfg)
        audible = _inaudible(sc) is None
        if audible and mix_silent is not None:
            kept, reason, audible = False, f"the mixture is {mix_silent}", False
        out.append({"index": k, "kept": bool(kept), "reason": reason, "audible": audible,
                    "scores": sc})
    return out


def count_accuracy(pairs: list[tuple[int, int]]) -> dict[str, float]:
    """``pairs`` of (true count, kept count) → rates of equal / under / over counts."""
    if not pairs:
        return {"equal": float("nan"), "under": float("nan"), "over": float("nan")}
    arr = np.array(pairs)
    return {"equal": float(np.mean(arr[:, 1] == arr[:, 0])),
            "under": float(np.mean(arr[:, 1] < arr[:, 0])),
            "over": float(np.mean(arr[:, 1] > arr[:, 0]))}
