"""Fuzzing sonify post-processing: any chain on any wave gives a finite ``[T]`` float32 wave of
the input's length, or a :class:`PostprocessError` (never another exception)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from auralens.sonify.postprocess import STEP_NAMES, PostprocessError, apply, chain_name, parse_chain

F32_MAX = float(np.finfo(np.float32).max)
HUGE = float(np.float32(1e15))  # squares stay inside float32; larger values are tested separately below

# Samples: NaN, ±inf, and finite values up to ±1e15 (far beyond any sane decoder output).
samples = st.one_of(st.floats(-HUGE, HUGE, width=32),
                    st.sampled_from([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-45]))
waves = st.one_of(
    hnp.arrays(np.float32, st.integers(0, 400), elements=samples),
    hnp.arrays(np.float32, st.integers(0, 400),
               elements=st.floats(-1, 1, width=32)),                       # ordinary audio
    st.integers(0, 64).map(lambda n: np.zeros(n, np.float32)),                # silence
    st.integers(1, 64).map(lambda n: np.full(n, HUGE, np.float32)),          # saturated
)
steps = st.one_of(
    st.sampled_from(STEP_NAMES),
    st.builds(lambda p: f"threshold:{p:g}", st.floats(0, 100)),
    st.builds(lambda n: f"wiener:{n}", st.integers(1, 101)),
)
# One square at most: a second squares 1e30 past the float32 range (clipping tested below).
chains = st.lists(steps, max_size=5).filter(lambda c: c.count("square") <= 1).map(",".join)
SETTINGS = settings(max_examples=150, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@SETTINGS
@given(wave=waves, chain=chains, reference=st.one_of(st.none(), waves))
def test_any_chain_gives_finite_audio_or_a_clear_error(wave, chain, reference) -> None:
    try:
        out = apply(wave, chain, reference=reference)
    except PostprocessError as exc:
        # the only expected refusal: minmax without the original clip
        assert "minmax" in chain and reference is None, exc
        return
    assert out.dtype == np.float32 and out.shape == wave.shape
    assert np.all(np.isfinite(out))
    if not np.any(np.nan_to_num(wave, nan=0.0, posinf=0.0, neginf=0.0)) and "minmax" not in chain:
        assert not np.any(out)  # silence stays silence


@SETTINGS
@given(chain=st.text(max_size=40))
def test_chain_parser_accepts_or_refuses_clearly(chain: str) -> None:
    try:
        steps_ = parse_chain(chain)
    except PostprocessError:
        return
    assert all(name in STEP_NAMES for name, _ in steps_)
    assume(all(v is None or np.isfinite(v) for _, v in steps_))
    assert "," not in chain_name(chain) and "/" not in chain_name(chain)


def test_peak_and_minmax_known_answers() -> None:
    x = np.array([0.0, 2.0, -4.0], np.float32)
    np.testing.assert_allclose(apply(x, "peak"), [0.0, 0.5, -1.0])
    np.testing.assert_allclose(apply(x, "minmax", reference=np.array([-1.0, 1.0])), [1 / 3, 1.0, -1.0],
                               rtol=1e-6)
    assert apply(np.array([np.nan, np.inf, 1.0]), "none").tolist() == [0.0, 0.0, 1.0]


@pytest.mark.parametrize(("wave", "chain", "reference"), [
    (np.array([1e39, 0.0, -1.0]), "none", None),
    (np.full(4, F32_MAX, np.float32), "square", None),
])
def test_values_beyond_float32_range_stay_finite(wave, chain, reference) -> None:
    assert np.all(np.isfinite(apply(wave, chain, reference=reference)))


@pytest.mark.parametrize("chain", ["wiener:nan", "wiener:inf", "wiener:-5"])
def test_bad_step_arguments_are_refused_clearly(chain: str) -> None:
    wave = np.random.default_rng(0).standard_normal(64).astype(np.float32)
    with pytest.raises(PostprocessError):
        apply(wave, chain)
