"""KAD against a plain O(n²) numpy reference; symmetry; per-file bandwidth."""

from __future__ import annotations

import numpy as np
import pytest

from auralens.evaluate.kad import kad, kad_per_file, median_pairwise_distance


def _reference_mmd(x: np.ndarray, y: np.ndarray, sigma: float, kernel: str = "rbf") -> float:
    """Direct unbiased MMD², ×100, written out plainly; γ = 1/(2σ²) as in the KAD toolkit."""
    gamma = 1 / (2 * sigma**2)
    shape = {"rbf": lambda g: np.exp(-g), "iq": lambda g: 1 / (1 + g),
             "imq": lambda g: 1 / np.sqrt(1 + g)}[kernel]

    def k(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        d2 = np.sum((a[:, None, :] - b[None, :, :]) ** 2, axis=-1)
        return shape(gamma * d2)

    n, m = len(x), len(y)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    term_x = (kxx.sum() - np.trace(kxx)) / (n * (n - 1))
    term_y = (kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return 100 * (term_x + term_y - 2 * kxy.mean())


@pytest.fixture
def sets() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.standard_normal((300, 8)), rng.standard_normal((250, 8)) * 1.3 + 0.4


def test_matches_numpy_reference(sets) -> None:
    x, y = sets
    d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))
    sigma = float(np.median(d[np.triu_indices(len(x), 1)]))
    # Small chunks so the blocked, symmetric code paths are all exercised.
    res = kad(x, y, chunk=64)
    assert res.sigma == pytest.approx(sigma, rel=1e-12)
    assert res.value == pytest.approx(_reference_mmd(x, y, sigma), abs=1e-6)
    assert res.n_ref == 300 and res.n_eval == 250


def test_float32_close_to_float64(sets) -> None:
    x, y = sets
    assert kad(x, y, dtype="float32").value == pytest.approx(kad(x, y).value, abs=1e-3)


def test_float32_survives_a_large_common_offset(sets) -> None:
    # ‖a‖²+‖b‖²−2a·b cancels badly in float32 when every embedding sits far from the origin;
    # KAD is shift-invariant, so the offset must change nothing.
    x, y = sets
    exact = kad(x, y).value
    for offset in (300.0, 1000.0):
        assert kad(x + offset, y + offset, dtype="float32").value == pytest.approx(exact, abs=1e-3)
    per_file = kad_per_file(x + 1000.0, {"y": y + 1000.0}, dtype="float32")["y"].value
    assert per_file == pytest.approx(exact, abs=1e-3)


def test_identical_sets_near_zero_and_symmetric(sets) -> None:
    x, y = sets
    assert abs(kad(x, x).value) < 1e-9 * 100 + 0.5  # unbiased: exactly ~0 up to a tiny negative
    same_dist = np.random.default_rng(1).standard_normal((300, 8))
    assert abs(kad(x, same_dist).value) < 0.2 * kad(x, y).value
    assert kad(x, y, sigma=2.0).value == pytest.approx(kad(y, x, sigma=2.0).value, abs=1e-9)


@pytest.mark.parametrize("kernel", ["iq", "imq"])
def test_other_kernels_match_the_reference(sets, kernel: str) -> None:
    x, y = sets
    res = kad(x, y, kernel=kernel, chunk=64)
    assert res.value == pytest.approx(_reference_mmd(x, y, res.sigma, kernel), abs=1e-6)
    assert kad(x, y, kernel=kernel, sigma=1.5).value == pytest.approx(
        _reference_mmd(x, y, 1.5, kernel), abs=1e-6)


@pytest.mark.parametrize("kernel", ["iq", "imq"])
def test_other_kernels_positive_for_different_sets(sets, kernel: str) -> None:
    x, y = sets
    assert kad(x, y, kernel=kernel).value > 0
    assert abs(kad(x, x, kernel=kernel).value) < 1e-6 + 0.5 * kad(x, y, kernel=kernel).value


def test_bad_kernel_and_tiny_sets_raise(sets) -> None:
    x, _ = sets
    with pytest.raises(ValueError, match="unknown kernel"):
        kad(x, x, kernel="laplace")
    with pytest.raises(ValueError, match="at least 2"):
        kad(x, x[:1])


def test_median_sigma_from_seeded_subsample_is_stable() -> None:
    x = np.random.default_rng(2).standard_normal((3000, 16))
    s_full = median_pairwise_distance(x, max_samples=10_000)
    s_sub = median_pairwise_distance(x, max_samples=1500, seed=3)
    assert s_sub == median_pairwise_distance(x, max_samples=1500, seed=3)
    assert s_sub == pytest.approx(s_full, rel=0.03)


def test_per_file_uses_one_sigma_from_reference(sets) -> None:
    x, y = sets
    files = {"a": y[:50], "b": y[50:120] * 3, "c": x[:40]}
    res = kad_per_file(x, files)
    sigmas = {r.sigma for r in res.values()}
    assert sigmas == {median_pairwise_distance(x)}
    assert res["b"].value > res["a"].value > res["c"].value
    # Same value as a direct call with that sigma.
    assert res["a"].value == pytest.approx(kad(x, files["a"], sigma=sigmas.pop()).value, abs=1e-9)
    from auralens.evaluate.fad import MetricInputError

    with pytest.raises(MetricInputError, match=r"^wrong: embedding dims differ from the reference's"):
        kad_per_file(x, {"a": y[:50], "wrong": y[:50, :2]})


