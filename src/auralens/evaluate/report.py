"""Static HTML listening report for one or more sonify runs, and the local rating server.

``build_report(runs, out)`` writes a self-contained directory::

    OUT/index.html           the page (relative links only; open it from disk)
    OUT/audio/<run>/<version>/<clip>.wav      copies (or symlinks with link_audio=True)
    OUT/img/<run>/<clip>_wave.png, _spec.png  original, ceiling, every version stacked
    OUT/img/<run>/<version>/<clip>.png        original vs one version (used when rating)
    OUT/img/<run>/loss.png                    train/val loss curves (raw, plus EMA if asked)
    OUT/img/summary_<metric>.png              per-version dot plots with the best line
    OUT/metrics.csv, metrics.json             one row per run × version (ceiling included)
    OUT/clip_metrics.csv                      one row per run × version × clip
    OUT/topk_<metric>.csv/.md                 top runs per encoder × post-processing
    OUT/items.json                            the rateable items (run, version, clip, files)
    OUT/run.json, OUT/errors.jsonl            provenance; clips that failed and were skipped

A report is written into a new folder beside OUT and moved in when complete, so a failed one
leaves the previous report (or no folder) and a new one keeps no files of runs it no longer
holds; other files in OUT (``ratings.csv``) stay. A run is refused when its renders were made
by another checkpoint than its current one (it was trained again); an lr grid of
``sonify train`` stands for its best run, as in ``sonify render``, and a ``sonify sweep``
folder for the rendered runs of its layers. A run given twice (the same folder) is refused.

Each run is labelled (``<run>`` above, and on the page and in the CSVs) by the settings that
differ between the runs reported, e.g. ``layer=2`` (:func:`_run_labels`); by its folder name
when none does.

Every piece of text from run directories goes through :func:`html.escape`. Run, version and
clip names become file names through :func:`_safe`; a name that cleaning changes gets a short
hash of the original name (``a b`` → ``a_b-<hash>``), and the names of one run are made unique,
so two names never share a file.

``serve_ratings(report_dir, rater)`` serves the report directory on 127.0.0.1 (a free port)
with a rating page (``rate.html``): each item shows the original and the version's waveform,
two players and two 1–5 scales (visual, audio); each change is POSTed to ``/api/rate`` and
stored with :func:`auralens.evaluate.ratings.save_rating` in ``report_dir/ratings.csv``, naming
the render it rates (:func:`_item_render`).
The item order is shuffled per rater and the version names are hidden (blind rating): the
page names each item by a random token made when the server starts, its media are served as
``/media/<token>/{audio,original,image}``, and the server maps tokens back to items. The
server serves only the page, those media and ``/api/rate`` (not ``index.html`` or
``items.json``, which name the versions).
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import json
import logging
import math
import os
import random
import secrets
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

from auralens.checks import is_number, is_whole
from auralens.errors import AuralensError
from auralens.io import (
    ErrorLog,
    Timer,
    read_json,
    read_run_record,
    write_json,
    write_run_json,
    write_text,
)

log = logging.getLogger(__name__)

#: Metrics in the summary table: key → (label, lower is better).
SUMMARY_METRICS: dict[str, tuple[str, bool]] = {
    "fad": ("FAD", True), "fad_inf": ("FAD∞", True), "kad": ("KAD", True),
    "mr_stft": ("MR-STFT", True), "logmel_l1": ("log-mel L1", True), "lsd_db": ("LSD (dB)", True),
    "spectral_convergence": ("SC", True), "env_corr": ("env. corr", False),
    "si_sdr": ("SI-SDR (dB)*", False),
}
#: Per-clip metrics shown beside the players: key → (label, lower is better). The CSV
#: columns keep the keys.
CLIP_METRICS: dict[str, tuple[str, bool]] = {
    "kad_file": ("KAD (clip)", True), "mr_stft": ("MR-STFT", True),
    "logmel_l1": ("log-mel L1", True), "lsd_db": ("LSD (dB)", True),
    "env_corr": ("env. corr", False), "si_sdr": ("SI-SDR (dB)*", False),
}
#: Run settings that can tell the reported runs apart in their labels, in label order.
LABEL_SETTINGS = ("encoder", "layer", "codec", "gate", "lr", "epochs")
PLOT_SR = 22050

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:1.5em auto;max-width:1200px;
color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}
h3{font-size:1.05em;margin-bottom:.3em}
table{border-collapse:collapse;font-size:.85em;margin:.5em 0}
td,th{border:1px solid #ddd;padding:.25em .5em;text-align:right;vertical-align:middle}
th{background:#f3f3f3}td.l,th.l{text-align:left}
tr.ceiling td{background:#f7f7ee;font-style:italic}
.ceil{color:#888;font-size:.85em;display:block}
.best{font-weight:bold;color:#2e7d32}
.warn{background:#fff3cd;border:1px solid #e0c36a;padding:.5em;margin:.5em 0}
.meta{color:#555;font-size:.9em}
audio{height:30px;width:260px}
img{max-width:100%;border:1px solid #eee}
.pair{display:flex;gap:1em;flex-wrap:wrap}.pair>div{flex:1 1 480px}
nav a{margin-right:.8em}
"""


class ReportError(AuralensError, ValueError):
    """A report that cannot be built or served."""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        if not math.isfinite(value):
            return "–"
        return f"{value:.4g}"
    return str(value)


def _safe(name: str) -> str:
    """A file-system-safe component (run/version/clip names come from other people's dirs)."""
    out = "".join(c if c.isalnum() or c in "-_.=," else "_" for c in str(name)).strip(".")
    return out or "_"


def _name_map(names: Iterable[str], reserved: Callable[[str], bool] = lambda _: False,
              ) -> dict[str, str]:
    """Original name → unique file-system-safe name.

    A name that :func:`_safe` leaves unchanged keeps it; one it rewrites (or a ``reserved``
    one) gets ``-`` and a short hash of the original name, so ``a b`` and ``a_b`` never
    share a file. Names are then made unique (``-2``, ``-3`` …) ignoring case, for
    case-insensitive file systems.
    """
    out: dict[str, str] = {}
    taken: set[str] = set()
    for name in sorted({str(n) for n in names}, key=lambda n: (_safe(n) != n, n)):
        base = _safe(name)
        if base != name or reserved(base):
            base = f"{base}-{hashlib.sha1(name.encode('utf-8')).hexdigest()[:8]}"
        out[name] = _claim(base, taken)
    return out


