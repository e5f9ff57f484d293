"""CLI for auralens.data (kept light: heavy imports happen inside commands)."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Datasets: synthesize, mix, split and merge.", no_args_is_help=True)


def _parse_folds(text: str | None) -> list[int] | None:
    from auralens.data import DatasetError

    if text is None or not text.strip():
        return None
    try:
        return [int(f) for f in text.replace(" ", "").split(",") if f]
    except ValueError:
        raise DatasetError(f"--folds must be comma-separated integers like 1,2,3, got {text!r}") from None


def _histogram_lines(hist: dict[int, int]) -> list[str]:
    total = sum(hist.values()) or 1
    width = max(hist.values(), default=1)
    return [f"  {k} source{'s' if k != 1 else ' '}: {v:5d}  {'#' * max(1, round(30 * v / width))}"
            f" ({100 * v / total:.0f}%)" for k, v in hist.items()]


@app.command("synth")
def synth_cmd(
    out: Path = typer.Option(..., "--out", help="Output directory (ESC-50 layout; a rerun with the same "
                             "settings resumes, one with other settings is refused)."),
    clips_per_class: int = typer.Option(12, "--clips-per-class", help="Clips per class (at most 1000)."),
    seed: int = typer.Option(42, "--seed", min=0, help="Library seed."),
    sample_rate: int = typer.Option(22050, "--sample-rate", help="Hz."),
    duration: float = typer.Option(5.0, "--duration", help="Seconds per clip: at most 600, and at "
                                   "sample rates above 48 kHz at most 600 × 48,000 samples (e.g. "
                                   "300 s at 96 kHz)."),
    classes: str | None = typer.Option(None, "--classes", help="Comma-separated subset of the classes."),
) -> None:
    """Write a procedural labelled sound library (audio/*.wav + meta/esc50.csv)."""
    from auralens.data.synth import SYNTH_CLASSES, synthesize
    from auralens.io import Timer, read_json

    names = [c.strip() for c in classes.split(",") if c.strip()] if classes is not None else None
    if names is not None and not names:
        raise typer.BadParameter("names no class; give a comma list of classes", param_hint="--classes")
    timer = Timer()
    with timer("synth"):
        synthesize(out, clips_per_class=clips_per_class, seed=seed, sample_rate=sample_rate,
                   duration=duration, classes=names)
    n_classes = len(names or SYNTH_CLASSES)
    n_new = read_json(out / "run.json")["n_new"]  # synthesize wrote run.json
    kept = f" ({n_classes * clips_per_class - n_new} already there)" if n_new < n_classes * clips_per_class else ""
    typer.echo(f"{n_classes * clips_per_class} clips of {n_classes} classes written to {out}{kept} "
               f"in {timer.timings['synth']:.1f} s")


@app.command("mix")
def mix_cmd(
    src: Path = typer.Argument(..., help="Source dataset: ESC-50-layout folder or a folder of labelled audio."),
    out: Path = typer.Option(..., "--out", help="Output directory (FUSS layout; resumes)."),
    n: int = typer.Option(..., "--n", min=1, help="Number of mixtures."),
    seed: int = typer.Option(0, "--seed", min=0, help="Recipe seed."),
    no_reverb: bool = typer.Option(False, "--no-reverb", help="Skip the room simulation (dry sources)."),
    folds: str | None = typer.Option(None, "--folds", help="Use only these folds, e.g. 1,2,3."),
    split: str = typer.Option("train", "--split", help="Split folder name (train / validation / eval)."),
    max_sources: int = typer.Option(4, "--max-sources", help="Most sources per mixture."),
    min_sources: int = typer.Option(1, "--min-sources", help="Fewest sources per mixture."),
    sample_rate: int = typer.Option(16000, "--sample-rate", help="Hz."),
    duration: float = typer.Option(10.0, "--duration", help="Seconds per mixture: at most 600, and "
                                   "at sample rates above 48 kHz at most 600 × 48,000 samples (e.g. "
                                   "300 s at 96 kHz)."),
) -> None:
    """Make FUSS-recipe mixtures (background + foreground events in simulated rooms)."""
    from auralens.data import detect_layout
    from auralens.data.mix import build_mixtures, count_histogram
    from auralens.io import Timer, read_json

    detect_layout(src)  # one-line error for a missing dataset before anything is created
    fold_list = _parse_folds(folds)
    timer = Timer()
    with timer("mix"):
        records = build_mixtures(src, out, n=n, seed=seed, sample_rate=sample_rate, duration=duration,
                                 max_sources=max_sources, min_sources=min_sources, reverb=not no_reverb,
                                 folds=fold_list, split=split)
    hist = count_histogram(records)
    n_errors = read_json(out / "run.json")["n_errors"]  # build_mixtures wrote run.json
    typer.echo(f"{len(records)} mixtures in {out / split} ({timer.timings['mix']:.1f} s)")
    typer.echo("source-count histogram:")
    for line in _histogram_lines(hist):
        typer.echo(line)
    if n_errors:
        typer.echo(f"{n_errors} clip(s) skipped; see {out / 'errors.jsonl'}")


@app.command("split")
def split_cmd(
    data: Path = typer.Argument(..., help="Dataset: ESC-50-layout folder or a folder of labelled audio."),
    out: Path = typer.Option(..., "--out", help="Directory for train.txt, val.txt, test.txt."),
    seed: int = typer.Option(42, "--seed", min=0, help="Split seed."),
    ratios: str = typer.Option("0.8,0.1,0.1", "--ratios", help="train,val,test fractions (summing to 1)."),
) -> None:
    """Write a deterministic, label-stratified train/val/test split."""
    import math

    from auralens.data import DatasetError, load_dataset
    from auralens.data.esc50 import SPLITS, make_splits, write_splits
    from auralens.data.folder import check_out_owner
    from auralens.io import check_out_dir, write_run_json

    try:
        r = tuple(float(x) for x in ratios.split(","))
        if len(r) != 3:
            raise ValueError
    except ValueError:
        raise DatasetError(f"--ratios must be three numbers like 0.8,0.1,0.1, got {ratios!r}") from None
    if not all(math.isfinite(x) and x >= 0 for x in r):
        raise DatasetError(f"--ratios must be three non-negative numbers, got {ratios!r}")
    if abs(sum(r) - 1) > 1e-6:
        raise DatasetError(f"--ratios must sum to 1, got {ratios!r} (sum {sum(r):g})")
    check_out_dir(out, DatasetError, "; choose another --out")
    split_files = {f"{name}.txt" for name in SPLITS} | {"run.json"}
    check_out_owner(out, "data split", lambda rel: rel.as_posix() in split_files, DatasetError)
    clips = load_dataset(data)
    splits = make_splits(clips, seed=seed, ratios=r)  # type: ignore[arg-type]
    write_splits(splits, out)
    write_run_json(out, command="data split", seed=seed,
                   config={"data": str(data), "ratios": list(r)},
                   extra={"counts": {k: len(v) for k, v in splits.items()}})
    typer.echo(" ".join(f"{k}={len(v)}" for k, v in splits.items()) + f" written to {out}")


@app.command("merge")
def merge_cmd(
    parts: list[Path] = typer.Argument(..., help="Shard results: results.jsonl files or folders holding one "
                                       "(e.g. OUT/shards/*)."),
    out: Path = typer.Option(..., "--out", help="Merged JSONL file to write."),
    key: str = typer.Option("id", "--key", help="Record field that identifies an item (last part wins)."),
) -> None:
    """Join the JSONL results of sharded runs (`--shard i/n`) into one file, sorted by --key.

    Parts whose records carry different settings fingerprints are refused.
    """
    from auralens.shard import merge_jsonl

    n = merge_jsonl(parts, out, key=key)
    typer.echo(f"{n} records from {len(parts)} part(s) written to {out}")
