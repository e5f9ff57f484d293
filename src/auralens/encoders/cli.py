"""CLI commands that belong to encoders (``auralens train-classifier``)."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Train the compact AST-architecture classifier (the offline model to explain).")


@app.command("train-classifier")
def train_classifier_cmd(
    data: Path = typer.Argument(..., help="ESC-50-layout folder (meta/esc50.csv + audio/)."),
    out: Path = typer.Option(..., "--out", help="Output directory (HF model files, run.json)."),
    epochs: int = typer.Option(30, "--epochs", help="Training epochs (resume may raise it)."),
    batch_size: int = typer.Option(16, "--batch-size"),
    lr: float = typer.Option(5e-4, "--lr", help="Peak AdamW learning rate."),
    hidden_size: int = typer.Option(192, "--hidden-size"),
    num_layers: int = typer.Option(4, "--layers"),
    num_heads: int = typer.Option(4, "--heads"),
    intermediate_size: int = typer.Option(768, "--intermediate-size"),
    num_mel_bins: int = typer.Option(128, "--mels"),
    max_length: int = typer.Option(512, "--max-length", help="Fbank frames (10 ms each)."),
    patch_stride: int = typer.Option(16, "--patch-stride", help="Patch stride in both axes (16 = no overlap)."),
    val_fold: int | None = typer.Option(None, "--val-fold", help="Validation fold (default: the last)."),
    augment: bool = typer.Option(True, "--augment/--no-augment", help="Gain/shift/SpecAugment/mixup."),
    mixup: float = typer.Option(0.3, "--mixup", help="Mixup Beta(a, a) parameter (0: off)."),
    reverb: int = typer.Option(0, "--reverb", min=0, help="Reverberant copies of each training "
                               "clip, each in its own seeded random shoebox room (0: none)."),
    save_dtype: str = typer.Option("float16", "--save-dtype", help="Weights dtype on disk."),
    max_steps: int | None = typer.Option(None, "--max-steps", help="Stop after this many steps."),
    threads: int | None = typer.Option(None, "--threads", help="torch CPU threads."),
    seed: int = typer.Option(0, "--seed", min=0),
) -> None:
    """Train the AST-architecture classifier on DATA, validating on one held-out fold.

    The held-out fold is --val-fold (by default the last); the other folds train.
    The epoch with the best validation accuracy is saved to OUT in Hugging Face format.
    Rerunning with the same OUT resumes."""
    from auralens.encoders.train_classifier import ClassifierConfig, train_classifier

    cfg = ClassifierConfig(
        hidden_size=hidden_size, num_layers=num_layers, num_heads=num_heads,
        intermediate_size=intermediate_size, num_mel_bins=num_mel_bins, max_length=max_length,
        patch_stride=patch_stride, epochs=epochs, batch_size=batch_size, lr=lr,
        val_fold=val_fold, augment=augment, mixup=mixup, reverb=reverb, save_dtype=save_dtype,
        max_steps=max_steps, threads=threads, seed=seed)
    result = train_classifier(data, out, cfg)
    if result["best_epoch"] < 1:  # --max-steps stopped the first epoch partway
        typer.echo(f"no epoch finished ({result['steps']} steps); rerun with the same --out "
                   "to continue")
        return
    typer.echo(f"best val accuracy {result['best_val_accuracy']:.3f} at epoch "
               f"{result['best_epoch']} ({result['train_seconds']:.0f} s training); saved to {out}")
