"""FUSS-with-labels manifests: FUSS mixtures whose sources carry FSD50K weak labels.

FUSS ships no labels, but every FUSS source is cut from an FSD50K clip, so the labels can be
recovered from FSD50K's ground truth (the study did this for the FUSS eval set: 1000
mixtures, 187 distinct labels).

Expected input layout (official releases, unpacked anywhere)::

    FUSS_ssdata/ (or FUSS_ssdata_reverb/ssdata_reverb/)
      eval/
        example00000.wav                   # the mixture (16 kHz mono)
        example00000.jams                  # scaper annotation: one event per source, with
                                           #   value.role (background/foreground) and
                                           #   value.source_file (…/<FSD50K id>.wav)
        example00000_sources/
          background0_sound.wav            # the reference sources, named <role><k>_sound.wav
          foreground0_sound.wav …
      eval_example_list.txt                # optional: mixture<TAB>source<TAB>source …
    FSD50K.ground_truth/
      eval.csv                             # fname,labels,mids   (labels comma-separated)
      dev.csv                              # fname,labels,mids,split

Alternatively ``labels_csv`` gives labels per FUSS example directly
(``id,labels`` with labels separated by ``;`` or ``,``; e.g. hand-made annotations).

The result is a :class:`~auralens.types.SceneRecord` JSONL (``manifest.jsonl``) — the same
format :func:`auralens.data.mix.build_mixtures` writes for our own mixtures, which
:func:`manifest_from_mixer` re-exports with absolute paths.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from collections import Counter
from pathlib import Path
from typing import Any

from auralens.errors import AuralensError
from auralens.io import NotTextError, open_user_text, read_user_text, write_jsonl
from auralens.types import SceneRecord, Source, load_scenes, save_records

log = logging.getLogger(__name__)


class ManifestError(AuralensError):
    """FUSS / FSD50K inputs that do not have the expected layout."""


#: ``label_mode`` of :func:`fuss_manifest`.
LABEL_MODES = ("first", "all")


def read_fsd50k_labels(ground_truth: Path) -> dict[str, list[str]]:
    """``{fsd50k_id: [label, …]}`` from FSD50K's ``eval.csv`` / ``dev.csv``.

    Args:
        ground_truth: the ``FSD50K.ground_truth`` directory or one of its CSV files.
    """
    ground_truth = Path(ground_truth)
    files = [ground_truth] if ground_truth.is_file() else sorted(ground_truth.glob("*.csv"))
    files = [f for f in files if f.stem in ("eval", "dev") or ground_truth.is_file()]
    if not files:
        raise ManifestError(f"{ground_truth}: no FSD50K ground-truth CSV (eval.csv / dev.csv)")
    out: dict[str, list[str]] = {}
    for f in files:
        with open_user_text(f) as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or not {"fname", "labels"} <= set(reader.fieldnames):
                raise ManifestError(f"{f}: expected columns fname,labels (FSD50K ground truth)")
            for row in reader:
                if row["fname"] is None or row["labels"] is None:  # a short row
                    raise ManifestError(f"{f}:{reader.line_num}: the row has no fname or "
                                        "labels column")
                out[str(row["fname"]).strip()] = [x.strip() for x in row["labels"].split(",")
                                                  if x.strip()]
    return out


def _fsd_id(source_file: str) -> str:
    """``…/fsd_data/eval/sound/123456.wav`` → ``"123456"`` (leading digits of the stem)."""
    stem = Path(source_file).stem
    m = re.match(r"\d+", stem)
    return m.group(0) if m else stem


def _jams_events(path: Path) -> list[dict[str, Any]]:
    """The ``value`` of each event of a scaper JAMS file (the first annotation).

    Raises:
        ManifestError: one line naming the file (and the event) when it is not such a file.
    """
    try:
        data = json.loads(read_user_text(path))
        obs = data["annotations"][0]["data"]
    except NotTextError:
        raise
    except (OSError, ValueError, KeyError, IndexError, TypeError) as exc:
        raise ManifestError(f"{path}: not a readable scaper JAMS file ({exc})") from exc
    if isinstance(obs, dict):  # column-major JAMS variant
        columns = [v for v in obs.values() if isinstance(v, list)]
        if len(columns) != len(obs) or len({len(v) for v in columns}) > 1:
            raise ManifestError(f"{path}: the annotation's data columns are not lists of one "
                                "length (not a scaper JAMS file)")
        obs = [dict(zip(obs, vals, strict=True)) for vals in zip(*columns, strict=True)]
    if not isinstance(obs, list):
        raise ManifestError(f"{path}: the annotation's data is not a list of events "
                            "(not a scaper JAMS file)")
    for i, o in enumerate(obs):
        if not isinstance(o, dict) or not isinstance(o.get("value"), dict):
            raise ManifestError(f"{path}: event {i} has no value object with role and "
                                "source_file (not a scaper JAMS file)")
    return [o["value"] for o in obs]


def _read_labels_csv(path: Path) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    with open_user_text(path) as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not {"id", "labels"} <= set(reader.fieldnames):
            raise ManifestError(f"{path}: expected columns id,labels")
        for row in reader:
            if row["id"] is None or row["labels"] is None:  # a short row
                raise ManifestError(f"{path}:{reader.line_num}: the row has no id or labels "
                                    "column")
            sep = ";" if ";" in row["labels"] else ","
            out[row["id"].strip()] = [x.strip() for x in row["labels"].split(sep) if x.strip()]
    return out


def fuss_manifest(
    fuss_root: str | Path,
    out_path: str | Path,
    *,
    split: str = "eval",
    fsd50k_ground_truth: str | Path | None = None,
    labels_csv: str | Path | None = None,
    label_mode: str = "first",
) -> dict[str, Any]:
    """Write a labelled manifest for one FUSS split.

    Args:
        fuss_root: directory holding ``<split>/exampleNNNNN.wav`` (FUSS ssdata or
            ssdata_reverb).
        out_path: manifest JSONL to write.
        split: ``eval`` (the study), ``validation`` or ``train``.
        fsd50k_ground_truth: ``FSD50K.ground_truth`` dir (labels via the JAMS source files).
        labels_csv: ``id,labels`` CSV instead (labels per example, in source order).
        label_mode: FSD50K gives several labels per clip (leaf and ancestors); ``first``
            keeps the first one listed, ``all`` joins them with ``|`` (stored in
            ``Source.label``; the full list is kept in the record's ``meta``).

    Returns:
        Stats: ``n`` mixtures, ``labels`` (distinct), ``source_counts`` histogram,
        ``unlabelled`` sources, and ``unmatched_ids`` (``labels_csv`` ids that name no
        mixture of the split, ignored with a warning) when there are any. Each record's
        ``sample_rate`` and ``duration`` are read from its mixture's header.

    Raises:
        ManifestError: an unknown ``label_mode``, no labels source, a ``labels_csv`` none of
            whose ids names a mixture, or inputs without the expected layout (one line
            naming the file; the manifest must cover the whole split, so no mixture is
            left out).
    """
    if label_mode not in LABEL_MODES:
        raise ManifestError(f"label mode must be one of {', '.join(LABEL_MODES)}, "
                            f"got {label_mode!r}")
    root = Path(fuss_root)
    split_dir = root / split
    if not split_dir.is_dir():
        raise ManifestError(f"{split_dir}: FUSS split directory not found")
    mixtures = sorted(p for p in split_dir.glob("example*.wav"))
    if not mixtures:
        raise ManifestError(f"{split_dir}: no exampleNNNNN.wav mixtures")
    if not fsd50k_ground_truth and not labels_csv:
        raise ManifestError(f"{root}: FUSS ships no labels: give --fsd50k DIR (the "
                            "FSD50K.ground_truth folder) or --labels-csv FILE (id,labels) to "
                            "label its sources")
    fsd = read_fsd50k_labels(Path(fsd50k_ground_truth)) if fsd50k_ground_truth else None
    given = _read_labels_csv(Path(labels_csv)) if labels_csv else None
    unmatched = _check_label_ids(Path(labels_csv), given, mixtures, split_dir) if given is not None else 0
    records, unlabelled = [], 0
    for mix in mixtures:
        src_dir = split_dir / f"{mix.stem}_sources"
        files = sorted(src_dir.glob("*.wav"), key=lambda p: (not p.name.startswith("background"),
                                                              p.name))
        if not files:
            raise ManifestError(f"{src_dir}: no source files")
        per_source: list[list[str]] = [[] for _ in files]
        origins = [""] * len(files)
        if fsd is not None:
            jams = mix.with_suffix(".jams")
            if not jams.exists():
                raise ManifestError(f"{jams}: JAMS annotation missing (needed to find the "
                                    "FSD50K clip of each source)")
            counters: Counter[str] = Counter()
            by_name: dict[str, dict[str, Any]] = {}
            for ev in _jams_events(jams):  # scaper names isolated events <role><k>_<label>
                role = str(ev.get("role", "foreground"))
                by_name[f"{role}{counters[role]}"] = ev
                counters[role] += 1
            for i, f in enumerate(files):
                ev = by_name.get(f.stem.rsplit("_", 1)[0])
                if ev is not None:
                    origins[i] = _fsd_id(str(ev.get("source_file", "")))
                    per_source[i] = fsd.get(origins[i], [])
        if given is not None and mix.stem in given:
            labs = given[mix.stem]
            for i in range(len(files)):
                per_source[i] = [labs[i]] if i < len(labs) else per_source[i]
        sources = []
        for f, labs, origin in zip(files, per_source, origins, strict=True):
            if not labs:
                unlabelled += 1
            label = (labs[0] if label_mode == "first" else "|".join(labs)) if labs else "unknown"
            role = "background" if f.name.startswith("background") else "foreground"
            sources.append(Source(path=f.resolve(), label=label, role=role, origin=origin))
        sample_rate, duration = _audio_header(mix)
        records.append(SceneRecord(id=mix.stem, mixture=mix.resolve(), sources=sources,
                                   sample_rate=sample_rate, duration=duration, split=split,
                                   meta={"all_labels": per_source, "dataset": "FUSS"}))
    save_records(out_path, records)
    return {**_stats(records, unlabelled), **({"unmatched_ids": unmatched} if unmatched else {})}


def _audio_header(path: Path) -> tuple[int, float]:
    """The sample rate and duration (seconds) of ``path`` from its header (no decoding).

    Raises:
        ManifestError: one line naming the file when it is not readable audio.
    """
    import soundfile as sf

    try:
        info = sf.info(str(path))
    except (RuntimeError, OSError, ValueError) as exc:  # sf.LibsndfileError is a RuntimeError
        raise ManifestError(f"{path}: not a readable audio file "
                            f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
                            ) from None
    if info.samplerate <= 0:
        raise ManifestError(f"{path}: the header gives no sample rate")
    return int(info.samplerate), round(info.frames / info.samplerate, 6)


def _check_label_ids(path: Path, given: dict[str, list[str]], mixtures: list[Path],
                     split_dir: Path) -> int:
    """Warn about ``--labels-csv`` ids that name no mixture of the split (naming a few and the
    count) and return how many; refuse a CSV none of whose ids names one.

    Raises:
        ManifestError: the CSV holds no id, or none of its ids is a mixture of ``split_dir``.
    """
    stems = {m.stem for m in mixtures}
    unmatched = [i for i in given if i not in stems]
    if not given:
        raise ManifestError(f"{path}: holds no labelled ids (expected rows id,labels)")
    if len(unmatched) == len(given):
        raise ManifestError(f"{path}: none of its {len(given)} id(s) names a mixture of "
                            f"{split_dir} (e.g. {', '.join(repr(i) for i in unmatched[:3])}; "
                            f"the mixtures are named like {sorted(stems)[0]!r})")
    if unmatched:
        shown = ", ".join(repr(i) for i in unmatched[:3])
        more = ", …" if len(unmatched) > 3 else ""
        log.warning("%s: %d id(s) name no mixture of %s and are ignored: %s%s", path,
                    len(unmatched), split_dir, shown, more)
    return len(unmatched)


def manifest_from_mixer(mix_dir: str | Path, out_path: str | Path, *,
                        split: str | None = None) -> dict[str, Any]:
    """Re-export our mixer's ``manifest.jsonl`` (relative paths resolved) as a manifest.

    Args:
        mix_dir: output directory of :func:`auralens.data.mix.build_mixtures` (holds
            ``manifest.jsonl``), or the manifest file itself.
        out_path: manifest JSONL to write.
        split: only the mixtures of this split (None: every split).

    Raises:
        ManifestError: no manifest, no mixtures of ``split``, or a mixture whose mixture or
            source file is missing (one line naming the entry: the manifest must describe
            files that are there, so none is left out silently).
    """
    mix_dir = Path(mix_dir)
    path = mix_dir if mix_dir.is_file() else mix_dir / "manifest.jsonl"
    if not path.exists():
        raise ManifestError(f"{path}: mixer manifest not found")
    records = load_scenes(path)
    if split is not None:
        found = sorted({str(r.split) for r in records if r.split})
        records = [r for r in records if r.split == split]
        if not records:
            raise ManifestError(f"{path}: no mixtures of split {split!r} (splits there: "
                                f"{', '.join(found) or 'none'})")
    for r in records:
        r.mixture = r.mixture if r.mixture.is_absolute() else (path.parent / r.mixture).resolve()
        for s in r.sources:
            s.path = s.path if s.path.is_absolute() else (path.parent / s.path).resolve()
        missing = next((p for p in [r.mixture, *(s.path for s in r.sources)] if not p.is_file()), None)
        if missing is not None:
            what = "mixture" if missing == r.mixture else "source"
            raise ManifestError(f"{path}: {r.id}: {what} file not found ({missing}); rerun "
                                "auralens data mix into that folder to remake it")
        if not r.sources:
            raise ManifestError(f"{path}: {r.id}: lists no sources (not a mixer record)")
    save_records(out_path, records)
    return _stats(records, 0)


#: Image suffixes a reference frame may have (``pairs_from_mixer(frames=…)``).
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")


def pairs_from_mixer(mix_dir: str | Path, out_path: str | Path, *,
                     frames: str | Path | None = None) -> dict[str, Any]:
    """Write the audio + reference-frame pairs JSONL of the video experiment from our mixer.

    One line per mixture of ``mix_dir/manifest.jsonl`` (what ``auralens data mix`` writes):
    ``{"id", "audio", "labels", "n_sources", "sources"[, "image"]}`` with absolute paths, so
    the offline variant of ``configs/experiments/video.yaml`` (reference separation) runs
    without videos or ffmpeg.

    Args:
        mix_dir: output directory of :func:`auralens.data.mix.build_mixtures`, or its manifest.
        out_path: pairs JSONL to write.
        frames: a folder with one reference image per mixture, named after it
            (``example00000.png`` / ``.jpg``); None leaves ``image`` out (CLIPScore against a
            reference frame is then skipped per item; the offline variant computes none).

    Raises:
        ManifestError: no manifest, an empty one, or a mixture without its frame.
    """
    mix_dir = Path(mix_dir)
    path = mix_dir if mix_dir.is_file() else mix_dir / "manifest.jsonl"
    if not path.exists():
        raise ManifestError(f"{path}: mixer manifest not found (make one with auralens data mix)")
    records = load_scenes(path)
    if not records:
        raise ManifestError(f"{path}: holds no mixtures")
    frame_dir = Path(frames) if frames is not None else None
    if frame_dir is not None and not frame_dir.is_dir():
        raise ManifestError(f"{frame_dir}: frames folder not found")
    pairs = []
    for r in records:
        audio = r.mixture if r.mixture.is_absolute() else path.parent / r.mixture
        pair: dict[str, Any] = {
            "id": r.id, "audio": str(audio.resolve()), "labels": list(dict.fromkeys(r.labels)),
            "n_sources": r.n_sources,
            "sources": [str((s.path if s.path.is_absolute() else path.parent / s.path).resolve())
                        for s in r.sources]}
        if frame_dir is not None:
            stem = Path(str(r.id)).name
            image = next((frame_dir / f"{stem}{suf}" for suf in FRAME_SUFFIXES
                          if (frame_dir / f"{stem}{suf}").is_file()), None)
            if image is None:
                raise ManifestError(f"{frame_dir}: no reference frame for {r.id} "
                                    f"({stem}.png or {stem}.jpg)")
            _check_image(image)
            pair["image"] = str(image.resolve())
        pairs.append(pair)
    write_jsonl(out_path, pairs)
    return _stats(records, 0)


def _check_image(path: Path) -> None:
    """Decode ``path`` once: a frame that is no image fails here, naming it, not deep in a run."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ManifestError(f"{path}: not a readable image ({exc})") from None


def _stats(records: list[SceneRecord], unlabelled: int) -> dict[str, Any]:
    labels = {lab for r in records for lab in r.labels if lab != "unknown"}
    return {"n": len(records), "labels": len(labels),
            "source_counts": dict(sorted(Counter(r.n_sources for r in records).items())),
            "unlabelled": unlabelled}
