"""Layer sweep: prepare + train one gate per extractor layer + render the same test clips.

Layout::

    DIR/layer=<L>/prep/     prepared dataset of layer L (index.jsonl, splits, run.json)
    DIR/layer=<L>/run/      the trained gate (RUN layout of :mod:`auralens.sonify.train`)
                            with run/renders/… for the test split
    DIR/summary.csv, DIR/summary.md, DIR/run.json

All layers share the split (same seed), so every layer renders the same test clips. Rerunning
the sweep resumes: cached arrays are reused, finished runs and existing renders are skipped.
A run made with other training settings (gate, learning rate …) or on other data (encoder,
layer, codec, duration) is refused before anything runs, unless ``overwrite`` retrains every
layer; encoder and codec specs naming the same local directory (relative or absolute) count as
the same. A changed ``limit`` or dataset (the clips a layer was prepared from) is refused the same way for
layers that already hold a run, and so is a rerun with other --epochs (or any other training
setting) over the layer runs OUT holds, also those of layers not swept now (``overwrite``
retrains only the layers given). A test split without usable clips (nothing to render) is
refused after the first layer is prepared, before any layer trains. Every layer is checked
against the extractor before the first one is prepared, and
spellings naming the same layer (``4,last`` for a model with 4 blocks) train it once, in the
folder of the first spelling.
"""

from __future__ import annotations

import csv
import io
import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from auralens.io import read_json, write_run_json, write_text
from auralens.sonify.prepare import (
    PrepareError,
    build_codec,
    build_extractor,
    parse_layer,
    prepare,
    read_prepared_info,
)
from auralens.sonify.render import render_split
from auralens.sonify.train import (
    RESUME_MAY_CHANGE,
    NonFiniteLossError,
    TrainConfig,
    _finished,
    train,
)

log = logging.getLogger(__name__)


def parse_layers(text: str | Sequence[str | int]) -> list[str | int]:
    """``"patch,1,2"`` → ``["patch", 1, 2]``."""
    parts = text.split(",") if isinstance(text, str) else list(text)
    out = [parse_layer(p) for p in parts if str(p).strip()]
    return list(dict.fromkeys(p for p in out if p is not None))


def check_layers(encoder: Any, layers: Sequence[str | int]) -> list[str | int]:
    """Refuse unknown or out-of-range layers before any work.

    The extractor is built once and checks every layer itself (:meth:`Extractor.check_layer`);
    a backend that cannot is built once per layer instead.

    Returns:
        the normalised layer of each entry (``"last"`` → the last block's index …), i.e. the
        layer the extractor records in a prepared dataset.

    Raises:
        PrepareError: naming every bad layer and why.
    """
    from auralens.errors import AuralensError

    if not layers:
        raise PrepareError("--layers: no layer given")
    extractor = build_extractor(encoder, None)
    bad = []
    resolved: list[str | int] = []
    for layer in layers:
        try:
            norm = extractor.check_layer(layer)
            if norm is None:
                norm = build_extractor(encoder, layer).layer
            resolved.append(norm)
        except AuralensError as exc:
            bad.append(f"{layer} ({exc})")
    if bad:
        raise PrepareError(f"--layers: bad layer(s) {'; '.join(bad)}")
    return resolved


def unique_layers(layers: Sequence[str | int], resolved: Sequence[str | int]) -> list[tuple[str | int, str | int]]:
    """``(spelling, layer)`` pairs with one entry per model layer, in order.

    Spellings naming the same layer (``4`` and ``last`` for a model with 4 blocks) keep the
    first one, which names the sweep's ``layer=<spelling>`` folder.
    """
    seen: dict[str, str | int] = {}
    out: list[tuple[str | int, str | int]] = []
    for spelling, layer in zip(layers, resolved, strict=True):
        key = str(layer)
        if key in seen:
            log.warning("layer %s names the same layer as %s (%s); trained once", spelling, seen[key], layer)
            continue
        seen[key] = spelling
        out.append((spelling, layer))
    return out


def _spec_of(spec: Any, build: Any) -> str:
    """The spec string :func:`prepare` records for ``spec`` (a backend instance: its name)."""
    return spec if isinstance(spec, str) else str(build(spec).name)


#: What to do about runs prepared from other data, for ``sonify sweep`` users.
OTHER_DATA_HINT = "pass the same DATA, or --overwrite (or another --out) to prepare and train it again"


