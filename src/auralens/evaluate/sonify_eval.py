"""Evaluate a trained sonify run directory: FAD, KAD and spectral metrics beside the ceiling.

A run directory (written by ``auralens sonify train/render``)::

    RUN/run.json                      config: encoder, layer, codec, gate, lr, epochs, timings
    RUN/history.jsonl                 {"epoch", "train_loss", "val_loss", "lr", "time_s"} per line
    RUN/renders/original/<clip>.wav   the test clips
    RUN/renders/ceiling/<clip>.wav    codec encode → decode of the original (the ceiling)
    RUN/renders/<post>/<clip>.wav     sonifications, one folder per post-processing

Every *version* (a post-processing folder, and the ceiling itself) is scored against the
originals:

* set metrics — FAD (Gaussian fits of the pooled frames of all test clips; Ledoit–Wolf
  shrinkage is used automatically and recorded when there are fewer frames than dims),
  FAD∞ when there are enough frames, KAD (σ = median distance of the original frames, the
  same σ for every version and every per-clip score);
* per-clip metrics — the spectral metrics of :mod:`auralens.evaluate.spectral` and
  ``kad_file``: the KAD between the frames of one clip's render and those of *its own*
  original (how well the clip is reconstructed, not how typical it is of the set; NaN, with a
  note, for a clip with fewer than 2 frames on either side), averaged over clips.

The ceiling row holds the same metrics for ``ceiling`` vs ``original``: the best a perfect
gate could reach with this codec. Every sonification row carries them as ``ceiling_<metric>``.

Every version of a run is scored on the same clips: those with a usable original and a usable
render in every version (a clip missing from one version, or whose render fails to load, is left
out of all of them, and a run warning names it). Only when no clip is usable in every version
is each version scored on its own clips; the rows then say so, and a sonification row carries
the ceiling's values only where both were scored on the same clips.
"""

from __future__ import annotations

import json
import logging
import shlex
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from auralens.checks import is_number
from auralens.data.folder import is_audio_file
from auralens.errors import AuralensError
from auralens.io import ErrorLog, read_json, read_jsonl_numbered

log = logging.getLogger(__name__)

SPECIAL_VERSIONS = ("original", "ceiling")


class RunDirError(AuralensError, ValueError):
    """A directory that is not a usable sonify run."""


class StaleRendersError(RunDirError):
    """A run whose renders were made by another checkpoint than the one it holds now."""


def config_value(record: Mapping[str, Any], key: str) -> Any:
    """Look up a config entry in a run.json record tolerant of its nesting.

    ``encoder`` also matches ``extractor``; a dict value yields its ``spec``/``name``/``id``.
    Searched: the record, ``record["config"]`` and one level below that.
    """
    aliases = {"encoder": ("encoder", "extractor", "encoder_spec"),
               "codec": ("codec", "codec_spec"), "layer": ("layer",), "gate": ("gate", "model", "arch"),
               "lr": ("lr", "learning_rate"), "epochs": ("epochs", "num_epochs")}.get(key, (key,))
    scopes: list[Mapping[str, Any]] = []
    cfg = record.get("config") if isinstance(record, Mapping) else None
    for scope in (cfg, record):
        if isinstance(scope, Mapping):
            scopes.append(scope)
            scopes.extend(v for v in scope.values() if isinstance(v, Mapping))
    for scope in scopes:
        for alias in aliases:
            if alias in scope and scope[alias] is not None:
                value = scope[alias]
                if isinstance(value, Mapping):
                    for sub in ("spec", "name", "backend", "id", "model"):
                        if isinstance(value.get(sub), str):
                            return value[sub]
                    continue
                return value
    if key == "layer":  # layer often lives inside the encoder spec ("…@layer=4")
        enc = config_value(record, "encoder")
        if isinstance(enc, str) and "layer=" in enc:
            from auralens.specs import parse_spec

            try:
                return parse_spec(enc).params.get("layer")
            except Exception:  # noqa: BLE001
                return None
    return None


