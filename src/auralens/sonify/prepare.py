"""Dataset cache: embeddings and codec latents for every clip, computed once.

``prepare(DATA, encoder, codec, layer, PREP)`` loads each clip once, cuts/pads it to a fixed
``duration`` (5 s, ESC-50's clip length, so every clip yields the same frame counts), resamples
it to the extractor's and the codec's rates, and stores

* the embedding ``[frames, dim]`` (``extractor.embed_batch``, batched) and
* the latent ``[latent_dim, frames]`` (``codec.encode``)

in the content-addressed :class:`~auralens.cache.ArrayCache`. Keys combine the SHA-256 of the
audio file's bytes with backend name, revision, sample rate, layer, dtype and duration, so a
second run (or a run killed half-way) recomputes nothing that is already stored and does not
even decode the audio of cached clips.

PREP then holds:

* ``index.jsonl`` — one line per usable clip: ``id, path, label, split, sha256, emb_key,
  lat_key, emb_shape, lat_shape`` (``path`` absolute, so PREP reads the same audio from any
  directory; ``sha256`` of the file's bytes, so rendering notices a file changed since);
* ``train.txt``, ``val.txt``, ``test.txt`` — the splits, listing only the clips in
  ``index.jsonl``: the split is decided over every clip found (so it does not change when a
  clip fails), and clips that failed are then left out of it. When DATA has split files they
  are used (``seed`` then does not apply; a warning says so): they must include ``train.txt``
  and give every clip exactly one split. Otherwise the split is stratified with ``seed``;
* ``run.json`` — the resolved config, under ``prepared`` the extractor/codec descriptions,
  specs, the cache root that training reads from, the usable clips per split and the array
  shapes (``emb_shape``/``lat_shape``; None when clips keep their own length and the shapes
  differ, with ``shapes_vary`` and the per-axis ``emb_shape_min``/``max`` …);
* ``errors.jsonl`` — clips that could not be used (unreadable audio, failing model …).

Preparing again into PREP resumes with the same settings and is refused with other ones
(DATA, ``seed``, ``limit``, ``duration``, ``dtype``, extractor, layer or codec) or when the
splits would change, since runs trained on PREP read its splits and arrays again when they
render and report (``overwrite=True`` rewrites it anyway).

A fixed ``duration`` longer than the extractor's input window (``Extractor.max_duration``:
5.12 s for the offline classifier, 10.24 s for AudioSet AST) is refused, since the model never
sees the rest of the clip. With ``duration=None`` every clip keeps its length (index lines
record ``seconds``): clips longer than the window are skipped into errors.jsonl, and for AST
patch grids each index line records ``valid_time_patches`` so that training drops the padding
patches exactly like rendering does. A gate trains only on clips of one length, so when the
lengths differ a warning names them (also under ``warnings`` in run.json) and training refuses
the PREP: use a fixed ``duration`` to train.
For clips whose arrays are all cached, the length comes from the file header (decoded only
when the header cannot tell it exactly, e.g. MP3), so a rerun still decodes no audio.

Sharding (``shard="i/n"``, ``--shard i/n`` or ``--shard env`` in a SLURM array): the splits are
still decided over the whole dataset and written to PREP by every shard (identical files,
listing every clip until the merge leaves out the ones that failed), but
a shard embeds only its clips (every n-th in id order) into the shared cache and writes its
index, errors and run.json to ``PREP/shards/part-i-of-n/``. :func:`merge_prepared`
(``--merge``) then joins the parts into the same ``index.jsonl``/``run.json`` an unsharded
run writes; it refuses shards whose extractor or codec description (layer included), cache,
storage dtype, duration, data path, seed or limit differ.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from auralens.cache import ArrayCache, default_cache_dir, hash_file, make_key
from auralens.data.esc50 import SPLITS
from auralens.errors import AuralensError
from auralens.io import (
    ErrorLog,
    read_json,
    read_jsonl,
    read_user_text,
    remove_stale_temps,
    write_jsonl,
    write_run_json,
)
from auralens.progress import progress

log = logging.getLogger(__name__)

#: Default clip duration in seconds (ESC-50 clips are 5 s).
DEFAULT_DURATION = 5.0
DTYPES = ("float32", "float16")


class PrepareError(AuralensError):
    """A prepared dataset that cannot be built or used."""


def parse_layer(layer: str | int | None) -> str | int | None:
    """``"4"`` → ``4``; ``"patch"``/``"features"`` stay strings; None stays None."""
    if layer is None or isinstance(layer, int):
        return layer
    text = str(layer).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    return text or None


def build_extractor(spec: Any, layer: str | int | None = None) -> Any:
    """Build an extractor from a spec string (or pass an instance through).

    The explicit ``layer`` overrides a ``@layer=`` option in the spec. A built extractor
    already has its layer: a different ``layer`` is refused rather than ignored.
    """
    from auralens.encoders.base import EXTRACTORS, Extractor

    layer = parse_layer(layer)
    if isinstance(spec, Extractor):
        built = getattr(spec, "layer", None)
        # compared as the backend records layers (-1 is the last layer's number)
        checked = spec.check_layer(layer) if layer is not None else None
        if layer is not None and str(layer if checked is None else checked) != str(built):
            raise PrepareError(f"layer {layer!r} was asked for, but the given {spec.name} extractor "
                               f"was built for layer {built!r}; build it with that layer, or pass "
                               "layer=None")
        return spec
    overrides = {} if layer is None else {"layer": layer}
    return EXTRACTORS.build(spec, **overrides)


def build_codec(spec: Any) -> Any:
    """Build a codec from a spec string (or pass an instance through)."""
    from auralens.codecs.base import CODECS, Codec

    if isinstance(spec, Codec):
        return spec
    return CODECS.build(spec)


def compute_dtype(obj: Any) -> str | None:
    """The torch dtype a backend computes in (``"bfloat16"`` …), None for weight-free ones."""
    dt = getattr(obj, "torch_dtype", None)
    return None if dt is None else str(dt).removeprefix("torch.")


def _describe(obj: Any, spec: Any, duration: float | None = None) -> dict[str, Any]:
    from auralens.sonify.align import grid_info

    out = dict(obj.describe())
    out["spec"] = str(spec) if isinstance(spec, str) else out.get("name")
    if compute_dtype(obj) is not None:
        out["compute_dtype"] = compute_dtype(obj)
    n = None if duration is None else int(round(duration * obj.sample_rate))
    out.update(grid_info(obj, n))  # AST patch grids: how tokens map to time (see align.py)
    return out


def _compute_part(obj: Any) -> dict[str, str]:
    # float32 adds nothing, so keys of float32 runs stay those of earlier versions.
    dt = compute_dtype(obj)
    return {} if dt in (None, "float32") else {"compute_dtype": dt}


def embedding_key(content: str, extractor: Any, dtype: str, duration: float | None) -> str:
    """Cache key of one clip's embedding (``dtype``: storage dtype; the compute dtype of the
    model is part of the key too)."""
    return make_key(content, kind="embedding", backend=extractor.name,
                    revision=getattr(extractor, "revision", ""), sr=extractor.sample_rate,
                    layer=str(extractor.layer), dtype=dtype, duration=duration,
                    **_compute_part(extractor))


def latent_key(content: str, codec: Any, dtype: str, duration: float | None) -> str:
    """Cache key of one clip's codec latent (storage and compute dtype included)."""
    return make_key(content, kind="latent", backend=codec.name,
                    revision=getattr(codec, "revision", ""), sr=codec.sample_rate,
                    layer="", dtype=dtype, duration=duration, **_compute_part(codec))


