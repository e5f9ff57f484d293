"""Render audio through a trained gate: wave → embedding → gate → latent → codec decode.

:func:`render` turns one clip into the gate's rendition at the codec's sample rate (or
``out_sr``), with the original clip's duration, always finite. :func:`render_split` renders a
whole split of the prepared dataset into::

    RUN/renders/original/<clip_id>.wav   the clip at the codec rate (cut/padded like in training)
    RUN/renders/ceiling/<clip_id>.wav    codec.decode(codec.encode(original)): the best a gate can do
    RUN/renders/<post>/<clip_id>.wav     the gate's rendition after post-processing chain <post>
    RUN/renders/run.json, RUN/renders/errors.jsonl

``renders/run.json`` records the split, the ids of the clips rendered so far, the identity
(SHA-256) of the checkpoint they came from and every post-processing folder ``renders/`` holds
(``folders``, with their chains in ``post``: also those of earlier calls with other ``post``
chains, which the report scores too); the evaluation report scores exactly those clips.
``limit`` is the extent those clips cover (the first N clips of the split, the largest
``--limit`` of the calls whose renders it keeps; null: the whole split), ``call_limit`` and
``call_clips`` the latest call's ``--limit`` and clips. Rendering a run that did not finish
its epochs warns and records ``run_status``, ``run_epochs_run`` and ``run_epochs``. Rendering
an lr grid records ``grid_unfinished`` with the grid's learning rates (``grid_lrs``) and those
trained (``grid_lrs_done``); a grid whose training stopped before every learning rate finished
is rendered from the best so far, with a warning (:func:`grid_progress`).
One ``renders/`` folder holds one split: rendering another split into it is refused unless
``overwrite`` (which empties it first). Renders of an older checkpoint (the run was trained
again) are removed and rendered again. The split is read from the PREP the run was trained on,
at the absolute path the run records, whatever the current directory; a PREP prepared again
since (its index fingerprint differs from the run's ``prepared_sha256``) is refused, since its
"test" split may then hold the run's training clips, and so is a clip file changed since it
was prepared. A split of which no clip could be rendered is an error.

Clips longer than the extractor's input window (``Extractor.max_duration``, 5.12 s for the
offline classifier) are cut to the window by :func:`render` with a warning: the model never
sees later audio, so a gate would otherwise stretch the window's tokens over the whole clip.
"""

from __future__ import annotations

import logging
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from auralens.errors import AuralensError, CheckpointMismatchError
from auralens.io import ErrorLog, read_json, read_jsonl, write_run_json
from auralens.progress import progress
from auralens.sonify import checkpoint as ckpt
from auralens.sonify import postprocess
from auralens.sonify.align import to_gate_input
from auralens.sonify.prepare import build_codec, build_extractor, load_clip_wave, resolve_clip_path
from auralens.sonify.train import denormalize, normalize

log = logging.getLogger(__name__)

DEFAULT_POST = "minmax"


class RenderError(AuralensError):
    """A run directory that cannot be rendered from."""


@dataclass
class LoadedRun:
    """A trained gate with its extractor and codec, ready to render."""

    run_dir: Path
    checkpoint: Path
    model: torch.nn.Module
    header: dict[str, Any]
    norm: dict[str, np.ndarray]
    extractor: Any
    codec: Any
    #: the run's training status (:func:`run_status`; None: not recorded)
    status: dict[str, Any] | None = None
    #: the lr grid the run was picked from (:func:`grid_progress`; None: a single run)
    grid: dict[str, Any] | None = None