def sweep(data: str | Path, encoder: Any, layers: Sequence[str | int] | str, codec: Any,
          gate: str, out: str | Path, *, cfg: TrainConfig | None = None, seed: int = 42,
          batch_size: int = 8, duration: float | None = 5.0, limit: int | None = None,
          post: Sequence[str] = ("minmax",), render_limit: int | None = None,
          cache_dir: str | Path | None = None, overwrite: bool = False,
          other_data_hint: str = OTHER_DATA_HINT) -> list[dict[str, Any]]:
    """Run the layer sweep (see the module docstring).

    Args:
        duration: seconds every clip is cut/padded to, as in :func:`prepare` (None: each clip
            keeps its length).
        limit: use only the first ``limit`` clips (must match the runs already in ``out``).
        overwrite: retrain every layer and render again, even where finished runs exist.
        other_data_hint: what the error for runs prepared from other data tells the user to do
            (a caller without ``--overwrite`` says what its own users can do).

    Returns:
        one summary row per layer: ``layer, status, best_val_loss, best_epoch, renders``.

    Raises:
        DatasetError: ``data`` is missing or holds no audio (checked first).
        PrepareError: a bad layer (all are checked first).
        AuralensError: a ``post`` chain that does not parse (before anything runs).
        TrainError: bad training options, or a layer's run was made with other training
            settings or data, another ``limit`` or ``data`` (without ``overwrite``); both before anything
            is prepared or trained.
        PrepareError: the prepared test split is empty (before any layer trains).
    """
    start = time.perf_counter()
    out = Path(out)
    layer_list = parse_layers(layers)
    base = replace(cfg or TrainConfig(), gate=gate, seed=seed)
    base.validate()
    _check_post(post)
    _check_dataset(data)
    plan = unique_layers(layer_list, check_layers(encoder, layer_list))
    layer_list = [spelling for spelling, _ in plan]
    if not overwrite:
        # Training settings and the data each run was trained on (encoder, layer, codec,
        # duration), checked for every layer before any prep folder is written.
        enc_spec, cod_spec = _spec_of(encoder, build_extractor), _spec_of(codec, build_codec)
        for spelling, resolved in plan:
            planned = {"extractor": {"spec": enc_spec, "layer": resolved}, "codec": {"spec": cod_spec},
                       "duration": duration}
            ldir = out / f"layer={spelling}"
            _finished(ldir / "run", base, planned)  # raises on other settings
            _check_training(ldir / "run", base, "pass the same options, or --overwrite (or another "
                            "--out) to train it again")  # epochs too
            _check_prepared(ldir, data, limit, other_data_hint)
        # Layers of earlier calls not swept now: the folder would mix their settings too.
        planned_dirs = {f"layer={spelling}" for spelling, _ in plan}
        for ldir in sorted(p for p in out.glob("layer=*") if p.is_dir() and p.name not in planned_dirs):
            _check_training(ldir / "run", base, "it is not among --layers now (--overwrite would "
                            "not train it again): pass the same options, or another --out")
    config = {"data": str(data), "encoder": str(encoder), "layers": [str(x) for x in layer_list],
              "codec": str(codec), "gate": gate, "train": asdict(base), "batch_size": batch_size,
              "duration": duration, "limit": limit, "post": list(post), "render_limit": render_limit}
    # a sweep stopped part-way still says what made the layer folders beside the record
    out.mkdir(parents=True, exist_ok=True)
    write_run_json(out, command="sonify sweep", seed=seed, config=config,
                   extra={"status": "running"})
    rows: list[dict[str, Any]] = []
    for spelling, layer in plan:
        ldir = out / f"layer={spelling}"
        prep = ldir / "prep"
        res_prep = prepare(data, encoder, codec, layer, prep, seed=seed, batch_size=batch_size,
                           duration=duration, limit=limit, cache_dir=cache_dir, overwrite=overwrite)
        if not res_prep.splits.get("test"):  # every layer shares the split: fail before training
            raise PrepareError(f"{prep}: no usable clips in the test split (usable clips per split: "
                               f"{res_prep.splits}); the sweep renders the test split — use more "
                               "clips (a larger --limit)")
        run = ldir / "run"
        row: dict[str, Any] = {"layer": str(spelling), "run": str(run.relative_to(out))}
        try:
            if overwrite:
                res = train(prep, run, base, overwrite=True)
            else:
                res = _finished(run, base, read_prepared_info(prep)) or train(
                    prep, run, base, resume=(run / "last.safetensors").exists())
            row.update(status=res.status, best_val_loss=res.best_val_loss, best_epoch=res.best_epoch,
                       first_val_loss=res.first_val_loss, val_split=res.val_split)
        except NonFiniteLossError as exc:
            log.warning("%s", exc)
            row.update(status="diverged", best_val_loss=None, best_epoch=None, first_val_loss=None)
        if row["status"] == "ok":
            renders = render_split(run, "test", post, limit=render_limit, overwrite=overwrite)
            row["renders"] = str(renders.relative_to(out))
        rows.append(row)
    _write_summary(out, rows)
    write_run_json(out, command="sonify sweep", seed=seed, config=config,
                   timings={"total": time.perf_counter() - start},
                   extra={"status": "done", "layers": rows})
    return rows