def min_input_samples(extractor: Any) -> int | None:
    """The fewest samples (at the extractor's rate) the extractor can embed
    (:attr:`~auralens.encoders.base.Extractor.min_samples`), or None when it does not say."""
    stated = getattr(extractor, "min_samples", None)
    return None if stated is None else int(stated)


def check_duration(extractor: Any, duration: float | None) -> None:
    """Refuse a fixed ``duration`` longer than the extractor's input window, or shorter than
    the least audio it can embed (:func:`min_input_samples`).

    Raises:
        PrepareError: the model would only see the window's start while the latent covers
            the whole clip (the gate would stretch one over the other), or every clip would
            fail to embed.
    """
    if duration is None:
        return
    window = getattr(extractor, "max_duration", None)
    if window is not None and duration > float(window) + 1e-6:
        raise PrepareError(
            f"--duration {duration:g} s is longer than the input window of {extractor.name} "
            f"({float(window):g} s): the model never sees audio after {float(window):g} s; use "
            f"--duration {float(window):g} or less")
    need = min_input_samples(extractor)
    rate = getattr(extractor, "sample_rate", None)
    if need and rate and int(round(duration * int(rate))) < need:
        least = need / int(rate)
        raise PrepareError(
            f"--duration {duration:g} s is shorter than the least audio {extractor.name} can embed "
            f"({need} samples at {int(rate)} Hz, {least:g} s); use --duration {least:g} or more")


def resampled_length(n: int, orig_sr: int, target_sr: int) -> int:
    """Samples that :func:`auralens.audio.resample` gives for ``n`` samples at ``orig_sr``
    (soxr rounds half up: ``floor(n * target / orig + 1/2)``), without resampling anything."""
    if orig_sr == target_sr:
        return int(n)
    return (2 * int(n) * int(target_sr) + int(orig_sr)) // (2 * int(orig_sr))


#: Formats whose header frame count libsndfile may only estimate (decoded instead).
_ESTIMATED_LENGTH_FORMATS = frozenset({"MP3", "MPEG"})


def header_length(path: str | Path) -> tuple[int, int] | None:
    """``(frames, sample_rate)`` of an audio file from its header alone, or None when the
    header cannot be read or its frame count may differ from what decoding gives (MPEG)."""
    import soundfile as sf

    path = Path(path)
    if path.suffix.lower() == ".mp3":
        return None
    try:
        meta = sf.info(str(path))
    except Exception:  # noqa: BLE001 - unreadable header: the caller decodes instead
        return None
    if str(meta.format).upper() in _ESTIMATED_LENGTH_FORMATS or meta.frames <= 0 or meta.samplerate <= 0:
        return None
    return int(meta.frames), int(meta.samplerate)


def _clip_time_info(extractor: Any, n: int, sr: int, path: Any) -> dict[str, Any]:
    """For ``duration=None`` (clips keep their length): refuse clips longer than the
    extractor's window, and record how many AST time patches hold audio so that training
    trims the patch grid exactly like rendering does (``valid_time_patches``).

    Args:
        n: the clip's length in samples at its own rate ``sr`` (decoded, or from the header).
    """
    seconds = n / sr
    window = getattr(extractor, "max_duration", None)
    if window is not None and seconds > float(window) + 1e-6:
        raise PrepareError(
            f"{path}: {seconds:.2f} s is longer than the input window of {extractor.name} "
            f"({float(window):g} s); prepare with --duration {float(window):g} to cut every clip")
    valid_fn = getattr(extractor, "valid_time_patches", None)
    if not callable(valid_fn) or getattr(extractor, "trim", False) or getattr(extractor, "layout", None) != "flat":
        return {}
    return {"valid_time_patches": int(valid_fn(resampled_length(n, sr, extractor.sample_rate)))}


def load_clip_wave(path: Path, duration: float | None) -> tuple[np.ndarray, int]:
    """Decode at the file's rate and cut/zero-pad to ``duration`` seconds."""
    from auralens.audio import fix_length, load_sr

    wave, sr = load_sr(path, head=duration)  # a cut clip's later audio is never decoded
    if duration is not None:
        wave = fix_length(wave, int(round(duration * sr)))
    return wave, sr


