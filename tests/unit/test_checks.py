"""The shared option-value predicates, and the refusals they give where options are checked."""

from __future__ import annotations

import math

import numpy as np
import pytest

from auralens.checks import is_number, is_whole
from auralens.errors import AuralensError


@pytest.mark.parametrize(("value", "low", "want"), [
    (3, None, True), (0, 0, True), (-1, 0, False), (1, 1, True), (np.int64(5), 1, True),
    (True, None, False), (False, 0, False), (np.bool_(True), None, False),
    (2.0, None, False), ("3", None, False), (None, None, False), ([1], None, False),
])
def test_is_whole(value, low, want) -> None:
    assert is_whole(value, low) is want


@pytest.mark.parametrize(("value", "want"), [
    (0, True), (-2.5, True), (np.float32(0.1), True), (np.int8(3), True),
    (True, False), (np.bool_(False), False), (math.nan, False), (math.inf, False),
    (np.float64("-inf"), False), ("1.0", False), (None, False), (1j, False),
])
def test_is_number(value, want) -> None:
    assert is_number(value) is want


@pytest.mark.parametrize(("option", "value"), [
    ("lr", True), ("dropout", True), ("weight_decay", False), ("threads", "2"), ("threads", 0),
    ("max_steps", 1.5), ("max_steps", True), ("lr", math.nan),
])
def test_classifier_config_refuses_bools_and_non_numbers(option, value) -> None:
    """``lr: true`` in YAML once trained at lr 1.0; ``threads: "2"`` gave a TypeError."""
    from auralens.encoders.train_classifier import ClassifierConfig

    with pytest.raises(AuralensError, match=option) as exc:
        ClassifierConfig(**{option: value})
    assert "\n" not in str(exc.value)


def test_synth_refuses_a_bool_duration() -> None:
    from auralens.data import DatasetError
    from auralens.data.synth import check_clip_settings

    with pytest.raises(DatasetError, match="duration"):
        check_clip_settings(16000, True)
    check_clip_settings(16000, np.float32(0.5))  # numpy scalars from the Python API are fine