def resolve_run(run_dir: str | Path) -> Path:
    """The run directory holding a checkpoint; for an lr grid, the run with the lowest
    validation loss among the learning rates the grid's ``run.json`` records (the ones its
    summary lists), finished runs first, as the summary picks its best.

    ``lr=<v>`` folders outside the recorded grid (left by an earlier call with other learning
    rates) are ignored, with a warning naming them. A grid without a ``run.json`` (made by an
    older version whose first call was interrupted: grids now record their learning rates
    before the first one trains) takes every ``lr=<v>`` folder.
    """
    from auralens.sonify.train import recorded_grid

    run = Path(run_dir)
    if (run / "best.safetensors").exists() or (run / "last.safetensors").exists():
        return run
    subs = sorted(p for p in run.glob("lr=*") if p.is_dir())
    recorded = recorded_grid(run)
    if recorded is not None:
        outside = [p.name for p in subs if p.name not in recorded and (p / "best.safetensors").exists()]
        if outside:
            _warn_once(("outside", str(run), tuple(outside)),
                       "%s: ignoring %s, not among the learning rates its run.json records (%s)",
                       run, ", ".join(outside), ", ".join(recorded))
        subs = [run / name for name in recorded]
    candidates = []
    for sub in subs:
        info = sub / "run.json"
        if (sub / "best.safetensors").exists() and info.exists():
            result = read_json(info).get("result", {})
            loss = result.get("best_val_loss")
            if loss is not None:
                candidates.append((result.get("status") != "ok", float(loss), sub))
    if candidates:
        return min(candidates)[2]
    raise RenderError(f"{run}: no trained gate found (best.safetensors); run `auralens sonify train` first")


#: Warnings already given in this process (a long-lived process loads the same run again).
_WARNED: set[tuple[Any, ...]] = set()


def _warn_once(key: tuple[Any, ...], msg: str, *args: Any) -> None:
    if key not in _WARNED:
        _WARNED.add(key)
        log.warning(msg, *args)


def run_status(run: Path) -> dict[str, Any] | None:
    """``{"status", "epochs_run", "epochs"}`` of a training run from its ``run.json`` (None
    when it records none: runs of older versions, or an unreadable file)."""
    path = run / "run.json"
    if not path.is_file():
        return None
    try:
        record = read_json(path)
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("result"), dict):
        return None
    result, config = record["result"], record.get("config") or {}
    if not result.get("status"):
        return None
    epochs_run = result.get("epochs_run")
    if epochs_run is None:  # a killed run keeps the "running" record written at its start
        epochs = [h.get("epoch") for h in read_jsonl(run / "history.jsonl") if isinstance(h, dict)]
        epochs_run = max((e for e in epochs if isinstance(e, int)), default=0)
    return {"status": result.get("status"), "epochs_run": epochs_run,
            "epochs": config.get("epochs") if isinstance(config, dict) else None}


def grid_progress(grid: str | Path) -> dict[str, Any] | None:
    """How far the lr grid in ``grid`` trained: ``{"grid", "unfinished", "lrs", "lrs_done"}``
    (``lr=<v>`` folder names in the grid's order; ``lrs_done``: those that finished their epochs
    or diverged, which no rerun trains further). None when ``grid/run.json`` records no lr
    grid (a single run, or a grid of an older version).

    ``unfinished`` is true while the grid's ``run.json`` still says ``running`` (its training
    was stopped, or still goes on) and some of its learning rates are not done: the best of
    the grid may then change.
    """
    from auralens.sonify.train import recorded_grid

    grid = Path(grid)
    names = recorded_grid(grid)
    if names is None:
        return None
    record = read_json(grid / "run.json")  # a readable `sonify train` record: recorded_grid read it
    status = (record.get("result") or {}).get("status")
    epochs = (record.get("config") or {}).get("epochs")
    done = []
    for name in names:
        state = run_status(grid / name)
        if state is None:
            continue
        ran = state["epochs_run"]
        short = isinstance(epochs, int) and isinstance(ran, int) and ran < epochs
        if state["status"] == "diverged" or state["status"] == "ok" and not short:
            done.append(name)
    return {"grid": str(grid), "unfinished": status == "running" and len(done) < len(names),
            "lrs": names, "lrs_done": done}


def unfinished_grid_message(progress: dict[str, Any], best: Path, doing: str) -> str:
    """One line saying that the lr grid of ``progress`` (:func:`grid_progress`) is unfinished
    and that ``doing`` (``rendering`` …) uses its best run so far, ``best``."""
    lrs, done = progress["lrs"], progress["lrs_done"]
    left = [name for name in lrs if name not in done]
    return (f"{progress['grid']}: the lr grid is unfinished ({len(done)} of {len(lrs)} learning "
            f"rates trained; not yet: {', '.join(left)}); {doing} the best so far, {best.name}")