@dataclass
class SonifyRun:
    """A loaded run directory.

    Attributes:
        path: run directory.
        name: display name (the directory name unless the caller gives one; the report
            labels runs by the settings that differ between them).
        record: parsed run.json ({} when absent).
        history: history.jsonl records (lines that are not a valid record are left out).
        versions: version name → clip id → wav path (``original`` and ``ceiling`` included
            when present).
        warnings: problems found while reading (history lines left out, by file:line).
        renders: ``renders/run.json`` as read (:func:`read_renders_record`): None when there
            is none, {} when it is not a readable JSON object.
    """

    path: Path
    name: str
    record: dict[str, Any]
    history: list[dict[str, Any]]
    versions: dict[str, dict[str, Path]]
    warnings: list[str] = field(default_factory=list)
    renders: dict[str, Any] | None = None

    @property
    def posts(self) -> list[str]:
        """Sonification versions (post-processings), sorted, without original/ceiling."""
        return sorted(v for v in self.versions if v not in SPECIAL_VERSIONS)

    @property
    def clips(self) -> list[str]:
        return sorted(self.versions.get("original", {}))

    def info(self) -> dict[str, Any]:
        """Summary fields of the config: encoder, layer, codec, gate, lr, epochs."""
        return {k: config_value(self.record, k)
                for k in ("encoder", "layer", "codec", "gate", "lr", "epochs")}


def load_run(path: str | Path, name: str | None = None) -> SonifyRun:
    """Read a run directory, or the best run of an lr grid (as ``sonify render --run GRID``).

    The best run of an lr grid whose training stopped before every learning rate finished is
    read all the same, with a warning and a note (:attr:`SonifyRun.warnings`) saying so.

    Raises:
        RunDirError: missing directory, no ``renders/original`` or no sonification folder;
            a grid without a finished or rendered best run.
        StaleRendersError: renders made by another checkpoint than the run's current one
            (:func:`stale_renders`).
    """
    path = Path(path)
    if not path.is_dir():
        raise RunDirError(f"{path}: run directory not found")
    notes: list[str] = []
    name = name or path.name  # a grid keeps its own name
    if not (path / "renders" / "original").is_dir() and _is_lr_grid(path):
        given, path = path, _grid_best_run(path)
        notes.append(f"{given}: an lr grid; its best run (lowest validation loss) {path} is reported")
        unfinished = _unfinished_grid(given, path)
        if unfinished:  # reported all the same, said on the page
            log.warning("%s", unfinished)
            notes.append(unfinished)
    renders = path / "renders"
    if not (renders / "original").is_dir():
        raise RunDirError(f"{path}: not a sonify run (no renders/original/ folder); "
                          "render the run first with `auralens sonify render`")
    rendered = read_renders_record(path)
    stale = _stale_reason(path, rendered) if _has_checkpoint(path) else None
    if stale:
        raise StaleRendersError(stale)
    versions: dict[str, dict[str, Path]] = {}
    for folder in sorted(p for p in renders.iterdir() if p.is_dir()):
        files = {f.stem: f for f in sorted(folder.iterdir()) if is_audio_file(f)}
        if files:
            versions[folder.name] = files
    clips = _rendered_clips(rendered)
    if clips is not None:  # score exactly the clips `sonify render` lists (one split)
        versions = {v: kept for v, files in versions.items()
                    if (kept := {c: f for c, f in files.items() if c in clips})}
    if "original" not in versions:
        unfinished = _unfinished_render(path, rendered)
        if unfinished is not None:
            raise RunDirError(unfinished)
        raise RunDirError(f"{path}: renders/original/ holds no audio files"
                          + (" listed in renders/run.json" if clips is not None else ""))
    record: dict[str, Any] = {}
    if (path / "run.json").exists():
        try:
            record = read_json(path / "run.json")
        except ValueError as exc:
            raise RunDirError(f"{path / 'run.json'}: invalid JSON ({exc})") from exc
    history, warnings = read_history(path / "history.jsonl")
    return SonifyRun(path, name, record, history, versions, [*notes, *warnings], rendered)


def _is_lr_grid(path: Path) -> bool:
    """Whether ``path`` is a learning-rate grid of `sonify train` (``lr=*`` runs, no checkpoint
    of its own)."""
    if (path / "best.safetensors").exists() or (path / "last.safetensors").exists():
        return False
    return any(p.is_dir() for p in path.glob("lr=*"))