@dataclass
class PrepareResult:
    """Summary of a :func:`prepare` run."""

    out: Path
    n_clips: int
    n_ok: int
    n_failed: int
    computed_embeddings: int
    computed_latents: int
    seconds: float
    splits: dict[str, int] = field(default_factory=dict)
    #: DATA's split files the splits were read from (None: a stratified split with the seed).
    split_files: list[str] | None = None
    #: Problems worth telling the user although the run succeeded (also in run.json).
    warnings: list[str] = field(default_factory=list)


def _examples(ids: Sequence[str], n: int = 3) -> str:
    shown = ", ".join(ids[:n])
    return shown + (f", … ({len(ids)} in all)" if len(ids) > n else "")


def _splits(data: Path, clips: Sequence[Any], seed: int) -> tuple[dict[str, list[Any]], list[str] | None]:
    """The splits of ``clips`` and the split files of DATA they come from (None: made with
    ``seed``).

    Raises:
        PrepareError: DATA has split files but no train.txt, or they leave clips in no split
            or put one in two splits (a clip in no split would silently be left out).
    """
    from auralens.data.esc50 import make_splits, read_splits

    names = [f"{name}.txt" for name in SPLITS if (data / f"{name}.txt").is_file()]
    if not names:
        return make_splits(clips, seed=seed), None
    listed = ", ".join(names)
    if "train.txt" not in names:
        raise PrepareError(f"{data}: has split files ({listed}) but no train.txt; add train.txt, or "
                           f"remove {listed} to split with --seed")
    splits = read_splits(data, clips)
    seen: dict[str, str] = {}
    for name, members in splits.items():
        for clip in members:
            if seen.setdefault(clip.id, name) != name:
                raise PrepareError(f"{data}: clip {clip.id} is in both {seen[clip.id]}.txt and {name}.txt")
    missing = [c.id for c in clips if c.id not in seen]
    if missing:
        raise PrepareError(f"{data}: the split files ({listed}) leave {len(missing)} of {len(clips)} "
                           f"clips in no split ({_examples(missing)}); list every clip in them, or "
                           f"remove {listed} to split with --seed")
    return splits, names


def absolute_path(path: str | Path) -> Path:
    """``path`` made absolute against the current directory ("." and ".." folded, symlinks
    kept, so file names stay those of DATA)."""
    return Path(os.path.abspath(path))


#: ``run.json["config"]`` keys whose change makes other clips, splits or arrays (``seed`` only
#: when the splits are made with it).
_RERUN_CONFIG = ("data", "limit", "seed", "duration", "dtype")
#: Description keys not compared: spellings, and what follows from ``duration`` (named itself).
_DESCRIPTION_IGNORED = ("spec", "valid_time_patches")


def _setting_differences(old_config: dict[str, Any], new_config: dict[str, Any],
                         old_prepared: dict[str, Any], new_prepared: dict[str, Any]) -> list[str]:
    """``key old → new`` for each setting that differs between two prepare runs.

    Keys one side does not record (older versions) are not compared; ``data`` only when both
    are absolute (older versions may have recorded it relative to an unknown directory), and
    ``seed`` only when neither run took its splits from DATA's split files.
    """
    diffs = []
    for key in _RERUN_CONFIG:
        if key not in old_config or key not in new_config:
            continue
        a, b = old_config[key], new_config[key]
        if key == "data":
            if not (Path(str(a)).is_absolute() and Path(str(b)).is_absolute()):
                continue
            same = Path(str(a)).resolve() == Path(str(b)).resolve()
        elif key == "seed":
            same = a == b or bool(old_config.get("split_files") or new_config.get("split_files"))
        elif key == "duration" and a is not None and b is not None:
            same = float(a) == float(b)  # 1 and 1.0 s are the same duration
        else:
            same = a == b
        if not same:
            a, b = ("none" if v is None else v for v in (a, b))
            diffs.append(f"--{key} {a} → {b}" if key != "data" else f"DATA {a} → {b}")
    for part in ("extractor", "codec"):
        a, b = old_prepared.get(part) or {}, new_prepared.get(part) or {}
        for key in sorted(set(a) & set(b), key=str):
            if key not in _DESCRIPTION_IGNORED and a[key] != b[key]:
                diffs.append(f"{part} {key} {a[key]!r} → {b[key]!r}")
    return diffs


def _split_differences(old_index: Sequence[dict[str, Any]], split_of: dict[str, str]) -> list[str]:
    """What a new split assignment changes for the clips of an existing index."""
    moved = [f"{r['id']} {r['split']} → {split_of[r['id']]}" for r in old_index
             if r.get("split") in SPLITS and r["id"] in split_of and split_of[r["id"]] != r["split"]]
    gone = [str(r["id"]) for r in old_index if r.get("split") in SPLITS and r["id"] not in split_of]
    def clips(n: int) -> str:
        return f"{n} clip{'' if n == 1 else 's'}"

    out = []
    if moved:
        out.append(f"split of {clips(len(moved))} changed ({_examples(moved, 2)})")
    if gone:
        out.append(f"{clips(len(gone))} no longer included ({_examples(gone)})")
    return out


def _check_rerun(out: Path, dest: Path, config: dict[str, Any], descriptions: dict[str, Any],
                 split_of: dict[str, str]) -> None:
    """Refuse to prepare into a PREP that holds data prepared with other settings.

    Runs trained on PREP read its splits and arrays again (render, report): rewriting them
    would put their training clips into the test split or swap their arrays. A rerun with the
    same settings resumes (cached arrays are reused).

    Raises:
        PrepareError: naming every setting that differs, or the clips whose split changed.
    """
    diffs: list[str] = []
    for folder in dict.fromkeys((out, dest)):
        path = folder / "run.json"
        if not path.is_file():
            continue
        try:
            record = read_json(path)
        except (OSError, ValueError):
            continue  # unreadable: nothing to compare with (a killed run); prepared again
        old_config = record.get("config") or {}
        diffs += [d for d in _setting_differences(old_config, config, record.get("prepared") or {},
                                                  descriptions) if d not in diffs]
    if not diffs and (out / "index.jsonl").is_file():
        # The settings match (or are not recorded): the splits must too (DATA's split files
        # or its clips may have changed).
        try:
            diffs = _split_differences(read_jsonl(out / "index.jsonl"), split_of)
        except (OSError, ValueError):
            diffs = []
    if diffs:
        raise PrepareError(
            f"{out}: already holds data prepared with other settings ({'; '.join(diffs)}); runs "
            "trained on it would then render and report on other splits or arrays — prepare into "
            f"another --out, or delete {out} first")