def _warn_unfinished(run: Path, status: dict[str, Any] | None) -> None:
    """Warn (once per run state) when rendering a run that did not finish its epochs."""
    if status is None or status["status"] == "ok":
        return
    epochs = status["epochs"] if status["epochs"] is not None else "?"
    _warn_once(("unfinished", str(run.resolve()), status["status"], status["epochs_run"], epochs),
               "%s: the run did not finish (status %s, %s of %s epochs); rendering its best "
               "checkpoint so far", run, status["status"], status["epochs_run"], epochs)


def run_checkpoint(run: Path, which: str = "best") -> Path:
    """The checkpoint :func:`load_run` loads from a run directory: ``<which>.safetensors``,
    else ``last.safetensors``."""
    path = run / f"{which}.safetensors"
    return path if path.exists() else run / "last.safetensors"


def load_run(run_dir: str | Path, *, which: str = "best", encoder: Any = None, codec: Any = None,
             device: str = "cpu") -> LoadedRun:
    """Load the gate of a run and rebuild its extractor and codec from the checkpoint header.

    Args:
        run_dir: RUN directory (or an lr grid directory: its best run is used).
        which: ``best`` or ``last`` checkpoint.
        encoder/codec: optional specs or instances to use instead of the recorded ones; they
            must resolve to the same backends the gate was trained with.

    A run that did not finish its epochs (still running, killed, diverged) is loaded with a
    warning naming its status and epochs; :attr:`LoadedRun.status` holds them. The best run
    of an lr grid whose training stopped before every learning rate finished is loaded with
    a warning saying so; :attr:`LoadedRun.grid` holds the grid's progress.

    Raises:
        CheckpointMismatchError: ``encoder``/``codec`` differ from the checkpoint's.
    """
    run = resolve_run(run_dir)
    grid = grid_progress(run_dir) if run != Path(run_dir) else None
    if grid is not None and grid["unfinished"]:  # a partial grid is rendered, but said to be one
        _warn_once(("grid", str(Path(run_dir).resolve()), tuple(grid["lrs_done"]), run.name),
                   "%s", unfinished_grid_message(grid, run, "rendering"))
    path = run_checkpoint(run, which)
    status = run_status(run)
    _warn_unfinished(run, status)
    header = ckpt.read_header(path)
    ext_info, cod_info = header["extractor"], header["codec"]
    extractor = build_extractor(encoder if encoder is not None else ext_info["spec"], ext_info.get("layer"))
    cod = build_codec(codec if codec is not None else cod_info["spec"])
    for what, built, info in (("extractor", extractor, ext_info), ("codec", cod, cod_info)):
        if built.name != info.get("name"):
            raise CheckpointMismatchError(
                f"{path}: checkpoint was trained for {what} {info.get('name')!r}, not {built.name!r}; "
                "use a checkpoint trained with the same extractor, layer and codec")
    if str(extractor.layer) != str(ext_info.get("layer")):
        raise CheckpointMismatchError(
            f"{path}: checkpoint was trained on layer {ext_info.get('layer')!r}, not {extractor.layer!r}")
    for what, built, info in (("extractor", extractor, ext_info), ("codec", cod, cod_info)):
        # Same backend, other weights or preprocessing (a model folder changed since training):
        # the gate would map an embedding space it never saw. Known only where both record one.
        old, new = str(info.get("revision") or ""), str(getattr(built, "revision", "") or "")
        if old and new and old != new:
            raise CheckpointMismatchError(
                f"{path}: the {what} {info.get('spec') or built.name!r} has changed since this gate "
                f"was trained (revision {old[:12]} → {new[:12]}: other weights or preprocessing); "
                "render with the model it was trained on, or prepare and train again")
    model, header, norm = ckpt.load_gate(path, extractor=extractor.name, layer=extractor.layer,
                                         codec=cod.name)
    return LoadedRun(run, path, model.to(device), header, norm, extractor, cod, status, grid)