def test_zero_median_falls_back_to_median_of_non_zero_distances(caplog: pytest.LogCaptureFixture) -> None:
    # 6 identical (silent) frames + [3, 4] + [6, 8]: 28 pairs = 15 zero, 7 of length 5 (each
    # zero frame to [3, 4], and [3, 4] to [6, 8]), 6 of length 10. The median is 0; the median
    # of the 13 non-zero distances is the 7th: 5.
    x = np.array([[0.0, 0.0]] * 6 + [[3.0, 4.0], [6.0, 8.0]])
    with caplog.at_level("WARNING", logger="auralens.evaluate.kad"):
        assert median_pairwise_distance(x) == 5.0
    assert "15 of 28" in caplog.text and "non-zero" in caplog.text
    y = np.array([[1.0, 1.0], [2.0, 0.0], [0.0, 0.0]])
    assert kad(x, y).sigma == 5.0
    assert kad(x, y).value == pytest.approx(_reference_mmd(x, y, 5.0), abs=1e-9)


def test_identical_frames_are_exactly_zero_apart() -> None:
    # Far from the origin the ‖a‖²+‖b‖²−2a·b expansion leaves identical frames ~1e-6 apart;
    # that must not pass for a bandwidth. 250 equal frames + 50 others: the median of the
    # non-zero distances is the median distance between distinct frames.
    rng = np.random.default_rng(1)
    a = rng.standard_normal(128) * 5 - 20
    x = np.tile(a, (300, 1))
    x[250:] += rng.standard_normal((50, 128))
    d = np.sqrt(((x[:, None] - x[None]) ** 2).sum(-1))[np.triu_indices(300, 1)]
    assert median_pairwise_distance(x) == pytest.approx(float(np.median(d[d > 0])), rel=1e-12)
    assert median_pairwise_distance(x) > 1.0


def test_all_identical_frames_still_raise() -> None:
    x = np.tile(np.random.default_rng(0).standard_normal(64) * 5 - 20, (100, 1))
    with pytest.raises(ValueError, match="all identical.*fixed sigma"):
        median_pairwise_distance(x)
    assert kad(x, x + 1.0, sigma=1.0).value > 0  # a fixed sigma still works


def test_large_computations_warn_first_and_blocks_show_progress(sets, monkeypatch, caplog) -> None:
    import auralens.evaluate.kad as kad_mod
    import auralens.progress

    x, y = sets
    n, m = len(x), len(y)
    pairs = n * (n - 1) // 2 + m * (m - 1) // 2 + n * m
    bars: list[tuple[str, int]] = []

    def recording(items, desc, total=None, disable=None):
        if disable is not True:
            bars.append((desc, total))
        yield from items

    monkeypatch.setattr(auralens.progress, "progress", recording)
    with caplog.at_level("WARNING", logger="auralens.evaluate.kad"):
        quiet = kad(x, y, sigma=3.0).value
    assert not caplog.records and bars == []  # small: no warning, no bar
    monkeypatch.setattr(kad_mod, "LARGE_PAIRS", pairs - 1)
    monkeypatch.setattr(kad_mod, "PROGRESS_BLOCKS", 3)
    with caplog.at_level("WARNING", logger="auralens.evaluate.kad"):
        value = kad(x, y, sigma=3.0, chunk=10).value
    assert value == pytest.approx(quiet, rel=1e-12)  # blocks and bars change no result
    assert [r.getMessage() for r in caplog.records] == [
        f"KAD of {n} reference and {m} evaluated frames computes {pairs:.2g} kernel pairs; the "
        "time grows with the square of the frame count and this may take long on the CPU: use "
        "--device cuda (device='cuda' in Python), or fewer or shorter files"]
    blocks = -(-n // 10), -(-m // 10)
    assert bars == [("KAD reference kernel", blocks[0] * (blocks[0] + 1) // 2),
                    ("KAD evaluated kernel", blocks[1] * (blocks[1] + 1) // 2),
                    ("KAD cross kernel", blocks[0] * blocks[1])]
    caplog.clear()
    monkeypatch.setattr(kad_mod, "LARGE_PAIRS", pairs)  # at the threshold: quiet
    with caplog.at_level("WARNING", logger="auralens.evaluate.kad"):
        kad(x, y, sigma=3.0)
    assert not caplog.records


def test_per_file_scores_warn_once_for_all_files(sets, monkeypatch, caplog) -> None:
    import auralens.evaluate.kad as kad_mod

    x, y = sets
    files = {"a": y[:100], "b": y[100:]}
    pairs = 300 * 299 // 2 + sum(m * (m - 1) // 2 + 300 * m for m in (100, 150))
    monkeypatch.setattr(kad_mod, "LARGE_PAIRS", 1000)
    with caplog.at_level("WARNING", logger="auralens.evaluate.kad"):
        kad_per_file(x, files, sigma=3.0)
    assert [r.getMessage()[:70] for r in caplog.records] == [
        f"KAD of 300 reference and 250 evaluated frames computes {pairs:.2g} kernel pairs"[:70]]
