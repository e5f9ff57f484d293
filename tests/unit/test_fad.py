"""Known-answer tests for FAD, its shrinkage and FAD∞."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from auralens.evaluate.fad import (
    GaussianStats,
    InsufficientFramesError,
    MetricInputError,
    compute_stats,
    fad,
    fad_inf,
    fit_inf,
    frechet_distance,
    trace_sqrt_product,
)


def _random_spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.standard_normal((d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def test_fad_of_set_with_itself_is_zero() -> None:
    x = np.random.default_rng(0).standard_normal((2000, 32)) * 3 + 1
    assert fad(x, x) == pytest.approx(0.0, abs=1e-6)


def test_stats_level_matches_closed_form_diagonal() -> None:
    # Diagonal Gaussians: FD = |mu1-mu2|^2 + sum (sqrt(a_i) - sqrt(b_i))^2.
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, -1.0])
    a, b = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 0.25])
    s1 = GaussianStats(mu1, np.diag(a), 100)
    s2 = GaussianStats(mu2, np.diag(b), 100)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(s1, s2) == pytest.approx(expected, abs=1e-10)
    with pytest.raises(MetricInputError, match="takes two GaussianStats; the second is a ndarray"):
        frechet_distance(s1, np.zeros((4, 2)))


def test_trace_term_matches_scipy_sqrtm_for_non_commuting_covariances() -> None:
    rng = np.random.default_rng(1)
    s1, s2 = _random_spd(rng, 20), _random_spd(rng, 20)
    ref = np.trace(scipy.linalg.sqrtm(s1 @ s2)).real
    assert trace_sqrt_product(s1, s2) == pytest.approx(ref, rel=1e-9)


def test_sampled_gaussians_approach_closed_form() -> None:
    rng = np.random.default_rng(2)
    d = 4
    mu2 = np.array([1.0, 0.0, -0.5, 0.0])
    cov2 = np.diag([2.0, 1.0, 0.5, 1.0])
    x = rng.standard_normal((200_000, d))
    y = rng.multivariate_normal(mu2, cov2, size=200_000)
    expected = mu2 @ mu2 + np.sum((1 - np.sqrt(np.diag(cov2))) ** 2)
    assert fad(x, y) == pytest.approx(expected, abs=0.01)


def test_too_few_frames_raises_clear_error() -> None:
    x = np.random.default_rng(3).standard_normal((50, 64))
    with pytest.raises(InsufficientFramesError, match="more frames than embedding dimensions"):
        fad(x, x + 1)


def test_too_few_frames_names_the_cli_option_and_the_python_argument() -> None:
    x = np.random.default_rng(3).standard_normal((50, 64))
    with pytest.raises(InsufficientFramesError) as err:
        fad(x, x + 1)
    assert str(err.value).endswith(
        "or use --shrinkage ledoit-wolf (shrinkage='ledoit-wolf' in Python)")


@pytest.mark.parametrize("shrinkage", ["ledoit-wolf", 0.3])
def test_shrinkage_gives_finite_fad_with_few_frames(shrinkage: object) -> None:
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((40, 64)), rng.standard_normal((40, 64)) + 0.5
    value = fad(x, y, shrinkage=shrinkage)
    assert np.isfinite(value) and value > 0
    stats = compute_stats(x, shrinkage=shrinkage)
    assert 0 < stats.shrinkage <= 1
    assert np.all(np.linalg.eigvalsh(stats.sigma) > 0)  # shrunk covariance is full rank


def test_ledoit_wolf_intensity_small_for_many_frames() -> None:
    x = np.random.default_rng(5).standard_normal((20000, 8)) @ np.diag(np.arange(1, 9.0))
    assert compute_stats(x, shrinkage="ledoit-wolf").shrinkage < 0.01


def test_fad_rejects_nan_frames() -> None:
    x = np.random.default_rng(6).standard_normal((100, 4))
    x[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        compute_stats(x)


def test_stats_save_load_round_trip(tmp_path) -> None:
    s = compute_stats(np.random.default_rng(7).standard_normal((100, 5)), embedder="logmel")
    back = GaussianStats.load(s.save(tmp_path / "ref.npz"))
    assert back.n == 100 and back.embedder == "logmel"
    np.testing.assert_array_equal(back.sigma, s.sigma)
    assert fad(s, back) == 0.0


def test_fit_inf_recovers_synthetic_line() -> None:
    ns = [1000, 2000, 4000, 8000, 16000]
    a, b, r2 = fit_inf(ns, [3.5 + 1200.0 / n for n in ns])
    assert a == pytest.approx(3.5, abs=1e-9) and b == pytest.approx(1200.0, rel=1e-9)
    assert r2 == pytest.approx(1.0)


def test_fad_inf_is_closer_to_truth_than_finite_fad() -> None:
    # Same distribution: the true FAD is 0; finite-n FAD is biased upwards (~ b/n).
    rng = np.random.default_rng(8)
    d = 16
    ref = rng.standard_normal((100_000, d))
    est = rng.standard_normal((4000, d))
    res = fad_inf(ref, est, draws=3, seed=0)
    assert len(res.points) >= 5 and res.slope > 0
    assert abs(res.fad_inf) < res.fad_full
    assert abs(res.fad_inf) < 0.3 * res.fad_full