def predict_latent(loaded: LoadedRun, embedding: np.ndarray, frames_out: int,
                   num_samples: int | None = None) -> np.ndarray:
    """``[frames, dim]`` embedding → ``[latent_dim, frames_out]`` latent (de-normalised).

    ``num_samples`` (the clip length at the extractor's rate) lets AST patch grids drop the
    time patches of their zero padding (see :func:`auralens.sonify.align.to_gate_input`).
    """
    info = loaded.header["extractor"]
    valid_fn = getattr(loaded.extractor, "valid_time_patches", None)
    valid = None
    if num_samples is not None and callable(valid_fn) and not info.get("trim", False):
        valid = int(valid_fn(int(num_samples)))
    x = to_gate_input(np.nan_to_num(np.asarray(embedding, dtype=np.float32)), info, valid)
    norm = loaded.norm
    if loaded.header.get("normalize") == "minmax" and norm:
        x = normalize(x, norm["emb_min"], norm["emb_max"])
    device = next(loaded.model.parameters()).device
    with torch.no_grad():
        z = loaded.model(torch.from_numpy(x)[None].to(device), frames_out=frames_out)[0].cpu().numpy()
    if loaded.header.get("normalize") == "minmax" and norm:
        z = denormalize(z, norm["lat_min"], norm["lat_max"])
    return np.nan_to_num(z).astype(np.float32)


def cut_to_window(extractor: Any, wave: np.ndarray, sr: int, *,
                  seconds: float | None = None) -> np.ndarray:
    """``wave`` cut to the extractor's input window (``max_duration``), with a warning when
    that drops audio; unchanged for extractors without a window.

    Args:
        seconds: the whole clip's duration, for the warning, when ``wave`` is only its opening.
    """
    window = getattr(extractor, "max_duration", None)
    if window is None:
        return wave
    keep = int(np.floor(float(window) * sr + 1e-6))
    if wave.shape[-1] <= keep:
        return wave
    length = f"{seconds:.2f} s" if seconds is not None else f"over {wave.shape[-1] / sr:.2f} s"
    log.warning("clip is %s but %s sees at most %g s: rendering only the first %g s",
                length, extractor.name, float(window), float(window))
    return wave[..., :keep]


def read_window(extractor: Any, path: Path) -> tuple[np.ndarray, int]:
    """The opening of an audio file that ``extractor`` sees, at the file's rate, with the
    :func:`cut_to_window` warning naming the whole file's duration; a long file's later audio
    is never decoded. Files shorter than the window are read whole."""
    from auralens.audio import load_sr
    from auralens.sonify.prepare import header_length

    window = getattr(extractor, "max_duration", None)
    if window is None:
        return load_sr(path)
    # a little more than the window, so that a longer file is told apart from one that fits
    wave, sr = load_sr(path, head=float(window) + 0.5)
    length = header_length(path)
    seconds = length[0] / length[1] if length is not None else None
    return cut_to_window(extractor, wave, sr, seconds=seconds), sr


def _decode(loaded: LoadedRun, latent: np.ndarray, length: int) -> np.ndarray:
    from auralens.audio import fix_length

    wave = np.asarray(loaded.codec.decode(latent), dtype=np.float32)
    return fix_length(np.nan_to_num(wave), length)


