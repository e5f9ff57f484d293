"""Public separation API: load a separator, separate a file, evaluate on a dataset.

    >>> sep = load_separator()                     # committed tiny TDCN++
    >>> separate_file("mix.wav", "out/")           # out/sources/source{k}.wav, activity.json …
    >>> evaluate_separator("fuss_dir", "eval/", separator="nmf")
"""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np

from auralens.config import fingerprint
from auralens.data.folder import check_out_owner, recorded_command
from auralens.encoders.hf import backend_record
from auralens.errors import AuralensError
from auralens.io import check_out_dir
from auralens.scene.separate.activity import BLOCK, ActivityConfig, filter_estimates
from auralens.scene.separate.base import (
    MIN_SEPARATE_SAMPLES,
    SEPARATORS,
    ReferenceSeparator,
    Separator,
)
from auralens.shard import shard_owner

log = logging.getLogger(__name__)


class SeparationError(AuralensError):
    """A separator or dataset that cannot be used for the requested job."""


def train_config(path: str | Path | None, overrides: dict[str, Any] | None = None,
                 sets: list[str] | None = None) -> Any:
    """Build a :class:`~auralens.scene.separate.train.TrainConfig` from YAML + overrides.

    The YAML may hold the fields at the top level or under a ``train:`` key; beside ``train:``
    no other top-level key is read, so any is refused (naming the file and the keys).
    """
    from auralens.config import ConfigError, apply_overrides, load_yaml
    from auralens.scene.separate.train import TrainConfig

    names = {f.name for f in fields(TrainConfig)}
    data: dict[str, Any] = {}
    if path is not None:
        loaded = load_yaml(path)
        if "train" in loaded:
            other = sorted(map(str, set(loaded) - {"train"}))
            if other:
                raise ConfigError(f"{path}: top-level key(s) {other} beside 'train:' would be "
                                  "ignored; put training options (model options as model: {...}) "
                                  "under train:")
            section = loaded["train"] if loaded["train"] is not None else {}
            if not isinstance(section, dict):
                raise ConfigError(f"{path}: 'train:' must be a mapping of training options, "
                                  f"got {section!r}")
            loaded = section
        unknown = sorted(map(str, set(loaded) - names))
        if unknown:
            raise ConfigError(f"{path}: unknown training option(s) {unknown}; known: {sorted(names)}")
        data = dict(loaded)
    data.update(overrides or {})
    data = apply_overrides(data, sets)
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"unknown training option(s) {unknown}; known: {sorted(names)}")
    return TrainConfig(**data)


def load_separator(spec: str | None = None, **params: Any) -> Separator:
    """Build a separator from a spec (``None`` → the committed tiny TDCN++ checkpoint)."""
    return SEPARATORS.build(spec, **params)


def min_samples(separator: Separator) -> int:
    """The length shorter inputs are zero-padded to: the separator's ``min_samples`` (its STFT
    window, for the built-in ones), and at least :data:`MIN_SEPARATE_SAMPLES`."""
    return max(MIN_SEPARATE_SAMPLES, int(separator.min_samples))


def _padded(fn: Any, mix: np.ndarray, *rest: np.ndarray,
            min_samples: int = MIN_SEPARATE_SAMPLES) -> np.ndarray:
    """``fn(mix, *rest)`` on inputs zero-padded to ``min_samples``, cut back.

    Zeros add nothing to a mixture, so estimates that sum to the padded mixture still sum to
    the original once cut.
    """
    n = mix.shape[-1]
    if n == 0:
        raise SeparationError("empty mixture")
    if n >= min_samples:
        return fn(mix, *rest)
    pad = [(0, 0)] * (mix.ndim - 1) + [(0, min_samples - n)]
    padded = [np.pad(x, [(0, 0)] * (x.ndim - 1) + [(0, min_samples - n)]) for x in rest]
    return np.asarray(fn(np.pad(mix, pad), *padded))[..., :n]


def _refuse_reference(separator: Separator) -> None:
    """An oracle needs the reference sources, which only evaluation has."""
    if isinstance(separator, ReferenceSeparator):
        raise SeparationError(f"{separator.name} needs reference sources; use it with "
                              "'auralens separate eval' only")


