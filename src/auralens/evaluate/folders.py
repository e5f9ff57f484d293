"""FAD, KAD and spectral metrics between folders and files: what ``auralens evaluate`` runs.

Each function returns the JSON-ready result the CLI prints (``metric``, the value, frame
counts, ``config`` and, when some file could not be read, ``skipped``: ``[{"file",
"error"}]``); :func:`write_metrics` stores it as ``metrics.json`` + ``run.json``.

Paths in ``config`` are absolute (resolved), so a ``metrics.json`` read later from another
directory still names its inputs. Pass a :class:`auralens.io.Timer` to collect the stages'
timings for ``run.json``.

Folders are read recursively with :func:`auralens.data.folder.audio_files` (hidden files left
out). Frame embeddings are cached per file (:class:`auralens.cache.ArrayCache`, namespace
``metric-embeddings``), so scoring many runs against one reference embeds it once.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from auralens.evaluate.fad import InsufficientFramesError, MetricInputError
from auralens.io import Timer

log = logging.getLogger(__name__)


def _stage(timer: Timer | None, name: str) -> contextlib.AbstractContextManager[None]:
    return timer(name) if timer is not None else contextlib.nullcontext()


def _abs(path: str | Path) -> str:
    """``path`` made absolute (symlinks resolved), as recorded in ``config``."""
    return str(Path(path).expanduser().resolve())


def check_frames(folder: str | Path, what: str, frames: dict[str, np.ndarray], need: int,
                 metric: str) -> None:
    """Refuse a folder whose clips give fewer than ``need`` embedding frames in all.

    Args:
        folder: the folder, named in the message.
        what: ``"reference"`` or ``"evaluated"``.
        frames: ``{file: [frames, dim]}`` from :func:`embed_folders`.
        need: frames the metric needs (2 for a covariance or an unbiased MMD).
        metric: ``"FAD"`` / ``"KAD"``, for the message.

    Raises:
        InsufficientFramesError: naming the folder and each file's frame count (first five).
    """
    total = sum(int(f.shape[0]) for f in frames.values())
    if total >= need:
        return
    listed = ", ".join(f"{name}: {int(f.shape[0])}" for name, f in list(frames.items())[:5])
    more = f" and {len(frames) - 5} more" if len(frames) > 5 else ""
    raise InsufficientFramesError(
        f"{folder}: the {what} clips are too short for {metric}: {total} embedding frame(s) in "
        f"all ({listed}{more}); {metric} needs at least {need} — use longer clips or more of them")


@contextlib.contextmanager
def _naming(folder: str | Path, what: str) -> Iterator[None]:
    """Prefix a metric's input error with the folder it came from."""
    try:
        yield
    except InsufficientFramesError as exc:
        raise InsufficientFramesError(f"{folder} ({what}): {exc}") from exc


def folder_audio(folder: str | Path, what: str = "audio") -> list[Path]:
    """The audio files under ``folder`` (recursive, sorted).

    Raises:
        MetricInputError: the folder is missing, not a directory or holds no audio file.
    """
    from auralens.data.folder import AUDIO_EXTENSIONS, audio_files

    folder = Path(folder)
    if not folder.is_dir():
        if folder.exists():
            raise MetricInputError(f"{folder}: the {what} path is not a directory; "
                                   "pass a folder of audio files")
        raise MetricInputError(f"{folder}: {what} directory not found")
    files = audio_files(folder)
    if not files:
        raise MetricInputError(f"{folder}: no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))})")
    return files