def _mixed_lengths_warning(out: Path, index: Sequence[dict[str, Any]], shapes: dict[str, Any]) -> str:
    """The warning for a PREP whose clips kept lengths that differ (``duration=None``)."""
    secs = sorted({float(r["seconds"]) for r in index if r.get("seconds") is not None})
    lengths = (f"lengths {secs[0]:.3g}–{secs[-1]:.3g} s ({len(secs)} different)" if len(secs) > 1
               else "different lengths")
    frames = (f", embedding frames {shapes['emb_shape_min'][0]}–{shapes['emb_shape_max'][0]}"
              if shapes.get("emb_shape_min") else "")
    return (f"{out}: the clips kept their own {lengths}{frames}; clips of different lengths cannot "
            "be trained on together (`sonify train` refuses them) — prepare with a fixed --duration "
            "to train a gate")


def index_fingerprint(records: Sequence[dict[str, Any]]) -> str:
    """SHA-256 over the sorted ``(id, split, emb_key, lat_key)`` rows of the index lines in a
    split (what :attr:`PreparedData.fingerprint` is; computable without loading arrays)."""
    import hashlib
    import json

    rows = sorted((str(r.get("id")), str(r.get("split")), str(r.get("emb_key")), str(r.get("lat_key")))
                  for r in records if r.get("split") in SPLITS)
    return hashlib.sha256(json.dumps(rows).encode("utf-8")).hexdigest()


#: ``run.json["config"]`` keys of PREP that a training run records (``prepared_settings``).
SETTINGS_KEYS = ("data", "encoder", "layer", "codec", "duration", "dtype", "seed", "limit", "split_files")


def prepared_settings(prep: str | Path) -> dict[str, Any]:
    """The settings PREP was prepared with (a subset of its ``run.json["config"]``), {} when
    it records none."""
    try:
        config = read_json(Path(prep) / "run.json").get("config") or {}
    except (OSError, ValueError):
        return {}
    return {k: config[k] for k in SETTINGS_KEYS if k in config}


def describe_prepared_change(recorded: dict[str, Any] | None, prep: str | Path) -> str:
    """What changed in PREP since a run recorded its settings (``prepared_settings``): the
    settings that differ, else that its clips, splits or cached arrays did."""
    now = prepared_settings(prep)
    diffs = _setting_differences(recorded or {}, now, {}, {})
    for key in ("encoder", "layer", "codec"):
        if recorded and key in recorded and key in now and str(recorded[key]) != str(now[key]):
            diffs.append(f"--{key} {recorded[key]} → {now[key]}")
    if diffs:
        return "prepared again with " + "; ".join(diffs)
    return "its clips, splits or cached arrays changed (prepared again)"


def resolve_clip_path(rec: dict[str, Any], prep: str | Path) -> Path:
    """The audio file of an index line.

    Paths are absolute since this version. A relative one (older versions stored it as typed,
    relative to a directory they did not record) is resolved against PREP's DATA, which its
    run.json records absolute: ``syn/audio/a.wav`` with DATA ``/x/syn`` is ``/x/syn/audio/a.wav``.
    Without such a record it is taken relative to PREP's parent folder when the file is there.

    Raises:
        PrepareError: a relative path that cannot be placed.
    """
    path = Path(str(rec["path"]))
    if path.is_absolute():
        return path
    candidates = []
    data = Path(str(prepared_settings(prep).get("data") or ""))
    if data.is_absolute():
        parts = list(path.parts)
        while parts and parts[0] == "..":  # DATA typed as ../syn: its name still ends the path
            parts.pop(0)
        # the typed DATA is the part of the path that ends DATA's absolute path (longest first)
        candidates += [data / Path(*parts[i:]) for i in range(len(parts) - 1, 0, -1)
                       if data.parts[-i:] == tuple(parts[:i])]
        candidates.append(data / path)  # DATA typed as "."
    candidates.append(absolute_path(Path(prep)).parent / path)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    if data.is_absolute():
        raise PrepareError(f"{candidates[0]}: file not found (clip {rec.get('id')} of {prep}, recorded "
                           f"as {path} by an older version)")
    raise PrepareError(f"{prep}: clip {rec.get('id')} is recorded as {path}, relative to a directory "
                       "an older version did not record; prepare the data again")


