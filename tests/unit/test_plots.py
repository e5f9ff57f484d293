"""Plots: debiased EMA, PNG outputs, top-k tables."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from auralens.evaluate.plots import (
    ema,
    plot_loss_curves,
    plot_metric_dots,
    plot_spectrogram_stack,
    plot_waveform_stack,
    topk_tables,
)


def test_ema_is_debiased_and_matches_recursion() -> None:
    assert ema([5.0, 5.0, 5.0], 0.99).tolist() == pytest.approx([5.0, 5.0, 5.0])  # no pull to 0
    v = [1.0, 3.0, 2.0]
    w = 0.6
    last, expected = 0.0, []
    for i, x in enumerate(v):
        last = w * last + (1 - w) * x
        expected.append(last / (1 - w ** (i + 1)))
    assert ema(v, w).tolist() == pytest.approx(expected)
    assert ema(v, 0.0).tolist() == v
    assert np.isnan(ema([1.0, float("nan"), 2.0], 0.5)[1])
    with pytest.raises(ValueError):
        ema(v, 1.0)


def test_pngs_are_written(tmp_path) -> None:
    sr = 8000
    t = np.arange(sr) / sr
    rows = [("original", np.sin(2 * np.pi * 300 * t)), ("v1", 0.5 * np.sin(2 * np.pi * 300 * t)),
            ("v2", np.zeros(sr // 2))]
    paths = [plot_waveform_stack(rows, sr, tmp_path / "w.png", title="clip"),
             plot_spectrogram_stack(rows, sr, tmp_path / "s.png"),
             plot_loss_curves([{"epoch": e, "train_loss": 1 / (e + 1), "val_loss": 2 / (e + 1)}
                               for e in range(5)], tmp_path / "l.png", smoothing=0.9),
             plot_metric_dots({"a": 1.0, "b": 0.5, "c": None}, tmp_path / "d.png", metric="FAD",
                              ceiling=0.1)]
    for p in paths:
        with Image.open(p) as im:
            assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 50
    # The stack grows with the number of rows.
    one = plot_waveform_stack(rows[:1], sr, tmp_path / "w1.png")
    assert Image.open(one).size[1] < Image.open(paths[0]).size[1]


def test_topk_tables_rank_within_groups() -> None:
    rows = [{"encoder": "ast", "version": "none", "run": f"r{i}", "layer": i, "gate": "mlp",
             "fad": float(10 - i)} for i in range(6)]
    rows += [{"encoder": "hubert", "version": "none", "run": "h", "layer": 1, "gate": "mlp", "fad": 3.0},
             {"encoder": "ast", "version": "none", "run": "bad", "fad": None}]
    csv_text, md = topk_tables(rows, "fad", k=3)
    lines = csv_text.strip().splitlines()
    assert lines[0] == "encoder,version,rank,run,layer,gate,fad"
    assert [ln.split(",")[3] for ln in lines[1:]] == ["r5", "r4", "r3", "h"]
    assert md.startswith("| encoder | version | rank |") and "bad" not in md
    _, md_high = topk_tables(rows, "fad", k=1, lower_is_better=False)
    assert "| r0 |" in md_high


def test_auto_smoothing_leaves_short_histories_raw() -> None:
    from auralens.evaluate.plots import auto_smoothing

    assert [auto_smoothing(n) for n in (0, 1, 5, 50, 99)] == [0.0] * 5  # per-epoch histories
    assert auto_smoothing(100) == pytest.approx(0.9)
    assert auto_smoothing(400) == pytest.approx(0.975)
    assert auto_smoothing(100_000) == pytest.approx(0.99)


def test_smoothed_loss_curve_keeps_the_raw_curve(tmp_path, monkeypatch) -> None:
    from auralens.evaluate import plots

    figs = []
    monkeypatch.setattr(plots, "_save", lambda fig, path, dpi=100: figs.append(fig) or path)
    hist = [{"epoch": e, "val_loss": 100.0 / (e + 1)} for e in range(10)]
    plot_loss_curves(hist, tmp_path / "a.png", smoothing=0.9)
    plot_loss_curves(hist, tmp_path / "b.png")
    smoothed = {ln.get_label(): ln.get_ydata() for ln in figs[0].axes[0].get_lines()}
    assert set(smoothed) == {"val_loss (raw)", "val_loss (EMA 0.9)"}
    assert np.asarray(smoothed["val_loss (raw)"])[-1] == pytest.approx(10.0)
    assert np.asarray(smoothed["val_loss (EMA 0.9)"])[-1] > 20  # the lag the raw curve exposes
    raw = {ln.get_label(): ln.get_ydata() for ln in figs[1].axes[0].get_lines()}
    assert list(raw) == ["val_loss"] and np.asarray(raw["val_loss"])[-1] == pytest.approx(10.0)


def test_topk_markdown_escapes_html_in_names() -> None:
    rows = [{"encoder": "<script>x</script>", "version": "none", "run": "a|b&c\nd", "layer": 1,
             "gate": "mlp", "fad": 1.0}]
    csv_text, md = topk_tables(rows, "fad")
    assert "<script>" not in md and "&lt;script&gt;x&lt;/script&gt;" in md
    row = md.strip().splitlines()[-1]
    assert "| a\\|b&amp;c d |" in row and row.count(" | ") == 6  # one row, seven cells
    assert "<script>x</script>" in csv_text  # the CSV keeps the name as it is


def test_infinite_loss_is_a_gap(tmp_path, monkeypatch) -> None:
    from auralens.evaluate import plots

    figs = []
    monkeypatch.setattr(plots, "_save", lambda fig, path, dpi=100: figs.append(fig) or path)
    plot_loss_curves([{"epoch": 0, "train_loss": 1.0}, {"epoch": 1, "train_loss": float("inf")},
                      {"epoch": 2, "train_loss": 0.5}], tmp_path / "a.png")
    y = np.asarray(figs[0].axes[0].get_lines()[0].get_ydata())
    assert y[0] == 1.0 and np.isnan(y[1]) and y[2] == 0.5
    assert figs[0].axes[0].get_ylim()[1] < 10
