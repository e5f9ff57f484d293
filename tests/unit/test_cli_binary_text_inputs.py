"""A binary file given where the CLI reads text (a config, a CSV, a list) is one error line
naming the file (its reader names it)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from auralens.audio import write
from auralens.cli import main

NOT_TEXT = b"\xff\xfe\x00\x01 not text\n"


def _error(capsys: pytest.CaptureFixture[str], *argv: str) -> str:
    capsys.readouterr()
    assert main(list(argv)) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    return err


def test_a_binary_config_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_bytes(NOT_TEXT)
    err = _error(capsys, "experiment", "run", str(config))
    assert err.startswith(f"error: {config}: ") and "not UTF-8" in err


def test_a_binary_ratings_csv_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ratings = tmp_path / "ratings.csv"
    ratings.write_bytes(b"run,clip\n" + NOT_TEXT)
    err = _error(capsys, "sonify", "ratings", str(ratings))
    assert err == f"error: {ratings}: not UTF-8 text (invalid start byte at byte 9)\n"


def test_a_binary_example_list_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "fuss"
    write(root / "eval" / "example00000.wav", 0.1 * np.ones(8000, np.float32), 16000)
    listing = root / "eval_example_list.txt"
    listing.write_bytes(b"eval/example00000.wav\n" + NOT_TEXT)
    err = _error(capsys, "imagine", "batch", str(root), "--out", str(tmp_path / "o"),
                 "--separator", "nmf")
    assert err == f"error: {listing}: not UTF-8 text (invalid start byte at byte 22)\n"
