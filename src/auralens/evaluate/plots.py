"""PNG figures and tables for sonify evaluation (matplotlib, Agg backend, no display).

* :func:`plot_waveform_stack` — the original on top, then one row per model version, on one
  shared time axis and amplitude scale (the layout of the study's figures).
* :func:`plot_spectrogram_stack` — the same rows as log-magnitude spectrograms.
* :func:`plot_loss_curves` — train/val loss from ``history.jsonl``; optional EMA smoothing
  (:func:`auto_smoothing` picks none for short per-epoch histories).
* :func:`plot_metric_dots` — one dot per version, a line at the best value (and the ceiling).
* :func:`topk_tables` — top-k runs per encoder × post-processing as CSV and Markdown.

EMA smoothing follows TensorBoard's scalar dashboard: ``last = w·last + (1−w)·v`` starting
from ``last = 0``, divided by the debias factor ``1 − w^(i+1)`` so the first points are not
pulled towards 0 (the Adam-style bias correction). ``w = 0.99`` is heavy smoothing for
noisy per-step curves; ``w = 0`` leaves the curve unchanged. On a per-epoch history of a few
dozen points a heavy EMA is close to the running mean of all epochs and lags far behind the
real curve, so :func:`auto_smoothing` gives no smoothing below
:data:`AUTO_SMOOTHING_MIN_POINTS` points and a weight that grows with the length above.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from auralens.evaluate.aggregate import md_cell
from auralens.io import atomic_path, write_text


def _plt():  # noqa: ANN202 - pyplot module
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path, dpi: int = 100) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, format="png", bbox_inches="tight")
    _plt().close(fig)
    return path


#: Histories shorter than this are drawn raw by :func:`auto_smoothing`.
AUTO_SMOOTHING_MIN_POINTS = 100


def auto_smoothing(n_points: int) -> float:
    """EMA weight for a loss curve of ``n_points`` points.

    0 (no smoothing) below :data:`AUTO_SMOOTHING_MIN_POINTS`; above, ``1 − 10/n`` capped at
    0.99, so the average spans about a tenth of the curve (0.9 at 100 points, 0.99 from 1000).
    """
    if n_points < AUTO_SMOOTHING_MIN_POINTS:
        return 0.0
    return min(0.99, round(1.0 - 10.0 / n_points, 3))


def ema(values: Sequence[float], weight: float = 0.99) -> np.ndarray:
    """Debiased exponential moving average (TensorBoard's smoothing).

    Args:
        values: ``[N]`` series (NaN entries are carried over without updating the average).
        weight: smoothing weight in ``[0, 1)``.
    Returns:
        ``[N]`` smoothed series; its first element equals the first value.
    """
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"EMA weight must be in [0, 1), got {weight}")
    out = np.empty(len(values), dtype=np.float64)
    last, steps = 0.0, 0
    for i, v in enumerate(values):
        if v is None or not math.isfinite(float(v)):
            out[i] = np.nan
            continue
        last = last * weight + (1 - weight) * float(v)
        steps += 1
        out[i] = last / (1 - weight ** steps)
    return out


def _envelope_points(wave: np.ndarray, sr: int, points: int = 1500,
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Min/max per bucket so a long wave draws as ``points`` columns and looks identical."""
    n = len(wave)
    if n <= 2 * points:
        t = np.arange(n) / sr
        return t, wave, wave
    size = n // points
    cut = wave[: size * points].reshape(points, size)
    t = (np.arange(points) * size + size / 2) / sr
    return t, cut.min(axis=1), cut.max(axis=1)


def plot_waveform_stack(rows: Sequence[tuple[str, np.ndarray]], sr: int, path: str | Path, *,
                        title: str | None = None) -> Path:
    """One waveform per row, shared axes.

    Args:
        rows: ``[(label, wave[T])]``; the first is usually the original.
        sr: sample rate of every wave (rows may differ in length).
        path: PNG to write.
    """
    plt = _plt()
    n = max(1, len(rows))
    fig, axes = plt.subplots(n, 1, figsize=(8, 1.1 * n + 0.4), sharex=True, squeeze=False)
    peak = max([float(np.max(np.abs(w))) for _, w in rows if len(w)] + [1e-3])
    for ax, (label, wave) in zip(axes[:, 0], rows, strict=False):
        t, lo, hi = _envelope_points(np.asarray(wave, dtype=np.float32), sr)
        ax.fill_between(t, lo, hi, lw=0.3, color="#1f4e79" if label == rows[0][0] else "#b5452b")
        ax.set_ylim(-peak * 1.05, peak * 1.05)
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
        ax.set_yticks([])
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
    axes[-1, 0].set_xlabel("time (s)")
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def plot_spectrogram_stack(rows: Sequence[tuple[str, np.ndarray]], sr: int, path: str | Path, *,
                           n_fft: int = 1024, title: str | None = None) -> Path:
    """Log-magnitude spectrograms (dB re the loudest row), one per row."""
    plt = _plt()
    n = max(1, len(rows))
    fig, axes = plt.subplots(n, 1, figsize=(8, 1.3 * n + 0.4), sharex=True, squeeze=False)
    from auralens.evaluate.spectral import overview_mag

    # Pooled to the figure's width, so a long row costs megabytes, not gigabytes.
    specs = [overview_mag(np.asarray(w, dtype=np.float32), n_fft, n_fft // 4) for _, w in rows]
    ref = max([float(s.max()) for s, _ in specs] + [1e-8])
    for ax, (label, _), (mag, group) in zip(axes[:, 0], rows, specs, strict=False):
        db = 20 * np.log10(np.maximum(mag, 1e-8) / ref)
        ax.imshow(db, origin="lower", aspect="auto", vmin=-80, vmax=0, cmap="magma",
                  extent=(0, mag.shape[1] * group * (n_fft // 4) / sr, 0, sr / 2000))
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[-1, 0].set_xlabel("time (s)   (y: kHz)")
    if title:
        fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def plot_loss_curves(history: Sequence[Mapping[str, Any]], path: str | Path, *,
                     smoothing: float | None = None, title: str | None = None) -> Path:
    """Train/val loss per epoch from ``history.jsonl`` records.

    Args:
        history: records with ``epoch``, ``train_loss`` and/or ``val_loss``.
        smoothing: EMA weight in ``[0, 1)`` (e.g. 0.99; None or 0: raw curves only). The raw
            curves stay drawn under the smoothed ones (thinner, with their own legend entry).
    """
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    epochs = [h.get("epoch", i) for i, h in enumerate(history)]
    for key, color in (("train_loss", "#1f4e79"), ("val_loss", "#b5452b")):
        vals = [h.get(key) for h in history]
        if not any(v is not None for v in vals):
            continue
        # A diverged (infinite) loss is a gap, like NaN, not a point that breaks the y range.
        y = np.array([np.nan if v is None or not math.isfinite(float(v)) else float(v) for v in vals])
        marker = "o" if len(y) <= 50 else None
        if smoothing:
            ax.plot(epochs, y, color=color, alpha=0.45, lw=1, marker=marker, ms=3,
                    label=f"{key} (raw)")
            ax.plot(epochs, ema(y, smoothing), color=color, lw=1.6, ls="--",
                    label=f"{key} (EMA {smoothing:g})")
        else:
            ax.plot(epochs, y, color=color, lw=1.6, marker=marker, ms=3, label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    if history:
        ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def plot_metric_dots(values: Mapping[str, float | None], path: str | Path, *, metric: str,
                     lower_is_better: bool = True, ceiling: float | None = None) -> Path:
    """One dot per version with a dotted line at the best value and a dashed ceiling line."""
    plt = _plt()
    items = [(k, float(v)) for k, v in values.items() if v is not None and math.isfinite(float(v))]
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(items) + 2), 3.0))
    if items:
        xs = np.arange(len(items))
        ys = np.array([v for _, v in items])
        best = ys.min() if lower_is_better else ys.max()
        ax.scatter(xs, ys, color="#1f4e79", zorder=3)
        ax.axhline(best, color="#2e7d32", ls=":", lw=1.2, label=f"best {best:.4g}")
        ax.set_xticks(xs, [k for k, _ in items], rotation=45, ha="right", fontsize=7)
    if ceiling is not None and math.isfinite(ceiling):
        ax.axhline(ceiling, color="#888888", ls="--", lw=1.0, label=f"ceiling {ceiling:.4g}")
    ax.set_ylabel(f"{metric} ({'lower' if lower_is_better else 'higher'} is better)", fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    if items or ceiling is not None:
        ax.legend(fontsize=7)
    return _save(fig, path)


def topk_tables(rows: Sequence[Mapping[str, Any]], metric: str, *, k: int = 5,
                group_by: Sequence[str] = ("encoder", "version"),
                lower_is_better: bool = True,
                columns: Sequence[str] = ("run", "layer", "gate")) -> tuple[str, str]:
    """Top-k rows by ``metric`` within each group.

    Returns:
        ``(csv_text, markdown_text)``; rows without a finite ``metric`` are left out.
    """
    groups: dict[tuple[str, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        v = row.get(metric)
        if v is None or not math.isfinite(float(v)):
            continue
        groups.setdefault(tuple(str(row.get(g)) for g in group_by), []).append(row)
    header = [*group_by, "rank", *columns, metric]
    table: list[list[Any]] = []
    for key in sorted(groups):
        ranked = sorted(groups[key], key=lambda r: float(r[metric]), reverse=not lower_is_better)
        for rank, row in enumerate(ranked[:k], 1):
            table.append([*key, rank, *[row.get(c, "") for c in columns], f"{float(row[metric]):.6g}"])
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(header)
    writer.writerows(table)
    md = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    md += ["| " + " | ".join(md_cell(c) for c in r) + " |" for r in table]
    return buf.getvalue(), "\n".join(md) + "\n"


def write_topk_tables(rows: Sequence[Mapping[str, Any]], out_dir: str | Path,
                      metrics: Mapping[str, bool], *, k: int = 5) -> list[Path]:
    """Write ``topk_<metric>.csv`` and ``.md`` per metric (``metrics``: name → lower_is_better)."""
    out = []
    for metric, lower in metrics.items():
        csv_text, md_text = topk_tables(rows, metric, k=k, lower_is_better=lower)
        out.append(write_text(Path(out_dir) / f"topk_{metric}.csv", csv_text))
        out.append(write_text(Path(out_dir) / f"topk_{metric}.md", md_text))
    return out