def _grid_best_run(grid: Path) -> Path:
    """The run of an lr grid that ``sonify render --run GRID`` renders (its lowest validation
    loss), which must hold renders.

    Raises:
        RunDirError: no finished run in the grid, or its best run has no renders.
    """
    from auralens.sonify.render import resolve_run

    try:
        best = resolve_run(grid)
    except AuralensError as exc:
        raise RunDirError(f"{grid}: an lr grid without a finished run to report ({exc})") from None
    except ValueError as exc:  # a damaged run.json of one of its runs
        raise RunDirError(f"{grid}: an lr grid whose runs cannot be read ({exc})") from None
    if not (best / "renders" / "original").is_dir():
        raise RunDirError(f"{grid}: an lr grid whose best run {best} has no renders/original/ "
                          f"folder; render it with `auralens sonify render --run {grid} --split test`")
    return best


def _unfinished_grid(grid: Path, best: Path) -> str | None:
    """The note for an lr grid whose training stopped before every learning rate finished
    (its best run ``best`` may then not be the grid's final best), else None."""
    from auralens.sonify.render import grid_progress, unfinished_grid_message

    progress = grid_progress(grid)
    if progress is None or not progress["unfinished"]:
        return None
    return unfinished_grid_message(progress, best, "reporting")


def read_renders_record(run: Path) -> dict[str, Any] | None:
    """``run/renders/run.json`` as read: None when there is none, {} when it is not JSON or
    not an object (as `sonify render` reads it: it records nothing).

    Raises:
        OSError: it cannot be read.
    """
    path = run / "renders" / "run.json"
    if not path.is_file():
        return None
    try:
        record = read_json(path)
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def _render_config(renders: Mapping[str, Any] | None) -> dict[str, Any]:
    """The ``config`` of a ``renders/run.json`` record ({} when it holds none)."""
    config = (renders or {}).get("config")
    return dict(config) if isinstance(config, dict) else {}


def _has_checkpoint(run: Path) -> bool:
    """Whether ``run`` holds a checkpoint (`sonify render` renders from it)."""
    return (run / "best.safetensors").is_file() or (run / "last.safetensors").is_file()


def stale_renders(run: Path) -> str | None:
    """Why the renders of ``run`` were not made by the checkpoint it holds now, or None.

    The test is the one `sonify render` applies before it renders again
    (:func:`auralens.sonify.render.renders_stale`): training a run again replaces its
    checkpoint but keeps ``renders/``, whose scores would then be labelled with the new
    run's settings. None when the run holds no checkpoint (nothing to compare).
    """
    # checked before reading renders/run.json: without a checkpoint it does not matter
    return _stale_reason(run, read_renders_record(run)) if _has_checkpoint(run) else None


def _stale_reason(run: Path, renders: Mapping[str, Any] | None) -> str | None:
    """:func:`stale_renders` of a ``run`` holding a checkpoint (:func:`_has_checkpoint`), with
    ``renders/run.json`` as :func:`read_renders_record` read it."""
    from auralens.sonify.render import renders_stale, run_checkpoint

    previous: dict[str, Any] = {}
    if renders is None:
        # `sonify render` renders such a folder again too
        why = "renders/ holds no run.json saying which checkpoint made them"
    else:
        # unreadable: no recorded checkpoint, as `sonify render` reads it
        previous = _render_config(renders)
        checkpoint = run_checkpoint(run)
        reason = renders_stale(run / "renders", previous, checkpoint)
        if reason is None:
            return None
        why = f"renders/ was {reason}"
    split = previous.get("split") if isinstance(previous.get("split"), str) else "test"
    return f"{run}: {why}; render it again with `{_render_command(run, split, previous)}`, then report"


def _render_command(run: Path, split: str, previous: Mapping[str, Any]) -> str:
    """The `sonify render` call that makes a run's renders again as they were (split, limit,
    post-processing chains); stale renders are replaced without --overwrite."""
    parts = ["auralens", "sonify", "render", "--run", str(run), "--split", split]
    limit = previous.get("limit")
    if is_number(limit):
        parts += ["--limit", str(int(limit))]
    chains = [c for c in previous.get("post") or [] if isinstance(c, str)]
    if chains and chains != ["minmax"]:  # minmax is render's default
        for chain in chains:
            parts += ["--post", chain]
    return " ".join(shlex.quote(p) for p in parts)


#: history.jsonl fields that must be numbers (or null) to be drawn.
HISTORY_NUMBERS = ("epoch", "train_loss", "val_loss")