def render(run_dir: str | Path | LoadedRun, wave: np.ndarray, sr: int,
           post: str | Sequence[str] | None = DEFAULT_POST, *, out_sr: int | None = None,
           embedding: np.ndarray | None = None) -> np.ndarray:
    """Render one clip through a trained gate.

    Args:
        run_dir: RUN directory or a :class:`LoadedRun`.
        wave: ``[T]`` float mono clip at ``sr`` (``[1, T]`` / ``[T, 1]`` are accepted; mix
            several channels down first, e.g. ``wave.mean(axis=1)`` for ``[T, C]``).
        sr: its sample rate.
        post: post-processing chain (``"minmax,wiener"``; None/``"none"``: raw decoder output).
        out_sr: output rate (default: the codec's rate).
        embedding: a precomputed ``[frames, dim]`` embedding of ``wave`` (skips the extractor).

    Returns:
        ``[round(T * rate / sr)]`` float32 at ``out_sr`` or the codec rate: the original
        duration, always finite.

    Raises:
        RenderError: an empty, multi-channel or non-finite clip.
        PostprocessError: an unknown ``post`` step.
    """
    from auralens.audio import fix_length, resample

    postprocess.parse_chain(post)  # a bad chain fails before any model work
    from auralens.checks import is_whole

    for name, rate in (("sr", sr), ("out_sr", out_sr)):
        if rate is not None and not is_whole(rate, 1):
            raise RenderError(f"{name} must be a positive whole number of Hz, got {rate!r}")
    wave = np.asarray(wave, dtype=np.float32)
    if sum(d > 1 for d in wave.shape) > 1:  # flattening [T, C] would interleave the channels
        raise RenderError(f"render takes a mono [T] clip, got shape {wave.shape}; mix the channels "
                          "down first (e.g. wave.mean(axis=1) for [T, C], as the audio loader does)")
    wave = wave.reshape(-1)
    if wave.size == 0:
        raise RenderError("cannot render an empty clip")
    if not np.all(np.isfinite(wave)):
        raise RenderError(f"the clip contains {int(np.sum(~np.isfinite(wave)))} NaN or Inf samples")
    loaded = run_dir if isinstance(run_dir, LoadedRun) else load_run(run_dir)
    wave = cut_to_window(loaded.extractor, wave, sr)
    codec = loaded.codec
    c_sr = int(codec.sample_rate)
    length = int(round(wave.shape[0] * c_sr / sr))
    original = fix_length(resample(wave, sr, c_sr), length)
    wave_e = resample(wave, sr, loaded.extractor.sample_rate)
    if embedding is None:
        embedding = loaded.extractor.embed(wave_e)
    latent = predict_latent(loaded, embedding, codec.num_frames(length), wave_e.shape[0])
    out = postprocess.apply(_decode(loaded, latent, length), post, reference=original)
    if out_sr is not None and out_sr != c_sr:
        out = fix_length(resample(out, c_sr, out_sr), int(round(wave.shape[0] * out_sr / sr)))
    return np.nan_to_num(out).astype(np.float32)


def checkpoint_identity(path: str | Path) -> dict[str, Any]:
    """What identifies a checkpoint file's weights: its SHA-256 (plus path and epoch, for people)."""
    header = ckpt.read_header(path)
    return {"path": str(path), "sha256": checkpoint_sha256(Path(path)), "epoch": header.get("epoch")}


#: SHA-256 of checkpoint files by (path, size, mtime, ctime): a long-lived process (the UI)
#: checks the same checkpoint on every request.
_CHECKPOINT_SHA256: dict[tuple[str, int, int, int], str] = {}


def checkpoint_sha256(path: Path) -> str:
    """SHA-256 of a checkpoint file, hashed again only when the file changed."""
    from auralens.cache import hash_file

    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key not in _CHECKPOINT_SHA256:
        _CHECKPOINT_SHA256[key] = hash_file(path)
    return _CHECKPOINT_SHA256[key]


def renders_stale(out: Path, previous: dict[str, Any], checkpoint: Path) -> str | None:
    """Why the renders in ``out`` were not made from ``checkpoint`` as it is now, or None.

    Renders record the SHA-256 of their checkpoint; a run trained again has another one.
    Renders from an older version record none: they count as made from ``checkpoint`` when
    it has the recorded file name and was not written after them.

    Args:
        out: the ``renders`` folder.
        previous: its ``run.json`` ``config``.
        checkpoint: the checkpoint rendering would load now (:func:`run_checkpoint`).
    """
    recorded = previous.get("checkpoint_sha256")
    if not recorded:
        return _unidentified_renders_stale(out, previous, checkpoint)
    if recorded != checkpoint_sha256(checkpoint):
        return f"made with another checkpoint than {checkpoint} (the run was trained again)"
    return None


def existing_renders(out: Path) -> dict[str, Any] | None:
    """``renders/run.json["config"]`` when ``out`` holds renders ({} when that file records
    none or cannot be read), None when it holds none."""
    manifest = out / "run.json"
    if manifest.is_file():
        try:
            record = read_json(manifest)
        except ValueError:
            return {}
        config = record.get("config") if isinstance(record, dict) else None
        return dict(config) if isinstance(config, dict) else {}
    has_audio = out.is_dir() and any(p.is_dir() and any(p.glob("*.wav")) for p in out.iterdir())
    return {} if has_audio else None