def separate_array(separator: Separator, mix: np.ndarray) -> np.ndarray:
    """``[T]`` → ``[M, T]`` with shape checks (a backend returning a wrong shape is a bug)."""
    from auralens.audio import check_clip

    _refuse_reference(separator)
    mix = check_clip(mix, f"{separator.name}: the mixture")  # NaN in, NaN sources out
    est = np.asarray(_padded(separator.separate, mix, min_samples=min_samples(separator)),
                     np.float32)
    if est.ndim != 2 or est.shape[1] != mix.shape[-1]:
        raise SeparationError(f"{separator.name} returned shape {est.shape} for {mix.shape[-1]} samples")
    return est


def max_sum_error(est: np.ndarray, mix: np.ndarray, block: int = BLOCK) -> float:
    """``max |Σ_m est[m] − mix|`` of ``[M, T]`` estimates and a ``[T]`` mixture, taken
    ``block`` samples at a time (the same value as on the whole arrays, without their two
    ``[T]`` temporaries)."""
    worst = 0.0
    for i in range(0, mix.shape[-1], block):
        part = est[:, i:i + block].sum(0)
        part -= mix[i:i + block]
        worst = float(np.maximum(worst, np.abs(part, out=part).max()))  # keeps a NaN
    return worst


#: The estimates :func:`separate_file` writes in ``OUT/sources``.
SOURCE_RE = re.compile(r"source\d+\.wav")


def _earlier_sources(out: Path, input: Path, owned: bool = False) -> list[Path]:
    """The ``sources/source<k>.wav`` files an earlier ``separate`` run wrote in ``out``, which
    this run replaces (the rest of the folder is left alone). ``owned``: ``out`` is a batch's
    item folder (``OUT/items/<id>``), whose such files are the batch's own even where a killed
    run left no run.json.

    Raises:
        SeparationError: ``out`` holds another command's outputs (its run.json), or a
            ``run.json`` auralens did not write; ``sources/source<k>.wav`` files that no
            recorded ``separate`` run wrote (a user's own, which this run would overwrite); or
            the input is one of the files this run writes.
    """
    if not out.is_dir():
        return []
    found = (sorted(p for p in (out / "sources").iterdir() if SOURCE_RE.fullmatch(p.name)
                    and (p.is_file() or p.is_symlink()))
             if (out / "sources").is_dir() else [])
    command = "separate" if owned else recorded_command(out)
    if command is None and (out / "run.json").exists():
        raise SeparationError(f"{out}: its run.json was not written by auralens and would be "
                              "replaced; use another --out")
    if command is not None and command != "separate":
        raise SeparationError(f"{out}: holds the outputs of 'auralens {command}' (run.json); "
                              "use another --out for 'auralens separate'")
    if found and command is None:
        raise SeparationError(f"{found[0]}: not written by an earlier 'auralens separate' run in "
                              f"{out} (no run.json), and this run would overwrite it; use another --out")
    target = input.resolve()
    hit = next((p for p in found if p.resolve() == target), None)
    if hit is not None or (target.parent == (out / "sources").resolve()
                           and SOURCE_RE.fullmatch(target.name)):
        raise SeparationError(f"{input}: the input is one of the sources this run writes in "
                              f"{out / 'sources'}; use another --out")
    return found


def separate_file(path: str | Path, out_dir: str | Path, separator: str | Separator | None = None,
                  *, activity: ActivityConfig | None = None) -> dict[str, Any]:
    """Separate one audio file.

    Writes ``out_dir/sources/source{k}.wav`` (float WAV at the separator's rate; they sum to
    the resampled input when the separator is mixture-consistent), ``activity.json`` (per
    estimate: kept, scores, reason), ``summary.json`` and ``run.json``. ``out_dir`` may hold
    other files: only the ``sources/source<k>.wav`` an earlier ``separate`` run wrote there
    (its run.json says so) are replaced, never the input.

    Args:
        path: any audio file libsndfile reads, any rate/channels (mixed to mono).
        out_dir: output directory.
        separator: spec string, a built :class:`Separator`, or None (default TDCN++).
        activity: thresholds of the active-source filter.

    Returns:
        The summary dict (also written to ``summary.json``).

    Raises:
        SeparationError: ``out_dir`` holds another command's outputs, or ``source<k>.wav``
            files no recorded ``separate`` run wrote (see :func:`_earlier_sources`).
    """
    return _separate_one(path, out_dir, separator, activity=activity)


