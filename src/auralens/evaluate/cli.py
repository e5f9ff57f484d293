"""CLI for auralens.evaluate (kept light: heavy imports happen inside commands)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import typer

log = logging.getLogger(__name__)

app = typer.Typer(help="Evaluate sonifications and scene descriptions.", no_args_is_help=True)


def _audio_files(folder: Path, what: str) -> list[Path]:
    """The audio files under ``folder`` (recursive, sorted); a clear error when there are none."""
    from auralens.data.folder import AUDIO_EXTENSIONS, audio_files
    from auralens.evaluate.fad import MetricInputError

    if not folder.is_dir():
        raise MetricInputError(f"{folder}: {what} directory not found")
    files = audio_files(folder)  # the same files every other folder input takes (hidden ones left out)
    if not files:
        raise MetricInputError(f"{folder}: no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))})")
    return files


def _embed_dirs(folders: list[tuple[Path, str]], embedder: object,
                skipped: list[dict[str, str]]) -> list[dict[str, object]]:
    """Frame embeddings ``{relative path: [N, D]}`` per folder.

    Both folders are listed before anything is embedded, so a wrong second path fails at once.
    An unreadable file is skipped and added to ``skipped`` (``{"file", "error"}``) while the
    rest is scored; a folder left with no readable file is an error.
    """
    from auralens.cache import ArrayCache
    from auralens.evaluate.fad import MetricInputError
    from auralens.progress import progress

    listed = [(folder, what, _audio_files(folder, what)) for folder, what in folders]
    cache = ArrayCache(namespace="metric-embeddings")
    out = []
    for folder, what, files in listed:
        frames: dict[str, object] = {}
        for p in progress(files, desc=f"embed {what}"):
            try:
                frames[str(p.relative_to(folder))] = embedder.embed_file(p, cache=cache)  # type: ignore[attr-defined]
            except Exception as exc:  # noqa: BLE001 - one bad file must not sink the folder's score
                log.warning("skipped %s", exc)
                skipped.append({"file": str(p), "error": str(exc)})
        if not frames:
            raise MetricInputError(f"{folder}: none of the {len(files)} audio files could be read")
        out.append(frames)
    return out


def _emit(result: dict[str, object], out: Path | None, command: str,
          skipped: list[dict[str, str]] | None = None) -> None:
    from auralens.io import write_json, write_run_json

    if skipped:
        result["skipped"] = skipped
        log.warning("%d unreadable file(s) skipped; listed under \"skipped\"", len(skipped))
    from auralens.io import to_jsonable

    typer.echo(json.dumps(to_jsonable(result), indent=2))  # NaN → null, as in metrics.json
    if out is not None:
        write_json(out / "metrics.json", result)
        write_run_json(out, command=command, config=result.get("config", {}),
                       models={"metric_embedder": result.get("embedder")})


@app.command()
def fad(
    ref_dir: Path = typer.Argument(..., help="Reference audio folder."),
    eval_dir: Path = typer.Argument(..., help="Evaluated audio folder."),
    embedder: str = typer.Option("logmel", "--embedder", help="Metric embedder spec."),
    shrinkage: str | None = typer.Option(None, "--shrinkage", help="none, ledoit-wolf or a float in [0, 1]."),
    inf: bool = typer.Option(False, "--inf", help="Also extrapolate FAD∞."),
    out: Path | None = typer.Option(None, "--out", help="Write metrics.json + run.json here."),
) -> None:
    """Fréchet Audio Distance between two folders (frames pooled over all files)."""
    from auralens.evaluate.embedders import build_embedder
    from auralens.evaluate.fad import compute_stats, fad_inf, frechet_distance

    shrink: str | float | None = None
    if shrinkage and shrinkage.lower() != "none":
        try:
            shrink = float(shrinkage)
        except ValueError:
            shrink = shrinkage
    emb = build_embedder(embedder)
    skipped: list[dict[str, str]] = []
    ref_frames, est_frames = _embed_dirs([(ref_dir, "reference"), (eval_dir, "evaluated")], emb, skipped)
    ref, est = list(ref_frames.values()), list(est_frames.values())
    rs, es = compute_stats(ref, shrinkage=shrink), compute_stats(est, shrinkage=shrink)
    result: dict[str, object] = {"metric": "fad", "embedder": emb.name, "fad": frechet_distance(rs, es),
                                 "n_ref_frames": rs.n, "n_eval_frames": es.n, "dim": rs.dim,
                                 "shrinkage_ref": rs.shrinkage, "shrinkage_eval": es.shrinkage,
                                 "config": {"ref_dir": str(ref_dir), "eval_dir": str(eval_dir),
                                            "shrinkage": shrinkage}}
    if inf:
        res = fad_inf(rs, est, shrinkage=shrink)
        result.update({"fad_inf": res.fad_inf, "fad_inf_slope": res.slope, "fad_inf_r2": res.r2,
                       "fad_inf_points": res.points})
    _emit(result, out, "evaluate fad", skipped)


@app.command()
def kad(
    ref_dir: Path = typer.Argument(..., help="Reference audio folder."),
    eval_dir: Path = typer.Argument(..., help="Evaluated audio folder."),
    embedder: str = typer.Option("logmel", "--embedder", help="Metric embedder spec."),
    sigma: float | None = typer.Option(None, "--sigma", help="Kernel bandwidth (default: median distance of the reference)."),
    kernel: str = typer.Option("rbf", "--kernel", help="rbf, iq or imq."),
    per_file: bool = typer.Option(False, "--per-file", help="Also score each evaluated file (one σ)."),
    device: str = typer.Option("cpu", "--device", help="torch device: cpu, cuda, cuda:N or auto "
                               "(cuda makes large sets fast)."),
    out: Path | None = typer.Option(None, "--out", help="Write metrics.json + run.json here."),
) -> None:
    """Kernel Audio Distance (unbiased MMD² ×100) between two folders."""
    from auralens.devices import check_device
    from auralens.evaluate import kad as kad_mod
    from auralens.evaluate.embedders import build_embedder

    device = str(check_device(device, what="--device"))  # before any audio is embedded
    emb = build_embedder(embedder)
    skipped: list[dict[str, str]] = []
    ref_frames, est_files = _embed_dirs([(ref_dir, "reference"), (eval_dir, "evaluated")], emb, skipped)
    ref = list(ref_frames.values())
    res = kad_mod.kad(ref, list(est_files.values()), sigma=sigma, kernel=kernel, device=device)
    result: dict[str, object] = {"metric": "kad", "embedder": emb.name, "kad": res.value,
                                 "sigma": res.sigma, "kernel": kernel, "n_ref_frames": res.n_ref,
                                 "n_eval_frames": res.n_eval,
                                 "config": {"ref_dir": str(ref_dir), "eval_dir": str(eval_dir)}}
    if per_file:
        pf = kad_mod.kad_per_file(ref, est_files, sigma=res.sigma, kernel=kernel, device=device)  # type: ignore[arg-type]
        result["per_file"] = {k: v.value for k, v in pf.items()}
    _emit(result, out, "evaluate kad", skipped)


@app.command()
def spectral(
    ref: Path = typer.Argument(..., help="Reference (original) audio file."),
    est: Path = typer.Argument(..., help="Estimate (sonification) audio file."),
    out: Path | None = typer.Option(None, "--out", help="Write metrics.json + run.json here."),
) -> None:
    """Spectral distances, envelope correlation and SI-SDR between two files."""
    from auralens import audio
    from auralens.evaluate.spectral import spectral_metrics

    rw, rsr = audio.load_sr(ref)
    ew, esr = audio.load_sr(est)
    sr = min(rsr, esr)
    m = spectral_metrics(audio.resample(rw, rsr, sr), audio.resample(ew, esr, sr), sr)
    _emit({"metric": "spectral", "sample_rate": sr, **m,
           "config": {"ref": str(ref), "est": str(est)}}, out, "evaluate spectral")