def embed_folders(folders: list[tuple[str | Path, str]], embedder: Any,
                  skipped: list[dict[str, str]] | None = None) -> list[dict[str, np.ndarray]]:
    """Frame embeddings ``{path relative to the folder: [frames, dim]}`` per folder.

    Args:
        folders: ``(folder, what)`` pairs; ``what`` names the folder in messages.
        embedder: a :class:`~auralens.evaluate.embedders.MetricEmbedder`.
        skipped: unreadable files, and files whose embedding is not finite, are appended here
            (``{"file", "error"}``) and left out.

    Every folder is listed before anything is embedded, so a wrong second path fails at once.

    Raises:
        MetricInputError: a folder is missing, empty, or has no readable file.
        SpecError: a bad embedder option (not a per-file problem).
    """
    from auralens.cache import ArrayCache
    from auralens.progress import progress
    from auralens.specs import SpecError

    listed = [(Path(folder), what, folder_audio(folder, what)) for folder, what in folders]
    cache = ArrayCache(namespace="metric-embeddings")
    out = []
    for folder, what, files in listed:
        frames: dict[str, np.ndarray] = {}
        errors: list[str] = []
        for p in progress(files, desc=f"embed {what}"):
            try:
                emb = embedder.embed_file(p, cache=cache)
                if not np.all(np.isfinite(emb)):
                    # e.g. log-mel of digital silence with floor=0: -inf would sink the metric
                    raise MetricInputError(f"{p}: its embedding contains NaN or inf; "
                                           "the file cannot be scored")
                frames[str(p.relative_to(folder))] = emb
            except SpecError:
                raise  # a bad embedder option fails every file: report it, not N skips
            except Exception as exc:  # noqa: BLE001 - one bad file must not sink the folder's score
                log.warning("skipped %s", exc)
                errors.append(str(exc))
                if skipped is not None:
                    skipped.append({"file": str(p), "error": str(exc)})
        if not frames:
            raise MetricInputError(f"{folder}: none of the {len(files)} audio files could be read "
                                   f"(first: {errors[0]})")
        out.append(frames)
    return out


def _with_skipped(result: dict[str, Any], skipped: list[dict[str, str]]) -> dict[str, Any]:
    if skipped:
        result["skipped"] = skipped
        log.warning("%d unreadable file(s) skipped; listed under \"skipped\"", len(skipped))
    return result


def _embed_pair(ref_dir: str | Path, eval_dir: str | Path, embedder: str | Any,
                timer: Timer | None, metric: str) -> tuple[Any, dict, dict, list[dict[str, str]]]:
    """Build the embedder, embed both folders (the ``embed`` timing) and check that each has
    the 2 frames a set needs for ``metric``; returns ``(embedder, ref, evaluated, skipped)``."""
    from auralens.evaluate.embedders import build_embedder

    emb = build_embedder(embedder) if isinstance(embedder, str) else embedder
    skipped: list[dict[str, str]] = []
    with _stage(timer, "embed"):
        ref_frames, est_frames = embed_folders([(ref_dir, "reference"), (eval_dir, "evaluated")],
                                               emb, skipped)
    check_frames(ref_dir, "reference", ref_frames, 2, metric)
    check_frames(eval_dir, "evaluated", est_frames, 2, metric)
    return emb, ref_frames, est_frames, skipped


def fad_folders(ref_dir: str | Path, eval_dir: str | Path, *, embedder: str | Any = "logmel",
                shrinkage: str | float | None = None, inf: bool = False,
                timer: Timer | None = None) -> dict[str, Any]:
    """Fréchet Audio Distance between two folders, frames pooled over all files.

    Args:
        ref_dir, eval_dir: reference and evaluated audio folders.
        embedder: metric embedder spec (``logmel``, ``clap:…``, any extractor/codec spec) or
            a built embedder.
        shrinkage: ``None``, ``"ledoit-wolf"`` or an intensity in ``[0, 1]`` (see
            :func:`~auralens.evaluate.fad.compute_stats`).
        inf: also extrapolate FAD∞ (``fad_inf``, ``fad_inf_slope``, ``fad_inf_r2``, ``fad_inf_points``).
        timer: collects the ``embed`` and ``metric`` timings.

    Returns:
        ``{"metric": "fad", "embedder", "embedder_revision", "fad", "n_ref_frames", "n_eval_frames", "dim",
        "shrinkage_ref", "shrinkage_eval", "config"[, "warnings"][, "skipped"]}``; ``warnings``
        when FAD∞ is negative or its fit poor (:func:`~auralens.evaluate.fad.fad_inf_warnings`).

    Raises:
        InsufficientFramesError: a folder's clips give too few frames (the folder named).
    """
    from auralens.evaluate.fad import check_shrinkage, compute_stats, fad_inf, frechet_distance

    check_shrinkage(shrinkage)  # a typo must not cost the embedding of both folders first
    emb, ref_frames, est_frames, skipped = _embed_pair(ref_dir, eval_dir, embedder, timer, "FAD")
    ref, est = list(ref_frames.values()), list(est_frames.values())
    with _stage(timer, "metric"):
        with _naming(ref_dir, "reference"):
            rs = compute_stats(ref, shrinkage=shrinkage)
        with _naming(eval_dir, "evaluated"):
            es = compute_stats(est, shrinkage=shrinkage)
        result: dict[str, Any] = {
            "metric": "fad", "embedder": emb.name, "embedder_revision": emb.revision,
            "fad": frechet_distance(rs, es),
            "n_ref_frames": rs.n, "n_eval_frames": es.n, "dim": rs.dim,
            "shrinkage_ref": rs.shrinkage, "shrinkage_eval": es.shrinkage,
            "config": {"ref_dir": _abs(ref_dir), "eval_dir": _abs(eval_dir), "embedder": emb.name,
                       "shrinkage": shrinkage, "inf": inf}}
        if inf:
            with _naming(eval_dir, "evaluated"):
                res = fad_inf(rs, est, shrinkage=shrinkage)
            result.update({"fad_inf": res.fad_inf, "fad_inf_slope": res.slope, "fad_inf_r2": res.r2,
                           "fad_inf_points": res.points})
            if res.warnings:  # a negative FAD∞ or a poor fit (logged by fad_inf)
                result["warnings"] = list(res.warnings)
    return _with_skipped(result, skipped)