def _separate_one(path: str | Path, out_dir: str | Path, separator: str | Separator | None,
                  *, activity: ActivityConfig | None, owned: bool = False) -> dict[str, Any]:
    """:func:`separate_file`; ``owned``: ``out_dir`` is a batch's item folder."""
    from auralens.audio import AudioError, load, write
    from auralens.io import Timer, write_json, write_run_json

    timer = Timer()
    out_dir = Path(out_dir)
    if not Path(path).exists():  # name the input before spending time on the model
        raise AudioError(path, "file not found")
    check_out_dir(out_dir, SeparationError)
    stale = _earlier_sources(out_dir, Path(path), owned)  # refuses a folder of other outputs first
    with timer("load_model"):
        sep = separator if isinstance(separator, Separator) else load_separator(separator)
    with timer("load_audio"):
        mix = load(path, sep.sample_rate)
    with timer("separate"):
        est = separate_array(sep, mix)
    activity = activity or ActivityConfig()
    decisions = filter_estimates(est, mix, activity)
    files = []
    for old in stale:  # an earlier run's estimates: a separator with fewer leaves none behind
        old.unlink(missing_ok=True)
    for k, wave in enumerate(est):
        files.append(str(write(out_dir / "sources" / f"source{k}.wav", wave, sep.sample_rate)))
    write_json(out_dir / "activity.json", {"config": activity, "estimates": decisions})
    duration = mix.shape[0] / sep.sample_rate
    summary = {
        "input": str(path),
        "separator": sep.name,
        "sample_rate": sep.sample_rate,
        "duration_s": duration,
        "n_estimates": int(est.shape[0]),
        "n_kept": int(sum(d["kept"] for d in decisions)),
        "kept": [k for k, d in enumerate(decisions) if d["kept"]],
        "sources": files,
        "max_abs_sum_error": max_sum_error(est, mix),
        "real_time_factor": timer.timings["separate"] / max(duration, 1e-9),
    }
    write_json(out_dir / "summary.json", summary)
    write_run_json(out_dir, command="separate", config={"separator": sep.name, "activity": activity},
                   models={"separator": backend_record(sep)}, timings=timer.timings)
    return summary


def batch_inputs(source: str | Path, exclude: tuple[Path, ...] = (),
                 command: str = "separate") -> list[tuple[str, Path]]:
    """``[(id, audio path)]`` to separate, sorted by id.

    ``source`` is a FUSS-layout folder or manifest (its mixtures, never the reference sources
    beside them; ids from the manifest or the FUSS layout), a
    folder of audio files (every audio file below it; id = the path relative to the folder
    without its suffix, see :func:`auralens.data.folder.file_ids`) or a text file with one audio path per line (relative paths are
    relative to the file; id = the file name without its suffix; where names repeat, the ids
    a scan of the folder holding every listed file gives).
    A folder in ``exclude`` (the job's output folder) must not be ``source``, inside it, or
    hold it: each is refused, as a later run over ``source`` would read the outputs back as
    mixtures. Folders below ``source`` that hold another auralens run's outputs (see
    :func:`output_trees`) are left out of a folder scan, and a ``source`` that is one is
    refused.
    ``command`` is the one-file command a single audio file is pointed to.
    """
    from auralens.data import DatasetError
    from auralens.data.folder import AUDIO_EXTENSIONS, audio_files, file_ids
    from auralens.data.fuss import load_fuss, stray_audio

    source = Path(source)
    if not source.exists():
        raise SeparationError(f"{source}: input not found")
    if source.is_file() and source.suffix.lower() in AUDIO_EXTENSIONS:
        raise SeparationError(f"{source}: one audio file; batch takes a folder, a FUSS manifest "
                              f"or a text list (use 'auralens {command} FILE --out DIR' for one file)")
    if source.is_dir():
        _refuse_output_folders(source, exclude)
    if source.suffix == ".jsonl" or (source / "manifest.jsonl").exists():
        return sorted((rid, mix) for rid, mix, _ in _record_items(source, None, 16000))
    if source.is_dir() and not stray_audio(source):
        try:
            records = load_fuss(source)
        except DatasetError:
            records = []
        if records:  # a FUSS folder: its mixtures, not the reference sources beside them
            return sorted((r.id, r.mixture) for r in records)
    if source.is_dir():
        skip = (*exclude, *output_trees(source))
        files = audio_files(source, skip)
        if not files:
            raise SeparationError(f"{source}: no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))})")
        return sorted(zip(file_ids(source, files), files, strict=True))
    from auralens.types import record_id

    lines = [ln.strip() for ln in source.read_text(errors="replace").splitlines()]
    paths, ids = [], []
    for number, ln in enumerate(lines, start=1):
        if not ln or ln.startswith("#"):
            continue
        path = Path(ln) if Path(ln).is_absolute() else source.parent / ln
        try:  # the id names the item's folder: '/', '.' or '..' name no file
            ids.append(record_id(path.with_suffix("").name))
        except ValueError:
            raise SeparationError(f"{source} line {number}: {ln!r} does not name an audio file") from None
        paths.append(path)
    if not paths:
        raise SeparationError(f"{source}: the list names no audio files")
    if len(set(ids)) < len(ids):
        # names repeat (s1/x.wav, s2/x.wav): ids as a scan of the folder holding them all gives
        full = [Path(os.path.abspath(p)) for p in paths]
        twice = next((p for k, p in enumerate(full) if p in full[:k]), None)
        if twice is not None:
            raise SeparationError(f"{source}: lists {twice} twice")
        try:
            ids = [record_id(i) for i in file_ids(Path(os.path.commonpath(full)), full)]
        except ValueError as exc:
            raise SeparationError(f"{source}: {exc}") from None
    return sorted(zip(ids, paths, strict=True))


