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


def _frame_energy(x: np.ndarray, frame: int) -> np.ndarray:
    n = max(1, x.shape[-1] // frame)
    x = x[..., : n * frame] if x.shape[-1] >= frame else np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, frame - x.shape[-1])])
    return (x.reshape(*x.shape[:-1], -1, frame) ** 2).sum(-1)


def activity_scores(est: np.ndarray, mix: np.ndarray, frame: int = 512,
                    frame_db: float = -6.0) -> list[dict[str, float]]:
    """Scores of every estimate (``[M, T]``) against the mixture (``[T]``)."""
    est = np.asarray(est, np.float64)
    mix = np.asarray(mix, np.float64)
    if est.shape[-1] == 0:  # nothing to hear: every estimate scores zero (and is dropped)
        keys = ("sum_abs_times_peak", "rms", "ac_rms", "rms_ratio", "energy_db",
                "active_frame_fraction")
        return [dict.fromkeys(keys, 0.0) | {"energy_db": -240.0} for _ in range(est.shape[0])]
    mix_rms = float(np.sqrt(np.mean(mix**2))) + 1e-12
    mix_frames = _frame_energy(mix, frame)
    est_frames = _frame_energy(est, frame)
    audible = mix_frames > 1e-10  # ignore digitally silent frames of the mixture
    out = []
    for k in range(est.shape[0]):
        s = est[k]
        rms, ac_rms = _rms_pair(s)
        ratio_db = 10 * np.log10(est_frames[k] / np.maximum(mix_frames, 1e-20) + 1e-20)
        # The share of the *audible* frames: a short event in a file that is otherwise digital
        # silence dominates all the frames there is anything to hear in.
        frac = float(np.sum((ratio_db >= frame_db) & audible) / audible.sum()) if audible.any() else 0.0
        out.append({
            "sum_abs_times_peak": float(np.abs(s).sum() * np.abs(s).max()),
            "rms": rms,
            "ac_rms": ac_rms,
            "rms_ratio": rms / mix_rms,
            "energy_db": float(20 * np.log10(rms / mix_rms + 1e-12)),
            "active_frame_fraction": frac,
        })
    return out


def _rms_pair(x: np.ndarray) -> tuple[float, float]:
    """RMS of a float64 ``[T]`` signal and of it with its mean removed (see :func:`no_sound`)."""
    return float(np.sqrt(np.mean(x**2))), float(np.sqrt(np.mean((x - x.mean()) ** 2)))


def no_sound(rms: float, ac_rms: float) -> str | None:
    """Why a signal with this RMS and mean-removed RMS holds no sound, or None when it does."""
    if rms == 0.0:
        return "silent (all zeros)"
    if ac_rms <= CONSTANT_REL * rms:
        return "constant (no sound)"
    return None


def nothing_to_hear(x: np.ndarray) -> str | None:
    """Why the ``[T]`` signal ``x`` holds no sound (all zeros, or constant), or None."""
    return no_sound(*_rms_pair(np.asarray(x, dtype=np.float64)))


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
    m = np.asarray(mix, np.float64)
    mix_silent = None
    if m.size and np.all(np.isfinite(m)):
        mix_silent = nothing_to_hear(m)
    out = []
    for k, sc in enumerate(activity_scores(est, mix, cfg.frame, cfg.frame_db)):
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
