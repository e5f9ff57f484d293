"""FUSS-recipe mixtures: one background plus foreground events, each in its own room position.

The recipe follows the Free Universal Sound Separation data (Wisdom et al., 2020):

* 1 to ``max_sources`` sources per mixture (counts balanced block by block, so any
  prefix of the examples has a near-uniform count histogram);
* exactly one *background* source that spans the whole clip (silence trimmed, looped);
* the rest are *foreground* events (silence trimmed) at random onsets;
* each source convolved with its own impulse response from an image-method shoebox room
  (3–7 × 4–8 × 2.13–3.05 m, random microphone and source positions, random absorption
  per wall and per mixture);
* random levels: the background at −38…−28 dBFS, each foreground at a random SNR
  against it; the mixture is scaled down (all sources alike) if its peak exceeds 0.9.

Output mirrors the FUSS release so :func:`auralens.data.fuss.load_fuss` reads both::

    out_dir/{split}/example00000.wav                         mixture (float32 WAV)
    out_dir/{split}/example00000_sources/background0_sound.wav
    out_dir/{split}/example00000_sources/foreground0_sound.wav …
    out_dir/{split}/example00000.txt                         "onset\\toffset\\tlabel" per source
    out_dir/{split}_example_list.txt                         tab-separated relative paths
    out_dir/manifest.jsonl                                   SceneRecord.to_dict() per example
    out_dir/{split}_mix_config.json                          settings (resume guard)
    out_dir/errors.jsonl                                     clips that failed to load

The mixture is the float32 sum of the written float32 sources, so reading the files back
the sources sum to the mixture exactly (up to float32 rounding of the summation).
Manifest paths are relative to ``out_dir``; :func:`~auralens.data.fuss.load_fuss` resolves
them, and the records returned here carry ``out_dir``-joined paths.

Every example draws from its own generator seeded by ``(seed, split, index)``, so an
example does not depend on the others: re-running with a larger ``n`` keeps the first
examples, and an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import logging
import re
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from auralens.audio import AudioError, load
from auralens.audio import write as write_audio
from auralens.checks import as_bool
from auralens.data import DatasetError, check_free_space, check_length
from auralens.data.folder import check_out_owner
from auralens.io import (
    ErrorLog,
    append_jsonl,
    check_out_dir,
    read_json,
    read_jsonl,
    remove_stale_temps,
    write_json,
    write_jsonl,
    write_text,
)
from auralens.scene.separate.activity import nothing_to_hear
from auralens.types import Clip, SceneRecord, Source

log = logging.getLogger(__name__)

#: Room size ranges in metres (length, width, height), as in FUSS.
ROOM_RANGES = ((3.0, 7.0), (4.0, 8.0), (2.13, 3.05))
#: Per-wall energy absorption range.
ABSORPTION_RANGE = (0.1, 0.7)
#: Image-method order: enough for a dense early tail, cheap to compute.
MAX_ORDER = 17
#: Keep microphone and sources this far from the walls (metres).
WALL_MARGIN = 0.4
#: Minimum source–microphone distance (metres).
MIN_DISTANCE = 0.5
#: Background level range (dBFS, RMS over the clip).
BACKGROUND_DBFS = (-38.0, -28.0)
#: Foreground-to-background level range (dB, RMS over each event's active part).
SNR_DB = (-5.0, 20.0)
#: Mixture peak above which all sources are scaled down together.
PEAK_LIMIT = 0.9
#: Frame length (s) and relative threshold (dB below the loudest frame) of the activity trim.
FRAME_S = 0.02
ACTIVE_DB = -40.0
#: A clip whose loudest frame is below this RMS is considered silent.
SILENT_RMS = 1e-4
#: Settings that must match to resume into an existing output directory. The source counts by
#: its clips (ids, labels, folds, file sizes), not by how its path was spelled.
#: Most sources per mixture: FUSS uses at most 4; past 8 overlapping events in a few seconds no
#: longer make a scene a listener (or a separation model with a fixed number of outputs) can
#: take apart, and every source is one more file per example.
MAX_SOURCES = 8
#: Shortest mixture (s): a foreground event lasts 0.5 … 1.0 of the mixture and the activity
#: trim works in FRAME_S frames, so shorter mixtures hold events of a few frames only.
MIN_DURATION_S = 0.5
_RESUME_KEYS = ("seed", "sample_rate", "duration", "max_sources", "min_sources", "reverb",
                "folds", "clips")


@dataclass
class _Pool:
    """Candidate clips plus a cache of loaded, trimmed waves and the known-bad ids."""

    clips: list[Clip]
    sample_rate: int
    errors: ErrorLog
    cache: dict[str, np.ndarray] = field(default_factory=dict)
    bad: set[str] = field(default_factory=set)
    max_cache: int = 512

    def get(self, clip: Clip) -> np.ndarray | None:
        """The clip's active part ``[T]`` at the pool rate, or None (failed, silent or
        constant)."""
        if clip.id in self.bad:
            return None
        if clip.id in self.cache:
            return self.cache[clip.id]
        try:
            wave = load(clip.path, self.sample_rate)
        except AudioError as exc:
            self.errors.add(clip.id, exc, clip.path)
            self.bad.add(clip.id)
            return None
        active = trim_silence(wave, self.sample_rate)
        # a constant (DC offset only) clip is as inaudible as a silent one: the activity
        # filter of separation drops such estimates, so it is no sound source either
        quiet = "silent" if active is None else nothing_to_hear(wave)
        if quiet is not None:
            log.info("%s: %s, not used in mixtures", clip.path, quiet)
            self.bad.add(clip.id)
            return None
        if len(self.cache) >= self.max_cache:
            self.cache.pop(next(iter(self.cache)))
        self.cache[clip.id] = active
        return active


def _frame_rms(wave: np.ndarray, frame: int) -> np.ndarray:
    n = len(wave) // frame
    if n == 0:
        return np.sqrt(np.mean(np.square(wave, dtype=np.float64)))[None]
    frames = wave[: n * frame].reshape(n, frame).astype(np.float64)
    return np.sqrt(np.mean(frames**2, axis=1))


def trim_silence(wave: np.ndarray, sample_rate: int) -> np.ndarray | None:
    """Cut leading/trailing frames more than 40 dB below the loudest frame.

    Args:
        wave: ``[T]``.
    Returns:
        the active part ``[T']``, or None when the whole clip is below -80 dBFS.
    """
    frame = max(1, int(FRAME_S * sample_rate))
    rms = _frame_rms(wave, frame)
    top = float(rms.max()) if rms.size else 0.0
    if top < SILENT_RMS:
        return None
    active = np.flatnonzero(rms >= top * 10 ** (ACTIVE_DB / 20))
    start, stop = int(active[0]) * frame, min(len(wave), (int(active[-1]) + 1) * frame)
    return np.ascontiguousarray(wave[start:stop], dtype=np.float32)




def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if x.size else 0.0


def _example_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(split.encode("utf-8")), index])


def source_count(seed: int, split: str, index: int, min_sources: int, max_sources: int) -> int:
    """Number of sources of example ``index``: each block of K = max−min+1 examples holds
    every count once (a seeded permutation), so counts are uniform and independent of ``n``."""
    k = max_sources - min_sources + 1
    block = index // k
    perm = np.random.default_rng([seed, zlib.crc32(split.encode("utf-8")), 1 << 20, block]).permutation(k)
    return min_sources + int(perm[index % k])


def _random_room(rng: np.random.Generator, n_sources: int) -> dict[str, Any]:
    dims = np.array([rng.uniform(lo, hi) for lo, hi in ROOM_RANGES])
    walls = ["east", "west", "north", "south", "floor", "ceiling"]
    absorption = {w: float(rng.uniform(*ABSORPTION_RANGE)) for w in walls}
    mic = rng.uniform(WALL_MARGIN, dims - WALL_MARGIN)
    sources = []
    for _ in range(n_sources):
        for _try in range(100):
            pos = rng.uniform(WALL_MARGIN, dims - WALL_MARGIN)
            if np.linalg.norm(pos - mic) >= MIN_DISTANCE:
                break
        sources.append(pos)
    return {"dims": dims.round(4).tolist(), "absorption": absorption,
            "mic": mic.round(4).tolist(), "sources": [p.round(4).tolist() for p in sources]}


def room_impulse_responses(room: dict[str, Any], sample_rate: int,
                           max_order: int = MAX_ORDER) -> list[np.ndarray]:
    """Image-method impulse responses ``[L_k]`` from each source to the microphone."""
    import pyroomacoustics as pra

    shoebox = pra.ShoeBox(room["dims"], fs=sample_rate, materials=pra.make_materials(**room["absorption"]),
                          max_order=max_order, air_absorption=False)
    shoebox.add_microphone(room["mic"])
    for pos in room["sources"]:
        shoebox.add_source(pos)
    shoebox.compute_rir()
    return [np.asarray(r, dtype=np.float64) for r in shoebox.rir[0]]


def _draw(rng: np.random.Generator, pool: _Pool, used_ids: set[str],
          avoid_labels: set[str | None]) -> tuple[Clip, np.ndarray]:
    """One usable clip not in ``used_ids``; labels in ``avoid_labels`` only when nothing else is left."""
    # The candidates never depend on which bad clips earlier examples happened to find (only on
    # the ones this draw hit), so an example is the same in a straight and in a resumed run.
    rejected: set[str] = set()
    while True:
        usable = [c for c in pool.clips if c.id not in rejected and c.id not in used_ids]
        if not usable:
            raise DatasetError(
                f"not enough usable clips to mix: an example needs {len(used_ids) + 1} distinct clips, "
                f"{len(pool.clips)} are listed and {len(pool.bad)} of them are unreadable or silent "
                "(see errors.jsonl)")
        fresh = [c for c in usable if c.label not in avoid_labels] or usable
        clip = fresh[int(rng.integers(len(fresh)))]
        wave = pool.get(clip)
        if wave is not None:
            return clip, wave
        rejected.add(clip.id)


def _pick_clips(rng: np.random.Generator, pool: _Pool, count: int,
                background_candidates: int = 3) -> list[tuple[Clip, np.ndarray]]:
    """Draw ``count`` usable clips with distinct labels while the pool allows it.

    The first is the background: the candidate with the longest active part among a few
    draws, so a short event is rarely looped over the whole clip.
    """
    used: set[str] = set()
    candidates = []
    for _ in range(background_candidates):
        try:
            clip, wave = _draw(rng, pool, used, set())
        except DatasetError:
            if candidates:
                break
            raise
        candidates.append((clip, wave))
        used.add(clip.id)
    chosen = [max(candidates, key=lambda cw: len(cw[1]))]
    used = {chosen[0][0].id}
    labels = {chosen[0][0].label}
    while len(chosen) < count:
        clip, wave = _draw(rng, pool, used, labels)
        chosen.append((clip, wave))
        used.add(clip.id)
        labels.add(clip.label)
    return chosen


def _best_segment(rng: np.random.Generator, wave: np.ndarray, length: int, tries: int = 8) -> tuple[np.ndarray, int]:
    """A ``length``-sample segment of ``wave`` with energy: the loudest of a few random starts."""
    if len(wave) <= length:
        return wave, 0
    starts = rng.integers(0, len(wave) - length + 1, tries)
    energies = [_rms(wave[s:s + length]) for s in starts]
    s = int(starts[int(np.argmax(energies))])
    return wave[s:s + length], s


def _loop_background(rng: np.random.Generator, wave: np.ndarray, length: int, sample_rate: int) -> tuple[np.ndarray, int]:
    """Loop ``wave`` from a random start to ``length`` samples, crossfading each seam (20 ms)."""
    if len(wave) >= length:
        start = int(rng.integers(len(wave) - length + 1))
        return wave[start:start + length].astype(np.float32), start
    start = int(rng.integers(len(wave)))
    rolled = np.roll(wave, -start)
    fade = min(len(wave) // 4, int(0.02 * sample_rate))
    if fade < 2:
        return np.resize(rolled, length).astype(np.float32), start
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    out = np.zeros(length + fade, np.float32)
    pos = 0
    while pos < length:
        seg = rolled.copy()
        seg[:fade] *= ramp if pos > 0 else 1.0
        seg[-fade:] *= ramp[::-1]
        end = min(len(out), pos + len(seg))
        out[pos:end] += seg[: end - pos]
        pos += len(seg) - fade
    return out[:length], start


def _make_example(
    index: int, rng: np.random.Generator, pool: _Pool, *, count: int, length: int, sample_rate: int,
    reverb: bool, rirs: Sequence[np.ndarray] | None = None,
) -> tuple[list[np.ndarray], list[dict[str, Any]], dict[str, Any]]:
    """Build one example's float32 sources ``[count][T]``, their descriptions and room meta.

    ``rirs`` (at least ``count`` impulse responses of one room) replaces the image-method
    room drawn from ``rng``: training draws rooms from a precomputed :class:`RoomBank`.
    """
    picks = _pick_clips(rng, pool, count)
    dry: list[np.ndarray] = []
    descs: list[dict[str, Any]] = []
    # background: whole clip, looped
    bg_clip, bg_wave = picks[0]
    bg, bg_start = _loop_background(rng, bg_wave, length, sample_rate)
    dry.append(bg.astype(np.float64))
    descs.append({"clip": bg_clip, "role": "background", "onset": 0.0, "offset": length / sample_rate,
                  "segment_start": bg_start / sample_rate})
    for clip, wave in picks[1:]:
        max_len = int(rng.uniform(0.5, 1.0) * length) if len(wave) > length else len(wave)
        seg, seg_start = _best_segment(rng, wave, max_len)
        onset = int(rng.integers(0, length - len(seg) + 1))
        placed = np.zeros(length)
        placed[onset:onset + len(seg)] = seg
        dry.append(placed)
        descs.append({"clip": clip, "role": "foreground", "onset": onset / sample_rate,
                      "offset": (onset + len(seg)) / sample_rate, "segment_start": seg_start / sample_rate})
    meta: dict[str, Any] = {"reverb": reverb}
    if reverb:
        from scipy.signal import fftconvolve

        if rirs is None:
            room = _random_room(rng, count)
            rirs = room_impulse_responses(room, sample_rate)
            meta["room"] = room
        rirs = list(rirs)[:count]
        wet = [fftconvolve(x, h)[:length] for x, h in zip(dry, rirs, strict=True)]
        meta["rir_samples"] = [len(h) for h in rirs]
    else:
        wet = dry
    # levels: background absolute, foregrounds relative to it (RMS over their active span)
    bg_db = float(rng.uniform(*BACKGROUND_DBFS))
    gains: list[float] = []
    snrs: list[float | None] = []
    bg_rms = _rms(wet[0]) + 1e-12
    gains.append(10 ** (bg_db / 20) / bg_rms)
    snrs.append(None)
    for x, d in zip(wet[1:], descs[1:], strict=True):
        a, b = int(d["onset"] * sample_rate), int(d["offset"] * sample_rate)
        snr = float(rng.uniform(*SNR_DB))
        gains.append(10 ** ((bg_db + snr) / 20) / (_rms(x[a:b]) + 1e-12))
        snrs.append(round(snr, 3))
    sources = [(x * g) for x, g in zip(wet, gains, strict=True)]
    peak = float(np.max(np.abs(np.sum(sources, axis=0))))
    if peak > PEAK_LIMIT:
        scale = PEAK_LIMIT / peak
        sources = [x * scale for x in sources]
        gains = [g * scale for g in gains]
    for d, g, snr in zip(descs, gains, snrs, strict=True):
        d["gain_db"] = round(20 * float(np.log10(g)), 3)
        d["snr_db"] = snr
    meta["background_dbfs"] = round(bg_db, 3)
    return [x.astype(np.float32) for x in sources], descs, meta


def zero_absent(refs: np.ndarray, rms: float = 1e-5) -> np.ndarray:
    """``[M, T]`` references with rows of RMS ≤ ``rms`` set to exact zeros (absent sources):
    a crop can miss a source, leaving at most a faint reverb tail the loss should not chase."""
    return np.where(np.sqrt((refs**2).mean(-1, keepdims=True)) > rms, refs, 0).astype(np.float32)


def to_slots(refs: np.ndarray, labels: Sequence[str | None], slots: dict[str, int]) -> np.ndarray:
    """Lay ``[n, T]`` references out by class: ``[S, T]`` with row ``slots[label]`` the sum of the
    references of that class (``S = len(slots)``; classes not present stay all-zero rows).

    Raises:
        DatasetError: a label that has no slot.
    """
    out = np.zeros((len(slots), refs.shape[-1]), np.float32)
    for row, label in zip(refs, labels, strict=False):
        if label not in slots:
            raise DatasetError(f"class {label!r} has no output slot (slots: {', '.join(slots)})")
        out[slots[label]] += row
    return out


class RoomBank:
    """``size`` image-method rooms with ``sources`` impulse responses each, drawn once.

    Computing a room takes about 0.1 s, far longer than mixing an example; an on-the-fly
    training mixer draws rooms from this bank instead (positions and absorption as in
    :func:`build_mixtures`).
    """

    def __init__(self, size: int, sources: int, sample_rate: int, seed: int = 0) -> None:
        from auralens.progress import progress

        rng = np.random.default_rng([seed, 0x520_0B])
        self.rooms = [room_impulse_responses(_random_room(rng, sources), sample_rate)
                      for _ in progress(range(size), desc="room impulse responses")]

    def draw(self, rng: np.random.Generator) -> list[np.ndarray]:
        """The impulse responses of one random room, in random source order."""
        room = self.rooms[int(rng.integers(len(self.rooms)))]
        return [room[i] for i in rng.permutation(len(room))]


class RecipeMixer:
    """FUSS-recipe examples made on the fly: ``sample(length, rng, n)`` → ``(mix [T], refs [M, T])``.

    Each call builds a full ``seconds``-long example with :func:`build_mixtures`' recipe (looped
    background, foreground events at random onsets, a room from ``bank``, random levels) and
    returns a random ``length``-sample crop of it. Sources the crop misses (RMS ≤ 1e-5) become
    all-zero rows, i.e. absent references.

    Args:
        clips: the clips to draw from (distinct labels within an example while possible).
        num_outputs: M, rows of ``refs``.
        max_sources: ``n`` is uniform in 1 … ``max_sources`` when not given.
        sample_rate: rate of everything.
        errors: where unreadable clips are reported (they are skipped).
        seconds: length of the example before cropping.
        bank: rooms to draw from (None: dry, no reverb).
    """

    def __init__(self, clips: Sequence[Clip], num_outputs: int, max_sources: int, sample_rate: int,
                 errors: ErrorLog, seconds: float = 10.0, bank: RoomBank | None = None) -> None:
        self.pool = _Pool(list(clips), sample_rate, errors, max_cache=len(clips) + 1)
        from auralens.progress import progress

        for clip in progress(self.pool.clips, desc="load clips"):  # decode once, up front
            self.pool.get(clip)
        if len(self.pool.bad) == len(self.pool.clips):
            raise DatasetError("no usable clips to mix (all unreadable or silent)")
        self.num_outputs = num_outputs
        self.max_sources = min(max_sources, num_outputs)
        self.sample_rate = sample_rate
        self.length = int(seconds * sample_rate)
        self.bank = bank
        #: When set (class → row), ``sample`` lays references out by class (:func:`to_slots`).
        self.slots: dict[str, int] | None = None

    def sample(self, length: int, rng: np.random.Generator, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """One crop: ``(mix [length], refs [M, length])``; refs sum to mix."""
        n = int(n if n is not None else rng.integers(1, self.max_sources + 1))
        rirs = self.bank.draw(rng) if self.bank is not None else None
        sources, descs, _ = _make_example(0, rng, self.pool, count=n, length=max(self.length, length),
                                          sample_rate=self.sample_rate, reverb=rirs is not None, rirs=rirs)
        full = np.stack(sources)
        start = int(rng.integers(0, full.shape[1] - length + 1))
        refs = np.zeros((self.num_outputs, length), np.float32)
        refs[: full.shape[0]] = full[: self.num_outputs, start:start + length]
        refs = zero_absent(refs)
        if self.slots is not None:
            refs = to_slots(refs, [d["clip"].label for d in descs], self.slots)
        return refs.sum(0).astype(np.float32), refs


#: Bytes read from the start of each clip for the source fingerprint.
_FINGERPRINT_BYTES = 1 << 16


def _clips_fingerprint(clips: Sequence[Clip]) -> str:
    """A short hash of what is mixed from: each clip's id, label, fold, file size and the hash
    of its first 64 KiB, so another library with the same names and sizes is told apart while
    a moved or copied one is not (reading 64 KiB per clip keeps this cheap on large sets)."""
    import hashlib

    h = hashlib.sha256()
    for c in clips:
        try:
            size = Path(c.path).stat().st_size
            with open(c.path, "rb") as fh:
                head = hashlib.sha256(fh.read(_FINGERPRINT_BYTES)).hexdigest()
        except OSError:
            size, head = -1, ""
        h.update(f"{c.id}\t{c.label}\t{c.fold}\t{size}\t{head}\n".encode())
    return h.hexdigest()[:16]


def _same_path(old: Any, new: str) -> bool | None:
    """Whether a source recorded by an older version names ``new`` (None: cannot tell)."""
    if not isinstance(old, str) or old.startswith("<"):
        return None
    try:
        return Path(old).resolve() == Path(new).resolve()
    except OSError:
        return None


#: ``{split}_mix_config.json``: marks a folder as made by :func:`build_mixtures`.
_CONFIG_SUFFIX = "_mix_config.json"
_COMMAND = "data mix"


def _check_source_and_out(src: Path, out_dir: Path) -> None:
    """Refuse an ``out_dir`` that is the source folder or holds it: writing there changes the
    clips being mixed from."""
    src_abs, out_abs = src.resolve(), out_dir.resolve()
    if src_abs == out_abs:
        raise DatasetError(f"{out_dir}: --out is the source folder; choose another --out "
                           "(a new subfolder of it is fine)")
    if src_abs.is_relative_to(out_abs):
        raise DatasetError(f"{out_dir}: --out holds the source folder {src}; choose an --out "
                           "outside it")


def _check_out_owner(out_dir: Path) -> None:
    """Refuse an existing ``out_dir`` that holds another command's output or files this function
    did not make: its ``run.json`` and files must not be written over. A split's settings file
    without a run.json marks an interrupted run of this function."""
    if (out_dir.is_dir() and not (out_dir / "run.json").is_file()
            and any(p.is_file() for p in out_dir.glob(f"*{_CONFIG_SUFFIX}"))):
        return
    check_out_owner(out_dir, _COMMAND, lambda rel: False, DatasetError)


def _shown(value: Any) -> str:
    """A setting as a rerun refusal names it (``folds`` None: all folds)."""
    if value is None:
        return "all"
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return str(value)


def _example_index(example_id: Any) -> int | None:
    m = re.search(r"(?:^|/)example(\d+)$", str(example_id))
    return int(m.group(1)) if m else None


def _check_not_shrinking(out_dir: Path, split: str, n: int, previous: list[dict[str, Any]]) -> None:
    """Refuse a smaller ``n`` than the split already holds: the examples past ``n`` would stay in
    the manifest and the folder, which downstream commands read."""
    indices = {_example_index(r.get("id")) for r in previous if r.get("split") == split}
    split_dir = out_dir / split
    if split_dir.is_dir():
        indices |= {_example_index(f"{split}/{p.stem}") for p in split_dir.glob("example*.wav")}
    indices.discard(None)
    top = max(indices, default=-1)
    if top >= n:
        raise DatasetError(f"{out_dir}: split {split!r} already holds {len(indices)} mixtures (up to "
                           f"example{top:05d}); --n {n} would leave the rest in place: use --n {top + 1} "
                           "or more to keep them, or another --out")


def _split_settings(out_dir: Path) -> dict[str, Any]:
    """``{split: settings}`` of the earlier ``data mix`` runs recorded in ``out_dir/run.json``."""
    try:
        run = read_json(out_dir / "run.json")
    except (OSError, ValueError):
        return {}
    if not isinstance(run, dict) or run.get("command") != _COMMAND:
        return {}
    splits = run.get("splits")
    if isinstance(splits, dict):
        return {k: v for k, v in splits.items() if isinstance(v, dict)}
    config = run.get("config")
    if isinstance(config, dict) and isinstance(config.get("split"), str):  # an older run.json
        return {config["split"]: {**config, "seed": run.get("seed"),
                                  "source_count_histogram": run.get("source_count_histogram")}}
    return {}


def _resolve_clips(src: Path | Sequence[Clip], out_dir: Path | None = None) -> tuple[list[Clip], str]:
    if isinstance(src, (str, Path)):
        from auralens.data import detect_layout, load_dataset

        src = Path(src)
        if detect_layout(src) == "folder":
            from auralens.data.folder import load_folder

            # mixtures written inside the source (this --out; earlier ones and other auralens
            # outputs load_folder leaves out itself) are not source clips
            exclude = []
            if out_dir is not None and out_dir.resolve().is_relative_to(src.resolve()):
                exclude.append(out_dir)
            clips = load_folder(src, exclude=tuple(exclude))
        else:
            clips = load_dataset(src)
        name = str(src.resolve())
    else:
        clips = list(src)
        name = f"<{len(clips)} clips>"
    if not clips:
        raise DatasetError(f"{name}: no clips to mix")
    # a stable order whatever the loader returned, so picks depend only on the seed
    return sorted(clips, key=lambda c: c.id), name


def _example_files(split: str, index: int, roles: Sequence[str]) -> tuple[str, list[str], str]:
    stem = f"{split}/example{index:05d}"
    counters: Counter[str] = Counter()
    names = []
    for role in roles:
        names.append(f"{stem}_sources/{role}{counters[role]}_sound.wav")
        counters[role] += 1
    return f"{stem}.wav", names, f"{stem}.txt"


def _finished(out_dir: Path, rec: dict[str, Any]) -> bool:
    paths = [rec.get("mixture", "")] + [s.get("path", "") for s in rec.get("sources", [])]
    return all(p and (out_dir / p).is_file() for p in paths)


def _absolute(out_dir: Path, rec: dict[str, Any]) -> SceneRecord:
    record = SceneRecord.from_dict(rec)
    record.mixture = out_dir / record.mixture
    for s in record.sources:
        s.path = out_dir / s.path
    return record


def build_mixtures(
    src: Path | Sequence[Clip],
    out_dir: Path,
    *,
    n: int,
    seed: int = 0,
    sample_rate: int = 16000,
    duration: float = 10.0,
    max_sources: int = 4,
    min_sources: int = 1,
    reverb: bool = True,
    folds: Sequence[int] | None = None,
    split: str = "train",
    keep_more: bool = False,
) -> list[SceneRecord]:
    """Make ``n`` FUSS-style mixtures from a labelled dataset (see the module docstring).

    Args:
        src: dataset directory (ESC-50 layout or a folder) or a list of clips. Of a folder,
            the audio below ``out_dir`` and below earlier outputs of this function is left out.
        out_dir: output root (created); may already hold other splits.
        n: number of examples ``{split}/example00000`` … ``example{n-1:05d}``.
        keep_more: when the split already holds more than ``n`` examples (same settings),
            return the first ``n`` and leave the rest in place (an experiment rerun on a
            subset); by default that is refused, since the folder would not hold ``n``.
        seed: recipe seed (same seed and inputs → identical files).
        sample_rate: Hz of everything written.
        duration: seconds per mixture (at most :data:`~auralens.data.MAX_DURATION_S` and
            :data:`~auralens.data.MAX_SAMPLES` samples).
        max_sources: most sources per mixture (background included).
        min_sources: fewest sources per mixture (≥ 1: the background).
        reverb: convolve each source with a shoebox-room impulse response.
        folds: use only clips from these folds.
        split: subfolder name (FUSS uses train / validation / eval).

    Returns:
        One :class:`SceneRecord` per example (paths joined to ``out_dir``), in index order.
        ``out_dir/run.json`` records the settings, the source-count histogram and
        ``n_errors``, the clips this call could not use (listed in ``errors.jsonl``), and
        under ``splits`` the settings and histogram of every split made there.

    Raises:
        DatasetError: missing/empty dataset, bad settings, an ``out_dir`` made with
            different settings or holding more examples of ``split`` than ``n``, an
            ``out_dir`` that is (or holds) the source folder or holds files this function did
            not make, or mixtures that clearly do not fit on the disk (all before anything is
            written).
    """
    import time

    from auralens.io import write_run_json
    from auralens.progress import progress

    start = time.perf_counter()
    if n < 0:
        raise DatasetError(f"n must be >= 0, got {n}")
    if not 1 <= min_sources <= max_sources:
        raise DatasetError(f"need 1 <= min_sources <= max_sources, got {min_sources} and {max_sources}")
    if max_sources > MAX_SOURCES:
        raise DatasetError(f"max_sources must be at most {MAX_SOURCES} (FUSS uses 4; more overlapping "
                           f"events no longer make a scene that can be taken apart), got {max_sources}")
    flag = as_bool(reverb)
    if flag is None:  # "false" or "maybe" would turn it on
        raise DatasetError(f"reverb must be true or false, got {reverb!r}")
    reverb = flag
    from auralens.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE

    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise DatasetError(f"sample_rate must be from {MIN_SAMPLE_RATE} to {MAX_SAMPLE_RATE} Hz, got {sample_rate}")
    if not duration > 0 or duration == float("inf") or int(round(duration * sample_rate)) < 1:
        raise DatasetError(f"duration must be a positive number of seconds (at least one sample), got {duration}")
    if duration < MIN_DURATION_S:
        raise DatasetError(f"duration must be at least {MIN_DURATION_S:g} s (foreground events last half "
                           f"the mixture or more), got {duration:g}")
    length = check_length(duration, sample_rate)  # an absurd duration would allocate gigabytes per source
    if not split or "/" in split or split.startswith("."):
        raise DatasetError(f"invalid split name {split!r}")
    out_dir = Path(out_dir)
    check_out_dir(out_dir, DatasetError, "; choose another --out")
    if isinstance(src, (str, Path)):
        _check_source_and_out(Path(src), out_dir)
    _check_out_owner(out_dir)
    from auralens.data.synth import check_writable

    check_writable(out_dir)
    clips, source_name = _resolve_clips(src, out_dir)
    wanted = None if folds is None else {int(f) for f in folds}
    if wanted is not None and {c.fold for c in clips} <= wanted:
        wanted = None  # naming every fold the source has is the default, all folds
    if wanted is not None:
        clips = [c for c in clips if c.fold in wanted]
        if not clips:
            raise DatasetError(f"{source_name}: no clips to mix in folds {sorted(folds)}")
    settings = {"seed": seed, "sample_rate": sample_rate, "duration": duration, "max_sources": max_sources,
                "min_sources": min_sources, "reverb": reverb,
                "folds": sorted(wanted) if wanted is not None else None,
                "source": source_name, "clips": _clips_fingerprint(clips), "split": split}
    config_path = out_dir / f"{split}_mix_config.json"
    if config_path.is_file():
        old = read_json(config_path)
        keys = [k for k in _RESUME_KEYS if k != "clips" or "clips" in old]
        diff = [f"{k} {_shown(old.get(k))} → {_shown(settings[k])}" if k != "clips" else
                "clips (the source's files differ)" for k in keys if old.get(k) != settings[k]]
        if "clips" not in old and _same_path(old.get("source"), source_name) is False:
            diff.append(f"source {old.get('source')} → {source_name}")
        if diff:
            raise DatasetError(f"{out_dir}: split {split!r} was made with different settings "
                               f"({'; '.join(diff)}); use another --out or remove it")

    manifest = out_dir / "manifest.jsonl"
    previous = read_jsonl(manifest)
    if not keep_more:
        _check_not_shrinking(out_dir, split, n, previous)
    others = [r for r in previous if r.get("split") != split]
    done = {r["id"]: r for r in previous if r.get("split") == split and _finished(out_dir, r)}
    n_todo = n - sum(1 for rid in done if int(rid.rsplit("example", 1)[1]) < n)
    # float32 WAVs: the mixture plus its sources (the counts are uniform over min…max)
    per_example = 4 * length * (1 + (min_sources + max_sources) / 2) + 1024
    check_free_space(out_dir, int(n_todo * per_example), f"{n_todo} mixtures of {duration:g} s")
    out_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out_dir)
    write_json(config_path, settings)
    errors = ErrorLog(out_dir / "errors.jsonl")
    pool = _Pool(clips, sample_rate, errors)
    records: list[dict[str, Any]] = []
    n_new = 0
    for index in progress(range(n), desc=f"mix {split}", total=n):
        ex_id = f"{split}/example{index:05d}"
        if ex_id in done:
            records.append(done[ex_id])
            continue
        rng = _example_rng(seed, split, index)
        count = source_count(seed, split, index, min_sources, max_sources)
        sources, descs, meta = _make_example(index, rng, pool, count=count, length=length,
                                             sample_rate=sample_rate, reverb=reverb)
        mix_rel, src_rels, txt_rel = _example_files(split, index, [d["role"] for d in descs])
        mixture = np.zeros(length, np.float32)
        for rel, x in zip(src_rels, sources, strict=True):
            write_audio(out_dir / rel, x, sample_rate)
            mixture += x  # float32 sum of exactly what was written
        lines = [f"{d['onset']:.6f}\t{d['offset']:.6f}\t{d['clip'].label or 'sound'}" for d in descs]
        write_text(out_dir / txt_rel, "\n".join(lines) + "\n")
        write_audio(out_dir / mix_rel, mixture, sample_rate)  # last: its presence marks a finished example
        meta.update({"seed": seed, "index": index, "n_sources": count})
        record = SceneRecord(
            id=ex_id, mixture=Path(mix_rel), sample_rate=sample_rate, duration=length / sample_rate,
            split=split, meta=meta,
            sources=[Source(path=Path(rel), label=d["clip"].label or "sound", role=d["role"],
                            onset=round(d["onset"], 6), offset=round(d["offset"], 6), gain_db=d["gain_db"],
                            origin=d["clip"].id)
                     for rel, d in zip(src_rels, descs, strict=True)],
        ).to_dict()
        for s, d in zip(record["sources"], descs, strict=True):
            s["snr_db"] = d["snr_db"]  # extra keys are ignored by Source.from_dict
            s["segment_start"] = round(d["segment_start"], 6)
        append_jsonl(manifest, record)  # crash-safe progress
        records.append(record)
        n_new += 1
    # rewrite in order: other splits first, then this split's examples (those past n: keep_more)
    extra = [r for rid, r in sorted(done.items()) if int(rid.rsplit("example", 1)[1]) >= n]
    write_jsonl(manifest, others + records + extra)
    list_lines = ["\t".join([r["mixture"], *[s["path"] for s in r["sources"]]]) for r in records + extra]
    write_text(out_dir / f"{split}_example_list.txt", "\n".join(list_lines) + ("\n" if list_lines else ""))
    log.info("%s: %d new, %d kept examples; %s", out_dir, n_new, n - n_new, errors.summary())
    out = [_absolute(out_dir, r) for r in records]
    config = {k: v for k, v in settings.items() if k not in ("seed", "clips", "source")}
    config = {"src": source_name, "n": n + len(extra), **config}  # what the split holds
    histogram = count_histogram(out)
    # every split's settings: a run for another split must not erase what made the earlier ones
    splits = {**_split_settings(out_dir),
              split: {**config, "seed": seed, "source_count_histogram": histogram}}
    write_run_json(out_dir, command=_COMMAND, seed=seed, timings={"mix": time.perf_counter() - start},
                   config=config,
                   extra={"source_count_histogram": histogram, "splits": dict(sorted(splits.items())),
                          "n_errors": len({r["item"] for r in errors.items})})  # distinct clips, this call only
    return out


def count_histogram(records: Sequence[SceneRecord]) -> dict[int, int]:
    """``{number of sources: number of mixtures}``, sorted by source count."""
    return dict(sorted(Counter(r.n_sources for r in records).items()))