def _unidentified_renders_stale(out: Path, previous: dict[str, Any], checkpoint: Path) -> str | None:
    """For renders whose run.json records no checkpoint SHA-256 (written by an older version):
    why they cannot be kept, or None when they were made from ``checkpoint`` as it is now
    (the same file name, not modified after the renders were written)."""
    recorded = previous.get("checkpoint")
    if recorded and Path(str(recorded)).name != checkpoint.name:
        return (f"made with {Path(str(recorded)).name} (recorded by an older version without its "
                f"SHA-256), not {checkpoint.name}")
    try:
        newer = checkpoint.stat().st_mtime_ns > (out / "run.json").stat().st_mtime_ns
    except OSError:
        newer = True
    if newer:
        return (f"{checkpoint} was written after these renders, whose run.json (from an older "
                "version) records no checkpoint SHA-256")
    return None


def _clear_renders(out: Path) -> None:
    """Remove what render_split wrote into ``out`` (sub-folders, run.json, errors.jsonl)."""
    if not out.is_dir():
        return
    for child in out.iterdir():
        if child.is_dir():
            shutil.rmtree(child)
        elif child.name in ("run.json", "errors.jsonl"):
            child.unlink()


def _post_folders(out: Path, current: dict[str, str], earlier: dict[str, Any]) -> dict[str, Any]:
    """Folder → chain of every post-processing folder of ``out``: this call's (in order), then
    the other folders holding audio (their chain from an earlier run.json, else None)."""
    found = current | {name: chain for name, chain in earlier.items() if (out / name).is_dir()}
    if out.is_dir():
        for sub in sorted(p for p in out.iterdir() if p.is_dir()):
            if sub.name not in ("original", "ceiling") and any(sub.glob("*.wav")):
                found.setdefault(sub.name, None)
    return found


