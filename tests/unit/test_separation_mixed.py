"""Training samplers: the dry/FUSS mixed sampler used for fine-tuning tdcnpp-tiny."""

from __future__ import annotations

import numpy as np
import pytest

from auralens.scene.separate.train import DynamicMixer, MixedSampler, TrainError


class _Const:
    """A sampler returning a constant-valued mixture, so the draw's origin is visible."""

    def __init__(self, value: float, m: int = 4) -> None:
        self.value, self.m = value, m

    def sample(self, length: int, rng: np.random.Generator, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        refs = np.zeros((self.m, length), np.float32)
        refs[0] = self.value
        return refs.sum(0), refs


def _share(sampler: MixedSampler, draws: int = 2000) -> float:
    rng = np.random.default_rng(0)
    return float(np.mean([sampler.sample(8, rng)[0][0] == 1.0 for _ in range(draws)]))


@pytest.mark.parametrize("share", [0.0, 0.3, 1.0])
def test_mixed_sampler_share(share: float) -> None:
    got = _share(MixedSampler(_Const(1.0), _Const(2.0), share))
    assert got == pytest.approx(share, abs=0.04)


def test_mixed_sampler_rejects_bad_share() -> None:
    with pytest.raises(TrainError, match="dynamic_share"):
        MixedSampler(_Const(1.0), _Const(2.0), 1.5)


def test_mixed_sampler_with_dynamic_mixer_keeps_sums() -> None:
    rng = np.random.default_rng(1)
    waves = [rng.standard_normal(4000).astype(np.float32) * 0.1 for _ in range(6)]
    dyn = DynamicMixer(waves, ["a", "a", "b", "b", "c", "c"], num_outputs=4, max_sources=3, gain_db_min=-6)
    mixed = MixedSampler(dyn, _Const(0.5), 0.5)
    for _ in range(20):
        mix, refs = mixed.sample(1000, rng)
        assert refs.shape == (4, 1000)
        np.testing.assert_allclose(refs.sum(0), mix, atol=1e-6)



def test_count_weights_sampler() -> None:
    from auralens.scene.separate.train import _count_sampler

    assert _count_sampler([], 4)(np.random.default_rng(0)) is None  # the sampler's own draw
    draw = _count_sampler([1, 0, 2, 1], 4)
    rng = np.random.default_rng(0)
    counts = np.bincount([draw(rng) for _ in range(4000)], minlength=5)
    assert counts[0] == 0 and counts[2] == 0
    np.testing.assert_allclose(counts[1:] / 4000, [0.25, 0.0, 0.5, 0.25], atol=0.03)
    # weights beyond the model's outputs are ignored, bad weights are refused
    assert max(_count_sampler([1, 1, 1, 1, 5], 4)(rng) for _ in range(200)) <= 4
    with pytest.raises(TrainError, match="count_weights"):
        _count_sampler([0, 0], 4)
    with pytest.raises(TrainError, match="count_weights"):
        _count_sampler([1, -1], 4)
