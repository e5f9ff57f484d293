"""CLI for auralens.evaluate (kept light: heavy imports happen inside commands)."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import typer

from auralens.io import Timer

log = logging.getLogger(__name__)

app = typer.Typer(help="Evaluate sonifications and scene descriptions.", no_args_is_help=True)


def _start(out: Path | None) -> Timer:
    """Check ``--out`` is a writable directory before any audio is read (a read-only folder
    must not cost the whole metric first), and start the run's timer."""
    from auralens.evaluate.folders import check_out_dir

    if out is not None:
        check_out_dir(out)
    return Timer()


def _emit(result: dict[str, object], out: Path | None, command: str, timer: Timer,
          started: float) -> None:
    """Print ``result`` as JSON (NaN → null, as in metrics.json) and store it under ``out``
    with the stage timings and the total."""
    from auralens.evaluate.folders import write_metrics
    from auralens.io import to_jsonable

    typer.echo(json.dumps(to_jsonable(result), indent=2))
    if out is not None:
        timings = {**timer.timings, "total": time.perf_counter() - started}
        write_metrics(result, out, command, timings=timings)


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
    from auralens.evaluate.folders import fad_folders

    started = time.perf_counter()
    timer = _start(out)
    shrink: str | float | None = None
    if shrinkage and shrinkage.lower() != "none":
        try:
            shrink = float(shrinkage)
        except ValueError:
            shrink = shrinkage
    _emit(fad_folders(ref_dir, eval_dir, embedder=embedder, shrinkage=shrink, inf=inf, timer=timer),
          out, "evaluate fad", timer, started)


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
    from auralens.evaluate.folders import kad_folders

    started = time.perf_counter()
    device = str(check_device(device, what="--device"))  # named as on the command line
    timer = _start(out)
    _emit(kad_folders(ref_dir, eval_dir, embedder=embedder, sigma=sigma, kernel=kernel,
                      per_file=per_file, device=device, timer=timer),
          out, "evaluate kad", timer, started)


@app.command()
def spectral(
    ref: Path = typer.Argument(..., help="Reference (original) audio file."),
    est: Path = typer.Argument(..., help="Estimate (sonification) audio file."),
    out: Path | None = typer.Option(None, "--out", help="Write metrics.json + run.json here."),
) -> None:
    """Spectral distances, envelope correlation and SI-SDR between two files."""
    from auralens.evaluate.folders import spectral_files

    started = time.perf_counter()
    timer = _start(out)
    _emit(spectral_files(ref, est, timer=timer), out, "evaluate spectral", timer, started)
