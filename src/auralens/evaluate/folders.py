"""FAD, KAD and spectral metrics between folders and files: what ``auralens evaluate`` runs.

Each function returns the JSON-ready result the CLI prints (``metric``, the value, frame
counts, ``config`` and, when some file could not be read, ``skipped``: ``[{"file",
"error"}]``); :func:`write_metrics` stores it as ``metrics.json`` + ``run.json``.

Folders are read recursively with :func:`auralens.data.folder.audio_files` (hidden files left
out). Frame embeddings are cached per file (:class:`auralens.cache.ArrayCache`, namespace
``metric-embeddings``), so scoring many runs against one reference embeds it once.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from auralens.evaluate.fad import MetricInputError

log = logging.getLogger(__name__)


def folder_audio(folder: str | Path, what: str = "audio") -> list[Path]:
    """The audio files under ``folder`` (recursive, sorted).

    Raises:
        MetricInputError: the folder is missing or holds no audio file.
    """
    from auralens.data.folder import AUDIO_EXTENSIONS, audio_files

    folder = Path(folder)
    if not folder.is_dir():
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
        skipped: unreadable files are appended here (``{"file", "error"}``) and left out.

    Every folder is listed before anything is embedded, so a wrong second path fails at once.

    Raises:
        MetricInputError: a folder is missing, empty, or has no readable file.
    """
    from auralens.cache import ArrayCache
    from auralens.progress import progress

    listed = [(Path(folder), what, folder_audio(folder, what)) for folder, what in folders]
    cache = ArrayCache(namespace="metric-embeddings")
    out = []
    for folder, what, files in listed:
        frames: dict[str, np.ndarray] = {}
        for p in progress(files, desc=f"embed {what}"):
            try:
                frames[str(p.relative_to(folder))] = embedder.embed_file(p, cache=cache)
            except Exception as exc:  # noqa: BLE001 - one bad file must not sink the folder's score
                log.warning("skipped %s", exc)
                if skipped is not None:
                    skipped.append({"file": str(p), "error": str(exc)})
        if not frames:
            raise MetricInputError(f"{folder}: none of the {len(files)} audio files could be read")
        out.append(frames)
    return out


def _with_skipped(result: dict[str, Any], skipped: list[dict[str, str]]) -> dict[str, Any]:
    if skipped:
        result["skipped"] = skipped
        log.warning("%d unreadable file(s) skipped; listed under \"skipped\"", len(skipped))
    return result


def fad_folders(ref_dir: str | Path, eval_dir: str | Path, *, embedder: str | Any = "logmel",
                shrinkage: str | float | None = None, inf: bool = False) -> dict[str, Any]:
    """Fréchet Audio Distance between two folders, frames pooled over all files.

    Args:
        ref_dir, eval_dir: reference and evaluated audio folders.
        embedder: metric embedder spec (``logmel``, ``clap:…``, any extractor/codec spec) or
            a built embedder.
        shrinkage: ``None``, ``"ledoit-wolf"`` or an intensity in ``[0, 1]`` (see
            :func:`~auralens.evaluate.fad.compute_stats`).
        inf: also extrapolate FAD∞ (``fad_inf``, ``fad_inf_slope``, ``fad_inf_r2``, ``fad_inf_points``).

    Returns:
        ``{"metric": "fad", "embedder", "fad", "n_ref_frames", "n_eval_frames", "dim",
        "shrinkage_ref", "shrinkage_eval", "config"[, "skipped"]}``.
    """
    from auralens.evaluate.embedders import build_embedder
    from auralens.evaluate.fad import compute_stats, fad_inf, frechet_distance

    emb = build_embedder(embedder) if isinstance(embedder, str) else embedder
    skipped: list[dict[str, str]] = []
    ref_frames, est_frames = embed_folders([(ref_dir, "reference"), (eval_dir, "evaluated")], emb, skipped)
    ref, est = list(ref_frames.values()), list(est_frames.values())
    rs, es = compute_stats(ref, shrinkage=shrinkage), compute_stats(est, shrinkage=shrinkage)
    result: dict[str, Any] = {"metric": "fad", "embedder": emb.name, "fad": frechet_distance(rs, es),
                              "n_ref_frames": rs.n, "n_eval_frames": es.n, "dim": rs.dim,
                              "shrinkage_ref": rs.shrinkage, "shrinkage_eval": es.shrinkage,
                              "config": {"ref_dir": str(ref_dir), "eval_dir": str(eval_dir),
                                         "shrinkage": shrinkage}}
    if inf:
        res = fad_inf(rs, est, shrinkage=shrinkage)
        result.update({"fad_inf": res.fad_inf, "fad_inf_slope": res.slope, "fad_inf_r2": res.r2,
                       "fad_inf_points": res.points})
    return _with_skipped(result, skipped)