def render_split(run_dir: str | Path, split: str = "test", post: Sequence[str] | str | None = (DEFAULT_POST,),
                 *, limit: int | None = None, overwrite: bool = False) -> Path:
    """Render every clip of a split of the run's prepared dataset into ``RUN/renders``.

    Embeddings come from the prepare cache when present (else they are recomputed). Clips whose
    outputs all exist are skipped (resumable) as long as ``renders/run.json`` shows the same
    split and checkpoint; renders of another checkpoint (the run was trained again) are
    removed and made again. Renders from an older version, whose run.json records no
    checkpoint SHA-256, are kept when the checkpoint has the recorded file name and was not
    written after them, else made again. Failures go to ``renders/errors.jsonl``.

    Args:
        run_dir: RUN directory (or an lr grid directory).
        split: ``train`` / ``val`` / ``test``.
        post: one or more post-processing chains; each gets ``renders/<chain name>/``.
        limit: only the first ``limit`` clips.
        overwrite: empty ``renders/`` and render again (needed to switch to another split).

    Returns:
        the ``renders`` directory.

    Raises:
        RenderError: the run's PREP is not found or changed since training, no such split,
            ``renders/`` holds another split and not ``overwrite``, or every clip failed (the
            failures are in ``renders/errors.jsonl``).
    """
    from auralens.audio import write
    from auralens.cache import ArrayCache

    start = time.perf_counter()
    loaded = load_run(run_dir)
    run = loaded.run_dir
    chains = [post] if isinstance(post, str) or post is None else list(post)
    chains = [c if c else "none" for c in chains] or ["none"]
    names = [postprocess.chain_name(c) for c in chains]
    prep, records = run_prepared(loaded)
    index = [r for r in records if r.get("split") == split]
    if not index:
        raise RenderError(f"{prep}: no clips in split {split!r}")
    if limit is not None:
        index = index[: int(limit)]
    out = run / "renders"
    identity = checkpoint_identity(loaded.checkpoint)
    previous = existing_renders(out)
    kept: list[str] = []
    retained = False  # the renders of earlier calls stay (same split and checkpoint)
    if previous is not None and overwrite:
        _clear_renders(out)
    elif previous is not None and previous.get("split") != split:
        had = previous.get("split")
        raise RenderError(
            f"{out}: holds renders of {'the ' + had + ' split' if had else 'an unknown split'}; "
            f"pass --overwrite to replace them with the {split} split (the report scores one split per run)")
    elif previous is not None:
        stale = renders_stale(out, previous, Path(loaded.checkpoint))
        if stale:
            log.warning("%s: %s; rendering again", out, stale)
            _clear_renders(out)
        else:
            kept = [str(c) for c in previous.get("clips") or []]
            retained = True
    out.mkdir(parents=True, exist_ok=True)
    config = {"run": str(run), "checkpoint": str(loaded.checkpoint), "checkpoint_sha256": identity["sha256"],
              "checkpoint_epoch": identity["epoch"], "split": split,
              "limit": _held_limit(limit, (previous or {}).get("limit") if retained and kept else limit),
              "call_limit": limit, "sample_rate": int(loaded.codec.sample_rate)}
    if loaded.status is not None:  # rendering an unfinished run is recorded with the renders
        config.update(run_status=loaded.status["status"], run_epochs_run=loaded.status["epochs_run"],
                      run_epochs=loaded.status["epochs"])
    if loaded.grid is not None:  # picked from an lr grid: was its best final?
        config.update(grid=loaded.grid["grid"], grid_unfinished=loaded.grid["unfinished"],
                      grid_lrs=loaded.grid["lrs"], grid_lrs_done=loaded.grid["lrs_done"])
    # Folders of earlier calls with other chains stay (the report scores every folder).
    earlier = dict(zip((previous or {}).get("folders") or [], (previous or {}).get("post") or [],
                       strict=False))

    def manifest(clips: list[str], counts: dict[str, int], seconds: float | None,
                 status: str | None = None) -> None:
        folders = _post_folders(out, dict(zip(names, chains, strict=True)), earlier)
        write_run_json(out, command="sonify render", seed=None,
                       config={**config, "post": list(folders.values()), "folders": list(folders),
                               "clips": clips, "call_clips": list(this_call)},
                       models={"extractor": loaded.header["extractor"], "codec": loaded.header["codec"]},
                       timings={} if seconds is None else {"render": seconds},
                       extra={"counts": counts,
                              "status": status or ("running" if seconds is None else "done")})

    this_call: dict[str, None] = {}  # the clips of this call (its split and limit) now present
    # Written first: an interrupted render still says which split and checkpoint it holds.
    manifest(kept, {}, None)
    errors = ErrorLog(out / "errors.jsonl", reset=True)
    cache_root = read_json(prep / "run.json").get("prepared", {}).get("cache_root")
    emb_cache = ArrayCache(cache_root, "embeddings") if cache_root else None
    duration = loaded.header.get("duration")
    c_sr = int(loaded.codec.sample_rate)
    rendered = skipped = 0
    done = dict.fromkeys(kept)
    try:
        for rec in progress(index, desc=f"render {split}", total=len(index)):
            cid = rec["id"].replace("/", "__")
            targets = {name: out / name / f"{cid}.wav" for name in ("original", "ceiling", *names)}
            if not overwrite and all(p.exists() for p in targets.values()):
                skipped += 1
                done[cid] = this_call[cid] = None
                continue
            done.pop(cid, None)  # listed again only once all its files are written
            with errors.guard(rec["id"], rec["path"]):
                wave, sr = load_clip_wave(_clip_file(rec, prep), duration)
                from auralens.audio import resample

                original = resample(wave, sr, c_sr)
                cached = emb_cache.get(rec["emb_key"]) if emb_cache is not None else None
                emb = cached["embedding"].astype(np.float32) if cached else None
                write(targets["original"], original, c_sr)
                write(targets["ceiling"], np.nan_to_num(loaded.codec.roundtrip(original)), c_sr)
                wave_e = resample(wave, sr, loaded.extractor.sample_rate)
                if emb is None:
                    emb = loaded.extractor.embed(wave_e)
                latent = predict_latent(loaded, emb, loaded.codec.num_frames(original.shape[0]),
                                        wave_e.shape[0])
                raw = _decode(loaded, latent, original.shape[0])
                for chain, name in zip(chains, names, strict=True):
                    write(targets[name], postprocess.apply(raw, chain, reference=original), c_sr)
                rendered += 1
                done[cid] = this_call[cid] = None
    except KeyboardInterrupt:  # record the clips finished so far, then stop
        manifest(list(done), {"clips": len(index), "rendered": rendered, "skipped": skipped,
                              "failed": len(errors)}, time.perf_counter() - start, "interrupted")
        raise
    seconds = time.perf_counter() - start
    failed = rendered + skipped == 0  # every clip of the split failed
    manifest(list(done), {"clips": len(index), "rendered": rendered, "skipped": skipped,
                          "failed": len(errors)}, seconds, "failed" if failed else None)
    errors.summary(len(index))
    if failed:
        raise RenderError(f"{out}: none of the {len(index)} clips of the {split} split could be "
                          f"rendered; see {errors.path}")
    return out