def _claim(base: str, taken: set[str]) -> str:
    """``base``, or ``base-2``, ``base-3`` … : the first not in ``taken`` ignoring case (for
    case-insensitive file systems), added to ``taken``."""
    cand, i = base, 2
    while cand.lower() in taken:
        cand, i = f"{base}-{i}", i + 1
    taken.add(cand.lower())
    return cand


def _is_img_file_name(name: str) -> bool:
    """Version directory names that could clash with ``img/<run>/`` files (loss.png, …_wave.png)."""
    return name.lower().endswith(".png")


def _place_audio(src: Path, dst: Path, link: bool) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    if link:
        os.symlink(os.path.relpath(src.resolve(), dst.parent.resolve()), dst)
    else:
        shutil.copy2(src, dst)


def _unique_names(paths: Sequence[Path]) -> list[str]:
    names: list[str] = []
    for p in paths:
        base = _safe(p.resolve().name)
        name, i = base, 2
        while name in names:
            name, i = f"{base}-{i}", i + 1
        names.append(name)
    return names


def _setting_text(value: Any) -> str:
    """A setting's value for a run label: a float in ``%g``, a path or hub id by its last part
    (``classifier:/…/classifier-synth`` → ``classifier-synth``)."""
    if isinstance(value, float):
        return f"{value:g}"
    return str(value).rstrip("/").rsplit("/", 1)[-1]


def _run_labels(runs: Sequence[Any]) -> list[str]:
    """A label per run from the :data:`LABEL_SETTINGS` that differ between the runs, e.g.
    ``layer=patch``, ``layer=2`` or ``layer=4,lr=0.001``.

    A run keeps its name (its folder's, made unique) when no setting differs, when one of
    the differing settings is unknown for it, or when its label would be another run's too.
    Labels are file-system safe (:func:`_safe`) and unique ignoring case (a ``-2`` … suffix
    is the last resort).
    """
    infos = [run.info() for run in runs]
    differ = [k for k in LABEL_SETTINGS if len({str(info[k]) for info in infos}) > 1]
    labels = [",".join(_safe(f"{k}={_setting_text(info[k])}") for k in differ)
              if differ and all(info[k] is not None for k in differ) else run.name
              for run, info in zip(runs, infos, strict=True)]
    counts: dict[str, int] = {}
    for label in labels:
        counts[label.lower()] = counts.get(label.lower(), 0) + 1
    labels = [label if counts[label.lower()] == 1 else run.name
              for run, label in zip(runs, labels, strict=True)]
    taken: set[str] = set()
    return [_claim(label, taken) for label in labels]


def _is_nan(value: Any) -> bool:
    return isinstance(value, (float, np.floating)) and bool(np.isnan(value))


def _write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    import csv
    import io

    keys: list[str] = []
    for r in rows:
        keys.extend(k for k in r if k not in keys)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        # An undefined value (None, or NaN for a silent original) is an empty cell, as it is
        # null in metrics.json: "nan" would read as a number.
        writer.writerow({k: ("" if r.get(k) is None or _is_nan(r.get(k)) else r.get(k)) for k in keys})
    return write_text(path, buf.getvalue())


def _check_options(smoothing: float | str | None, topk: int, max_clips: int | None,
                   ) -> float | str | None:
    """Validate the report options before any work; returns the smoothing (a float, "auto", None).

    Raises:
        ReportError: smoothing outside ``[0, 1)`` (or not a number / "auto"), topk < 1,
            max_clips < 1.
    """
    if isinstance(smoothing, str):
        text = smoothing.strip().lower()
        if text == "auto":
            smoothing = "auto"
        else:
            try:
                smoothing = float(text)
            except ValueError:
                raise ReportError(f"smoothing must be 'auto' or a number in [0, 1), "
                                  f"got {smoothing!r}") from None
    if smoothing is not None and smoothing != "auto":
        if not is_number(smoothing) or not 0.0 <= smoothing < 1.0:
            raise ReportError(f"smoothing must be 'auto' or a number in [0, 1) (0: raw curves), "
                              f"got {smoothing!r}")
        smoothing = float(smoothing) or None
    for name, value in (("topk", topk), ("max_clips", max_clips)):
        if value is None and name == "max_clips":
            continue
        if not is_whole(value, 1):
            raise ReportError(f"{name} must be an integer ≥ 1, got {value!r}"
                              + (" (leave it out to show every clip)" if name == "max_clips" else ""))
    return smoothing


def _check_out(out: Path, runs: Sequence[Path]) -> None:
    """Refuse a report directory that is, or lies inside, a run being reported: the report's
    run.json and files would overwrite the run's own (run.json, renders/ …).

    Raises:
        ReportError: naming --out and the run.
    """
    target = out.expanduser().resolve()
    for run in runs:
        root = run.expanduser().resolve()
        if target == root or root in target.parents:
            raise ReportError(f"--out {out}: {'is' if target == root else 'lies inside'} the run "
                              f"directory {run}; write the report to a directory outside the runs")


def _sweep_runs(sweep: Path) -> list[Path]:
    """The ``layer=<L>/run`` folders of a ``sonify sweep`` folder, in the sweep's layer order
    (its run.json), else by name."""
    found = {p.parent.name: p for p in sweep.glob("layer=*/run") if p.is_dir()}
    try:
        layers = read_json(sweep / "run.json")["config"]["layers"]
        order = [f"layer={x}" for x in layers if f"layer={x}" in found]
    except (OSError, ValueError, KeyError, TypeError):
        order = []
    order += sorted(k for k in found if k not in order)
    return [found[k] for k in order]