def prepare(data: str | Path, encoder: Any, codec: Any, layer: str | int | None, out: str | Path, *,
            seed: int = 42, batch_size: int = 8, duration: float | None = DEFAULT_DURATION,
            dtype: str = "float32", cache_dir: str | Path | None = None,
            limit: int | None = None, shard: str | tuple[int, int] | None = None,
            overwrite: bool = False) -> PrepareResult:
    """Compute (or fetch from the cache) embeddings and latents for a dataset.

    Args:
        data: ESC-50-layout or plain folder dataset (see :func:`auralens.data.load_dataset`).
        encoder: extractor spec (``"classifier"``, ``"hf:MIT/ast-…"``) or an Extractor.
        codec: codec spec (``"mel"``, ``"dac"``) or a Codec.
        layer: ``"patch"``/``"features"``/block index; None keeps the spec's or backend default.
        out: PREP directory.
        seed: split seed (not used when DATA has split files).
        batch_size: clips per ``embed_batch`` call.
        duration: seconds every clip is cut/padded to (None: keep each clip's length; a gate
            can only be trained when all clips then have the same length, a warning says when not).
        dtype: storage dtype of cached arrays (``float32`` or ``float16``).
        cache_dir: cache root (default ``$AURALENS_CACHE``).
        limit: use only the first ``limit`` clips (quick runs).
        shard: ``"i/n"`` (or ``"env"``): prepare only this shard's clips; its index, errors and
            run.json go to ``PREP/shards/part-i-of-n`` (join them with :func:`merge_prepared`).
        overwrite: prepare into PREP even when it holds data prepared with other settings.

    Returns:
        a :class:`PrepareResult`; PREP holds index.jsonl, split files, run.json, errors.jsonl
        (for a shard: the split files, and the rest under ``PREP/shards/part-i-of-n``).

    Raises:
        PrepareError: bad options, DATA's split files leave clips in no split, PREP holds data
            prepared with other settings (without ``overwrite``), or no clip could be prepared.
    """
    from auralens.audio import resample
    from auralens.data import load_dataset
    from auralens.data.esc50 import write_splits
    from auralens.shard import parse_shard, shard_dir, shard_items

    parsed = parse_shard(shard) if isinstance(shard, str) or shard is None else shard
    if dtype not in DTYPES:
        raise PrepareError(f"unsupported dtype {dtype!r}; choose from {', '.join(DTYPES)}")
    if batch_size < 1:
        raise PrepareError("batch size must be at least 1")
    if duration is not None and not (math.isfinite(duration) and duration > 0):
        raise PrepareError(f"--duration must be a positive number of seconds (0: keep each clip's "
                           f"length), got {duration:g}")
    start = time.perf_counter()
    extractor = build_extractor(encoder, layer)
    cod = build_codec(codec)
    check_duration(extractor, duration)
    data, out = Path(data), Path(out)
    clips = sorted(load_dataset(data), key=lambda c: c.id)
    if limit is not None:
        clips = clips[: int(limit)]
    if not clips:
        raise PrepareError(f"{data}: no clips found")
    splits, split_files = _splits(data, clips, seed)
    if split_files:
        log.warning("%s: splits taken from its split files (%s); --seed does not apply",
                    data, ", ".join(split_files))
    split_of = {c.id: name for name, members in splits.items() for c in members}
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    descriptions = {"extractor": _describe(extractor, encoder, duration) | {"layer": extractor.layer},
                    "codec": _describe(cod, codec)}
    config = {"data": str(Path(data).resolve()),  # comparable from any directory
              "encoder": descriptions["extractor"]["spec"],
              "layer": extractor.layer, "codec": descriptions["codec"]["spec"],
              "seed": seed, "batch_size": batch_size, "duration": duration,
              "dtype": dtype, "cache_dir": str(root), "limit": limit,
              "shard": None if parsed is None else f"{parsed[0]}/{parsed[1]}",
              "split_files": split_files}
    dest = shard_dir(out, parsed)
    if not overwrite:  # before anything in PREP is written
        _check_rerun(out, dest, config, descriptions, split_of)
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)
    if parsed is not None:  # every shard writes the whole split; the merge drops failed clips
        write_splits(splits, out)
    all_clips = len(clips)
    clips = shard_items(clips, parsed)
    dest.mkdir(parents=True, exist_ok=True)

    emb_cache = ArrayCache(root, "embeddings")
    lat_cache = ArrayCache(root, "latents")
    errors = ErrorLog(dest / "errors.jsonl", reset=True)
    np_dtype = np.dtype(dtype)

    index: list[dict[str, Any]] = []
    computed_emb = computed_lat = 0
    batches = [clips[i:i + batch_size] for i in range(0, len(clips), batch_size)]
    for batch in progress(batches, desc="prepare", total=len(batches)):
        todo: list[dict[str, Any]] = []
        for clip in batch:
            with errors.guard(clip.id, clip.path):
                if not clip.path.is_file():
                    raise PrepareError(f"{clip.path}: file not found")
                content = hash_file(clip.path)
                # Absolute: PREP is read from other directories (train, render); the content
                # hash lets render tell when the file was changed after preparing.
                rec = {"id": clip.id, "path": str(absolute_path(clip.path)), "label": clip.label,
                       "split": split_of.get(clip.id), "sha256": content,
                       "emb_key": embedding_key(content, extractor, dtype, duration),
                       "lat_key": latent_key(content, cod, dtype, duration)}
                # One header read per entry: it says whether the entry is usable and its shape.
                rec["emb_shapes"] = emb_cache.shapes(rec["emb_key"])
                rec["lat_shapes"] = lat_cache.shapes(rec["lat_key"])
                rec["need_emb"] = rec["emb_shapes"] is None
                rec["need_lat"] = rec["lat_shapes"] is None
                need_wave = rec["need_emb"] or rec["need_lat"]
                if need_wave:
                    wave, sr = load_clip_wave(clip.path, duration)
                if duration is None:  # clips keep their length: check it, note the AST grid
                    # With every array cached the length comes from the header: no decoding.
                    length = (wave.shape[-1], sr) if need_wave else header_length(clip.path)
                    if length is None:  # header unreadable or its length only estimated
                        decoded, dsr = load_clip_wave(clip.path, duration)
                        length = decoded.shape[-1], dsr
                    rec["time"] = _clip_time_info(extractor, length[0], length[1], clip.path)
                    rec["seconds"] = length[0] / length[1]
                if need_wave:
                    rec["wave_e"] = resample(wave, sr, extractor.sample_rate) if rec["need_emb"] else None
                    rec["wave_c"] = resample(wave, sr, cod.sample_rate) if rec["need_lat"] else None
                todo.append(rec)
        need = [r for r in todo if r["need_emb"]]
        if need:
            embs = _embed_isolating(extractor, need, errors)
            for rec, emb in zip(need, embs, strict=True):
                if emb is None:
                    rec["failed"] = True
                    continue
                emb_cache.put(rec["emb_key"], {"embedding": emb.astype(np_dtype)},
                              meta={"clip": rec["id"], "extractor": extractor.name,
                                    "layer": str(extractor.layer)})
                rec["emb_shapes"] = {"embedding": list(emb.shape)}
                computed_emb += 1
        for rec in todo:
            if rec.get("failed") or not rec["need_lat"]:
                continue
            with errors.guard(rec["id"], rec["path"]):
                lat = np.asarray(cod.encode(rec["wave_c"]), dtype=np.float32)
                if lat.ndim != 2 or not np.all(np.isfinite(lat)):
                    raise PrepareError(f"{rec['path']}: codec gave a non-finite or malformed latent {lat.shape}")
                lat_cache.put(rec["lat_key"], {"latent": lat.astype(np_dtype)},
                              meta={"clip": rec["id"], "codec": cod.name})
                rec["lat_shapes"] = {"latent": list(lat.shape)}
                computed_lat += 1
                rec["lat_done"] = True
            if rec["need_lat"] and not rec.get("lat_done"):
                rec["failed"] = True
        for rec in todo:
            if rec.get("failed"):
                continue
            with errors.guard(rec["id"], rec["path"]):
                emb_shape = _shape(rec["emb_shapes"], emb_cache, rec["emb_key"], "embedding")
                lat_shape = _shape(rec["lat_shapes"], lat_cache, rec["lat_key"], "latent")
                index.append({k: rec[k] for k in ("id", "path", "label", "split", "sha256", "emb_key",
                                                  "lat_key")}
                             | {"emb_shape": emb_shape, "lat_shape": lat_shape} | rec.get("time", {}))
                if "seconds" in rec:
                    index[-1]["seconds"] = round(rec["seconds"], 6)

    write_jsonl(dest / "index.jsonl", index)
    if parsed is None:  # split files list usable clips only (training never sees the others)
        usable = {r["id"] for r in index}
        write_splits({name: [c for c in members if c.id in usable] for name, members in splits.items()}, out)
    seconds = time.perf_counter() - start
    counts = {name: sum(1 for r in index if r["split"] == name) for name in splits}
    if parsed is None:
        _warn_empty_splits(out, counts)
    if parsed is not None:
        log.info("shard %d/%d: %d of %d clips", parsed[0], parsed[1], len(clips), all_clips)
    shapes = shape_summary(index)
    warnings = [_mixed_lengths_warning(dest, index, shapes)] if shapes.get("shapes_vary") else []
    for text in warnings:
        log.warning("%s", text)
    prepared = {
        **descriptions,
        "cache_root": str(root),
        "duration": duration,
        "dtype": dtype,
        "n_clips": len(clips),
        "n_ok": len(index),
        "n_failed": len(errors),
        "computed": {"embeddings": computed_emb, "latents": computed_lat},
        "splits": counts,
        "splits_from": "DATA split files" if split_files else f"seed {seed}",
        **shapes,
        **({"warnings": warnings} if warnings else {}),
    }
    write_run_json(dest, command="sonify prepare", config=config,
                   models={"extractor": prepared["extractor"], "codec": prepared["codec"]},
                   timings={"total": seconds}, seed=seed, extra={"prepared": prepared})
    errors.summary(len(clips))
    if not index:
        raise PrepareError(f"{data}: no clip could be prepared; see {errors.path}")
    log.info("prepared %d/%d clips in %.1f s (%d embeddings, %d latents computed)",
             len(index), len(clips), seconds, computed_emb, computed_lat)
    return PrepareResult(dest, len(clips), len(index), len(errors), computed_emb, computed_lat,
                         seconds, counts, split_files, warnings)