def kad_folders(ref_dir: str | Path, eval_dir: str | Path, *, embedder: str | Any = "logmel",
                sigma: float | None = None, kernel: str = "rbf", per_file: bool = False,
                device: str = "cpu") -> dict[str, Any]:
    """Kernel Audio Distance (unbiased MMD² × 100) between two folders.

    Args:
        ref_dir, eval_dir: reference and evaluated audio folders.
        embedder: metric embedder spec or a built embedder.
        sigma: kernel bandwidth; ``None`` takes the median pairwise distance of the reference.
        kernel: ``rbf``, ``iq`` or ``imq``.
        per_file: also score each evaluated file against the reference with the same σ
            (``per_file``: ``{relative path: value}``).
        device: torch device (``cpu``, ``cuda``, ``cuda:N``, ``auto``), checked before any
            audio is embedded.

    Returns:
        ``{"metric": "kad", "embedder", "kad", "sigma", "kernel", "n_ref_frames",
        "n_eval_frames", "config"[, "per_file"][, "skipped"]}``.
    """
    from auralens.devices import check_device
    from auralens.evaluate import kad as kad_mod
    from auralens.evaluate.embedders import build_embedder

    device = str(check_device(device, what="device"))
    emb = build_embedder(embedder) if isinstance(embedder, str) else embedder
    skipped: list[dict[str, str]] = []
    ref_frames, est_files = embed_folders([(ref_dir, "reference"), (eval_dir, "evaluated")], emb, skipped)
    ref = list(ref_frames.values())
    res = kad_mod.kad(ref, list(est_files.values()), sigma=sigma, kernel=kernel, device=device)
    result: dict[str, Any] = {"metric": "kad", "embedder": emb.name, "kad": res.value,
                              "sigma": res.sigma, "kernel": kernel, "n_ref_frames": res.n_ref,
                              "n_eval_frames": res.n_eval,
                              "config": {"ref_dir": str(ref_dir), "eval_dir": str(eval_dir)}}
    if per_file:
        pf = kad_mod.kad_per_file(ref, est_files, sigma=res.sigma, kernel=kernel, device=device)
        result["per_file"] = {k: v.value for k, v in pf.items()}
    return _with_skipped(result, skipped)


def spectral_files(ref: str | Path, est: str | Path) -> dict[str, Any]:
    """Spectral distances, envelope correlation and SI-SDR between two audio files.

    Both are mixed to mono and resampled to the lower of their two rates first.

    Returns:
        ``{"metric": "spectral", "sample_rate", <spectral_metrics keys>, "config"}``.
    """
    from auralens import audio
    from auralens.evaluate.spectral import spectral_metrics

    rw, rsr = audio.load_sr(ref)
    ew, esr = audio.load_sr(est)
    sr = min(rsr, esr)
    m = spectral_metrics(audio.resample(rw, rsr, sr), audio.resample(ew, esr, sr), sr)
    return {"metric": "spectral", "sample_rate": sr, **m, "config": {"ref": str(ref), "est": str(est)}}


def write_metrics(result: dict[str, Any], out: str | Path, command: str) -> Path:
    """Write ``result`` as ``OUT/metrics.json`` (NaN as null) and a ``run.json`` beside it."""
    from auralens.io import write_json, write_run_json

    out = Path(out)
    write_json(out / "metrics.json", result)
    write_run_json(out, command=command, config=result.get("config", {}),
                   models={"metric_embedder": result.get("embedder")})
    return out / "metrics.json"
