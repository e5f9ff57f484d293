"""The Sonify tab's handlers: pick a trained run and a clip → players, plots, metrics.

Runs are looked up by key in the list the server discovered under ``--runs``; render
files are copied into the request's work dir before the page serves them.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from auralens.errors import AuralensError
from auralens.ui_app.core import (
    CONSTANT_INPUT,
    RunInfo,
    UIError,
    UISettings,
    discover_runs,
    md_escape,
    md_table,
    md_text,
    publish,
    request_dir,
    resolve_choice,
    resolve_run,
    soundless,
    stale_renders,
    validate_upload,
)

log = logging.getLogger(__name__)

#: The dropdown entry that selects "use my upload" instead of a test clip.
UPLOAD_CHOICE = "(my upload)"


@dataclass
class SonifyView:
    """What the Sonify tab displays for one request."""

    ok: bool
    status: str
    original: Path | None = None
    sonified: Path | None = None
    ceiling: Path | None = None
    plots: list[tuple[Path, str]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    #: Shown instead of the table when the metrics were left out on purpose (silent input).
    metrics_note: str = ""

    @property
    def metrics_md(self) -> str:
        if self.metrics_note:
            return f"_{md_escape(self.metrics_note)}_"
        if not self.metrics:
            return "_no metrics_"
        rows: list[list[object]] = [[k, f"{v:.4g}"] for k, v in self.metrics.items()]
        return md_table(["metric (sonification vs original)", "value"], rows)


def no_runs_message(settings: UISettings) -> str:
    if settings.runs_dir is None:
        return ("no trained sonify runs: start the UI with `--runs DIR` pointing at a "
                "directory of `auralens sonify train` outputs")
    return f"no trained sonify runs found under {settings.runs_dir}"


def list_runs(settings: UISettings) -> dict[str, RunInfo]:
    """Rescan ``--runs`` (cheap: directory listing and small run.json reads)."""
    return discover_runs(settings.runs_dir)


def run_summary(info: RunInfo) -> str:
    """Markdown summary of a run for the page."""
    rows: list[list[object]] = [
        ["encoder", info.encoder], ["layer", info.layer], ["codec", info.codec],
        ["gate", info.gate], ["test clips", len(info.clips)],
        ["post-processing", ", ".join(info.posts) or "none"],
        ["codec ceiling renders", "yes" if info.has_ceiling else "no"],
    ]
    return f"**Run {md_escape(info.key)}**\n\n" + md_table(["property", "value"], rows)


def clip_choices(info: RunInfo) -> list[str]:
    return [*info.clips, UPLOAD_CHOICE]


def post_choices(info: RunInfo) -> list[str]:
    """Post-processing variants offered on the Sonify tab (test renders exist for each)."""
    return list(info.posts) or ["none"]


def view_choices(info: RunInfo) -> list[str]:
    """Render folders that can be compared with the original (variants and the ceiling)."""
    return [*info.posts, *(["ceiling"] if info.has_ceiling else [])]


_STEP_RE = re.compile(r"^([a-z]+)([-+]?[\d.]+(?:e[-+]?\d+)?)?$")


def folder_to_chain(name: str) -> str | None:
    """Invert ``postprocess.chain_name``: ``"minmax+threshold10"`` → ``"minmax,threshold:10"``."""
    if name in ("", "none"):
        return None
    steps = []
    for part in name.split("+"):
        m = _STEP_RE.match(part)
        if not m:
            raise UIError(f"cannot use post-processing {name!r} for an upload")
        steps.append(m.group(1) + (f":{m.group(2)}" if m.group(2) else ""))
    return ",".join(steps)


# --------------------------------------------------------------------------- plots & metrics
def make_plots(waves: list[tuple[str, np.ndarray]], sr: int, out_dir: Path) -> list[tuple[Path, str]]:
    """Stacked waveform and spectrogram images (``auralens.evaluate.plots``)."""
    from auralens.evaluate import plots

    out_dir.mkdir(parents=True, exist_ok=True)
    return [(plots.plot_waveform_stack(waves, sr, out_dir / "waveforms.png"), "waveforms"),
            (plots.plot_spectrogram_stack(waves, sr, out_dir / "spectrograms.png"), "spectrograms")]


def compute_metrics(ref: np.ndarray, est: np.ndarray, sr: int) -> dict[str, float]:
    """Spectral distances and envelope correlation (``auralens.evaluate.spectral``)."""
    from auralens.evaluate.spectral import spectral_metrics

    n = min(ref.shape[-1], est.shape[-1])
    res = spectral_metrics(ref[:n], est[:n], sr)
    # NaN (a metric relative to a silent original) is left out rather than shown as "nan".
    return {str(k): float(v) for k, v in res.items() if _is_num(v) and np.isfinite(float(v))}


def _is_num(v: Any) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return not isinstance(v, bool)


# --------------------------------------------------------------------------- requests
def _load(path: Path) -> tuple[np.ndarray, int]:
    from auralens.audio import load_sr

    return load_sr(path)


def sonify_clip(key: str | None, clip: str | None, post: str | None, upload_path: str | None,
                settings: UISettings, runs: dict[str, RunInfo] | None = None) -> SonifyView:
    """Show one test clip's renders, or render an upload through the run's gate.

    Args:
        key: run key from the dropdown (resolved against the server's list).
        clip: a test clip id, or :data:`UPLOAD_CHOICE`.
        post: post-processing variant (one of the run's ``renders/`` subfolders).
        upload_path: gradio's upload (only read when ``clip`` is the upload choice).
        settings: server settings.
        runs: the discovered runs (rescanned when None).
    """
    runs = list_runs(settings) if runs is None else runs
    if not runs:
        return SonifyView(ok=False, status=no_runs_message(settings))
    try:
        info = resolve_run(key, runs)
        if not clip and not info.clips:  # "pick a clip" would point at an empty list
            raise UIError(f"run {info.key} has no rendered test clips (renders/original holds "
                          "none): render them with `auralens sonify render --run RUN --split "
                          f"test`, or choose '{UPLOAD_CHOICE}' and upload a clip")
        clip = resolve_choice(clip, clip_choices(info), "clip")
        if clip == UPLOAD_CHOICE:
            return _sonify_upload(info, post, upload_path, settings)
        post = resolve_choice(post, view_choices(info), "post-processing")
    except UIError as exc:
        return SonifyView(ok=False, status=str(exc))
    renders = info.path / "renders"
    src_orig = renders / "original" / f"{clip}.wav"
    src_son = renders / post / f"{clip}.wav"  # post is one of the discovered folder names
    if not src_son.is_file():
        return SonifyView(ok=False, status=f"run {info.key} has no {post} render of {clip}")
    # the renders are read where they are, so a broken one is named by its place under
    # --runs and never reaches the players
    try:
        ref, sr = load_render(src_orig, settings)
        est, sr2 = load_render(src_son, settings)
    except UIError as exc:
        return SonifyView(ok=False, status=str(exc))
    src_ceil = renders / "ceiling" / f"{clip}.wav"
    ceiling_note = ""
    if src_ceil.is_file():
        try:
            load_render(src_ceil, settings)
        except UIError as exc:
            ceiling_note, src_ceil = f" · ceiling not shown: {md_escape(exc)}", None
    try:
        with request_dir(settings, "sonify") as work:  # not pruned while it is filled
            return _show_renders(info, clip, post, work, src_orig, src_son, src_ceil,
                                 ceiling_note, ref, sr, est, sr2)
    except UIError as exc:  # the work folder could not be made
        return SonifyView(ok=False, status=str(exc))


def _show_renders(info: RunInfo, clip: str, post: str, work: Path, src_orig: Path,
                  src_son: Path, src_ceil: Path | None, ceiling_note: str, ref: np.ndarray,
                  sr: int, est: np.ndarray, sr2: int) -> SonifyView:
    """The players, plots and metrics of checked test renders (:func:`sonify_clip`)."""
    view = SonifyView(ok=True, status=f"run {md_escape(info.key)} · clip {md_escape(clip)} · "
                                       f"{md_escape(post)}{ceiling_note}")
    stale = stale_renders(info.path)
    if stale:
        view.status = f"**warning:** {md_text(stale)} · " + view.status
    try:
        view.original = publish(src_orig, work, "original.wav")
        view.sonified = publish(src_son, work, f"sonified_{post}.wav")
        if src_ceil is not None and src_ceil.is_file():
            view.ceiling = publish(src_ceil, work, "ceiling.wav")
    except OSError as exc:
        return SonifyView(ok=False, status=f"could not copy the renders of {clip}: "
                                           f"{exc.strerror or type(exc).__name__}")
    try:
        _analyse(view, work, ref, sr, est, sr2)
    except (OSError, AuralensError) as exc:
        view.status += f" (analysis failed: {md_escape(exc)})"
    return view


def load_render(path: Path, settings: UISettings) -> tuple[np.ndarray, int]:
    """Load one render file; a broken one is named relative to ``--runs``."""
    from auralens.audio import AudioError

    root, name = settings.runs_dir, path.name
    if root is not None and path.is_relative_to(root):
        name = path.relative_to(root).as_posix()
    try:
        return _load(path)
    except (OSError, AuralensError) as exc:
        msg = exc.reason if isinstance(exc, AudioError) else (
            getattr(exc, "strerror", None) or str(exc))
        raise UIError(f"{name}: {msg.replace(str(path), name)}") from exc


def _analyse(view: SonifyView, work: Path, ref: np.ndarray, sr: int, est: np.ndarray,
             sr2: int) -> None:
    if sr2 != sr:
        from auralens.audio import resample

        est = resample(est, sr2, sr)
    from auralens.evaluate.spectral import MIN_COMPARE_SAMPLES, compare_lengths

    waves = [("original", ref), ("sonification", est)]
    view.plots = make_plots(waves, sr, work / "plots")
    info, warning = compare_lengths(ref.shape[-1], est.shape[-1], sr, "the original", "the sonification")
    if int(info["compared_samples"]) < MIN_COMPARE_SAMPLES:
        view.metrics_note = (f"metrics not shown: only {info['compared_samples']} samples of the "
                             "original and the sonification overlap")
        return
    view.metrics = compute_metrics(ref, est, sr)
    if warning:  # the numbers describe the common start only: say so beside them
        view.metrics_note = warning


def window_note(n_in: int, n_out: int, sr: int) -> str | None:
    """A note for the page when the rendition is shorter than the upload, else None.

    :func:`auralens.sonify.render.render` cuts a clip to the extractor's input window
    (``Extractor.max_duration``) and returns exactly the rendered stretch at the upload's
    rate, so a shorter result means the rest of the upload was never sonified.

    Args:
        n_in: samples in the upload.
        n_out: samples in the rendition (same rate).
        sr: that rate in Hz.
    """
    if n_out >= n_in:
        return None
    return (f"only the first {n_out / sr:.2f} s of the {n_in / sr:.2f} s upload were sonified "
            "(the model's input window); the original is cut to the same length")


def _sonify_upload(info: RunInfo, post: str | None, upload_path: str | None,
                   settings: UISettings) -> SonifyView:
    upload = validate_upload(upload_path, settings)
    post = resolve_choice(post, post_choices(info), "post-processing")
    chain = folder_to_chain(post)
    with request_dir(settings, "sonify") as work:  # not pruned while the gate renders
        return _render_upload(info, post, chain, upload, work)


def _render_upload(info: RunInfo, post: str, chain: str | None, upload: Any,
                   work: Path) -> SonifyView:
    """Render a checked upload through the run's gate into ``work`` (:func:`_sonify_upload`)."""
    from auralens.audio import write
    from auralens.sonify import render as render_mod

    try:
        # out_sr: the rendition comes back at the upload's rate, ready to compare
        out = render_mod.render(info.path, upload.wave, upload.sample_rate, post=chain,
                                out_sr=upload.sample_rate)
    except AuralensError as exc:
        return SonifyView(ok=False, status=f"rendering failed: {exc}")
    except Exception as exc:  # noqa: BLE001 - show the failure in the page
        log.exception("render failed for run %s", info.key)
        return SonifyView(ok=False, status=f"rendering failed ({type(exc).__name__}): {exc}")
    wave = np.asarray(out, dtype=np.float32).reshape(-1)
    if wave.size == 0:  # nothing to play or compare with
        return SonifyView(ok=False, status="rendering failed: the renderer returned no samples")
    view = SonifyView(ok=True, status=f"run {md_escape(info.key)} · {md_escape(upload.name)} · "
                                      f"{md_escape(post or 'none')}")
    if upload.flags:  # the loader's flags, worded as on the Imagine tab
        view.status += " · warning: input is " + " and ".join(upload.flags)
    original = upload.wave
    note = window_note(upload.wave.shape[0], wave.shape[0], upload.sample_rate)
    if note:
        # the render covers only the model's input window: show and score the same stretch
        original = upload.wave[: wave.shape[0]]
        view.status += f" · {note}"
    view.original = write(work / "original.wav", original, upload.sample_rate)
    view.sonified = write(work / "sonified.wav", wave, upload.sample_rate)
    try:
        # float WAV holds these samples exactly: analyse the arrays, not the files read back
        _analyse(view, work, np.asarray(original, dtype=np.float32), upload.sample_rate, wave,
                 upload.sample_rate)
    except (OSError, AuralensError) as exc:
        view.status += f" (analysis failed: {md_escape(exc)})"
    why = soundless(original, upload.flags)
    if why is not None:
        # Distances to a silent or constant original score a flat output as perfect (minmax
        # maps any render onto a constant's single value) and anything else as awful: neither
        # says how well the gate sonifies sound.
        if "silent" not in upload.flags:
            view.status += f" · warning: input is {CONSTANT_INPUT}"
        view.metrics = {}
        view.metrics_note = (f"metrics not shown: the input is {why}, so "
                             "distances to it are not meaningful")
    return view