#: Commands whose outputs are meant as inputs (datasets): their folders are scanned as usual.
_DATA_COMMANDS = ("data ",)


def _output_tree(folder: Path) -> Path | None:
    """The output folder of the auralens run recorded in ``folder/run.json`` (a shard's record
    in ``OUT/shards/part-i-of-n`` stands for ``OUT``), or None when there is no such record or
    it is a dataset command's (``data …``), whose audio is meant to be read."""
    command = recorded_command(folder)
    if command is None or command.startswith(_DATA_COMMANDS):
        return None
    return shard_owner(folder)


def output_trees(root: Path) -> list[Path]:
    """Folders at or below ``root`` that hold an auralens run's outputs (``separate``,
    ``separate batch``, ``imagine --mode …``, ``imagine batch …``, …: a ``run.json`` auralens
    wrote), resolved. Hidden folders are not looked in (a folder scan leaves them out)."""
    out = []
    for record in sorted(root.rglob("run.json")):
        if any(part.startswith(".") for part in record.relative_to(root).parts):
            continue
        tree = _output_tree(record.parent)
        if tree is not None:
            out.append(tree.resolve())
    return out


def _refuse_output_folders(source: Path, exclude: tuple[Path, ...]) -> None:
    """Refuse an input folder that is, holds or lies inside an output folder (``exclude``),
    or that holds an auralens run's outputs itself."""
    src = source.resolve()
    for x in exclude:
        x = Path(x).resolve()
        if src == x:
            what = "--out is the input folder"
        elif src.is_relative_to(x):
            what = f"the input folder is inside --out {x}"
        elif x.is_relative_to(src):  # a later run over the folder would read them back
            what = f"--out {x} is inside the input folder"
        else:
            continue
        raise SeparationError(f"{source}: {what}; use an --out outside the input folder")
    tree = _output_tree(source)
    if tree is not None:
        raise SeparationError(f"{source}: holds the outputs of 'auralens {recorded_command(source)}' "
                              "(run.json), not mixtures to process; give the folder of the inputs")


def recorded_results(out: Path) -> list[Path]:
    """The results files of every batch run recorded in ``out``: the unsharded run's and each
    shard's (``out/shards/part-i-of-n``); all of them write to ``out/items``."""
    parts = sorted((out / "shards").glob("part-*-of-*/results.jsonl")) if (out / "shards").is_dir() else []
    return [p for p in [out / "results.jsonl", *parts] if p.is_file()]


def _separator_key(separator: str | Separator | None) -> str:
    """A separator spec in a form that does not depend on how it was typed
    (:func:`auralens.specs.canonical_spec`: ``tdcnpp`` and the path of the committed
    checkpoint it builds match; a built separator: its name)."""
    from auralens.specs import canonical_spec

    if isinstance(separator, Separator):
        return separator.name
    return str(canonical_spec(separator, SEPARATORS))


