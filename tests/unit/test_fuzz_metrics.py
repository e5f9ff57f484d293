"""Fuzzing FAD and KAD inputs: any set of finite frames gives a finite value or a clear
MetricInputError / InsufficientFramesError; degenerate sets (empty, one frame, identical frames, wrong rank, NaN,
mismatched dims) never come back as NaN."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from auralens.evaluate.fad import InsufficientFramesError, MetricInputError, fad
from auralens.evaluate.kad import kad

SETTINGS = settings(max_examples=80, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@st.composite
def frame_sets(draw: st.DrawFn, dim: int | None = None) -> np.ndarray:
    d = dim if dim is not None else draw(st.integers(1, 5))
    n = draw(st.integers(0, 24))
    kind = draw(st.sampled_from(["random", "constant", "duplicated", "scaled"]))
    if kind == "constant":
        return np.full((n, d), draw(st.floats(-1e3, 1e3)), np.float64)
    x = draw(hnp.arrays(np.float64, (n, d), elements=st.floats(-1e3, 1e3)))
    if kind == "duplicated" and n:
        x = np.repeat(x[:1], n, axis=0)
    if kind == "scaled":
        x = x * draw(st.sampled_from([1e-6, 1e6]))
    return x


def _finite_or_clear(fn) -> float | None:
    try:
        value = fn()
    except (MetricInputError, InsufficientFramesError) as exc:
        assert str(exc) and "\n" not in str(exc)
        return None
    assert np.isfinite(value), value
    return value


@SETTINGS
@given(data=st.data(), shrinkage=st.sampled_from([None, "ledoit-wolf", 0.1, 1.0]))
def test_fad_is_finite_or_a_clear_error(data, shrinkage) -> None:
    d = data.draw(st.integers(1, 5))
    a, b = data.draw(frame_sets(d)), data.draw(frame_sets(d))
    value = _finite_or_clear(lambda: fad(a, b, shrinkage=shrinkage))
    if value is not None:
        assert value >= 0


@SETTINGS
@given(data=st.data(), sigma=st.one_of(st.none(), st.floats(1e-3, 1e3)),
       kernel=st.sampled_from(["rbf", "iq", "imq"]))
def test_kad_is_finite_or_a_clear_error(data, sigma, kernel) -> None:
    d = data.draw(st.integers(1, 5))
    a, b = data.draw(frame_sets(d)), data.draw(frame_sets(d))
    _finite_or_clear(lambda: kad(a, b, sigma=sigma, kernel=kernel, scale=1.0).value)


@pytest.mark.parametrize(("ref", "ev"), [
    (np.zeros((0, 4)), np.ones((5, 4))),                      # empty set
    (np.ones((1, 4)), np.ones((5, 4))),                       # a single frame
    (np.ones((6, 4)), np.ones((6, 3))),                       # dims differ
    (np.ones(6), np.ones(6)),                                 # wrong rank
    (np.full((6, 2), np.nan), np.ones((6, 2))),               # NaN
    ([], []),                                                 # no clips at all
])
def test_degenerate_sets_raise_metric_input_error(ref, ev) -> None:
    with pytest.raises((MetricInputError, InsufficientFramesError)):
        fad(ref, ev, shrinkage="ledoit-wolf")
    with pytest.raises(MetricInputError):
        kad(ref, ev)


def test_identical_reference_frames_need_a_fixed_sigma() -> None:
    with pytest.raises(MetricInputError, match="sigma"):
        kad(np.ones((8, 3)), np.zeros((8, 3)))
    assert kad(np.ones((8, 3)), np.ones((8, 3)), sigma=1.0).value == pytest.approx(0.0, abs=1e-12)


def test_fad_overflow_is_a_metric_input_error() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(MetricInputError):
        fad(rng.standard_normal((50, 4)) * 1e200, rng.standard_normal((40, 4)) * 1e200)