def _check_post(post: Sequence[str]) -> None:
    """Parse every post-processing chain before anything is prepared or trained.

    Raises:
        AuralensError: ``--post 'chain': why`` for the first chain that does not parse.
    """
    from auralens.errors import AuralensError
    from auralens.sonify.postprocess import parse_chain

    for chain in post:
        try:
            parse_chain(chain)
        except AuralensError as exc:
            raise AuralensError(f"--post {chain!r}: {exc}") from None


def _check_dataset(data: str | Path) -> None:
    """Refuse a DATA that is not a dataset before any model is built or layer folder made.

    Raises:
        DatasetError: missing folder, bad metadata, no audio.
        PrepareError: no clips.
    """
    from auralens.data import load_dataset

    if not load_dataset(Path(data)):
        raise PrepareError(f"{data}: no clips found")


#: Training settings a layer's run may differ in: those a resume may change, except the ones
#: that change what it learns (learning rate, epochs).
_MAY_DIFFER = tuple(k for k in RESUME_MAY_CHANGE if k not in ("lr", "epochs"))


def _check_training(run: Path, cfg: TrainConfig, hint: str) -> None:
    """Refuse a layer run trained with other training settings than ``cfg`` — the number of
    epochs included (a finished 3-epoch run would otherwise count as finished beside new
    2-epoch layers, under a sweep record saying 2). ``hint`` ends the message: what to do.

    Raises:
        TrainError: naming the run and every setting that changed.
    """
    from auralens.sonify.train import TrainError, config_differences

    path = run / "run.json"
    if not path.is_file():
        return
    record = read_json(path)
    stored = record.get("config") if isinstance(record, dict) else None
    diffs = config_differences(stored if isinstance(stored, dict) else {}, cfg, ignore=_MAY_DIFFER)
    if diffs:
        raise TrainError(f"{run}: was trained with other settings ({'; '.join(diffs)}); {hint}")


def _check_prepared(ldir: Path, data: str | Path, limit: int | None, hint: str) -> None:
    """Refuse a ``limit`` or a dataset other than the ones a layer with a run was prepared
    with: preparing again would change its data under a run that counts as finished, and its
    runs would count as finished on the new data. ``hint`` ends the message about the data.

    Raises:
        TrainError: naming both limits, or both dataset paths.
        PrepareError: ``prep/run.json`` is not valid JSON (naming it).
    """
    from auralens.io import JSONFileError
    from auralens.sonify.train import TrainError

    prep_json = ldir / "prep" / "run.json"
    if not (ldir / "run" / "run.json").is_file() or not prep_json.is_file():
        return
    try:
        record = read_json(prep_json)
    except JSONFileError as exc:  # names the file already
        raise PrepareError(f"{exc}; --overwrite prepares it again") from None
    config = record.get("config") if isinstance(record, dict) else None
    prepared = config if isinstance(config, dict) else {}
    stored = prepared.get("limit")
    if stored != limit:
        have, want = (f"--limit {v}" if v is not None else "no --limit" for v in (stored, limit))
        raise TrainError(f"{ldir}: was prepared and trained with {have}, not {want}; pass the same "
                         "--limit, or --overwrite (or another --out) to prepare and train it again")
    stored = prepared.get("data")
    # a relative path (older runs) is taken relative to the current directory, as prepare did
    if stored and Path(str(stored)).resolve() != Path(data).resolve():
        raise TrainError(f"{ldir}: was prepared and trained from {stored}, not {data}; {hint}")


_COLUMNS = ("layer", "status", "best_val_loss", "best_epoch", "first_val_loss", "run", "renders")


def _write_summary(out: Path, rows: list[dict[str, Any]]) -> None:
    def cell(row: dict[str, Any], col: str) -> str:
        v = row.get(col)
        if v is None:
            return ""
        return f"{v:.6g}" if isinstance(v, float) else str(v)

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(_COLUMNS)
    for row in rows:
        w.writerow([cell(row, c) for c in _COLUMNS])
    write_text(out / "summary.csv", buf.getvalue())
    lines = ["| " + " | ".join(_COLUMNS) + " |", "|" + "---|" * len(_COLUMNS)]
    lines += ["| " + " | ".join(cell(r, c) for c in _COLUMNS) + " |" for r in rows]
    write_text(out / "summary.md", "\n".join(lines) + "\n")