def separate_batch(source: str | Path, out_dir: str | Path, separator: str | Separator | None = None,
                   *, activity: ActivityConfig | None = None, limit: int | None = None,
                   shard: str | tuple[int, int] | None = None) -> list[dict[str, Any]]:
    """Separate every mixture of ``source`` (see :func:`batch_inputs`) with one loaded model.

    Each mixture goes to ``out_dir/items/<id>/`` exactly as :func:`separate_file` writes it;
    ``results.jsonl`` gets one line per finished mixture, so a rerun skips them (resume after a
    kill); a file that cannot be read or separated is listed in ``errors.jsonl`` and the rest
    goes on. With ``shard="i/n"`` only every n-th id is done and the bookkeeping files go to
    ``out_dir/shards/part-i-of-n/`` (joined by ``auralens data merge``). Items are shared, so a
    run recorded in ``out_dir`` (unsharded or any shard) with other settings is refused.

    ``run.json`` and the closing ``N of M items failed`` warning count over every item of the
    job, those an earlier (interrupted) run finished included: ``n_items``, ``n_done`` (items
    with a result), ``n_failed`` (items that failed, each tried again by this run), and of
    this run ``n_tried`` and ``n_new`` (``n_earlier`` = ``n_done`` − ``n_new``).

    Returns:
        All result lines (previous runs' included).

    Raises:
        SeparationError: no input, or items were left to do and not one item of the job has
            a result (earlier runs' included).
    """
    from auralens.io import (
        ErrorLog,
        Timer,
        append_jsonl,
        batch_counts,
        read_jsonl,
        remove_stale_temps,
        write_run_json,
    )
    from auralens.progress import progress
    from auralens.shard import parse_shard, shard_dir, shard_items

    timer = Timer()
    parsed = parse_shard(shard) if isinstance(shard, str) or shard is None else shard
    out = Path(out_dir)
    check_out_dir(out, SeparationError)
    dest = shard_dir(out, parsed)
    # An output folder inside the source must not feed its own results back in on a rerun.
    items = batch_inputs(source, exclude=(out.resolve(),) if Path(source).is_dir() else ())
    if limit is not None:
        items = items[: int(limit)]
    items = shard_items(items, parsed, key=lambda it: it[0])
    results_path = dest / "results.jsonl"
    activity = activity or ActivityConfig()
    # Results are reused only when they were made with the same separator and activity rule.
    settings = {"separator": _separator_key(separator), "activity": asdict(activity)}
    stamp = fingerprint(settings)
    # Item folders are shared by the unsharded run and every shard: a run recorded in out with
    # other settings would have its items overwritten under its results.
    for path in dict.fromkeys([results_path, *recorded_results(out)]):
        other = [r.get("id") for r in read_jsonl(path) if r.get("fingerprint") != stamp]
        if other:
            raise SeparationError(f"{path}: holds results made with other settings (e.g. "
                                  f"{other[0]}); use another --out, or delete {path} to start over")
    done = {r.get("id") for r in read_jsonl(results_path)}
    todo = [it for it in items if it[0] not in done]
    with timer("load_model"):
        if isinstance(separator, Separator):
            sep = separator
        elif todo:
            sep = load_separator(separator)
        else:  # nothing left to do: no need to load the model
            sep = None
    if sep is not None:  # refuse an oracle once, not once per file
        _refuse_reference(sep)
    dest.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(dest)
    errors = ErrorLog(dest / "errors.jsonl", reset=True)
    with timer("separate"):
        for rid, path in progress(todo, desc="separate", total=len(todo)):
            with errors.guard(rid, path):
                item_dir = out / "items" / rid
                summary = _separate_one(path, item_dir, sep, activity=activity, owned=True)
                append_jsonl(results_path, {
                    "id": rid, "input": str(path), "out_dir": str(item_dir),
                    **{k: summary[k] for k in ("duration_s", "n_estimates", "n_kept", "kept",
                                               "real_time_factor")},
                    "fingerprint": stamp})
    lines = read_jsonl(results_path)
    # counts over the whole job (this shard's items), earlier runs' finished items included
    counts = batch_counts(errors, (rid for rid, _ in items), lines, len(todo))
    name = sep.name if sep is not None else settings["separator"]
    write_run_json(dest, command="separate batch",
                   config={"source": str(source), "separator": name, "activity": activity,
                           "limit": limit, "fingerprint": stamp},
                   # a rerun with nothing left to do loads no separator: the earlier record stays
                   models={} if sep is None else {"separator": backend_record(sep)},
                   timings=timer.timings,
                   extra={**counts,
                          "shard": None if parsed is None else f"{parsed[0]}/{parsed[1]}"})
    if todo and not counts["n_done"]:  # every item of the job failed; a rerun that only retries broken files is fine
        raise SeparationError(f"{source}: no mixture could be separated; see {errors.path}")
    return lines


