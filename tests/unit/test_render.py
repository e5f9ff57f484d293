"""Image generators: the offline ``none`` backend never fakes an image; a tiny SD3 pipeline
saved to disk renders deterministically per seed."""

from __future__ import annotations

import numpy as np
import pytest

from auralens.errors import AuralensError, ModelUnavailableError
from auralens.scene.render.base import IMAGE_GENERATORS, ImageSkipped


def test_none_backend_skips_with_a_clear_message():
    gen = IMAGE_GENERATORS.build(None)
    assert gen.name == "none" and gen.available is False
    with pytest.raises(ImageSkipped, match="--image diffusers"):
        gen.generate("a farm")


def test_tiny_sd3_renders_deterministically(tiny_model):
    path = tiny_model("tiny_sd3")
    gen = IMAGE_GENERATORS.build(f"diffusers:{path}@steps=2,width=32,height=32,guidance=2.0")
    assert type(gen.pipe).__name__ == "StableDiffusion3Pipeline"
    a = np.asarray(gen.generate("a dog on a farm", seed=3))
    b = np.asarray(gen.generate("a dog on a farm", seed=3))
    c = np.asarray(gen.generate("a dog on a farm", seed=4))
    assert a.shape == (32, 32, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    with pytest.raises(AuralensError, match="empty"):
        gen.generate("  ")


def test_sd35_preset_is_unavailable_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelUnavailableError, match="stable-diffusion-3.5-medium"):
        IMAGE_GENERATORS.build("diffusers:sd3.5")


def test_prompt_length_over_the_text_encoder_limit_is_refused_when_built(tiny_model):
    from auralens.scene.render.diffusers_t2i import DiffusersGenerator
    from auralens.specs import SpecError

    with pytest.raises(SpecError, match=r"max_sequence_length must be a whole number in "
                                        r"\[1, 512\], got 1000"):
        DiffusersGenerator(str(tiny_model("tiny_sd3")), max_sequence_length=1000)
