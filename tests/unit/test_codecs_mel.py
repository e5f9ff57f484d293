"""The weight-free mel codec: shapes, determinism, round-trip quality and speed."""

from __future__ import annotations

import time

import numpy as np
import pytest

from auralens.codecs.base import CODECS
from auralens.errors import AuralensError
from auralens.specs import SpecError


def _tone(sr: int, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(sr * seconds)) / sr
    env = np.exp(-3 * t)
    x = 0.4 * np.sin(2 * np.pi * 440 * t) * env + 0.2 * np.sin(2 * np.pi * 1250 * t)
    return x.astype(np.float32)


def test_mel_default_shapes_and_attributes() -> None:
    codec = CODECS.build("mel")
    assert codec.sample_rate == 22050 and codec.latent_dim == 128
    assert codec.frame_rate == pytest.approx(22050 / 256)
    wave = _tone(codec.sample_rate)
    z = codec.encode(wave)
    assert z.shape == (128, 1 + len(wave) // 256) == (128, codec.num_frames(len(wave)))
    assert z.dtype == np.float32
    assert z.min() >= np.log(1e-5) - 1e-4
    # the 440 Hz component is loud, the top bands are near the floor
    assert z[:, 20].argmax() < 40


def test_mel_spec_params_override() -> None:
    codec = CODECS.build("mel@n_mels=80,n_iter=8,hop_length=512")
    assert codec.latent_dim == 80 and codec.n_iter == 8
    assert codec.frame_rate == pytest.approx(22050 / 512)
    assert codec.encode(_tone(22050)).shape == (80, 1 + 22050 // 512)
    assert codec.revision != CODECS.build("mel").revision
    with pytest.raises(SpecError):
        CODECS.build("mel@bogus=1")


def test_mel_decode_deterministic_and_roundtrip_close() -> None:
    codec = CODECS.build("mel@n_iter=32")
    wave = _tone(codec.sample_rate)
    z = codec.encode(wave)
    a, b = codec.decode(z), codec.decode(z)
    np.testing.assert_array_equal(a, b)
    assert a.shape == ((z.shape[1] - 1) * 256,)
    # Griffin-Lim loses phase but must reproduce the magnitude: re-encoding is close in log-mel
    z2 = codec.encode(codec.roundtrip(wave))
    loud = z > np.log(1e-3)
    err = np.abs(z2 - z)[loud].mean()
    assert err < 0.4, err
    # and it beats a decode from a random latent by a wide margin
    rnd = codec.encode(codec.decode(np.full_like(z, -4.0)))
    assert np.abs(rnd - z)[loud].mean() > 3 * err
    # a different seed gives a different (but equally valid) waveform
    other = CODECS.build("mel@n_iter=32,seed=1").decode(z)
    assert not np.allclose(other, a)


def test_mel_decode_5s_is_fast() -> None:
    codec = CODECS.build("mel")
    z = codec.encode(_tone(codec.sample_rate, 5.0))
    # CPU time, not wall time: the test machine is shared and wall time is noisy.
    start = time.process_time()
    codec.decode(z)
    assert time.process_time() - start < 2.0


def test_mel_rejects_bad_shapes() -> None:
    codec = CODECS.build("mel")
    with pytest.raises(AuralensError, match=r"^mel codec expects a \[128, frames\] latent with at least one frame, got \(64, 10\)$"):
        codec.decode(np.zeros((64, 10), np.float32))
    with pytest.raises(AuralensError, match=r"at least one frame, got \(128, 0\)$"):
        codec.decode(np.zeros((128, 0), np.float32))
    with pytest.raises(ValueError, match=r"^mel@.*\.encode: expected mono audio of shape \[T\], got shape \(2, 100\)"):
        codec.encode(np.zeros((2, 100), np.float32))
    # very short input still works
    assert codec.encode(np.zeros(10, np.float32)).shape == (128, 1)
    assert np.all(np.isfinite(codec.decode(np.full((128, 1), 50.0, np.float32))))


@pytest.mark.parametrize("spec,name", [("mel@n_mels=abc", "n_mels"), ("mel@n_iter=true", "n_iter")])
def test_mel_option_of_the_wrong_type_is_named(spec, name) -> None:
    with pytest.raises(SpecError, match=f"mel codec option {name} must be a number"):
        CODECS.build(spec)