# ----------------------------------------------------------------------------- evaluation


def _esc_mixtures(root: Path, folds: list[int], n: int, seconds: float, seed: int,
                  max_sources: int = 4, sr: int = 16000) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Seeded held-out mixtures from ESC-50 folds (the training mixer's recipe)."""
    from auralens.scene.separate.train import DynamicMixer, _load_pool

    waves, labels = _load_pool(root, folds, sr, None)
    mixer = DynamicMixer(waves, labels, max_sources, max_sources, -12.0)
    rng = np.random.default_rng(seed)
    length = int(seconds * sr)
    out = []
    for i in range(n):
        mix, refs = mixer.sample(length, rng, 1 + i % max_sources)
        out.append((f"esc-f{''.join(map(str, folds))}-{i:04d}", mix, refs))
    return out


def _record_items(data: Path, split: str | None, sr: int) -> list[tuple[str, Path, list[Path]]]:
    from auralens.scene.separate.train import resolve_paths
    from auralens.types import load_scenes

    # unique: a repeated id would write over the first one's items/<id> (and score it twice)
    if data.is_file() and data.suffix == ".jsonl":
        records = resolve_paths(load_scenes(data, unique=True), data.parent)
    elif (data / "manifest.jsonl").exists():
        records = resolve_paths(load_scenes(data / "manifest.jsonl", unique=True), data)
    else:
        try:
            from auralens.data.fuss import load_fuss
        except ImportError as exc:
            raise SeparationError(f"{data}: no manifest.jsonl and no FUSS loader available") from exc
        records = load_fuss(data, split=split)
    if split is not None:
        records = [r for r in records if r.split == split]
    return [(r.id, r.mixture, [s.path for s in r.sources]) for r in records]


def load_eval_items(data: str | Path, *, split: str | None = None, limit: int | None = None,
                    folds: list[int] | None = None, n: int = 40, seconds: float = 10.0,
                    seed: int = 1234, sr: int = 16000,
                    errors: Any = None) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """``[(id, mix [T], refs [N, T])]`` from a FUSS folder/manifest or an ESC-50 folder.

    With an ``errors`` log (:class:`~auralens.io.ErrorLog`) a mixture whose audio cannot be
    read, or that has no reference sources to score against, is listed there and left out;
    without one it raises. No mixture with reference sources at all raises.
    """
    from auralens.audio import fix_length, load

    data = Path(data)
    if (data / "meta" / "esc50.csv").exists():
        items = _esc_mixtures(data, folds or [4], n, seconds, seed, sr=sr)
        return items[:limit] if limit is not None else items
    if not data.exists():
        raise SeparationError(f"{data}: evaluation data not found")
    rows = _record_items(data, split, sr)
    if not rows:
        raise SeparationError(f"{data}: no mixtures{f' in split {split!r}' if split else ''}")
    rows = rows[:limit] if limit is not None else rows
    if not any(src for _, _, src in rows):  # mixtures alone: nothing to score against
        raise SeparationError(f"{data}: no mixture has reference sources (FUSS _sources folders "
                              "or manifest sources); 'separate eval' scores against them")
    out = []
    for rid, mix_path, src_paths in rows:
        def one(mix_path: Path = mix_path, src_paths: list[Path] = src_paths) -> tuple[np.ndarray, np.ndarray]:
            if not src_paths:  # scored as silence it would count as a 0-source mixture
                raise SeparationError(f"{mix_path}: no reference sources to score against")
            mix = load(mix_path, sr)
            refs = np.stack([fix_length(load(p, sr), mix.shape[0]) for p in src_paths])
            return mix, refs

        if errors is None:
            out.append((rid, *one()))
            continue
        loaded = None
        with errors.guard(rid, mix_path):
            loaded = one()
        if loaded is not None:
            out.append((rid, *loaded))
    return out


def evaluate_items(sep: Separator, items: list[tuple[str, np.ndarray, np.ndarray]], *,
                   activity: ActivityConfig | None = None, bss: bool = True,
                   errors: Any = None) -> tuple[list[Any], float]:
    """Score ``sep`` on items; returns (per-mixture scores, seconds spent separating)."""
    from auralens.progress import progress
    from auralens.scene.separate.metrics import score_mixture

    activity = activity or ActivityConfig()
    scores, spent = [], 0.0
    for rid, mix, refs in progress(items, desc=f"eval {sep.name}"):
        def one(rid: str = rid, mix: np.ndarray = mix, refs: np.ndarray = refs) -> Any:
            t0 = time.perf_counter()
            if isinstance(sep, ReferenceSeparator):
                est = _padded(sep.separate_with_refs, mix, refs, min_samples=min_samples(sep))
            else:
                est = separate_array(sep, mix)
            dt = time.perf_counter() - t0
            kept = np.array([d["kept"] for d in filter_estimates(est, mix, activity)])
            return score_mixture(mix, refs, est, id=rid, bss=bss, kept=kept), dt

        if errors is None:
            score, dt = one()
        else:
            res = None
            with errors.guard(rid):
                res = one()
            if res is None:
                continue
            score, dt = res
        scores.append(score)
        spent += dt
    return scores, spent


#: ``separate eval`` of an ESC-50 folder: the mixtures built when ``--n`` / ``--seconds`` /
#: ``--folds`` are not given.
ESC_EVAL_N, ESC_EVAL_SECONDS, ESC_EVAL_FOLDS = 40, 10.0, (4,)


def _eval_options(data: Path, split: str | None, folds: list[int] | None, n: int | None,
                  seconds: float | None) -> tuple[list[int] | None, int | None, float | None]:
    """``(folds, n, seconds)`` for ``data``: an ESC-50 folder's with defaults filled in, None
    for a FUSS folder or manifest (whose mixtures are given).

    Raises:
        SeparationError: an option that does not apply to the input (``--split`` with an
            ESC-50 folder; ``--n``, ``--folds``, ``--seconds`` with FUSS data), or a value
            out of range (``--seconds`` above :data:`auralens.data.MAX_DURATION_S`, as
            ``data mix`` caps mixtures).
    """
    from auralens.data import MAX_DURATION_S

    if not data.exists():
        raise SeparationError(f"{data}: evaluation data not found")
    if not (data / "meta" / "esc50.csv").exists():
        given = [name for name, value in (("--n", n), ("--folds", folds), ("--seconds", seconds))
                 if value is not None]
        if given:
            raise SeparationError(f"{data}: {', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} "
                                  "to an ESC-50 folder only (mixtures built from its folds); FUSS "
                                  "data brings its own mixtures (use --limit or --split to choose)")
        return None, None, None
    if split is not None:
        raise SeparationError(f"{data}: --split applies to FUSS data only; an ESC-50 folder has no "
                              "splits (its mixtures are built from --folds)")
    folds = list(ESC_EVAL_FOLDS) if folds is None else list(folds)
    n = ESC_EVAL_N if n is None else n
    seconds = ESC_EVAL_SECONDS if seconds is None else seconds
    if not folds:
        raise SeparationError(f"{data}: --folds names no fold")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise SeparationError(f"{data}: --n must be a whole number of mixtures ≥ 1, got {n!r}")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)):
        raise SeparationError(f"{data}: --seconds must be a number, got {seconds!r}")
    if not 0 < seconds <= MAX_DURATION_S:  # NaN fails too
        raise SeparationError(f"{data}: --seconds {seconds:g} must be above 0 and at most "
                              f"{MAX_DURATION_S:g} (the longest mixture data mix makes)")
    return folds, n, float(seconds)


