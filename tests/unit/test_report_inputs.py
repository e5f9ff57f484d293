"""Report inputs that are not what they should be: history lines, undefined values in CSVs;
run labels and the summary table's headers and best marks."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

from auralens.evaluate.report import _run_labels, _summary_table, _write_csv
from auralens.evaluate.sonify_eval import SonifyRun, read_history


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


def _run(name: str, **config) -> SonifyRun:
    return SonifyRun(Path(name), name, {"config": config}, [], {})


def test_run_labels_name_the_settings_that_differ() -> None:
    base = {"encoder": "classifier:/x/presets/classifier-synth", "codec": "mel", "lr": 0.01}
    runs = [_run("run", **base, layer=v) for v in ("patch", 2, 4)]
    runs[1].name, runs[2].name = "run-2", "run-3"
    assert _run_labels(runs) == ["layer=patch", "layer=2", "layer=4"]
    # Several settings differ: all of them, in a fixed order; a path or hub id by its last part.
    two = [_run("a", encoder="hf:facebook/hubert-base-ls960", layer=2, lr=1e-3),
           _run("b", encoder="hf:org/ast model", layer=2, lr=0.01)]
    assert _run_labels(two) == ["encoder=hubert-base-ls960,lr=0.001", "encoder=ast_model,lr=0.01"]
    # Nothing differs: the folder names.
    assert _run_labels([_run("a", **base, layer=2), _run("b", **base, layer=2)]) == ["a", "b"]
    # A differing setting unknown for a run, or settings two runs share: their folder names.
    assert _run_labels([_run("a", layer=2), _run("b"), _run("c", layer=4)]) == ["layer=2", "b", "layer=4"]
    assert _run_labels([_run("a", layer=2, seed=1), _run("b", layer=2, seed=2),
                        _run("c", layer=4)]) == ["a", "b", "layer=4"]
    # A folder name that is another run's label still gives unique labels (ignoring case).
    assert _run_labels([_run("LAYER=2"), _run("x", layer=2), _run("y", layer=2)]) == [
        "LAYER=2", "x", "y"]
    assert _run_labels([_run("layer=4"), _run("x", layer=2), _run("y", layer=4)]) == [
        "layer=4", "layer=2", "y"]


def _row(run: str, codec: str, **metrics) -> dict:
    return {"run": run, "encoder": "e", "layer": 1, "gate": "g", "codec": codec,
            "version": "none", "n_clips": 3, **metrics}


def _bold(table: str) -> list[str]:
    return re.findall(r'<span class="best">([^<]*)</span>', table)


def test_summary_headers_say_which_way_is_better_and_si_sdr_best_skips_griffin_lim() -> None:
    rows = [_row("a", "mel", fad=2.0, env_corr=0.5, lsd_db=9.0, si_sdr=-20.0),
            _row("b", "mel@n_mels=80", fad=1.0, env_corr=0.7, lsd_db=8.0, si_sdr=-30.0)]
    table = _summary_table(rows)
    head = re.findall(r"<th>([^<]*)</th>", table)
    assert head == ["FAD ↓", "LSD (dB) ↓", "env. corr ↑", "SI-SDR (dB)* ↑"]
    # Griffin-Lim (mel codec) output: no best SI-SDR; the other columns keep theirs.
    assert _bold(table) == ["1", "8", "0.7"]
    # A waveform codec's SI-SDR is ranked, among its rows only.
    rows.append(_row("c", "dac", fad=3.0, env_corr=0.1, lsd_db=10.0, si_sdr=-25.0))
    assert _bold(_summary_table(rows)) == ["1", "8", "0.7", "-25"]


def test_a_shared_page_shows_presets_and_home_without_this_machines_folders() -> None:
    from pathlib import Path

    import auralens
    from auralens.evaluate.report import _name_cell, shown_spec

    preset = Path(auralens.__file__).resolve().parent / "presets" / "classifier-synth"
    assert shown_spec(f"classifier:{preset}@layer=4") == "classifier:presets/classifier-synth@layer=4"
    home = Path.home()
    if len(str(home)) > 1:
        assert shown_spec(f"hubert:{home}/models/h") == "hubert:~/models/h"
    cell = _name_cell(f"classifier:{preset}")
    assert str(preset.parent) not in cell and "presets/classifier-synth" in cell