def _held_limit(limit: int | None, earlier: Any) -> int | None:
    """The ``limit`` a renders folder holds after a call with ``limit`` over renders made with
    ``earlier`` (each call renders the first N clips of the split): the larger one, None (the
    whole split) when either is None."""
    if limit is None or earlier is None:
        return None
    try:
        return max(int(limit), int(earlier))
    except (TypeError, ValueError):  # a damaged record: what this call asked for
        return int(limit)


def _clip_file(rec: dict[str, Any], prep: Path) -> Path:
    """The audio file of an index line, checked against the SHA-256 prepare recorded.

    Raises:
        PrepareError: a relative path of an older version that cannot be placed.
        RenderError: the file was changed after it was prepared (its cached embedding and the
            rendered original would then disagree).
    """
    from auralens.cache import hash_file

    path = resolve_clip_path(rec, prep)
    if rec.get("sha256") and path.is_file() and hash_file(path) != rec["sha256"]:
        raise RenderError(f"{path}: changed since it was prepared into {prep} (other bytes than "
                          "recorded); prepare the data again")
    return path


def _prepared_candidates(recorded: Path, run: Path) -> list[Path]:
    """Where a PREP recorded as a relative path (older versions: as typed, relative to an
    unrecorded directory) may be: under a folder holding the run, nearest first, then under
    the current directory."""
    from auralens.sonify.prepare import absolute_path

    if recorded.is_absolute():
        return [recorded]
    return list(dict.fromkeys([*(anc / recorded for anc in absolute_path(run).parents),
                               absolute_path(recorded)]))


def run_prepared(loaded: LoadedRun) -> tuple[Path, list[Any]]:
    """The PREP folder a run was trained on, as it is now, and the lines of its
    ``index.jsonl`` (read once); refused when it changed since.

    Runs record PREP as an absolute path and the fingerprint of its index
    (``prepared_sha256``). A relative path (older versions) is looked up next to the run and
    below the current directory, taking the folder whose fingerprint matches.

    Raises:
        RenderError: PREP is not found, or its clips, splits or cached arrays changed since
            the run was trained (it was prepared again with other settings).
    """
    from auralens.sonify.prepare import describe_prepared_change, index_fingerprint

    run = loaded.run_dir
    config: dict[str, Any] = {}
    if (run / "run.json").is_file():
        config = dict(read_json(run / "run.json").get("config") or {})
    recorded = loaded.header.get("prepared") or config.get("prepared")
    if not recorded:
        raise RenderError(f"{run}: records no prepared dataset (PREP); render single files with AUDIO --out")
    fingerprint = loaded.header.get("prepared_sha256") or config.get("prepared_sha256")
    settings = loaded.header.get("prepared_settings") or config.get("prepared_settings")
    found = [c for c in _prepared_candidates(Path(str(recorded)), run) if (c / "index.jsonl").is_file()]
    if not found:
        raise RenderError(f"{recorded}: PREP not found (the prepared data {run} was trained on); "
                          "prepare it again at that path, or render single files with AUDIO --out")
    if not fingerprint:  # runs of older versions: nothing to compare
        return found[0], read_jsonl(found[0] / "index.jsonl")
    for prep in found:
        records = read_jsonl(prep / "index.jsonl")
        if index_fingerprint(records) == fingerprint:
            return prep, records
    raise RenderError(f"{run}: its prepared data {found[0]} changed since it was trained "
                      f"({describe_prepared_change(settings, found[0])}); the split may now hold other "
                      "clips, even training ones — train the run again on it, or prepare into another "
                      "folder")