#: The result files ``separate eval`` writes beside its ``run.json`` (and ``errors.jsonl``).
EVAL_OUTPUTS = ("scores.jsonl", "by_count.csv", "summary.png", "summary.json")


def evaluate_separator(data: str | Path, out_dir: str | Path, separator: str | Separator | None = None,
                       *, split: str | None = None, limit: int | None = None,
                       folds: list[int] | None = None, n: int | None = None,
                       seconds: float | None = None,
                       bss: bool = True, activity: ActivityConfig | None = None) -> dict[str, Any]:
    """Evaluate a separator; writes ``scores.jsonl``, ``by_count.csv``, ``summary.png``,
    ``summary.json`` and ``run.json`` in ``out_dir``.

    Before the mixtures are scored an earlier run's files of those names, and the temporary
    files a killed run's writes left (:func:`auralens.io.remove_stale_temps`), are removed and
    ``run.json`` says ``"status": "running"``; the final ``run.json`` (``"status": "ok"``) is
    written last, so an interrupted evaluation never looks finished nor mixes its files with
    an earlier one's.

    Args:
        data: FUSS-layout folder (``manifest.jsonl``), a manifest file, or an ESC-50 folder
            (then ``n`` seeded ``seconds``-long mixtures are built from ``folds``; None: 40
            mixtures of 10 s from fold 4).
        split: FUSS data only: evaluate this split.
        folds, n, seconds: ESC-50 folder only; given with FUSS data they are refused, as
            ``split`` is with an ESC-50 folder (an option that would be ignored). ``seconds``
            is at most :data:`auralens.data.MAX_DURATION_S`.
        separator: spec or built separator (``oracle-*`` use the references).
        bss: also compute SDR/SIR/SAR.

    Returns:
        :func:`~auralens.scene.separate.metrics.summarize` output plus the real-time factor.
    """
    from auralens.io import (
        ErrorLog,
        Timer,
        remove_stale_temps,
        write_json,
        write_jsonl,
        write_run_json,
    )
    from auralens.scene.separate.metrics import plot_summary, summarize, write_csv

    timer = Timer()
    out_dir = Path(out_dir)
    check_out_dir(out_dir, SeparationError)
    # start() removes the result files of an earlier evaluation: never anyone else's
    check_out_owner(out_dir, "separate eval",
                    lambda rel: len(rel.parts) == 1 and rel.name in (*EVAL_OUTPUTS, "errors.jsonl"),
                    SeparationError)
    # what a killed evaluation's writes left (a live writer's stay); it writes only at the
    # top level of out_dir, which may be a broad folder: its subfolders are not searched
    remove_stale_temps(out_dir, recursive=False)
    folds, n, seconds = _eval_options(Path(data), split, folds, n, seconds)
    with timer("load_model"):
        sep = separator if isinstance(separator, Separator) else load_separator(separator)
    config = {"data": str(data), "split": split, "limit": limit, "folds": folds, "n": n,
              "seconds": seconds, "bss": bss, "activity": activity or ActivityConfig()}
    models = {"separator": backend_record(sep)}

    def record(status: str, **extra: Any) -> None:
        write_run_json(out_dir, command="separate eval", config=config, models=models,
                       timings=timer.timings, extra={"status": status, **extra})

    def start() -> None:
        # a run killed part-way must not leave an earlier run's results looking like its own
        for name in EVAL_OUTPUTS:
            (out_dir / name).unlink(missing_ok=True)
        out_dir.mkdir(parents=True, exist_ok=True)
        record("running")

    # An earlier run's folder is marked before loading, which lists load errors into it; a
    # new folder only once the data passed its checks (a refused input leaves none behind).
    started = out_dir.is_dir()
    if started:
        start()
    errors = ErrorLog(out_dir / "errors.jsonl", reset=True)
    with timer("load_data"):
        esc: dict[str, Any] = {} if n is None else {"folds": folds, "n": n, "seconds": seconds}
        items = load_eval_items(data, split=split, limit=limit, **esc, sr=sep.sample_rate,
                                errors=errors)
    if not started:
        start()
    n_listed = len(items) + len(errors)
    with timer("evaluate"):
        scores, spent = evaluate_items(sep, items, activity=activity, bss=bss, errors=errors)
    if n_listed and not scores:
        record("failed", errors=len(errors))
        raise SeparationError(f"{data}: no mixture could be evaluated; see {errors.path}")
    summary = summarize(scores)
    audio_s = sum(m.shape[-1] for _, m, _ in items) / sep.sample_rate
    summary["real_time_factor"] = spent / max(audio_s, 1e-9)
    summary["separator"] = sep.name
    summary["errors"] = len(errors)
    write_jsonl(out_dir / "scores.jsonl", scores)
    write_csv(out_dir / "by_count.csv", summary)
    plot_summary(out_dir / "summary.png", summary, title=sep.name)
    write_json(out_dir / "summary.json", summary)
    # last: only a finished evaluation's record says "ok"
    record("ok", summary={k: summary[k] for k in ("1S", "MSi", "n_mixtures", "equal_rate")},
           errors=len(errors))
    errors.summary(n_listed)
    return summary