#: Settings every shard of one prepared dataset must share (``run.json["prepared"]``) …
_SHARED = ("cache_root", "duration", "dtype", "extractor", "codec")
#: … and in ``run.json["config"]``.
_SHARED_CONFIG = ("data", "seed", "limit", "duration")


def _first_difference(a: Any, b: Any, key: str) -> str | None:
    """Dotted name of the first differing entry of two values (dicts compared key by key)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for sub in sorted(set(a) | set(b), key=str):
            found = _first_difference(a.get(sub), b.get(sub), f"{key}.{sub}")
            if found is not None:
                return found
        return None
    if key.endswith("config.data") and a is not None and b is not None:
        return None if Path(str(a)).resolve() == Path(str(b)).resolve() else key
    return None if a == b else key


def _lookup(record: dict[str, Any], dotted: str) -> Any:
    value: Any = record
    for part in dotted.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _check_shards(parts: Sequence[Path], runs: Sequence[dict[str, Any]]) -> None:
    """Refuse shards made with different settings, naming the first differing key."""
    first = runs[0]
    for part, run in zip(parts[1:], runs[1:], strict=True):
        for scope, keys in (("prepared", _SHARED), ("config", _SHARED_CONFIG)):
            for key in keys:
                a, b = (r.get(scope, {}).get(key) for r in (first, run))
                diff = _first_difference(a, b, f"{scope}.{key}")
                if diff is not None:
                    name = diff.split(".", 1)[1]
                    raise PrepareError(
                        f"{part}: {name} {_lookup(run, diff)!r} differs from {parts[0].name}'s "
                        f"{_lookup(first, diff)!r}; prepare every shard with the same settings")


def merge_prepared(out: str | Path) -> PrepareResult:
    """Join ``PREP/shards/part-*-of-n`` into ``PREP/index.jsonl``, ``errors.jsonl``, ``run.json``.

    The result is what one unsharded :func:`prepare` run writes (same index lines in the same
    order); timings and computed counts are the shards' sums.

    Raises:
        ShardError: shards missing or of different counts.
        PrepareError: shards made with different extractors, codecs or settings.
    """
    from auralens.shard import find_parts

    start = time.perf_counter()
    out = Path(out)
    parts = find_parts(out)
    runs = [read_json(d / "run.json") for d in parts if (d / "run.json").is_file()]
    if len(runs) != len(parts):
        raise PrepareError(f"{out}: a shard has no run.json (still running or failed); rerun it")
    _check_shards(parts, runs)
    infos = [r["prepared"] for r in runs]
    first = infos[0]
    index = sorted((rec for d in parts for rec in read_jsonl(d / "index.jsonl")), key=lambda r: r["id"])
    errors = [rec for d in parts for rec in read_jsonl(d / "errors.jsonl")]
    write_jsonl(out / "index.jsonl", index)
    errors_path = out / "errors.jsonl"
    if errors:
        write_jsonl(errors_path, errors)
    else:
        errors_path.unlink(missing_ok=True)
    splits = {name: sum(1 for r in index if r["split"] == name)
              for name in ("train", "val", "test") if any(name in i.get("splits", {}) for i in infos)}
    n_clips = sum(int(i["n_clips"]) for i in infos)
    computed = {k: sum(int(i["computed"][k]) for i in infos) for k in ("embeddings", "latents")}
    _filter_split_files(out, index)
    _warn_empty_splits(out, splits)
    shapes = shape_summary(index)
    warnings = [_mixed_lengths_warning(out, index, shapes)] if shapes.get("shapes_vary") else []
    for text in warnings:
        log.warning("%s", text)
    prepared = {**{k: v for k, v in first.items() if k not in (*_SHAPE_KEYS, "warnings")},
                "n_clips": n_clips, "n_ok": len(index), "n_failed": len(errors), "computed": computed,
                "splits": splits, **shapes, **({"warnings": warnings} if warnings else {}),
                "shards": len(parts)}
    config = {**runs[0]["config"], "shard": None}
    timings = {"total": sum(float(r.get("timings_s", {}).get("total", 0.0)) for r in runs),
               "merge": time.perf_counter() - start}
    write_run_json(out, command="sonify prepare --merge", config=config,
                   models={"extractor": first["extractor"], "codec": first["codec"]},
                   timings=timings, seed=runs[0].get("seed"),
                   extra={"prepared": prepared, "merged_from": [str(d) for d in parts]})
    if not index:
        raise PrepareError(f"{out}: no clip could be prepared in any shard; see {errors_path}")
    log.info("merged %d shards: %d/%d clips", len(parts), len(index), n_clips)
    return PrepareResult(out, n_clips, len(index), len(errors), computed["embeddings"],
                         computed["latents"], timings["total"], splits,
                         runs[0]["config"].get("split_files"), warnings)


#: Keys :func:`shape_summary` may write (a merge recomputes them from the joined index).
_SHAPE_KEYS = ("emb_shape", "lat_shape", "shapes_vary", "emb_shape_min", "emb_shape_max",
               "lat_shape_min", "lat_shape_max")


def shape_summary(index: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """``emb_shape``/``lat_shape`` of the prepared clips for ``run.json``.

    With a fixed duration every clip has the same shapes, recorded as they are. When clips keep
    their own length (``duration=None``) and shapes differ, both are None, ``shapes_vary`` is
    True and ``emb_shape_min``/``_max`` (``lat_…``) give the smallest and largest size per
    axis, e.g. ``[frames, dim]``; index.jsonl holds each clip's shapes.
    """
    out: dict[str, Any] = {"emb_shape": None, "lat_shape": None}
    if not index:
        return out
    for kind in ("emb", "lat"):
        shapes = [list(r[f"{kind}_shape"]) for r in index]
        if all(s == shapes[0] for s in shapes):
            out[f"{kind}_shape"] = shapes[0]
            continue
        out["shapes_vary"] = True
        out[f"{kind}_shape_min"] = [int(v) for v in np.min(shapes, axis=0)]
        out[f"{kind}_shape_max"] = [int(v) for v in np.max(shapes, axis=0)]
    return out


def _split_entry(rec: dict[str, Any]) -> str:
    """A clip's line in a split file (the rule of :func:`auralens.data.esc50.write_splits`)."""
    path = Path(str(rec["path"]))
    return path.name if rec["id"] == path.stem else str(rec["id"])


