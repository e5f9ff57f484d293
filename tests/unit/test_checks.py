"""The shared option-value predicates, and the refusals they give where options are checked."""

from __future__ import annotations

import math

import numpy as np
import pytest

from auralens.checks import as_bool, is_bool, is_number, is_whole
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


@pytest.mark.parametrize(("value", "want"), [
    (True, True), (False, False), (np.bool_(True), True), (np.bool_(False), False),
    (0, None), (1, None), (np.int64(1), None), ("true", None), ("false", None), (None, None),
    (1.0, None), ([True], None),
])
def test_is_bool_and_as_bool(value, want) -> None:
    assert is_bool(value) is (want is not None)
    got = as_bool(value)
    assert got is want and (got is None or type(got) is bool)


def test_bool_options_take_real_bools_only(tmp_path) -> None:
    """The three modules that take a true/false option agree: bools (numpy's too) in, a
    one-line error naming the option for anything else."""
    from auralens.data import DatasetError
    from auralens.data.mix import build_mixtures
    from auralens.encoders.hf import bool_option
    from auralens.specs import SpecError

    assert bool_option("trim", np.bool_(False)) is False and bool_option("trim", True) is True
    for bad in ("false", 2, None):
        with pytest.raises(SpecError, match=r"^trim must be true or false"):
            bool_option("trim", bad)
        with pytest.raises(DatasetError, match=r"^reverb must be true or false"):
            build_mixtures([], tmp_path / "out", n=1, reverb=bad)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("option", "value"), [
    ("lr", True), ("dropout", True), ("weight_decay", False), ("threads", "2"), ("threads", 0),
    ("max_steps", 1.5), ("max_steps", True), ("lr", math.nan),
    ("augment", "false"), ("augment", 0), ("augment", None), ("freq_mask", -1),
    ("time_mask", 2.5), ("seed", -1), ("seed", True), ("val_fold", True), ("val_fold", "2"),
])
def test_classifier_config_refuses_bools_and_non_numbers(option, value) -> None:
    """``lr: true`` in YAML once trained at lr 1.0; ``threads: "2"`` gave a TypeError;
    ``augment="false"`` trained with augmentation and ``seed=-1`` failed at the first mixup."""
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