def _expand_runs(paths: Sequence[Path]) -> list[Path]:
    """The run folders to report: a ``sonify sweep`` folder stands for the rendered runs of
    its layers (``SWEEP/layer=<L>/run``), and a sweep's layer folder for its ``run``.

    Raises:
        RunDirError: prepared data of ``sonify prepare`` (not a trained run), or a sweep
            without a rendered layer run.
    """
    from auralens.data.folder import recorded_command
    from auralens.evaluate.sonify_eval import RunDirError

    out: list[Path] = []
    for path in paths:
        if not path.is_dir() or (path / "renders" / "original").is_dir():
            out.append(path)  # load_run reports a missing folder; a rendered run as it is
            continue
        command = recorded_command(path) or ""  # none, unreadable or not auralens's: ""
        if command.startswith("sonify prepare") or (not command and (path / "index.jsonl").is_file()):
            raise RunDirError(
                f"{path}: prepared data (from `auralens sonify {command[len('sonify '):] or 'prepare'}`), "
                f"not a trained run; train a gate on it (`auralens sonify train {path} --out RUN`), "
                "render it (`auralens sonify render --run RUN --split test`) and report RUN")
        layer_runs = _sweep_runs(path)
        if command == "sonify sweep" or layer_runs:
            rendered = [r for r in layer_runs if (r / "renders" / "original").is_dir()]
            if not rendered:
                raise RunDirError(f"{path}: a layer sweep without rendered runs (no "
                                  f"{path}/layer=*/run/renders/original/); finish the sweep first")
            skipped = [str(r) for r in layer_runs if r not in rendered]
            if skipped:
                log.warning("%s: a layer sweep; its runs without renders are left out: %s",
                            path, ", ".join(skipped))
            log.info("%s: a layer sweep; reporting its runs %s", path, ", ".join(map(str, rendered)))
            out.extend(rendered)
            continue
        if (path / "run").is_dir() and (path / "prep").is_dir() and path.name.startswith("layer="):
            log.info("%s: a layer of a sweep; reporting its run %s", path, path / "run")
            out.append(path / "run")
            continue
        out.append(path)
    return out


def _check_duplicates(given: Sequence[Path], resolved: Sequence[Path] | None = None) -> None:
    """Refuse a run given twice (the same folder, however spelt; ``resolved``: the folders
    the given ones stand for, e.g. an lr grid's best run), which would be scored twice.

    Raises:
        ReportError: naming both arguments.
    """
    seen: dict[Path, Path] = {}
    for arg, folder in zip(given, resolved if resolved is not None else given, strict=True):
        key = folder.expanduser().resolve()
        if key in seen:
            first = seen[key]
            if first == arg:
                raise ReportError(f"{arg}: the same run is given twice; give each run once")
            raise ReportError(f"{first} and {arg} are the same run ({key}"
                              + (", an lr grid stands for its best run" if resolved is not None else "")
                              + "); give each run once")
        seen[key] = arg


#: What a report writes at the top of OUT (besides ``topk_*.csv/.md``); a new report replaces
#: these, and the rest of OUT (ratings.csv, rate.html, the user's own files) stays.
REPORT_ENTRIES = ("index.html", "metrics.csv", "metrics.json", "clip_metrics.csv", "items.json",
                  "run.json", "errors.jsonl", "audio", "img")


def _is_report_entry(name: str) -> bool:
    return name in REPORT_ENTRIES or (name.startswith("topk_") and name.endswith((".csv", ".md")))


def _staging_dir(out: Path) -> tuple[Path, list[Path]]:
    """A new empty folder beside ``out`` (same file system, same depth, so relative symlinks
    made in it stay valid in ``out``), and the missing parents of ``out`` created for it,
    deepest first.

    Raises:
        ReportError: ``out`` exists and is not a folder.
    """
    if out.exists() and not out.is_dir():
        raise ReportError(f"--out {out}: exists and is not a directory")
    target = out.expanduser().resolve()
    made = [p for p in (target.parent, *target.parent.parents) if not p.exists()]
    target.parent.mkdir(parents=True, exist_ok=True)
    while True:
        staging = target.parent / f".{target.name}.report-{secrets.token_hex(4)}"
        try:
            staging.mkdir()
            return staging, made
        except FileExistsError:
            continue


def _swap_in(staging: Path, out: Path) -> None:
    """Move the report written in ``staging`` into ``out``: the whole folder when ``out`` does
    not exist, else entry by entry (index.html last), removing the report entries of an
    earlier report that this one does not have (audio/img of runs no longer reported, an old
    errors.jsonl). Other files in ``out`` stay."""
    target = out.expanduser().resolve()
    if not target.exists():
        os.replace(staging, target)
        return
    for old in list(target.iterdir()):
        if _is_report_entry(old.name) and not (staging / old.name).exists():
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
            else:
                old.unlink()
    for new in sorted(staging.iterdir(), key=lambda p: p.name == "index.html"):
        dst = target / new.name
        if (dst.exists() or dst.is_symlink()) and (dst.is_dir() or new.is_dir()):
            # a folder cannot be replaced in one step: move the old one out of the way first
            os.replace(dst, staging / f".replaced-{new.name}")
        os.replace(new, dst)
    shutil.rmtree(staging)


