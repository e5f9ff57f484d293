"""Fuzzing the active-source filter: any estimates of float32 audio get a decision each, with
finite scores, under every rule; silent estimates are never kept."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from auralens.scene.separate.activity import RULES, ActivityConfig, filter_estimates

F32_MAX = float(np.finfo(np.float32).max)
SETTINGS = settings(max_examples=120, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def scenes(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray]:
    m = draw(st.integers(1, 4))
    t = draw(st.integers(1, 1500))
    amp = draw(st.sampled_from([0.0, 1e-30, 1e-6, 1.0, 1e15, F32_MAX]))
    est = draw(hnp.arrays(np.float32, (m, t), elements=st.floats(-1, 1, width=32)))
    est = (est * np.float32(amp)).astype(np.float32) if amp < F32_MAX else np.sign(est) * np.float32(amp)
    silent = draw(st.lists(st.booleans(), min_size=m, max_size=m))
    est[np.array(silent)] = 0.0
    with np.errstate(over="ignore"):  # sums of F32_MAX samples become inf on purpose
        return est, est.sum(axis=0, dtype=np.float64).astype(np.float32)


@SETTINGS
@given(scene=scenes(), rule=st.sampled_from(RULES), threshold=st.floats(0, 10),
       frame=st.sampled_from([16, 512, 4096]))
def test_every_estimate_gets_a_decision_with_finite_scores(scene, rule, threshold, frame) -> None:
    est, mix = scene
    out = filter_estimates(est, mix, ActivityConfig(rule=rule, threshold=threshold, frame=frame))
    assert [d["index"] for d in out] == list(range(est.shape[0]))
    for d, row in zip(out, est, strict=True):
        assert isinstance(d["kept"], bool) and d["reason"]
        assert all(np.isfinite(v) for v in d["scores"].values()), d["scores"]
        if not np.any(row) or np.all(row == row[0]):  # silent or constant: nothing to hear
            assert not d["kept"] and not d["audible"], d


@pytest.mark.parametrize("rule", RULES)
def test_nan_estimates_are_not_kept(rule: str) -> None:
    est = np.stack([np.full(2000, np.nan, np.float32), np.ones(2000, np.float32)])
    out = filter_estimates(est, np.ones(2000, np.float32), ActivityConfig(rule=rule))
    assert out[0]["kept"] is False


@pytest.mark.parametrize("rule", RULES)
def test_zero_length_input_gives_a_clear_answer(rule: str) -> None:
    """No samples: every estimate is dropped as silent under every rule, with zero scores."""
    out = filter_estimates(np.zeros((2, 0), np.float32), np.zeros(0, np.float32), ActivityConfig(rule=rule))
    scores = {"sum_abs_times_peak": 0.0, "rms": 0.0, "ac_rms": 0.0, "rms_ratio": 0.0,
              "energy_db": -240.0, "active_frame_fraction": 0.0}
    assert out == [{"index": k, "kept": False, "reason": "silent (all zeros)", "audible": False,
                    "scores": scores} for k in range(2)]
