"""Every stage protocol refuses a clip it cannot take, in one line naming itself: NaN or Inf
samples (which used to come back as NaN embeddings, latents and sources, or a caption of
"confidence nan"), several channels (read flat: the channels end to end), no samples."""

from __future__ import annotations

import numpy as np
import pytest

from auralens.audio import ClipError, check_clip
from auralens.codecs.base import CODECS
from auralens.encoders.base import EXTRACTORS, Extractor
from auralens.errors import AuralensError
from auralens.evaluate.embedders import build_embedder
from auralens.scene.separate.run import load_separator, separate_array

NAN = np.ones(1600, np.float32)
NAN[7] = np.nan
BAD = [
    (NAN, r"holds 1 NaN or Inf sample\(s\)"),
    (np.full(1600, np.inf, np.float32), r"holds 1600 NaN or Inf sample\(s\)"),
    (np.zeros((2, 1600), np.float32), r"expected mono audio of shape \[T\], got shape \(2, 1600\)"),
    (np.zeros(0, np.float32), r"empty audio \(0 samples\)"),
    (["a", "b"], r"expected audio samples \(a \[T\] float array\), got list"),
]


def test_check_clip_keeps_mono_clips_and_drops_singleton_axes() -> None:
    x = np.linspace(-1, 1, 100).astype(np.float32)
    for given in (x, x[None], x[:, None], x.astype(np.float64), list(x)):
        out = check_clip(given, "w")
        assert out.dtype == np.float32 and out.shape == (100,) and np.array_equal(out, x)
    assert issubclass(ClipError, AuralensError) and issubclass(ClipError, ValueError)


@pytest.mark.parametrize("wave,message", BAD)
def test_every_stage_refuses_a_bad_clip(wave, message) -> None:
    ext, codec = EXTRACTORS.build("classifier"), CODECS.build("mel")
    calls = {
        "classifier.embed": lambda: ext.embed(wave),
        "classifier.embed_batch (clip 1)": lambda: ext.embed_batch([np.zeros(1600, np.float32), wave]),
        f"{codec.name}.encode": lambda: codec.encode(wave),
        f"{build_embedder('logmel').name}.embed": lambda: build_embedder("logmel").embed(wave),
        "the mixture": lambda: separate_array(load_separator("nmf"), wave),
    }
    for who, call in calls.items():
        with pytest.raises(ClipError, match=message) as err:
            call()
        assert who in str(err.value) and "\n" not in str(err.value)


def test_a_users_own_backend_is_checked_too() -> None:
    seen = []

    class Mine(Extractor):
        name = "mine"

        def embed(self, wave: np.ndarray) -> np.ndarray:
            seen.append(wave.shape)
            return np.zeros((1, 2), np.float32)

    Mine().embed(np.zeros((1, 800)))
    assert seen == [(800,)]  # a [1, T] clip arrives as [T]
    with pytest.raises(ClipError, match=r"mine.embed: the clip holds 1 NaN"):
        Mine().embed(NAN)
    assert seen == [(800,)]  # refused before the backend ran


def test_a_captioner_refuses_nan_samples(tiny_model) -> None:
    from auralens.scene.caption.base import CAPTIONERS

    cap = CAPTIONERS.build(f"classifier:{tiny_model('ast_classifier')}")
    with pytest.raises(AuralensError, match=r"holds 1 NaN or Inf sample"):
        cap.describe(NAN)
    assert cap.describe(np.ones(1600, np.float32) * 0.1).text