def build_report(runs: Sequence[str | Path], out: str | Path, *, embedder: str = "logmel",
                 link_audio: bool = False, smoothing: float | str | None = "auto", topk: int = 5,
                 max_clips: int | None = None, use_cache: bool = True,
                 sigma: float | None = None) -> Path:
    """Evaluate runs and write the listening report.

    Args:
        runs: run directories (see :mod:`auralens.evaluate.sonify_eval`); an lr grid stands
            for its best run, a ``sonify sweep`` folder for its rendered layer runs
            (``SWEEP/layer=<L>/run``). A run given twice is refused.
        out: output directory (created). The report is written beside it and swapped in
            when complete: an earlier report's files (audio/, img/, index.html … see
            :data:`REPORT_ENTRIES`) are replaced as a whole, other files in ``out`` stay.
        embedder: metric embedder spec for FAD/KAD (``logmel`` is weight-free).
        link_audio: symlink the audio instead of copying it (smaller, but not portable).
        smoothing: EMA weight for the loss curves in ``[0, 1)`` (None or 0: raw curves only;
            ``"auto"``: :func:`auralens.evaluate.plots.auto_smoothing` of each run's history
            length, i.e. raw curves for short per-epoch histories).
        topk: rows per group in the top-k tables (≥ 1).
        max_clips: show at most this many clips per run on the page (≥ 1; None: all). All
            clips are scored.
        use_cache: cache embeddings in the auralens cache.
        sigma: a fixed KAD bandwidth for every run (> 0; None: each run's median distance of
            its original frames).

    Returns:
        path of ``index.html``.

    Raises:
        ReportError: no runs given, a run given twice or an invalid option (checked before
            any work); RunDirError for a directory that is not a run (prepared data is named as
            such), or whose renders were made by another checkpoint than its current one (also
            before anything is written).
    """
    from auralens.evaluate.embedders import build_embedder
    from auralens.evaluate.sonify_eval import load_run

    if not runs:
        raise ReportError("no run directories given")
    smoothing = _check_options(smoothing, topk, max_clips)
    if sigma is not None and not (is_number(sigma) and sigma > 0):
        raise ReportError(f"sigma must be a positive number, got {sigma!r}")
    out = Path(out)
    paths = _expand_runs([Path(r) for r in runs])
    _check_duplicates(paths)
    _check_out(out, paths)
    # Runs and the embedder are checked before anything is written: a refused report leaves
    # no folder behind.
    loaded = [load_run(p, n) for p, n in zip(paths, _unique_names(paths), strict=True)]
    _check_duplicates(paths, [run.path for run in loaded])  # an lr grid and its best run
    for run, label in zip(loaded, _run_labels(loaded), strict=True):
        run.name = label
    emb = build_embedder(embedder)
    renders = _render_identities(loaded)
    stale = _stale_ratings(out, renders)
    if stale:
        log.warning("%s", stale)
    # Written into a fresh folder beside OUT and swapped in at the end: a failed report keeps
    # the previous one, and a new one keeps none of the files of runs it no longer holds.
    staging, made = _staging_dir(out)
    try:
        errors = _write_report(staging, loaded, emb, embedder=embedder, link_audio=link_audio,
                               smoothing=smoothing, topk=topk, max_clips=max_clips,
                               use_cache=use_cache, sigma=sigma,
                               record={"renders": renders, "stale_ratings": stale})
        _swap_in(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in made:  # parents of OUT this call created, deepest first
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    errors.path = out / "errors.jsonl"
    if len(errors):
        errors.summary()
    return out / "index.html"


def _render_identities(loaded: Sequence[Any]) -> dict[str, str]:
    """``{run name: SHA-256 of the checkpoint its renders were made with}`` (runs whose renders
    record none are left out), from the ``renders/run.json`` each run was loaded with."""
    out = {}
    for run in loaded:
        config = (run.renders or {}).get("config")
        sha = config.get("checkpoint_sha256") if isinstance(config, dict) else None
        if isinstance(sha, str) and sha:
            out[run.name] = sha
    return out


def _stale_ratings(out: Path, renders: dict[str, str]) -> str | None:
    """Why ``OUT/ratings.csv`` holds ratings of renders this report no longer shows, or None.

    ``renders``: ``{run name: checkpoint SHA-256 of its renders}`` (:func:`_render_identities`).
    A rating that names its render (the ``render`` column) is of an earlier render when that
    differs from the run's now. One that names none (written before the column existed) is
    judged as before: the report of OUT's ``run.json`` recorded the checkpoint of each run's
    renders, and a run trained and rendered again since has another one; those ratings
    would be averaged with ratings of the new renders.
    """
    from auralens.evaluate.ratings import RatingError, checkpoint_render_id, load_ratings

    ratings = out / "ratings.csv"
    if not ratings.is_file():
        return None
    earlier = _report_renders(out)
    changed = {name for name, sha in renders.items() if earlier.get(name) not in (None, sha)}
    current = {name: checkpoint_render_id(sha) for name, sha in renders.items()}
    try:
        stale = [r for r in load_ratings(ratings) if r.run in current
                 and (r.render != current[r.run] if r.render else r.run in changed)]
    except RatingError:
        return None
    if not stale:
        return None
    said = (f"{ratings} holds {len(stale)} rating(s) of earlier renders of "
            f"{', '.join(sorted({r.run for r in stale}))} (trained and rendered again since); ")
    unnamed = sum(not r.render for r in stale)
    if unnamed == len(stale):
        return said + ("`auralens sonify ratings` would average them with ratings of the new "
                       "renders: move the file aside to start afresh")
    if unnamed:
        return said + (f"`auralens sonify ratings` would average the {unnamed} that name no render "
                       "with ratings of the new renders: move the file aside to start afresh")
    return said + ("`auralens sonify ratings` counts only the latest rated render of each version, "
                   "so they count until the new renders are rated (`--by version,render` shows "
                   "each render apart)")


def _write_report(out: Path, loaded: Sequence[Any], emb: Any, *, embedder: str, link_audio: bool,
                  smoothing: float | str | None, topk: int, max_clips: int | None,
                  use_cache: bool, sigma: float | None,
                  record: dict[str, Any] | None = None) -> ErrorLog:
    """Score the loaded runs and write every report file into ``out`` (see
    :func:`build_report`); returns the error log."""
    from auralens import audio
    from auralens.cache import ArrayCache
    from auralens.evaluate import plots
    from auralens.evaluate.sonify_eval import evaluate_run
    from auralens.progress import progress

    timer = Timer()
    cache = ArrayCache(namespace="metric-embeddings") if use_cache else None
    errors = ErrorLog(out / "errors.jsonl", reset=True)

    scores = []
    with timer("metrics"):
        for run in loaded:
            scores.append(evaluate_run(run, emb, cache=cache, errors=errors, sigma=sigma))
    rows = [row for s in scores for row in s.rows()]
    clip_rows = [{"run": s.run.name, "version": v, "clip": c, **m}
                 for s in scores for v, vs in s.versions.items() for c, m in vs.clip_metrics.items()]
    warnings = [w for s in scores for w in s.warnings]
    # Runs scored on different clips (within one run, evaluate_run has already said so).
    if len(scores) > 1 and len({tuple(vs.scored) for s in scores
                                for vs in s.versions.values() if vs.scored}) > 1:
        warnings.append("the rows are not all scored on the same clips (see n_clips and notes): "
                        "compare FAD/KAD and the means only between rows scored on the same clips")

    items: list[dict[str, Any]] = []
    clip_sections: list[str] = []
    # Files the metrics could not use are already in errors.jsonl: no player, no second entry.
    failed = {str(rec["path"]) for rec in errors.items if rec.get("path")}
    with timer("media"):
        for s in scores:
            run = s.run
            rdir = _safe(run.name)
            vname = _name_map(run.versions, reserved=_is_img_file_name)
            cname = _name_map(c for files in run.versions.values() for c in files)
            rel_audio: dict[tuple[str, str], str] = {}
            for version, files in run.versions.items():
                for cid, src in files.items():
                    if str(src) in failed:
                        continue
                    rel = f"audio/{rdir}/{vname[version]}/{cname[cid]}{src.suffix.lower()}"
                    _place_audio(src, out / rel, link_audio)
                    rel_audio[(version, cid)] = rel
            if run.history:
                weight = plots.auto_smoothing(len(run.history)) if smoothing == "auto" else smoothing
                plots.plot_loss_curves(run.history, out / "img" / rdir / "loss.png",
                                       smoothing=weight or None, title=run.name)
            order = [v for v in ("original", "ceiling") if v in run.versions] + run.posts
            clips = run.clips[:max_clips] if max_clips is not None else run.clips
            for cid in progress(clips, desc=f"figures {run.name}"):
                waves: dict[str, np.ndarray] = {}
                for v in order:
                    src = run.versions[v].get(cid)
                    if src is None or str(src) in failed:
                        continue
                    try:
                        waves[v] = audio.load(src, PLOT_SR)
                    except AuralensError as exc:
                        failed.add(str(src))
                        rel_audio.pop((v, cid), None)
                        errors.add(f"{run.name}/{v}/{cid}", exc, src)
                if "original" not in waves:
                    continue
                stack = list(waves.items())
                wave_png = f"img/{rdir}/{cname[cid]}_wave.png"
                spec_png = f"img/{rdir}/{cname[cid]}_spec.png"
                plots.plot_waveform_stack(stack, PLOT_SR, out / wave_png, title=f"{run.name} · {cid}")
                plots.plot_spectrogram_stack(stack, PLOT_SR, out / spec_png)
                for v, w in waves.items():
                    if v == "original":
                        continue
                    item_png = f"img/{rdir}/{vname[v]}/{cname[cid]}.png"
                    plots.plot_waveform_stack([("original", waves["original"]), ("this", w)],
                                              PLOT_SR, out / item_png)
                    items.append({"id": f"{run.name}/{v}/{cid}", "run": run.name, "version": v,
                                  "clip": cid, "audio": rel_audio[(v, cid)],
                                  "original": rel_audio[("original", cid)], "image": item_png})
                clip_sections.append(_clip_html(s, cid, order, rel_audio, wave_png, spec_png))

    with timer("summary"):
        summary_imgs = _summary_plots(rows, out)
        lower = {k: lb for k, (_, lb) in SUMMARY_METRICS.items()}
        sonif_rows = [r for r in rows if r["version"] != "ceiling"]
        plots.write_topk_tables(sonif_rows, out, {k: lower[k] for k in ("fad", "kad", "mr_stft")},
                                k=topk)
        write_json(out / "metrics.json", {"embedder": emb.name, "rows": rows,
                                          "kad_sigma": {s.run.name: s.kad_sigma for s in scores},
                                          "warnings": warnings})
        _write_csv(out / "metrics.csv", rows)
        _write_csv(out / "clip_metrics.csv", clip_rows)
        write_json(out / "items.json", items)

    page = _page_html(scores, rows, clip_sections, summary_imgs, emb.name, warnings, errors)
    write_text(out / "index.html", page)
    write_run_json(out, command="sonify report",
                   config={"runs": [str(run.path) for run in loaded], "embedder": embedder,
                           "link_audio": link_audio, "smoothing": smoothing, "topk": topk,
                           "max_clips": max_clips},
                   models={"metric_embedder": emb.name}, timings=timer.timings,
                   extra={"errors": len(errors), **(record or {})})
    return errors


def _summary_plots(rows: Sequence[dict[str, Any]], out: Path) -> list[tuple[str, str]]:
    from auralens.evaluate import plots

    imgs = []
    multi = len({r["run"] for r in rows}) > 1
    for key in ("fad", "kad", "mr_stft", "env_corr"):
        label, lower = SUMMARY_METRICS[key]
        vals = {(f"{r['run']}/{r['version']}" if multi else r["version"]): r.get(key)
                for r in rows if r["version"] != "ceiling"}
        if not any(v is not None for v in vals.values()):
            continue
        ceilings = {r.get(key) for r in rows if r["version"] == "ceiling" and r.get(key) is not None}
        ceiling = ceilings.pop() if len(ceilings) == 1 else None
        rel = f"img/summary_{key}.png"
        plots.plot_metric_dots(vals, out / rel, metric=label, lower_is_better=lower, ceiling=ceiling)
        imgs.append((label, rel))
    return imgs


def _is_griffin_lim(codec: Any) -> bool:
    """Whether a run's codec decodes with Griffin-Lim (the ``mel`` codec): its output's phase
    is arbitrary, so SI-SDR says nothing about it."""
    return isinstance(codec, str) and codec.split("@", 1)[0].strip().lower() == "mel"


def _header(label: str, lower_is_better: bool) -> str:
    """A metric column header with the direction that is better (↓ lower, ↑ higher)."""
    return f"{label} {'↓' if lower_is_better else '↑'}"


def _summary_table(rows: Sequence[dict[str, Any]]) -> str:
    # n_clips and notes say which clips each row's values cover.
    cols = ["run", "encoder", "layer", "gate", "codec", "version", "n_clips"]
    metrics = [k for k in SUMMARY_METRICS if any(r.get(k) is not None for r in rows)]
    best: dict[str, float] = {}
    for k in metrics:
        # No best SI-SDR among Griffin-Lim rows: the page calls it meaningless there.
        vals = [r[k] for r in rows if r["version"] != "ceiling" and isinstance(r.get(k), float)
                and math.isfinite(r[k]) and not (k == "si_sdr" and _is_griffin_lim(r.get("codec")))]
        if vals:
            best[k] = min(vals) if SUMMARY_METRICS[k][1] else max(vals)
    head = "".join(f'<th class="l">{_e(c)}</th>' for c in cols)
    head += "".join(f"<th>{_e(_header(*SUMMARY_METRICS[k]))}</th>" for k in metrics)
    head += '<th class="l">notes</th>'
    body = []
    for r in rows:
        is_ceil = r["version"] == "ceiling"
        cells = "".join(_name_cell(r.get(c)) for c in cols)
        for k in metrics:
            v = r.get(k)
            cls = (' class="best"' if not is_ceil and k in best and v == best[k]
                   and not (k == "si_sdr" and _is_griffin_lim(r.get("codec"))) else "")
            ceil = r.get(f"ceiling_{k}")
            sub = f'<span class="ceil">ceiling {_e(_fmt(ceil))}</span>' if not is_ceil and ceil is not None else ""
            cells += f"<td><span{cls}>{_e(_fmt(v))}</span>{sub}</td>"
        cells += f'<td class="l">{_e(r.get("notes") or "")}</td>'
        body.append(f'<tr class="{"ceiling" if is_ceil else ""}">{cells}</tr>')
    return f'<div style="overflow-x:auto"><table><tr>{head}</tr>{"".join(body)}</table></div>'


def shown_spec(text: str) -> str:
    """A spec as a shared page shows it: the package's own presets as ``presets/<name>`` and
    the home folder as ``~``, so the page does not carry this machine's folders."""
    import os

    presets = str(Path(__file__).resolve().parents[1] / "presets") + os.sep
    text = text.replace(presets, "presets/")
    home = str(Path.home())
    if len(home) > 1:
        text = text.replace(home + os.sep, "~" + os.sep)
    return text


def _name_cell(value: Any, limit: int = 32) -> str:
    """A table cell for a spec/name: long specs shortened to their kind, full text on hover."""
    text = shown_spec(_fmt(value))
    if len(text) <= limit:
        return f'<td class="l">{_e(text)}</td>'
    short = text.split("@", 1)[0] + "@…" if "@" in text else text
    short = short if len(short) <= limit else short[: limit - 1] + "…"
    return f'<td class="l" title="{_e(text)}">{_e(short)}</td>'


def _clip_html(scores: Any, cid: str, order: Sequence[str], rel_audio: dict[tuple[str, str], str],
               wave_png: str, spec_png: str) -> str:
    run = scores.run
    metric_cols = [m for m in CLIP_METRICS
                   if any(m in vs.clip_metrics.get(cid, {}) for vs in scores.versions.values())]
    head = ('<th class="l">version</th><th class="l">listen</th>'
            + "".join(f"<th>{_e(_header(*CLIP_METRICS[m]))}</th>" for m in metric_cols))
    trs = []
    for v in order:
        if (v, cid) not in rel_audio:
            continue
        m = scores.versions[v].clip_metrics.get(cid, {}) if v in scores.versions else {}
        cells = "".join(f"<td>{_e(_fmt(m.get(k)))}</td>" for k in metric_cols)
        trs.append(f'<tr class="{"ceiling" if v == "ceiling" else ""}"><td class="l">{_e(v)}</td>'
                   f'<td class="l"><audio controls preload="none" src="{_e(rel_audio[(v, cid)])}">'
                   f"</audio></td>{cells}</tr>")
    anchor = _e(f"{run.name}--{cid}")
    return (f'<section id="{anchor}"><h3>{_e(cid)} <span class="meta">· {_e(run.name)}</span></h3>'
            f"<table><tr>{head}</tr>{''.join(trs)}</table>"
            f'<div class="pair"><div><img alt="waveforms of {_e(cid)}" src="{_e(wave_png)}"></div>'
            f'<div><img alt="spectrograms of {_e(cid)}" src="{_e(spec_png)}"></div></div></section>')


def _sigma_note(scores: Sequence[Any]) -> str:
    """How σ was chosen, for the summary text: a fixed value or each run's median distance."""
    if scores and all(s.fixed_sigma for s in scores):
        return f"fixed σ = {scores[0].kad_sigma:.6g}"
    return ("σ = median distance of the original frames, or of their non-zero distances when "
            "most frames are identical, e.g. silence")


def _page_html(scores: Sequence[Any], rows: Sequence[dict[str, Any]], clip_sections: Sequence[str],
               summary_imgs: Sequence[tuple[str, str]], embedder: str, warnings: Sequence[str],
               errors: ErrorLog) -> str:
    parts = ["<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">",
             "<title>auralens sonify report</title>", f"<style>{_CSS}</style></head><body>",
             "<h1>Sonification listening report</h1>",
             f'<p class="meta">metric embedder: <code>{_e(embedder)}</code> · '
             f"{len(scores)} run(s) · generated {_e(time.strftime('%Y-%m-%d %H:%M'))}</p>",
             '<nav><a href="#summary">summary</a><a href="#loss">loss curves</a>'
             '<a href="#clips">clips</a><a href="metrics.csv">metrics.csv</a>'
             '<a href="clip_metrics.csv">clip_metrics.csv</a></nav>']
    for w in warnings:
        parts.append(f'<div class="warn">⚠ {_e(w)}</div>')
    if len(errors):
        parts.append(f'<div class="warn">{len(errors)} file(s) could not be used; see errors.jsonl</div>')
    parts.append('<h2 id="summary">Summary</h2>')
    parts.append('<p class="meta">Each sonification is scored against the originals; the grey '
                 "“ceiling” value beside it is the same metric for the codec’s own encode→decode of "
                 "the original (the best a perfect gate can reach), on the same clips. FAD/KAD pool "
                 "the frames of the scored test clips (n_clips: those usable in every version of "
                 f"the run; KAD ×100, RBF kernel, {_sigma_note(scores)}). "
                 "* SI-SDR is meaningful only where phase is preserved (waveform codecs), not for "
                 "Griffin-Lim output.</p>")
    parts.append(_summary_table(rows))
    gl = any(_is_griffin_lim(r.get("codec")) for r in rows)
    parts.append('<p class="meta">↓ lower is better, ↑ higher is better. '
                 '<span class="best">Bold green</span>: the best sonification in the column '
                 "(ceiling rows are not ranked)"
                 + ("; no best SI-SDR is marked among runs whose codec decodes with Griffin-Lim "
                    "(mel)" if gl else "")
                 + ". KAD is an unbiased estimate: ≈ 0 for audio that matches the originals, and "
                 "it can be slightly below zero.</p>")
    for label, rel in summary_imgs:
        parts.append(f'<img alt="{_e(label)} per version" src="{_e(rel)}" style="max-width:48%">')
    parts.append('<h2 id="loss">Training curves</h2>')
    for s in scores:
        info = s.run.info()
        desc = ", ".join(f"{k}={_fmt(v)}" for k, v in info.items() if v is not None)
        parts.append(f"<h3>{_e(s.run.name)}</h3><p class=\"meta\">{_e(desc)}</p>")
        if s.run.history:
            parts.append(f'<img alt="loss curves of {_e(s.run.name)}" '
                         f'src="img/{_e(_safe(s.run.name))}/loss.png" style="max-width:600px">')
        else:
            parts.append('<p class="meta">no usable history.jsonl records</p>')
    parts.append('<h2 id="clips">Clips</h2>')
    parts.append('<p class="meta">Every version of a clip against that clip\'s original. KAD (clip) '
                 "(<code>kad_file</code> in clip_metrics.csv): the KAD between this clip's render "
                 "and its own original (×100, the σ of the run's set KAD; unbiased, so ≈ 0 or "
                 "slightly below for a faithful render), not a comparison with the other clips. "
                 "↓ lower is better, ↑ higher is better; – not computable (see the notes).</p>")
    parts.extend(clip_sections)
    parts.append("</body></html>\n")
    return "\n".join(parts)


# --------------------------------------------------------------------------- rating server

#: What ``/media/<token>/<kind>`` serves for an item: kind → its key in items.json.
MEDIA_KINDS = ("audio", "original", "image")


def _item_tokens(items: Sequence[dict[str, Any]]) -> dict[str, str]:
    """A fresh random token per item id: the page and its URLs name items only by these."""
    tokens: dict[str, str] = {}
    used: set[str] = set()
    for it in items:
        token = secrets.token_hex(8)
        while token in used:
            token = secrets.token_hex(8)
        used.add(token)
        tokens[str(it["id"])] = token
    return tokens


def _rating_page(items: Sequence[dict[str, Any]], rater: str, seed: int,
                 tokens: dict[str, str]) -> str:
    order = list(items)
    random.Random(f"{rater}:{seed}").shuffle(order)  # per-rater order, stable across reloads
    blocks = []
    for i, it in enumerate(order, 1):
        tok = _e(tokens[str(it["id"])])
        radios = ""
        for scale in ("visual", "audio"):
            opts = "".join(f'<label><input type="radio" name="{scale}-{i}" value="{m}" '
                           f'data-scale="{scale}">{m}</label> ' for m in range(1, 6))
            radios += f'<div>{scale} mark: {opts}</div>'
        blocks.append(
            f'<section class="item" data-item="{tok}"><h3>item {i} of {len(order)}</h3>'
            f'<div class="pair"><div><img alt="waveform: original (top) and this item" '
            f'src="media/{tok}/image"></div><div>original: <audio controls preload="none" '
            f'src="media/{tok}/original"></audio><br>this item: <audio controls preload="none" '
            f'src="media/{tok}/audio"></audio>{radios}'
            f'<input type="text" class="comment" placeholder="comment (optional)" size="40">'
            f'<span class="status"></span></div></div></section>')
    script = """
<script>
document.querySelectorAll('section.item').forEach(function(sec){
  function send(){
    var v=sec.querySelector('input[data-scale=visual]:checked');
    var a=sec.querySelector('input[data-scale=audio]:checked');
    if(!v||!a){return;}
    var body={item:sec.dataset.item,visual:+v.value,audio:+a.value,
              comment:sec.querySelector('.comment').value};
    fetch('/api/rate',{method:'POST',headers:{'Content-Type':'application/json'},
      body:JSON.stringify(body)}).then(function(r){return r.json();}).then(function(j){
        sec.querySelector('.status').textContent=j.ok?' saved':' error: '+j.error;});
  }
  sec.querySelectorAll('input').forEach(function(el){el.addEventListener('change',send);});
});
</script>"""
    return ("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>rate sonifications</title><style>{_CSS}</style></head><body>"
            f"<h1>Rate sonifications</h1><p class=\"meta\">rater: <b>{_e(rater)}</b> · "
            f"{len(order)} items in random order · versions are hidden. For each item give a "
            "<b>visual</b> mark (does the waveform look like the original's, 1–5) and an "
            "<b>audio</b> mark (does it sound like the original, 1–5). Marks are saved as soon "
            "as both are chosen.</p>" + "".join(blocks) + script + "</body></html>\n")


def _report_renders(report_dir: Path) -> dict[str, Any]:
    """``{run name: checkpoint SHA-256}`` of the renders the report in ``report_dir`` was built
    from, as its run.json records them (:func:`_render_identities`); {} when it records none."""
    record = read_run_record(report_dir)
    renders = record.get("renders") if isinstance(record, dict) and record.get("command") == "sonify report" else None
    return renders if isinstance(renders, dict) else {}


def _recorded_renders(report_dir: Path) -> dict[str, str]:
    """``{run name: render id}`` of the renders the report in ``report_dir`` was built from."""
    from auralens.evaluate.ratings import checkpoint_render_id

    return {str(name): checkpoint_render_id(sha) for name, sha in _report_renders(report_dir).items()}


def _item_render(report_dir: Path, item: dict[str, Any], recorded: dict[str, str]) -> str:
    """The render id of the audio an item plays: copied audio is the renders the report was
    built from (``recorded``, :func:`_recorded_renders`); linked audio (``--link-audio``)
    plays the run's renders as they are now, whatever was rendered since."""
    from auralens.evaluate.ratings import render_id

    audio = report_dir / str(item["audio"])
    if audio.is_symlink():  # REPORT/audio/... -> RUN/renders/<version>/<clip>.wav
        return render_id(audio.resolve().parent.parent)
    return recorded.get(str(item["run"]), "")


def _load_items(report_dir: Path) -> list[dict[str, Any]]:
    items_path = report_dir / "items.json"
    if not items_path.exists():
        raise ReportError(f"{report_dir}: no items.json; build it with `auralens sonify report`")
    items = read_json(items_path)  # a damaged file: JSONFileError, naming it
    if not isinstance(items, list) or not all(
            isinstance(it, dict) and {"id", "run", "version", "clip", *MEDIA_KINDS} <= set(it)
            for it in items):
        raise ReportError(f"{items_path}: not an items list written by `auralens sonify report`")
    return items


def write_rating_page(report_dir: str | Path, rater: str, seed: int = 0,
                      tokens: dict[str, str] | None = None) -> Path:
    """Write ``report_dir/rate.html`` for ``rater`` from ``items.json``.

    Args:
        tokens: item id → opaque token used in the page (default: fresh random tokens; the
            page's media links and POSTs work only with a server that holds the same map).
    """
    report_dir = Path(report_dir)
    items = _load_items(report_dir)
    return write_text(report_dir / "rate.html",
                      _rating_page(items, rater, seed, tokens or _item_tokens(items)))


class _RatingHandler(SimpleHTTPRequestHandler):
    """Serves only the rating page, ``/media/<token>/<kind>`` and ``/api/rate``."""

    server: Any

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.info("rating server: " + format, *args)

    def _route(self) -> bool:
        """Point ``self.path`` at the file to serve; False (404 sent) for anything else."""
        from urllib.parse import quote, urlsplit

        path = urlsplit(self.path).path
        if path == "/rate.html":
            self.path = path
            return True
        parts = path.split("/")
        if len(parts) == 4 and parts[1] == "media" and parts[3] in MEDIA_KINDS:
            item = self.server.tokens.get(parts[2])
            if item is not None:
                self.path = "/" + quote(str(item[parts[3]]))
                return True
        self.send_error(404, "not found")
        return False

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        if self.path in ("/", ""):
            self.send_response(302)
            self.send_header("Location", "/rate.html")
            self.end_headers()
            return
        if self._route():
            super().do_GET()

    def do_HEAD(self) -> None:  # noqa: N802 - stdlib name
        if self._route():
            super().do_HEAD()

    def _reply(self, code: int, obj: dict[str, Any]) -> None:
        data = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        from auralens.evaluate.ratings import RatingError, save_rating

        if self.path != "/api/rate":
            self._reply(404, {"ok": False, "error": "not found"})
            return
        try:
            length = int(self.headers.get("Content-Length", "0"))
            if not 0 < length <= 16384:
                raise RatingError("request body missing or too large")
            payload = json.loads(self.rfile.read(length))
            if not isinstance(payload, dict):
                raise RatingError(f"request body must be a JSON object with item, visual and "
                                  f"audio, got {type(payload).__name__}")
            comment = payload.get("comment")
            if comment is not None and not isinstance(comment, str):
                raise RatingError(f"comment must be text, got {comment!r}"[:200])
            item = self.server.tokens.get(str(payload.get("item")))
            if item is None:
                raise RatingError(f"unknown item {payload.get('item')!r}")
            # Run/version/clip come from items.json through the token map, never from the client.
            rating = save_rating(self.server.csv_path, rater=self.server.rater, run=item["run"],
                                 version=f"{item['run']}/{item['version']}", clip=item["clip"],
                                 visual=payload.get("visual"), audio=payload.get("audio"),
                                 comment=comment or "",
                                 render=_item_render(self.server.report_dir, item, self.server.renders))
        except (RatingError, ValueError) as exc:
            self._reply(400, {"ok": False, "error": str(exc)})
            return
        self._reply(200, {"ok": True, "timestamp": rating.timestamp})


def serve_ratings(report_dir: str | Path, rater: str, *, port: int = 0, seed: int = 0,
                  ) -> tuple[ThreadingHTTPServer, threading.Thread]:
    """Start the rating server on 127.0.0.1 in a background thread.

    Each start gives every item a new random token (``server.tokens``: token → item); the
    page written to ``report_dir/rate.html`` and its media URLs use only these.

    Args:
        report_dir: a directory written by :func:`build_report`.
        rater: listener name stored with every rating.
        port: TCP port; 0 picks a free one (``server.server_address[1]``).

    Returns:
        ``(server, thread)``; call ``server.shutdown()`` to stop.

    Raises:
        ReportError: no items.json, a port outside 0–65535 or one that cannot be bound.
        RatingError: an empty rater name.
    """
    from functools import partial

    from auralens.evaluate.ratings import make_rating

    report_dir = Path(report_dir).resolve()
    make_rating(rater=rater, run="", version="v", clip="c", visual=1, audio=1)  # validates rater
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ReportError(f"port must be an integer in 0–65535 (0: a free one), got {port!r}")
    items = _load_items(report_dir)
    tokens = _item_tokens(items)
    handler = partial(_RatingHandler, directory=str(report_dir))
    try:
        server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    except OSError as exc:
        raise ReportError(f"port {port} on 127.0.0.1 is not available ({exc.strerror or exc}); "
                          "choose another --port, or 0 for a free one") from None
    try:
        write_rating_page(report_dir, rater, seed, tokens)
    except BaseException:
        server.server_close()
        raise
    server.tokens = {tokens[str(it["id"])]: it for it in items}  # type: ignore[attr-defined]
    server.rater = rater  # type: ignore[attr-defined]
    server.csv_path = report_dir / "ratings.csv"  # type: ignore[attr-defined]
    server.report_dir = report_dir  # type: ignore[attr-defined]
    server.renders = _recorded_renders(report_dir)  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread
