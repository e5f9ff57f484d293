"""Report inputs that are not what they should be: history lines, undefined values in CSVs."""

from __future__ import annotations

import csv
import math

from auralens.evaluate.report import _write_csv
from auralens.evaluate.sonify_eval import read_history


def test_bad_history_lines_are_left_out_and_named(tmp_path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text('{"epoch": 0, "train_loss": 1.0, "val_loss": 1.2}\n'
                    "[1, 2]\n"
                    '{"epoch": 1, "train_loss": "nan?"}\n'
                    '{"epoch": null, "val_loss": 0.3}\n'
                    '{"epoch": 2, "train_loss": NaN, "val_loss": null}\n'
                    '{"epoch": 3, "train_loss": 0.5}\n', encoding="utf-8")
    history, warnings = read_history(path)
    assert [h["epoch"] for h in history] == [0, 2, 3]  # a NaN or missing loss is kept (a gap)
    assert math.isnan(history[1]["train_loss"])
    assert len(warnings) == 1
    assert warnings[0] == (f"{path}: 3 line(s) left out of the loss curves: line 2 (not a JSON "
                           'object), 3 (train_loss is "nan?", not a number), 4 (epoch is null, '
                           "not a number)")
    assert read_history(tmp_path / "missing.jsonl") == ([], [])


def test_many_bad_history_lines_make_one_short_warning(tmp_path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text("[]\n" * 8, encoding="utf-8")
    history, warnings = read_history(path)
    assert history == [] and len(warnings) == 1
    assert warnings[0].endswith("line 1 (not a JSON object), 2 (not a JSON object), 3 (not a JSON "
                                "object), 4 (not a JSON object), 5 (not a JSON object) and 3 more")


def test_undefined_values_are_empty_csv_cells(tmp_path) -> None:
    import numpy as np

    path = _write_csv(tmp_path / "m.csv", [{"a": float("nan"), "b": None, "c": 1.5, "d": 0},
                                           {"a": np.float32("nan"), "b": "x", "c": np.float64(2)}])
    rows = list(csv.DictReader(open(path, encoding="utf-8")))
    assert rows == [{"a": "", "b": "", "c": "1.5", "d": "0"}, {"a": "", "b": "x", "c": "2.0", "d": ""}]
    assert "nan" not in path.read_text()