def read_history(path: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """The usable records of a ``history.jsonl`` and one warning naming the lines left out.

    A record must be a JSON object whose ``epoch`` (when given) is a number and whose
    ``train_loss`` and ``val_loss`` are numbers or null (a NaN or infinite loss is kept: it is
    drawn as a gap); any other line is left out so that one bad line does not lose the whole
    loss plot.
    """
    history: list[dict[str, Any]] = []
    bad: list[str] = []
    for line, rec in read_jsonl_numbered(path):
        if not isinstance(rec, dict):
            bad.append(f"{line} (not a JSON object)")
            continue
        # A loss may be null (not measured) or NaN/inf (diverged); an epoch must be a number.
        wrong = [k for k in HISTORY_NUMBERS if k in rec and not is_number(rec[k])
                 and not (k != "epoch" and (rec[k] is None or isinstance(rec[k], float)))]
        if wrong:
            bad.append(f"{line} ({wrong[0]} is {json.dumps(rec[wrong[0]])}, not a number)")
            continue
        history.append(rec)
    if not bad:
        return history, []
    return history, [f"{path}: {len(bad)} line(s) left out of the loss curves: line "
                     f"{_first(bad)}"]


def _first(items: Sequence[str], limit: int = 5) -> str:
    """``items`` for a note, in their order: the first ``limit``, then a count."""
    more = len(items) - limit
    return ", ".join(items[:limit]) + (f" and {more} more" if more > 0 else "")


def _names(ids: Iterable[str], limit: int = 5) -> str:
    """Clip ids for a note, sorted: the first ``limit``, then a count."""
    return _first(sorted(ids), limit)


#: ``renders/run.json`` statuses of a `sonify render` that stopped before its end: "running"
#: stays when it was killed, "interrupted" is written when it was stopped (Ctrl-C).
UNFINISHED_RENDER = ("running", "interrupted")


def _unfinished_render(run: Path, renders: Mapping[str, Any] | None) -> str | None:
    """Why ``run`` has no finished renders when its `sonify render` stopped part-way (its
    ``renders/run.json``, ``renders`` as :func:`read_renders_record` read it, has a status of
    :data:`UNFINISHED_RENDER`), with the call that finishes it; None otherwise."""
    status = (renders or {}).get("status")
    if status not in UNFINISHED_RENDER:
        return None
    config = _render_config(renders)
    split = config.get("split") if isinstance(config.get("split"), str) else "test"
    # a rerun keeps the clips already written and renders the rest
    return (f"{run}: its `sonify render` was interrupted before it finished any clip "
            f"(renders/run.json says {status!r}); run `{_render_command(run, split, config)}` "
            "to finish it, then report")


def _rendered_clips(renders: Mapping[str, Any] | None) -> set[str] | None:
    """Clip ids (file stems) listed in ``renders/run.json`` (``renders`` as
    :func:`read_renders_record` read it); None when it lists none."""
    clips = _render_config(renders).get("clips")
    return {str(c) for c in clips} if isinstance(clips, list) else None


@dataclass
class VersionScores:
    """Scores of one version of one run.

    Attributes:
        run: run name.
        version: post-processing name (or ``ceiling``).
        set_metrics: fad, fad_inf, kad, … (floats or None when not computable).
        clip_metrics: clip id → metric → value (every clip with a usable render).
        notes: human-readable remarks (shrinkage used, skipped metrics, clips left out).
        scored: the clips the set metrics and the means cover (empty: every clip of
            ``clip_metrics``).
    """

    run: str
    version: str
    set_metrics: dict[str, float | None] = field(default_factory=dict)
    clip_metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    scored: list[str] = field(default_factory=list)

    def means(self) -> dict[str, float]:
        """Per-clip metrics averaged over the scored clips where they are defined (NaN when
        none is).

        Relative metrics are NaN for a clip whose original is silent (see
        :mod:`auralens.evaluate.spectral`); such clips are left out of those means.
        """
        clips = ([self.clip_metrics[c] for c in self.scored if c in self.clip_metrics]
                 if self.scored else list(self.clip_metrics.values()))
        keys = sorted({k for m in clips for k in m})
        out = {}
        for k in keys:
            vals = [m[k] for m in clips if k in m]
            vals = [v for v in vals if np.isfinite(v)]
            out[k] = float(np.mean(vals)) if vals else float("nan")
        return out


@dataclass
class RunScores:
    """All versions of one run plus the embedder and sigma used."""

    run: SonifyRun
    embedder: str
    kad_sigma: float | None
    versions: dict[str, VersionScores]
    warnings: list[str] = field(default_factory=list)
    fixed_sigma: bool = False  # kad_sigma was given, not the originals' median distance

    def rows(self) -> list[dict[str, Any]]:
        """One flat row per version (ceiling first); ``n_clips`` is the number of clips scored.

        A sonification carries ``ceiling_*`` only when it was scored on the ceiling's clips
        (a ceiling from other clips beside it would not be comparable).
        """
        info = self.run.info()
        ceiling = self.versions.get("ceiling")
        ceil_vals = {**ceiling.set_metrics, **ceiling.means()} if ceiling else {}
        out = []
        for vname in ["ceiling", *[v for v in self.versions if v != "ceiling"]]:
            vs = self.versions.get(vname)
            if vs is None:
                continue
            row: dict[str, Any] = {"run": self.run.name, "version": vname, **info,
                                   "embedder": self.embedder,
                                   "n_clips": len(vs.scored or vs.clip_metrics)}
            row.update(vs.set_metrics)
            row.update(vs.means())
            if vname != "ceiling" and ceiling is not None and vs.scored == ceiling.scored:
                row.update({f"ceiling_{k}": v for k, v in ceil_vals.items()})
            row["notes"] = "; ".join(vs.notes)
            out.append(row)
        return out


def _set_scores(ref_frames: list[np.ndarray], est_frames: list[np.ndarray], sigma: float,
                notes: list[str]) -> dict[str, float | None]:
    from auralens.evaluate.fad import (
        InsufficientFramesError,
        compute_stats,
        fad_inf,
        frechet_distance,
    )
    from auralens.evaluate.kad import kad

    out: dict[str, float | None] = {}
    ref = np.concatenate(ref_frames)
    est = np.concatenate(est_frames)
    n, d = min(ref.shape[0], est.shape[0]), ref.shape[1]
    shrink = None if n > 2 * d else "ledoit-wolf"
    if shrink:
        notes.append(f"FAD with Ledoit-Wolf shrinkage ({n} frames, dim {d})")
    ref_stats = compute_stats(ref, shrinkage=shrink)
    out["fad"] = frechet_distance(ref_stats, compute_stats(est, shrinkage=shrink))
    out["fad_inf"] = None
    if est.shape[0] >= 10 * d:
        try:
            out["fad_inf"] = fad_inf(ref_stats, est, shrinkage=shrink).fad_inf
        except InsufficientFramesError:
            pass
    out["kad"] = kad(ref, est, sigma=sigma).value
    return out


def _clip_kad(vs: VersionScores, ref_emb: Mapping[str, np.ndarray],
              est_emb: Mapping[str, np.ndarray], sigma: float) -> None:
    """Set ``kad_file`` of every rendered clip: KAD between its render's frames and its own
    original's, with the run's σ (the set KAD's), so the ceiling and every version are scored
    on one kernel. A clip with fewer than 2 frames on either side gets NaN and a note."""
    from auralens.evaluate.kad import kad

    short = []
    for cid, est in est_emb.items():
        ref = ref_emb[cid]
        if ref.shape[0] < 2 or est.shape[0] < 2:
            vs.clip_metrics.setdefault(cid, {})["kad_file"] = float("nan")
            short.append(cid)
            continue
        vs.clip_metrics.setdefault(cid, {})["kad_file"] = kad(ref, est, sigma=sigma).value
    if short:
        vs.notes.append(f"kad_file not computed for {len(short)} clip(s) with fewer than 2 "
                        f"embedding frames in the original or the render: {_names(short)}")


def evaluate_run(run: SonifyRun, embedder: Any, *, cache: Any = None,
                 errors: ErrorLog | None = None, spectral: bool = True,
                 versions: Sequence[str] | None = None, sigma: float | None = None) -> RunScores:
    """Score every version (and the ceiling) of a run against its originals.

    Args:
        run: a loaded run.
        embedder: a :class:`~auralens.evaluate.embedders.MetricEmbedder`.
        cache: optional :class:`auralens.cache.ArrayCache` for embeddings.
        errors: per-clip failures go here (the clip is skipped); None → raise.
        spectral: also compute the per-clip spectral metrics.
        versions: restrict to these versions (default: ceiling + every post).
        sigma: KAD kernel bandwidth (None: the median distance of this run's original frames;
            a fixed value makes KAD comparable across runs and reports).
    """
    from auralens import audio
    from auralens.evaluate.embedders import circularity_warning
    from auralens.evaluate.kad import median_pairwise_distance
    from auralens.evaluate.spectral import spectral_metrics, undefined_warning
    from auralens.progress import progress

    warn = circularity_warning(embedder, run.record)
    originals = run.versions["original"]
    ref_emb: dict[str, np.ndarray] = {}
    for cid, p in originals.items():
        try:
            ref_emb[cid] = embedder.embed_file(p, cache=cache)
        except AuralensError as exc:
            if errors is None:
                raise
            errors.add(f"{run.name}/original/{cid}", exc, p)
    if not ref_emb:
        raise RunDirError(f"{run.path}: no usable original clip")
    fixed_sigma = sigma is not None
    if sigma is None:
        sigma = median_pairwise_distance(np.concatenate(list(ref_emb.values())))
    wanted = list(versions) if versions else [v for v in ("ceiling", *run.posts) if v in run.versions]
    result: dict[str, VersionScores] = {}
    embs: dict[str, dict[str, np.ndarray]] = {}
    for vname in wanted:
        files = run.versions.get(vname, {})
        vs = VersionScores(run.name, vname)
        est_emb: dict[str, np.ndarray] = {}
        failed: list[str] = []
        for cid in progress(sorted(files), desc=f"{run.name}/{vname}"):
            if cid not in ref_emb:
                vs.notes.append(f"{cid}: no original, skipped")
                continue
            try:
                emb = embedder.embed_file(files[cid], cache=cache)
                if spectral:
                    ref_w, ref_sr = audio.load_sr(originals[cid])
                    est_w, est_sr = audio.load_sr(files[cid])
                    # Compare within the band both share: the codec's rate limits the ceiling too.
                    sr = min(ref_sr, est_sr)
                    ref_w, est_w = audio.resample(ref_w, ref_sr, sr), audio.resample(est_w, est_sr, sr)
                    vs.clip_metrics[cid] = spectral_metrics(ref_w, est_w, sr)
                    # a constant original leaves si_sdr undefined as a silent one does, and so
                    # does a silent or constant render
                    n = min(ref_w.shape[-1], est_w.shape[-1])
                    undefined = undefined_warning(ref_w[:n], vs.clip_metrics[cid], "original",
                                                  est=est_w[:n], est_name="render")
                    if undefined:
                        vs.notes.append(f"{cid}: {undefined}")
                else:
                    vs.clip_metrics[cid] = {}
                est_emb[cid] = emb  # only once every part of the clip loaded
            except AuralensError as exc:
                if errors is None:
                    raise
                errors.add(f"{run.name}/{vname}/{cid}", exc, files[cid])
                failed.append(cid)
        missing = sorted(set(ref_emb) - set(files))
        if missing:
            vs.notes.append(f"{len(missing)} clip(s) without a render: {_names(missing)}")
        if failed:
            vs.notes.append(f"{len(failed)} render(s) failed to load: {_names(failed)}")
        result[vname], embs[vname] = vs, est_emb

    # One clip set for every version, so that the rows and the ceiling beside each compare
    # the same clips.
    usable = [set(e) for e in embs.values() if e]
    common = set.intersection(*usable) if usable else set()
    warnings = [*run.warnings, *([warn] if warn else [])]
    if usable and not common:
        warnings.append(f"{run.name}: no clip has a usable render in every version, so each "
                        "version is scored on its own clips (see n_clips and notes): the rows "
                        "are not directly comparable")
    elif any(u != common for u in usable):
        left = sorted(set().union(*usable) - common)
        warnings.append(f"{run.name}: every version is scored on the {len(common)} clip(s) "
                        f"usable in all of them; left out: {_names(left)}")
    for vname, vs in result.items():
        est_emb = embs[vname]
        if not est_emb:
            vs.notes.append("no usable renders")
            continue
        vs.scored = sorted(common or est_emb)
        if len(vs.scored) < len(est_emb):
            vs.notes.append(f"left out as not usable in every version: "
                            f"{_names(set(est_emb) - common)}")
        try:
            vs.set_metrics = _set_scores([ref_emb[c] for c in vs.scored],
                                         [est_emb[c] for c in vs.scored], sigma, vs.notes)
        except AuralensError as exc:
            vs.notes.append(f"set metrics not computed: {exc}")
        _clip_kad(vs, ref_emb, est_emb, sigma)
    return RunScores(run, embedder.name, sigma, result, warnings, fixed_sigma=fixed_sigma)