def _filter_split_files(out: Path, index: Sequence[dict[str, Any]]) -> None:
    """Rewrite PREP's split files (as the shards wrote them) to list only the clips in ``index``."""
    from auralens.io import write_text

    usable = {_split_entry(r) for r in index}
    for name in ("train", "val", "test"):
        path = out / f"{name}.txt"
        if path.is_file():
            kept = [line for line in read_user_text(path).splitlines() if line.strip() in usable]
            write_text(path, "".join(f"{line}\n" for line in kept))


def _warn_empty_splits(out: Path, counts: dict[str, int]) -> None:
    """Say which splits hold no usable clip (tiny --limit, failed clips): training then picks
    checkpoints by the training loss, and an empty test split cannot be rendered."""
    empty = [name for name in ("train", "val", "test") if not counts.get(name)]
    if empty:
        log.warning("%s: no usable clips in the %s split%s (usable clips per split: %s)", out,
                    " and ".join(empty), "s" if len(empty) > 1 else "", counts)


def _shape(shapes: dict[str, list[int]] | None, cache: ArrayCache, key: str, name: str) -> list[int]:
    """The shape of array ``name`` of a cache entry, from ``shapes``: the entry's header as
    read when it was looked up, or the shape of the array just stored.

    Raises:
        PrepareError: the entry holds no array ``name`` (made by something else).
    """
    if not shapes or name not in shapes:
        raise PrepareError(f"cache entry {cache.path_for(key)} is missing or unreadable")
    return list(shapes[name])


