"""CLI for auralens.sonify (kept light: heavy imports happen inside commands)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from auralens.config import ConfigError

if TYPE_CHECKING:
    from auralens.sonify.train import TrainResult

log = logging.getLogger(__name__)

app = typer.Typer(help="Sonify: listen to what an audio model's hidden states keep.", no_args_is_help=True)

#: The sections of a sonify preset (``--config``): options of `sonify prepare` and of `sonify train`.
SECTIONS = ("prepare", "train")

CONFIG_HELP = "YAML preset (e.g. configs/sonify-offline.yaml); flags given on the command line win."


def _apply_config(ctx: typer.Context, config: Path | None, section: str, values: dict) -> dict:
    """Fill options left at their defaults from ``config[section]`` (explicit flags win)."""
    if config is None:
        return values
    from auralens.config import load_yaml

    data = load_yaml(config)
    stray = set(data) - set(SECTIONS)
    if stray:
        raise ConfigError(f"{config}: unknown section(s) {', '.join(sorted(map(str, stray)))}; "
                          f"a sonify preset has {' and '.join(SECTIONS)}")
    preset = data.get(section) or {}
    if not isinstance(preset, dict):
        raise ConfigError(f"{config}: section {section!r} must be a mapping")
    unknown = set(preset) - set(values)
    if unknown:
        raise ConfigError(f"{config}: unknown {section} option(s) {', '.join(sorted(unknown))}")
    params = {p.name: p for p in ctx.command.params}
    out = dict(values)
    for key, value in preset.items():
        # typer ships its own click: compare the source by name, not by enum identity.
        source = ctx.get_parameter_source(key)
        if source is None or getattr(source, "name", "") in ("DEFAULT", "DEFAULT_MAP"):
            out[key] = _typed(config, section, key, value, params.get(key), ctx)
    return out


def _typed(config: Path, section: str, key: str, value: object, param: object, ctx: typer.Context) -> object:
    """A YAML value converted and range-checked like the same flag on the command line."""
    if value is None or param is None:
        return value
    if isinstance(value, (list, dict)):
        raise ConfigError(f"{config}: {section}.{key} must be a single value, got {value!r}")
    if isinstance(value, bool) and not getattr(param, "is_flag", False):
        # YAML true/false would pass as 1/0 to an integer or number option
        raise ConfigError(f"{config}: {section}.{key} is not a true/false option, got {value!r}")
    try:
        # typer's own coercion: types and min/max bounds apply as they do to the flag
        return param.process_value(ctx, value)  # type: ignore[attr-defined]
    except typer.BadParameter as exc:
        raise ConfigError(f"{config}: {section}.{key}: {exc.message}") from exc


def _check_out_folder(out: Path, what: str) -> None:
    """Refuse an ``--out`` that is, or lies under, an existing file: the command writes
    ``what`` there (``mkdir`` would only say "File exists", after the work)."""
    from auralens.errors import AuralensError
    from auralens.io import check_out_dir

    check_out_dir(out, AuralensError, f" (--out names {what})")


def _check_merge_settings(ctx: typer.Context, data: Path, out: Path) -> None:
    """``prepare --merge`` joins what the shards computed, so the command may repeat the shards'
    options; refuse DATA or an option whose value contradicts the shards' run.json (it would be
    silently ignored), and warn where only the spelling of a spec may differ."""
    from auralens.io import read_json
    from auralens.sonify.prepare import PrepareError

    def on_command_line(name: str) -> bool:  # by name: typer ships its own click
        return getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE"

    if on_command_line("shard"):
        raise PrepareError("--merge joins every shard; drop --shard")
    recorded = None
    for part in sorted((out / "shards").glob("part-*-of-*")):
        try:
            recorded = read_json(part / "run.json")["config"]
            break
        except (OSError, ValueError, KeyError, TypeError):
            continue  # merge_prepared reports unfinished or broken shards
    if not isinstance(recorded, dict):
        return
    shard_data = Path(str(recorded.get("data") or ""))
    # a relative path (older shards) was relative to a working directory that is not recorded
    if shard_data.is_absolute() and shard_data.resolve() != data.resolve():
        raise PrepareError(f"{out}: the shards were prepared from {recorded['data']}, not {data}")
    given = {name for name in ctx.params if on_command_line(name)}
    typed = {"seed": ctx.params["seed"], "dtype": ctx.params["dtype"], "limit": ctx.params["limit"],
             "duration": ctx.params["duration"] or None}
    for name, value in typed.items():
        if name in given and name in recorded and recorded[name] != value:
            raise PrepareError(f"{out}: the shards were prepared with --{name} {recorded[name]}, "
                               f"not {value}; --merge cannot change it")
    for name in ("encoder", "codec", "layer"):
        if name in given and name in recorded and str(recorded[name]) != str(ctx.params[name]):
            log.warning("--merge ignores --%s %s: the shards' run.json says %s", name,
                        ctx.params[name], recorded[name])


@app.command("prepare")
def prepare_cmd(
    ctx: typer.Context,
    data: Path = typer.Argument(..., help="Dataset: ESC-50 layout or a folder of audio files."),
    encoder: str = typer.Option("classifier", "--encoder", help="Extractor spec (e.g. classifier, hf:MIT/ast-…)."),
    layer: str = typer.Option(None, "--layer", help="Layer: patch / features / block index (when "
                              "not given: the spec's @layer=, else the extractor's default; for "
                              "CLAP that is embed).",
                              show_default="the last block, 4 for the offline classifier"),
    codec: str = typer.Option("mel", "--codec", help="Codec spec (mel, dac, oobleck, encodec …)."),
    out: Path = typer.Option(..., "--out", help="PREP directory to write."),
    seed: int = typer.Option(42, "--seed", min=0, help="Split seed (not used when DATA holds "
                             "train/val/test.txt split files)."),
    batch_size: int = typer.Option(8, "--batch-size", help="Clips per extractor batch."),
    duration: float = typer.Option(5.0, "--duration", help="Seconds each clip is cut/padded to (0: keep "
                                   "each clip's length; a gate trains only on clips of one length, "
                                   "so prepare warns when they differ). At most the extractor's "
                                   "input window (5.12 s for the offline classifier, 10.24 s for "
                                   "AudioSet AST): a longer "
                                   "--duration is refused, and with 0 longer clips are skipped. "
                                   "At least the extractor's shortest input (25 ms for AST)."),
    dtype: str = typer.Option("float32", "--dtype", help="Stored dtype: float32 or float16."),
    limit: int = typer.Option(None, "--limit", min=1, help="Use only the first N clips."),
    config: Path = typer.Option(None, "--config", help=CONFIG_HELP),
    shard: str = typer.Option(None, "--shard", help="Prepare only shard i/n (0-based, e.g. 0/4; "
                              "'env': SLURM array task id/count); parts go to OUT/shards/."),
    merge: bool = typer.Option(False, "--merge", help="Join OUT/shards/part-*-of-n into OUT/index.jsonl "
                               "and run.json (after every shard finished); computes nothing."),
) -> None:
    """Compute (or reuse from the cache) embeddings and latents of every clip."""
    from auralens.sonify.prepare import merge_prepared, prepare

    _check_out_folder(out, "the PREP directory")
    if merge:
        _check_merge_settings(ctx, data, out)
        res = merge_prepared(out)
        typer.echo(f"merged shards into {res.out}: {res.n_ok}/{res.n_clips} clips, "
                   f"{res.n_failed} failed; splits {res.splits}")
        return
    o = _apply_config(ctx, config, "prepare", dict(
        encoder=encoder, layer=layer, codec=codec, seed=seed, batch_size=batch_size,
        duration=duration, dtype=dtype, limit=limit))
    res = prepare(data, o["encoder"], o["codec"], o["layer"], out, seed=o["seed"],
                  batch_size=o["batch_size"], duration=o["duration"] or None, dtype=o["dtype"],
                  limit=o["limit"], shard=shard)
    from_files = f" (from {', '.join(res.split_files)})" if res.split_files else ""
    typer.echo(f"prepared {res.n_ok}/{res.n_clips} clips into {res.out} "
               f"({res.computed_embeddings} embeddings and {res.computed_latents} latents computed, "
               f"{res.n_failed} failed, {res.seconds:.1f} s); splits {res.splits}{from_files}")
    # res.warnings (clips of mixed lengths …) were logged by prepare: not printed again here


@app.command("train")
def train_cmd(
    ctx: typer.Context,
    prep: Path = typer.Argument(..., help="PREP directory from `auralens sonify prepare`."),
    gate: str = typer.Option("lin", "--gate", help="Gate: v0–v11 or lin, conv, attn, conv-r, …"),
    out: Path = typer.Option(..., "--out", help="RUN directory."),
    lr: str = typer.Option("1e-3", "--lr", help="Learning rate, a comma list, or 'study' (the study's grid)."),
    epochs: int = typer.Option(15, "--epochs", help="Epochs (the study used 15 and 50)."),
    batch_size: int = typer.Option(64, "--batch-size"),
    grad_accum: int = typer.Option(2, "--grad-accum", help="Gradient accumulation steps."),
    eval_batch_size: int = typer.Option(32, "--eval-batch-size"),
    seed: int = typer.Option(42, "--seed", min=0),
    blur: bool = typer.Option(False, "--blur", help="Gaussian-blur training embeddings (augmentation)."),
    normalize: str = typer.Option("none", "--normalize", help="none or minmax (stats from the train split)."),
    resample: str = typer.Option("interp", "--resample", help="Frame mapping: interp, learned or dense."),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda …"),
    resume: bool = typer.Option(False, "--resume", help="Continue from RUN/last.safetensors also with "
                                "a new --lr (only --lr, --epochs, --device and --eval-batch-size "
                                "may differ from the stored run; an lr grid may get another "
                                "--lr list; finished runs are skipped). Without it a rerun "
                                "continues too, with the run's own settings (--epochs may grow)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Start again in an existing RUN (a "
                                   "rerun without it continues the run there)."),
    config: Path = typer.Option(None, "--config", help=CONFIG_HELP),
) -> None:
    """Train a gate (one run per learning rate) with MSE on the prepared latents.

    Running the same command again continues RUN from its last checkpoint (a finished run is
    reported and not trained again); other settings are refused, naming them.
    """
    from auralens.sonify.train import (
        TrainConfig,
        TrainError,
        loss_name,
        parse_lrs,
        train,
        train_grid,
    )

    _check_out_folder(out, "the RUN directory")
    if resume and overwrite:  # one continues the run, the other starts it again
        raise TrainError("--resume continues the run in OUT and --overwrite starts it again; "
                         "give one of them")
    o = _apply_config(ctx, config, "train", dict(
        gate=gate, lr=lr, epochs=epochs, batch_size=batch_size, grad_accum=grad_accum,
        eval_batch_size=eval_batch_size, seed=seed, blur=blur, normalize=normalize,
        resample=resample, device=device))
    lr = str(o.pop("lr"))
    lrs = parse_lrs(lr)
    cfg = TrainConfig(lr=lrs[0], **o)
    if len(lrs) == 1 and lr.strip().lower() != "study":
        res = train(prep, out, cfg, resume=resume, overwrite=overwrite)
        typer.echo(f"{out}: {_progress(res, cfg.lr)}best {loss_name(res.val_split)} {res.best_val_loss:.6g} "
                   f"at epoch {res.best_epoch}")
        return
    results = train_grid(prep, out, cfg, lrs, resume=resume, overwrite=overwrite)
    for res in results:
        if res.already_finished or res.resumed_from_epoch:
            typer.echo(f"{res.run_dir}: {_progress(res).rstrip('; ')}")
    typer.echo((out / "summary.md").read_text(encoding="utf-8"))
    if not any(r.status == "ok" for r in results):
        raise TrainError(f"{out}: every learning rate diverged")


def _progress(res: TrainResult, lr: float | None = None) -> str:
    """What a training call asking for learning rate ``lr`` did to a run that existed already
    (empty for a new run)."""
    from auralens.sonify.train import lr_not_used

    if res.already_finished:
        if res.status == "diverged":  # epochs_run: the epoch the loss became non-finite in
            return f"already diverged (during epoch {res.epochs_run}), not trained again; "
        unused = lr_not_used(res.lr, lr) if lr is not None else ""
        return f"already finished ({res.epochs_run} epochs{unused}), not trained again; "
    return f"continued after epoch {res.resumed_from_epoch}; " if res.resumed_from_epoch else ""


@app.command("render")
def render_cmd(
    audio: Path = typer.Argument(None, help="Audio file to render (omit with --split)."),
    run: Path = typer.Option(..., "--run", help="RUN directory (or an lr grid: its best run)."),
    out: Path = typer.Option(None, "--out", help="Output wav (single-file mode)."),
    post: list[str] = typer.Option(None, "--post", help="Post-processing chain, e.g. minmax,wiener "
                                   "(one chain for a single clip; repeat for several chains in "
                                   "--split mode)."),
    split: str = typer.Option(None, "--split", help="Render a split of the prepared dataset into RUN/renders "
                              "(one split per RUN: another split needs --overwrite)."),
    limit: int = typer.Option(None, "--limit", min=1, help="Only the first N clips of the split (--split mode)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Empty RUN/renders and render again."),
) -> None:
    """Render a clip (or a whole split) through a trained gate and the codec's decoder.

    A clip longer than the extractor's input window (5.12 s for the offline classifier) is
    cut to the window, with a warning: the model never sees later audio. Renders made by an
    older checkpoint (the run was trained again) are rendered again; renders of an older
    version, which record no checkpoint SHA-256, are kept unless the checkpoint is newer.
    """
    from auralens.errors import AuralensError
    from auralens.sonify.postprocess import parse_chain

    chains = list(post) if post else ["minmax"]
    if not split:
        # One clip gets one chain: several --post would be joined into one chain silently.
        if len(chains) > 1:
            raise AuralensError(f"--post given {len(chains)} times ({', '.join(map(repr, chains))}); "
                                "a single clip is rendered with one chain: give one chain, e.g. "
                                f"--post {','.join(chains)}, or use --split to render one version "
                                "per chain")
        if limit is not None:
            raise AuralensError(f"--limit {limit} applies to --split (the first N clips of a split); "
                                "a single clip takes no --limit")
    for chain in chains:  # an option error, named as such (not as a problem of AUDIO)
        try:
            parse_chain(chain)
        except AuralensError as exc:
            raise AuralensError(f"--post {chain!r}: {exc}") from None
    if split:
        if audio is not None or out is not None:  # split mode writes RUN/renders, not AUDIO → --out
            given = ", ".join(n for n, v in (("AUDIO", audio), ("--out", out)) if v is not None)
            raise AuralensError(f"{given} and --split: give AUDIO and --out (one clip), or --split "
                                "(RUN/renders), not both")
        from auralens.sonify.render import render_split

        path = render_split(run, split, chains, limit=limit, overwrite=overwrite)
        typer.echo(f"renders written to {path}")
        return
    if audio is None or out is None:
        raise AuralensError("give AUDIO and --out, or --split test")
    if out.resolve() == audio.resolve():
        raise AuralensError(f"--out {out} is the input audio; write the rendering to another file")
    from auralens.audio import write
    from auralens.sonify.render import load_run, read_window, render

    loaded = load_run(run)
    wave, sr = read_window(loaded.extractor, audio)
    try:
        result = render(loaded, wave, sr, post=chains[0])
    except AuralensError as exc:  # name the clip, as a batch job's error list does
        raise AuralensError(f"{audio}: {exc}") from exc
    write(out, result, loaded.codec.sample_rate)
    typer.echo(f"wrote {out} ({result.shape[0] / loaded.codec.sample_rate:.2f} s at {loaded.codec.sample_rate} Hz)")


@app.command("sweep")
def sweep_cmd(
    data: Path = typer.Argument(..., help="Dataset directory."),
    encoder: str = typer.Option("classifier", "--encoder", help="Extractor spec."),
    layers: str = typer.Option(..., "--layers", help="Comma list, e.g. patch,1,2,3."),
    codec: str = typer.Option("mel", "--codec", help="Codec spec."),
    gate: str = typer.Option("lin", "--gate", help="Gate name."),
    out: Path = typer.Option(..., "--out", help="Sweep directory."),
    lr: float = typer.Option(1e-3, "--lr"),
    epochs: int = typer.Option(15, "--epochs"),
    seed: int = typer.Option(42, "--seed", min=0),
    batch_size: int = typer.Option(8, "--batch-size", help="Clips per extractor batch in prepare."),
    duration: float = typer.Option(5.0, "--duration", help="Seconds each clip is cut/padded to (0: keep "
                                   "each clip's length, which must then be one length), as in `sonify prepare`; at most the "
                                   "extractor's input window."),
    limit: int = typer.Option(None, "--limit", min=1, help="Use only the first N clips (a rerun must "
                              "pass the same N, or --overwrite)."),
    render_limit: int = typer.Option(None, "--render-limit", min=1, help="Render only N test clips per layer."),
    post: list[str] = typer.Option(None, "--post", help="Post-processing chain(s) for the renders."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Retrain and render every layer again "
                                   "(needed when OUT holds runs made with another gate, lr …)."),
) -> None:
    """Prepare, train and render one gate per layer of an extractor.

    Rerunning resumes finished layers; all layers are checked before the first one runs.
    """
    from auralens.sonify.sweep import sweep
    from auralens.sonify.train import TrainConfig

    _check_out_folder(out, "the sweep directory")
    rows = sweep(data, encoder, layers, codec, gate, out, cfg=TrainConfig(gate=gate, lr=lr, epochs=epochs),
                 seed=seed, batch_size=batch_size, duration=duration or None, limit=limit,
                 post=list(post) if post else ["minmax"], render_limit=render_limit, overwrite=overwrite)
    for row in rows:
        which = "train" if row.get("val_split") == "train" else "val"  # no validation clips
        typer.echo(f"layer {row['layer']}: {row['status']} best {which} {row.get('best_val_loss')}")
    typer.echo(f"summary: {out / 'summary.md'}")


def _mount_evaluation() -> None:
    from auralens.evaluate.sonify_cli import add_commands

    add_commands(app)
_mount_evaluation()
