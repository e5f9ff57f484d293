"""CLI for auralens.experiments (kept light: heavy imports happen inside commands)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(help="Run YAML experiment definitions that regenerate the studies' tables.", no_args_is_help=True)


@app.command("run")
def run(
    config: Path = typer.Argument(..., help="Experiment YAML (configs/experiments/*.yaml)."),
    out: Path | None = typer.Option(None, "--out", help="Output directory (default runs/experiments/<name>)."),
    set_: list[str] = typer.Option([], "--set", help="Override a key: --set variant=study, --set data.n=8."),
) -> None:
    """Run or resume an experiment; writes results.jsonl, tables/, figures/, run.json."""
    from auralens.experiments.runner import run_experiment

    summary = run_experiment(config, out, overrides=set_)
    typer.echo(f"{summary['rows']} results ({summary['new']} new) in {summary['out_dir']}")
    for s in summary["skipped"]:
        typer.echo(f"{'note:' if s.get('kind') == 'note' else 'skipped'} {s['what']}: {s['reason']}")
    for note in summary["notes"]:
        typer.echo(note)
    if summary["errors"]:
        typer.echo(f"{summary['errors']} items failed; see {summary['out_dir']}/errors.jsonl")


@app.command("judge-validate")
def judge_validate(
    annotations: Path = typer.Argument(..., help="CSV with columns id, count, labels_included [, method]."),
    results: Path = typer.Argument(..., help="An experiment's results.jsonl (or the --out folder holding it)."),
    method: str | None = typer.Option(None, "--method", help="Only this method's rows."),
    as_json: bool = typer.Option(False, "--json", help="Print the full report as JSON."),
) -> None:
    """Agreement of the judge's counts and label verdicts with human annotations."""
    from auralens.evaluate.judge_validation import judge_agreement

    rep = judge_agreement(annotations, results, method)
    if as_json:
        typer.echo(json.dumps(rep, indent=2))
        return

    def pct(v: float | None) -> str:
        return "n/a" if v is None else f"{100 * v:.1f} %"

    def left(part: dict) -> str:
        reasons = "; ".join(f"{n} {why}" for why, n in part["left_out"].items())
        return f"; left out: {reasons}" if reasons else ""

    if rep["judges"]:
        typer.echo(f"judge: {', '.join(rep['judges'])}")
    if rep["judge_is_llm"] is False:
        typer.echo("warning: the judge was the keyword heuristic, not an LLM: these numbers do "
                   "not validate an LLM judge", err=True)
    typer.echo(f"source count agreement: {pct(rep['count']['agreement'])} "
               f"(n={rep['count']['n']}{left(rep['count'])})")
    if rep["count"]["n"] == 0 and rep["count"]["left_out"]:
        typer.echo("cannot compare source counts: no compared row has a count from the judge",
                   err=True)
    typer.echo(f"label inclusion agreement: {pct(rep['labels']['agreement'])} "
               f"(n={rep['labels']['n']}{left(rep['labels'])})")
    if rep["unmatched"]:
        typer.echo(f"{len(rep['unmatched'])} annotated ids not in the results")


@app.command("fuss-manifest")
def fuss_manifest_cmd(
    out: Path = typer.Argument(..., help="Manifest JSONL to write."),
    fuss: Path | None = typer.Option(None, "--fuss", help="FUSS ssdata(_reverb) directory holding <split>/exampleNNNNN.wav."),
    split: str | None = typer.Option(None, "--split", help="FUSS split (default eval); with --from-mixer "
                                     "only this split's mixtures (default every split)."),
    fsd50k: Path | None = typer.Option(None, "--fsd50k", help="FSD50K.ground_truth directory (eval.csv / dev.csv)."),
    labels_csv: Path | None = typer.Option(None, "--labels-csv", help="id,labels CSV instead of FSD50K."),
    label_mode: str = typer.Option("first", "--label-mode", help="first | all (FSD50K lists several labels per clip)."),
    mixer: Path | None = typer.Option(None, "--from-mixer", help="Our mixer's output dir (manifest.jsonl) instead of FUSS."),
) -> None:
    """Write a FUSS-with-labels manifest (SceneRecord JSONL) from FUSS + FSD50K or our mixer."""
    from auralens.cli_utils import fail
    from auralens.experiments.fussmanifest import LABEL_MODES, fuss_manifest, manifest_from_mixer

    if label_mode not in LABEL_MODES:  # refused even where it is not used: a typo is never ignored
        fail(f"--label-mode must be one of {', '.join(LABEL_MODES)}, got {label_mode!r}")
    if (fuss is None) == (mixer is None):
        fail("give exactly one of --fuss or --from-mixer")
    if fuss is not None and fsd50k is None and labels_csv is None:
        fail("--fuss needs labels: give --fsd50k DIR (the FSD50K.ground_truth folder) or "
             "--labels-csv FILE (id,labels)")
    if mixer is not None:
        stats = manifest_from_mixer(mixer, out, split=split)
    else:
        stats = fuss_manifest(fuss, out, split=split or "eval", fsd50k_ground_truth=fsd50k,
                              labels_csv=labels_csv, label_mode=label_mode)
    typer.echo(f"{out}: {stats['n']} mixtures, {stats['labels']} labels, "
               f"sources per mixture {stats['source_counts']}, unlabelled sources {stats['unlabelled']}")


@app.command("video-pairs")
def video_pairs_cmd(
    out: Path = typer.Argument(..., help="Pairs JSONL to write (video.yaml's data.path)."),
    mixer: Path = typer.Option(..., "--from-mixer", help="Our mixer's output dir (auralens data mix …)."),
    frames: Path | None = typer.Option(None, "--frames", help="Folder of reference frames named after the "
                                       "mixtures (example00000.png); without it pairs have no image."),
) -> None:
    """Write the video experiment's audio + reference-frame pairs from our mixer's output (offline)."""
    from auralens.experiments.fussmanifest import pairs_from_mixer

    stats = pairs_from_mixer(mixer, out, frames=frames)
    typer.echo(f"{out}: {stats['n']} pairs, {stats['labels']} labels, "
               f"sources per mixture {stats['source_counts']}"
               + ("" if frames is not None else " (no reference frames)"))