def kad_folders(ref_dir: str | Path, eval_dir: str | Path, *, embedder: str | Any = "logmel",
                sigma: float | None = None, kernel: str = "rbf", per_file: bool = False,
                device: str = "cpu", timer: Timer | None = None) -> dict[str, Any]:
    """Kernel Audio Distance (unbiased MMD² × 100) between two folders.

    Args:
        ref_dir, eval_dir: reference and evaluated audio folders.
        embedder: metric embedder spec or a built embedder.
        sigma: kernel bandwidth; ``None`` takes the median pairwise distance of the reference.
        kernel: ``rbf``, ``iq`` or ``imq``.
        per_file: also score each evaluated file against the reference with the same σ
            (``per_file``: ``{relative path: value}``; a file with fewer than 2 frames gets
            null and is listed under ``per_file_too_short``).
        device: torch device (``cpu``, ``cuda``, ``cuda:N``, ``auto``), checked before any
            audio is embedded.
        timer: collects the ``embed`` and ``metric`` timings.

    Returns:
        ``{"metric": "kad", "embedder", "embedder_revision", "kad", "sigma", "kernel", "n_ref_frames",
        "n_eval_frames", "config"[, "warnings"][, "per_file"][, "skipped"]}``; ``warnings``
        when a set has fewer than :data:`~auralens.evaluate.kad.FEW_FRAMES` frames.

    Raises:
        InsufficientFramesError: a folder's clips give fewer than 2 frames (the folder named).
    """
    from auralens.devices import check_device
    from auralens.evaluate import kad as kad_mod

    device = str(check_device(device, what="device"))
    kad_mod.check_kernel(sigma, kernel)  # before embedding, like the device
    emb, ref_frames, est_files, skipped = _embed_pair(ref_dir, eval_dir, embedder, timer, "KAD")
    ref = list(ref_frames.values())
    with _stage(timer, "metric"):
        res = kad_mod.kad(ref, list(est_files.values()), sigma=sigma, kernel=kernel, device=device)
        result: dict[str, Any] = {
            "metric": "kad", "embedder": emb.name, "embedder_revision": emb.revision,
            "kad": res.value, "sigma": res.sigma,
            "kernel": kernel, "n_ref_frames": res.n_ref, "n_eval_frames": res.n_eval,
            "config": {"ref_dir": _abs(ref_dir), "eval_dir": _abs(eval_dir), "embedder": emb.name,
                       "sigma": sigma, "kernel": kernel, "per_file": per_file, "device": device}}
        if min(res.n_ref, res.n_eval) < kad_mod.FEW_FRAMES:
            few = (f"only {res.n_ref} reference and {res.n_eval} evaluated embedding frames: a KAD "
                   f"from fewer than {kad_mod.FEW_FRAMES} frames a set is a very noisy estimate; "
                   "use longer clips or more of them")
            log.warning("%s", few)
            result["warnings"] = [few]
        if per_file:
            # An unbiased MMD needs 2 frames per set: a shorter file is reported, not fatal.
            short = sorted(k for k, v in est_files.items() if v.shape[0] < 2)
            scored = {k: v for k, v in est_files.items() if k not in short}
            pf = kad_mod.kad_per_file(ref, scored, sigma=res.sigma, kernel=kernel, device=device)
            result["per_file"] = {k: (pf[k].value if k in pf else None) for k in est_files}
            if short:
                result["per_file_too_short"] = short
                log.warning("%d evaluated file(s) shorter than 2 embedding frames have no "
                            "per-file KAD; listed under \"per_file_too_short\"", len(short))
    return _with_skipped(result, skipped)