def _embed_isolating(extractor: Any, recs: list[dict[str, Any]], errors: ErrorLog) -> list[np.ndarray | None]:
    """``embed_batch`` on the batch; when it fails, retry clip by clip to isolate the bad one."""
    def check(emb: Any, rec: dict[str, Any]) -> np.ndarray:
        arr = np.asarray(emb, dtype=np.float32)
        if arr.ndim != 2 or not np.all(np.isfinite(arr)):
            raise PrepareError(f"{rec['path']}: extractor gave a non-finite or malformed embedding {arr.shape}")
        return arr

    try:
        embs = extractor.embed_batch([r["wave_e"] for r in recs])
        if len(embs) != len(recs):
            raise PrepareError(f"extractor returned {len(embs)} embeddings for {len(recs)} clips")
        return [check(e, r) for e, r in zip(embs, recs, strict=True)]
    except Exception:  # noqa: BLE001 - fall back to one clip at a time to isolate the bad one
        log.debug("batched embedding failed; retrying clip by clip", exc_info=True)
    out: list[np.ndarray | None] = []
    for rec in recs:
        try:
            out.append(check(extractor.embed_batch([rec["wave_e"]])[0], rec))
        except Exception as exc:  # noqa: BLE001
            errors.add(rec["id"], exc, rec["path"])
            out.append(None)
    return out


# --- reading a prepared dataset back ---------------------------------------------------

@dataclass
class PreparedData:
    """A prepared dataset loaded into memory.

    Attributes:
        root: PREP directory.
        info: ``run.json["prepared"]``.
        ids: clip ids per split.
        emb: per split, ``[N, dim, frames]`` float32 (channel-first, see align.to_gate_input).
        lat: per split, ``[N, latent_dim, frames]`` float32.
        records: index.jsonl lines per split.
    """

    root: Path
    info: dict[str, Any]
    ids: dict[str, list[str]]
    emb: dict[str, np.ndarray]
    lat: dict[str, np.ndarray]
    records: dict[str, list[dict[str, Any]]]

    @functools.cached_property
    def fingerprint(self) -> str:
        """SHA-256 over the sorted ``(id, split, emb_key, lat_key)`` rows of the index
        (:func:`index_fingerprint`)."""
        return index_fingerprint([r for recs in self.records.values() for r in recs])

    @functools.cached_property
    def settings(self) -> dict[str, Any]:
        """The settings PREP was prepared with (:func:`prepared_settings`)."""
        return prepared_settings(self.root)

    @functools.cached_property
    def location(self) -> str:
        """PREP as an absolute path: what runs record, readable from any directory."""
        return str(absolute_path(self.root))

    @property
    def in_dim(self) -> int:
        return int(next(iter(self.emb.values())).shape[1])

    @property
    def frames_in(self) -> int:
        return int(next(iter(self.emb.values())).shape[2])

    @property
    def out_dim(self) -> int:
        return int(next(iter(self.lat.values())).shape[1])

    @property
    def frames_out(self) -> int:
        return int(next(iter(self.lat.values())).shape[2])


def read_prepared_info(prep: str | Path) -> dict[str, Any]:
    path = Path(prep) / "run.json"
    if not Path(prep).exists():
        raise PrepareError(f"{prep}: PREP not found; run `auralens sonify prepare DATA --out {prep}` first")
    if not path.is_file():
        if (Path(prep) / "shards").is_dir():
            raise PrepareError(f"{prep}: holds shard outputs but no merged index; run "
                               "`auralens sonify prepare DATA --out PREP --merge` after the last shard")
        raise PrepareError(f"{prep}: not a prepared dataset (no run.json); run `auralens sonify prepare` first")
    run = read_json(path)
    info = run.get("prepared") if isinstance(run, dict) else None
    if not isinstance(info, dict) or not info:
        raise PrepareError(f"{path}: not written by `auralens sonify prepare`")
    return info


def load_prepared(prep: str | Path, splits: Sequence[str] = ("train", "val", "test")) -> PreparedData:
    """Load every cached embedding/latent of PREP into memory once.

    Raises:
        PrepareError: PREP is not a prepared dataset, an entry is missing from the cache, or
            clips have different frame counts.
    """
    from auralens.sonify.align import to_gate_input

    prep = Path(prep)
    info = read_prepared_info(prep)
    index = read_jsonl(prep / "index.jsonl")
    root = Path(info["cache_root"])
    emb_cache, lat_cache = ArrayCache(root, "embeddings"), ArrayCache(root, "latents")
    ids: dict[str, list[str]] = {}
    emb: dict[str, np.ndarray] = {}
    lat: dict[str, np.ndarray] = {}
    records: dict[str, list[dict[str, Any]]] = {}
    for split in splits:
        recs = [r for r in index if r.get("split") == split]
        if not recs:
            continue
        # Preallocated [N, C, T] arrays: no second full copy from stacking a list.
        e_all: np.ndarray | None = None
        l_all: np.ndarray | None = None
        for i, rec in enumerate(progress(recs, desc=f"load {split}", total=len(recs))):
            e = emb_cache.get(rec["emb_key"])
            la = lat_cache.get(rec["lat_key"])
            if e is None or la is None:
                raise PrepareError(f"{prep}: cached arrays for clip {rec['id']} are missing from "
                                   f"{root}; run `auralens sonify prepare` again")
            # valid_time_patches: recorded per clip when clips kept their own length.
            x = to_gate_input(e["embedding"], info["extractor"], rec.get("valid_time_patches"))
            z = la["latent"]
            if e_all is None or l_all is None:
                e_all = np.empty((len(recs), *x.shape), np.float32)
                l_all = np.empty((len(recs), *z.shape), np.float32)
            if x.shape != e_all.shape[1:] or z.shape != l_all.shape[1:]:
                kept = "" if info.get("duration") is not None else " (the clips kept their own lengths)"
                raise PrepareError(
                    f"{prep}: clip {rec['id']} has shapes {x.shape}/{z.shape}, others "
                    f"{e_all.shape[1:]}/{l_all.shape[1:]}{kept}; clips of different lengths cannot be "
                    "trained on together — prepare with a fixed --duration")
            e_all[i], l_all[i] = x, z
        assert e_all is not None and l_all is not None
        emb[split], lat[split] = e_all, l_all
        ids[split] = [r["id"] for r in recs]
        records[split] = recs
    if "train" not in emb:
        raise PrepareError(f"{prep}: no training clips in the prepared dataset")
    return PreparedData(prep, info, ids, emb, lat, records)
