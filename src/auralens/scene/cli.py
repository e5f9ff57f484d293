"""CLI for ``auralens imagine INPUT`` (default ``run``) and ``imagine batch``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from auralens.cli_utils import default_group

app = typer.Typer(help="Imagine: separate → caption → describe → image, or an audio LLM end to end. "
                       "'auralens imagine INPUT' is short for 'auralens imagine run INPUT'.",
                  cls=default_group("run"), no_args_is_help=True)

_MODE = typer.Option(None, "--mode", help="pipeline (default: separate → caption → compose) "
                     "or allm (one audio LLM on the whole mixture).")
_SEP = typer.Option(None, "--separator", help="Separator spec (default: the committed TDCN++).")
_CAP = typer.Option(None, "--captioner", help="classifier (default, offline), clap-zeroshot, "
                    "qwen2-audio, whisper-aac, hf-audio-text:<id>, "
                    "openai-audio:<served model>@base_url=URL, or a model dir.")
_COMP = typer.Option(None, "--composer", help="template (default, offline), hf:qwen2.5, mistral, "
                     "falcon3, hf:<id or dir>, openai:<model>@base_url=URL.")
_TECH = typer.Option(None, "--technique", help="zero-shot (default), cot, role or few-shot.")
_IMG = typer.Option(None, "--image", help="none (default, offline) or diffusers:sd3.5 / "
                    "diffusers:<id or dir>@steps=28,guidance=4.5,width=1024,height=1024.")
_ALLM = typer.Option(None, "--allm", help="Audio LLM for --mode allm: qwen2-audio[:<id or "
                     "dir>] (default), hf-audio-text:<id or dir> or "
                     "openai-audio:<served model>@base_url=URL (vLLM).")
_TPL = typer.Option(None, "--template", help="Your own prompt template file (see "
                    "compose/prompts/README.md).", exists=False)
_SEED = typer.Option(None, "--seed", min=0, help="Image seed (default 0).")
_CFG = typer.Option(None, "--config", help="YAML with imagine options (flags override it).")
_SET = typer.Option(None, "--set", help="Override a config key: --set activity.rule=frames.")


def _config(config: Path | None, sets: list[str] | None, **flags: Any) -> dict[str, Any]:
    from auralens.config import apply_overrides
    from auralens.scene.pipeline import ImagineError, imagine_section

    cfg: dict[str, Any] = {}
    if config:
        cfg = imagine_section(config, ImagineError)
    for key, value in flags.items():
        if value is not None:
            cfg[key] = str(value) if isinstance(value, Path) else value
    return apply_overrides(cfg, sets)


@app.command("run")
def run(
    input: Path = typer.Argument(..., help="Audio (wav/flac/ogg/mp3; m4a/aac need ffmpeg) or "
                                 "video (needs ffmpeg)."),
    out: Path = typer.Option(..., "--out", help="Output directory."),
    mode: str | None = _MODE, separator: str | None = _SEP, captioner: str | None = _CAP,
    composer: str | None = _COMP, technique: str | None = _TECH, image: str | None = _IMG,
    allm: str | None = _ALLM, template: Path | None = _TPL, seed: int | None = _SEED,
    config: Path | None = _CFG, set_: list[str] | None = _SET,
) -> None:
    """Describe (and optionally render) the scene heard in INPUT; writes OUT/report.html."""
    from auralens.scene.pipeline import imagine

    cfg = _config(config, set_, mode=mode, separator=separator, captioner=captioner,
                  composer=composer, technique=technique, image=image, allm=allm,
                  template=template, seed=seed)
    res = imagine(input, out, cfg)
    for reason in [*res.notes, *res.skipped.values()]:
        typer.echo(f"note: {reason}", err=True)
    if res.mode == "pipeline":
        captions = f": {'; '.join(res.captions)}" if res.captions else ""
        typer.echo(f"{res.n_estimates} estimates, {len(res.kept)} kept{captions}")
    if res.description:
        typer.echo(f"description: {res.description}")
    if "report" in res.paths:  # --set report=false writes none
        typer.echo(f"report: {res.paths['report']}")


@app.command("batch")
def batch(
    data: Path = typer.Argument(..., help="FUSS-style dataset dir, a JSONL manifest, a folder of audio "
                                "files or a text file listing audio paths."),
    out: Path = typer.Option(..., "--out", help="Output directory (results.jsonl, errors.jsonl)."),
    split: str | None = typer.Option(None, "--split", help="Dataset split (e.g. eval)."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Only the first N mixtures."),
    mode: str | None = _MODE, separator: str | None = _SEP, captioner: str | None = _CAP,
    composer: str | None = _COMP, technique: str | None = _TECH, image: str | None = _IMG,
    allm: str | None = _ALLM, template: Path | None = _TPL, seed: int | None = _SEED,
    config: Path | None = _CFG, set_: list[str] | None = _SET,
    shard: str | None = typer.Option(None, "--shard", help="Only shard i/n of the mixtures (0-based, "
                                     "e.g. 1/8; 'env': SLURM array); results go to OUT/shards/part-i-of-n."),
) -> None:
    """Imagine every mixture of a dataset (resumable; failures go to errors.jsonl).

    The closing summary counts over the whole job, items finished by an earlier run included.
    Sharded runs are joined with `auralens data merge OUT/shards/* --out OUT/results.jsonl`."""
    from auralens.io import batch_done_line
    from auralens.scene.pipeline import ImagineConfig, imagine_batch
    from auralens.shard import parse_shard, shard_dir

    cfg = ImagineConfig.from_dict(_config(
        config, set_, mode=mode, separator=separator, captioner=captioner, composer=composer,
        technique=technique, image=image, allm=allm, template=template, seed=seed))
    parsed = parse_shard(shard)
    for note in cfg.notes():
        typer.echo(f"note: {note}", err=True)
    imagine_batch(data, out, cfg, split=split, limit=limit, shard=parsed)
    typer.echo(batch_done_line(shard_dir(out, parsed)))