def spectral_files(ref: str | Path, est: str | Path, timer: Timer | None = None) -> dict[str, Any]:
    """Spectral distances, envelope correlation and SI-SDR between two audio files.

    Both are mixed to mono and resampled to the lower of their two rates first, then the first
    ``compared_samples`` of each are compared (the shorter file's length). Lengths that differ
    by more than one analysis frame (:data:`~auralens.evaluate.spectral.ANALYSIS_FRAME`
    samples) add a line to ``warnings`` (and the log), as do metrics that are undefined (null)
    for a silent or constant reference
    (:func:`~auralens.evaluate.spectral.undefined_warning`).

    Returns:
        ``{"metric": "spectral", "sample_rate", "compared_samples", "compared_s",
        "ref_duration_s", "est_duration_s", "warnings", <spectral_metrics keys>, "config"}``.

    Raises:
        MetricInputError: a file shorter than
            :data:`~auralens.evaluate.spectral.MIN_COMPARE_SAMPLES` samples (at the compared
            rate), too short for the metrics to mean anything.
    """
    from auralens import audio
    from auralens.evaluate.spectral import (
        MIN_COMPARE_SAMPLES,
        compare_lengths,
        spectral_metrics,
        undefined_warning,
    )

    with _stage(timer, "load"):
        rw, rsr = audio.load_sr(ref)
        ew, esr = audio.load_sr(est)
        sr = min(rsr, esr)
        rw, ew = audio.resample(rw, rsr, sr), audio.resample(ew, esr, sr)
    for path, wave in ((ref, rw), (est, ew)):
        if wave.shape[-1] < MIN_COMPARE_SAMPLES:
            raise MetricInputError(
                f"{path}: too short for the spectral metrics ({wave.shape[-1]} samples, "
                f"{1000 * wave.shape[-1] / sr:.1f} ms at {sr} Hz); they need at least "
                f"{MIN_COMPARE_SAMPLES} samples ({1000 * MIN_COMPARE_SAMPLES / sr:.0f} ms)")
    lengths, warning = compare_lengths(rw.shape[-1], ew.shape[-1], sr, str(ref), str(est))
    n = int(lengths["compared_samples"])
    with _stage(timer, "metric"):
        m = spectral_metrics(rw[:n], ew[:n], sr)  # the length warning is this command's own
    undefined = undefined_warning(rw[:n], m, f"reference {ref}", est=ew[:n], est_name=f"estimate {est}")
    warnings = [line for line in (warning, undefined) if line]
    for line in warnings:
        log.warning("%s", line)
    return {"metric": "spectral", "sample_rate": sr, **lengths, "warnings": warnings, **m,
            "config": {"ref": _abs(ref), "est": _abs(est)}}


def check_out_dir(out: str | Path) -> Path:
    """Make ``out`` (parents too) and prove it writable with a probe file, before any work;
    then remove the temporary files that a killed writer of ``metrics.json`` / ``run.json``
    left in it (:func:`auralens.io.remove_stale_temps`: a live writer's are kept; its
    subfolders are not searched).

    Raises:
        AuralensError: ``out`` is, or lies under, a file, or cannot be created or written.
    """
    import tempfile

    from auralens.errors import AuralensError
    from auralens.io import check_out_dir as check_not_a_file
    from auralens.io import remove_stale_temps

    out = Path(out)
    check_not_a_file(out, AuralensError)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-check-"):
            pass
    except OSError as exc:
        raise AuralensError(f"{out}: output directory is not writable "
                            f"({exc.strerror or exc}); choose another --out") from exc
    remove_stale_temps(out, recursive=False)  # this command writes only at its top level
    return out


def write_metrics(result: dict[str, Any], out: str | Path, command: str,
                  timings: dict[str, float] | None = None) -> Path:
    """Write ``result`` as ``OUT/metrics.json`` (NaN as null) and a ``run.json`` beside it.

    ``run.json`` holds the resolved ``config`` (absolute paths), the working directory the
    command ran in, and ``timings`` (seconds per stage).
    """
    from auralens.io import write_json, write_run_json

    out = Path(out)
    write_json(out / "metrics.json", result)
    write_run_json(out, command=command, config=result.get("config", {}),
                   models={"metric_embedder": {"name": result.get("embedder"),
                                               "revision": result.get("embedder_revision", "")}}
                   if result.get("embedder") else {}, timings=timings,
                   extra={"cwd": os.getcwd()})
    return out / "metrics.json"
