"""CLI for separation: ``auralens separate MIX.wav`` (default ``run``), ``batch``, ``train``, ``eval``,
``average``, ``grow``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from auralens.cli_utils import default_group

if TYPE_CHECKING:
    from auralens.scene.separate.activity import ActivityConfig

app = typer.Typer(help="Separate a sound mixture into sources; train and evaluate separators. "
                       "'auralens separate MIX.wav' is short for 'auralens separate run MIX.wav'.",
                  cls=default_group("run"), no_args_is_help=True)

_SEP_HELP = ("Separator spec: tdcnpp (committed tiny checkpoint), tdcnpp:/path/ckpt.safetensors, "
             "nmf, oracle-irm / oracle-ibm (eval only); options after @, e.g. "
             "tdcnpp@chunk=10,overlap=1,device=cuda.")


_THRESHOLD = typer.Option(0.1, "--threshold", min=0.0, help="Activity rule: (Σ|s|)·max|s| threshold.")
_MIN_RMS = typer.Option(0.1, "--min-rms-ratio", min=0.0, help="Activity rule: RMS ≥ this × mixture RMS.")
_RULE = typer.Option("study", "--rule", help="Activity rule: study, relative_db or frames "
                     "(on the 96-mixture benchmark they recover the true source count about "
                     "equally often: study 0.41, relative_db 0.41, frames 0.40; see "
                     "docs/performance.md).")


def _activity(rule: str, threshold: float, min_rms_ratio: float) -> ActivityConfig:
    from auralens.scene.separate.activity import ActivityConfig

    try:
        return ActivityConfig(rule=rule, threshold=threshold, min_rms_ratio=min_rms_ratio)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--rule") from None


@app.command("run")
def run_cmd(
    mix: Path = typer.Argument(..., help="Mixture audio file (any rate; resampled to 16 kHz; m4a/aac and video soundtracks need ffmpeg)."),
    out: Path = typer.Option(..., "--out", help="Output directory."),
    separator: str = typer.Option("tdcnpp", "--separator", "-s", help=_SEP_HELP),
    threshold: float = _THRESHOLD, min_rms_ratio: float = _MIN_RMS, rule: str = _RULE,
) -> None:
    """Separate MIX into OUT/sources/source{k}.wav with activity.json and summary.json."""
    from auralens.scene.separate.run import separate_file

    summary = separate_file(mix, out, separator=separator,
                            activity=_activity(rule, threshold, min_rms_ratio))
    typer.echo(f"{summary['n_kept']} of {summary['n_estimates']} estimates kept; written to {out}")


@app.command("batch")
def batch_cmd(
    source: Path = typer.Argument(..., help="Folder of audio files, FUSS folder/manifest.jsonl, "
                                  "or a text file with one audio path per line."),
    out: Path = typer.Option(..., "--out", help="Output directory (items/<id>/, results.jsonl, errors.jsonl)."),
    separator: str = typer.Option("tdcnpp", "--separator", "-s", help=_SEP_HELP),
    threshold: float = _THRESHOLD, min_rms_ratio: float = _MIN_RMS, rule: str = _RULE,
    limit: int | None = typer.Option(None, "--limit", min=1, help="Only the first N inputs (by id)."),
    shard: str | None = typer.Option(None, "--shard", help="Only shard i/n of the inputs (0-based, "
                                     "e.g. 1/8; 'env': SLURM array); results go to OUT/shards/part-i-of-n."),
) -> None:
    """Separate every mixture of SOURCE with one loaded model (resumable; failures go to errors.jsonl).

    The closing summary counts over the whole job, items finished by an earlier run included.
    """
    from auralens.io import batch_done_line
    from auralens.scene.separate.run import separate_batch
    from auralens.shard import parse_shard, shard_dir

    parsed = parse_shard(shard)
    separate_batch(source, out, separator, limit=limit, shard=parsed,
                   activity=_activity(rule, threshold, min_rms_ratio))
    typer.echo(batch_done_line(shard_dir(out, parsed)))


@app.command("train")
def train_cmd(
    data: Path = typer.Argument(..., help="ESC-50-layout folder (dynamic mixing) or FUSS-layout folder."),
    out: Path = typer.Option(..., "--out", help="Run directory (resumes when it holds last.safetensors and last_state.pt)."),
    preset: str | None = typer.Option(None, "--preset",
                                      help="Model size preset: tiny, small or fuss (default: the config's, else tiny)."),
    config: Path | None = typer.Option(None, "--config", help="YAML with TrainConfig fields."),
    steps: int | None = typer.Option(None, "--steps", help="Total optimizer steps."),
    batch_size: int | None = typer.Option(None, "--batch-size"),
    crop: float | None = typer.Option(None, "--crop", help="Training crop in seconds."),
    lr: float | None = typer.Option(None, "--lr"),
    seed: int | None = typer.Option(None, "--seed", min=0),
    init: Path | None = typer.Option(None, "--init", help="Start from this checkpoint."),
    set_: list[str] = typer.Option([], "--set", help="Override a config key: key=value (model.x=…)."),
) -> None:
    """Train a TDCN++ with the PIT FUSS loss; validation SI-SNRi every epoch."""
    from auralens.scene.separate.run import train_config
    from auralens.scene.separate.train import train

    overrides = {k: v for k, v in {"preset": preset, "steps": steps, "batch_size": batch_size,
                                   "crop_seconds": crop, "lr": lr, "seed": seed}.items()
                 if v is not None}
    cfg = train_config(config, overrides, set_)
    result = train(data, out, cfg, init=init)
    best = result["best"]
    typer.echo(f"best: step {best.get('step')} val MSi {_db(best.get('val_MSi'))}, "
               f"1S {_db(best.get('val_1S'))} → {out / 'best.safetensors'}")


@app.command("average")
def average_cmd(
    checkpoints: list[Path] = typer.Argument(..., help="TDCN++ checkpoints of one model (e.g. RUN/keep/*.safetensors)."),
    out: Path = typer.Option(..., "--out", help="Averaged checkpoint to write."),
) -> None:
    """Average the weights of several checkpoints of one training run."""
    from auralens.scene.separate.tdcnpp import average_checkpoints

    average_checkpoints(list(checkpoints), out)
    typer.echo(f"averaged {len(checkpoints)} checkpoints → {out}")


@app.command("grow")
def grow_cmd(
    checkpoint: Path = typer.Argument(..., help="TDCN++ checkpoint to deepen."),
    out: Path = typer.Option(..., "--out", help="Deeper checkpoint to write."),
    repeats: int = typer.Option(..., "--repeats", help="Repeats of the dilation ladder in the new network."),
) -> None:
    """Deepen a trained TDCN++ by whole repeats without changing its output (new blocks start as the identity).

    Train it on with ``separate train --init OUT --set model.repeats=N`` (or ``model: {repeats: N}``
    in the config).
    """
    from auralens.scene.separate.tdcnpp import grow_checkpoint

    grow_checkpoint(checkpoint, out, repeats)
    typer.echo(f"grown to {repeats} repeats → {out}")


def _db(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:.2f} dB"


@app.command("eval")
def eval_cmd(
    data: Path = typer.Argument(..., help="FUSS-layout folder/manifest.jsonl, or an ESC-50 folder."),
    out: Path = typer.Option(..., "--out", help="Output directory."),
    separator: str = typer.Option("tdcnpp", "--separator", "-s", help=_SEP_HELP),
    split: str | None = typer.Option(None, "--split", help="FUSS input: manifest split to evaluate."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Evaluate at most this many mixtures."),
    folds: str | None = typer.Option(None, "--folds", help="ESC-50 input: folds to mix from "
                                     "(comma list; default 4)."),
    n: int | None = typer.Option(None, "--n", min=1, help="ESC-50 input: number of mixtures to "
                                 "build (default 40)."),
    seconds: float | None = typer.Option(None, "--seconds", min=0.1, help="ESC-50 input: mixture "
                                         "length, 0.1 to 600 s (default 10)."),
    bss: bool = typer.Option(True, "--bss/--no-bss", help="Also compute SDR/SIR/SAR."),
) -> None:
    """PIT SI-SNR / SI-SNRi (1S, MSi), SDR/SIR/SAR and separation rates per source count.

    Options for the other kind of input are refused, not ignored: --split takes FUSS data,
    --folds / --n / --seconds an ESC-50 folder.
    """
    from auralens.scene.separate.run import evaluate_separator

    try:  # None: not given (the ESC-50 default, and refused with FUSS data)
        fold_list = None if folds is None else [int(f) for f in folds.split(",") if f.strip()]
    except ValueError:
        raise typer.BadParameter(f"{folds!r} is not a comma list of fold numbers", param_hint="--folds") from None
    if limit is not None and limit < 1:
        raise typer.BadParameter("must be at least 1", param_hint="--limit")
    summary = evaluate_separator(data, out, separator=separator, split=split, limit=limit,
                                 folds=fold_list,
                                 n=n, seconds=seconds, bss=bss)
    typer.echo(f"1S {_db(summary['1S'])} · MSi {_db(summary['MSi'])} over "
               f"{summary['n_mixtures']} mixtures → {out}")
