"""Train a TDCN++ separator with the PIT FUSS loss (or, with ``assign: classes``, one output
slot per sound class and a fixed class-to-slot assignment).

Data (``DATA``):

* an ESC-50-layout folder (``meta/esc50.csv`` + ``audio/``): mixtures are made on the fly
  ("dynamic mixing") from clips of ``train_folds``: 1–4 sources per mixture, random crops,
  each crop normalised to a common RMS and then given a random gain in
  ``[gain_db_min, 0]`` dB. A fixed, seeded set of mixtures from ``val_folds`` is the
  validation set. Decoded clips are cached in ``RUN/cache/`` so a resumed run starts fast.
* a FUSS-layout folder (``manifest.jsonl`` written by ``auralens data mix`` or real FUSS):
  the ``train`` split gives random crops of the mixtures, ``validation``/``eval`` is the
  validation set.

Outputs in ``RUN``: ``last.safetensors`` + ``last_state.pt`` (optimizer, step, RNG and a copy
of the weights; loaded with ``torch.load(weights_only=True)``), ``best.safetensors`` (highest validation MSi),
``history.jsonl``, TensorBoard events in ``RUN/tb``, ``run.json``, and ``errors.jsonl`` listing the
clips that could not be read (they are skipped; ``run.json`` lists them under ``skipped``). While
no epoch has a validation MSi (a validation set without a multi-source mixture has none; a
warning and a ``run.json`` note say so) ``best.safetensors`` follows the latest epoch.

A run trains on one ``DATA``: resuming with a folder that holds other clips is refused (a moved
or copied folder only warns), and options that the ``DATA`` kind would leave unused are refused
rather than recorded (see :func:`check_options`). ``RUN`` must be new, empty, or a run of
``separate train``: another command's output or other files there are refused.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import shutil
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from auralens.checks import is_number, is_whole, plain
from auralens.data.mix import to_slots, zero_absent
from auralens.errors import AuralensError, CheckpointMismatchError
from auralens.io import (
    ErrorLog,
    append_jsonl,
    atomic_path,
    check_out_dir,
    read_jsonl,
    remove_stale_temps,
    write_jsonl,
    write_run_json,
)
from auralens.scene.separate.loss import assigned_loss, pit_loss
from auralens.scene.separate.metrics import ACTIVE_REF_RMS, score_mixture, summarize
from auralens.scene.separate.tdcnpp import (
    TDCNpp,
    TDCNppConfig,
    load_checkpoint,
    preset,
    read_header,
    save_checkpoint,
)

if TYPE_CHECKING:
    from auralens.types import Clip

log = logging.getLogger(__name__)


class TrainError(AuralensError):
    """Training data or a run directory that cannot be used."""


class ModelSettingsError(TrainError, CheckpointMismatchError):
    """A resumed run or an ``--init`` checkpoint whose model config differs from this run's."""


@dataclass
class TrainConfig:
    """Training settings (every field can be overridden from the CLI or YAML).

    Attributes:
        preset: model size preset (``tiny`` / ``fuss``).
        model: per-field overrides of the preset.
        steps: total optimizer steps.
        steps_per_epoch: validation + checkpoint every this many steps.
        batch_size: mixtures per step.
        crop_seconds: training crop length.
        lr: Adam learning rate.
        grad_clip: max gradient norm.
        train_folds / val_folds: ESC-50 folds for dynamic mixing.
        max_sources: mixtures have 1 … max_sources sources (at most the model's outputs).
        gain_db_min: source gains are uniform in ``[gain_db_min, 0]`` dB.
        n_val: validation mixtures.
        val_seconds: their length.
        seed: RNG seed.
        threads: torch intra-op threads (0: leave torch's default).
        dynamic_data: with FUSS-layout ``DATA``, an ESC-50 folder whose ``train_folds`` also
            feed dry dynamic mixtures (empty: none). Mixing in the easier dry recipe keeps
            a model fine-tuned on reverberant FUSS-recipe crops from collapsing onto one output.
        dynamic_share: fraction of training examples drawn from ``dynamic_data``.
        device: ``auto`` (the accelerator's device: a GPU when there is one), ``cpu``,
            ``cuda``…; ignored under several processes, which use the launcher's devices.
        recipe: with an ESC-50 ``DATA``: ``dry`` (:class:`DynamicMixer`: dry crops at random
            gains) or ``fuss`` (:class:`auralens.data.mix.RecipeMixer`: the FUSS recipe of
            ``auralens data mix`` made on the fly — looped background, events at random
            onsets, reverberant rooms — for training and validation).
        recipe_seconds: with ``recipe: fuss``, length of each example before cropping.
        rooms: with ``recipe: fuss``, size of the precomputed room bank (0: dry).
        count_weights: relative frequency of 1, 2, … sources per training mixture (empty:
            uniform; at most ``max_sources`` entries); validation keeps equal shares. With
            FUSS-layout ``DATA`` it shapes only the ``dynamic_data`` mixtures.
        keep: also keep every epoch's weights as ``RUN/keep/step{N}.safetensors`` (for
            ``auralens separate average`` or a choice on another data set).
        loss: ``fuss`` (thresholded SNR, the FUSS baseline's) or ``si-snr`` (active pairs
            scored by thresholded SI-SNR, the reported metric; empty outputs as in ``fuss``).
        assign: how outputs meet references in the loss: ``pit`` (the best permutation, the
            universal-separation setting) or ``classes`` (one network slot per sound class of
            the training clips, a fixed assignment; the model gets ``num_slots`` = the number
            of classes and ``slot_labels`` = their names, and merges slots into
            ``num_sources`` estimates at inference). ``classes`` needs an ESC-50 ``DATA``.
    """

    preset: str = "tiny"
    model: dict[str, Any] = field(default_factory=dict)
    steps: int = 3000
    steps_per_epoch: int = 250
    batch_size: int = 8
    crop_seconds: float = 3.0
    lr: float = 1e-3
    grad_clip: float = 5.0
    train_folds: list[int] = field(default_factory=lambda: [1, 2, 3])
    val_folds: list[int] = field(default_factory=lambda: [4])
    max_sources: int = 4
    gain_db_min: float = -12.0
    n_val: int = 48
    val_seconds: float = 4.0
    seed: int = 0
    threads: int = 0
    dynamic_data: str = ""
    dynamic_share: float = 0.5
    device: str = "auto"
    recipe: str = "dry"
    recipe_seconds: float = 10.0
    rooms: int = 256
    count_weights: list[float] = field(default_factory=list)
    keep: bool = False
    loss: str = "fuss"
    assign: str = "pit"

    def __post_init__(self) -> None:
        """Refuse settings that cannot train (one line naming the option)."""
        for f in fields(self):  # numpy numbers pass the checks but not json.dumps
            setattr(self, f.name, plain(getattr(self, f.name)))
        positive = {"steps": self.steps, "steps_per_epoch": self.steps_per_epoch,
                    "batch_size": self.batch_size, "max_sources": self.max_sources,
                    "n_val": self.n_val}
        for name, value in positive.items():
            if not is_whole(value, 1):
                raise TrainError(f"{name} must be a whole number ≥ 1, got {value!r}")
        for name in ("crop_seconds", "lr", "val_seconds", "recipe_seconds"):
            value = getattr(self, name)
            if not is_number(value) or not value > 0:
                raise TrainError(f"{name} must be a positive number, got {value!r}")
        if not isinstance(self.model, dict):
            raise TrainError(f"model must be a mapping of TDCN++ options, got {self.model!r}")
        if self.loss not in ("fuss", "si-snr"):
            raise TrainError(f"loss must be 'fuss' or 'si-snr', got {self.loss!r}")
        if self.recipe not in ("dry", "fuss"):
            raise TrainError(f"recipe must be 'dry' or 'fuss', got {self.recipe!r}")
        if self.assign not in ("pit", "classes"):
            raise TrainError(f"assign must be 'pit' or 'classes', got {self.assign!r}")
        if not is_number(self.dynamic_share) or not 0.0 <= self.dynamic_share <= 1.0:
            raise TrainError(f"dynamic_share must be in [0, 1], got {self.dynamic_share!r}")
        if not is_number(self.grad_clip) or not self.grad_clip > 0:
            # a negative limit would flip the gradients' sign (training uphill)
            raise TrainError(f"grad_clip must be a positive number, got {self.grad_clip!r}")
        if not is_number(self.gain_db_min) or self.gain_db_min > 0:
            raise TrainError(f"gain_db_min must be a number ≤ 0 (dB), got {self.gain_db_min!r}")
        for name in ("seed", "threads", "rooms"):
            value = getattr(self, name)
            if not is_whole(value, 0):
                raise TrainError(f"{name} must be a whole number ≥ 0, got {value!r}")
        for name in ("preset", "dynamic_data", "device"):
            if not isinstance(getattr(self, name), str):
                raise TrainError(f"{name} must be a string, got {getattr(self, name)!r}")
        if not isinstance(self.keep, bool):
            raise TrainError(f"keep must be true or false, got {self.keep!r}")
        for name in ("train_folds", "val_folds"):
            value = getattr(self, name)
            if is_whole(value):
                value = [value]  # `--set val_folds=4` means one fold
                setattr(self, name, value)
            if not isinstance(value, list) or not value or not all(is_whole(v, 1) for v in value):
                raise TrainError(f"{name} must be a fold number or a list of them (≥ 1), got {value!r}")
        w = self.count_weights
        if not isinstance(w, list) or not all(is_number(v) and v >= 0 for v in w) or (w and not sum(w) > 0):
            raise TrainError(f"count_weights must be a list of numbers ≥ 0, not all 0, got {w!r}")


# ----------------------------------------------------------------------------- data


def _pool_signature(root: Path, clips: list[Any], sr: int) -> str:
    """What a decoded pool was made from: the resolved folder, the rate and each clip's name,
    label, size and modification time (stat only, so a start stays fast)."""
    h = hashlib.sha256(f"{Path(root).resolve()}\t{sr}\n".encode())
    for clip in clips:
        try:
            st = os.stat(clip.path)
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            size, mtime = -1, -1
        h.update(f"{Path(clip.path).name}\t{clip.label}\t{size}\t{mtime}\n".encode())
    return h.hexdigest()


def _skip_clip(item: str, path: Path, exc: BaseException, errors: Any) -> dict[str, str]:
    """Report one clip that cannot be used (in ``errors`` when given, else as a warning) and
    return its record."""
    record = {"item": item, "path": str(path), "error": str(exc), "type": type(exc).__name__}
    if errors is not None:
        errors.add(item, exc, path)
    else:
        log.warning("skipped %s: %s", item if str(path) in str(exc) else f"{item} ({path})", exc)
    return record


def esc50_clips(root: Path, folds: list[int]) -> list[Clip]:
    """The clips of ``folds`` of the ESC-50 folder ``root``, in csv order. Training lists a
    folder once, with every fold it reads, and passes the list on (:func:`in_folds` picks a
    pool's clips from it): a listed audio file that is missing is warned about once per run."""
    from auralens.data.esc50 import load_esc50

    return load_esc50(Path(root), folds=folds)


def in_folds(clips: list[Clip], folds: list[int]) -> list[Clip]:
    """The clips of ``folds`` among ``clips`` (order kept): what
    ``load_esc50(root, folds=folds)`` gives when ``clips`` were listed with those folds."""
    wanted = {int(f) for f in folds}
    return [c for c in clips if c.fold in wanted]


def _load_pool(root: Path, folds: list[int], sr: int, cache: Path | None,
               errors: Any = None, clips: list[Clip] | None = None,
               ) -> tuple[list[np.ndarray], list[str]]:
    """Decode every clip of ``folds`` at ``sr`` (cached as one npz, reused only for the same
    folder and clips: the cache file is named by folds and rate alone).

    ``clips``: the folder's clips as :func:`esc50_clips` listed them (those of ``folds`` are
    used); None: the folder is listed here.

    A clip that cannot be read is skipped: listed in ``errors`` (an
    :class:`~auralens.io.ErrorLog`) when given, else logged as a warning; a pool read from the
    cache reports its skipped clips again.

    Raises:
        TrainError: no clips in ``folds``, or none of them readable.
    """
    from auralens.audio import load

    key = f"pool-{'-'.join(map(str, folds))}-{sr}.npz"
    clips = esc50_clips(root, folds) if clips is None else in_folds(clips, folds)
    if not clips:
        raise TrainError(f"{root}: no clips in folds {folds}")
    signature = _pool_signature(root, clips, sr)
    if cache is not None and (cache / key).exists():
        with np.load(cache / key, allow_pickle=False) as data:
            if "signature" in data.files and str(data["signature"]) == signature:
                n = int(data["n"])
                skipped = json.loads(str(data["skipped"])) if "skipped" in data.files else []
                for rec in skipped:
                    _skip_clip(rec["item"], Path(rec["path"]), TrainError(rec["error"]), errors)
                return [data[f"w{i}"] for i in range(n)], [str(x) for x in data["labels"]]
        log.info("%s: decoded from other clips than %s folds %s; decoding again", cache / key, root, folds)
    waves, labels, skipped = [], [], []
    from auralens.progress import progress

    for clip in progress(clips, desc=f"decode folds {folds}"):
        try:
            wave = load(clip.path, sr)
        except (AuralensError, OSError) as exc:  # a broken clip costs that clip, not the run
            skipped.append(_skip_clip(clip.id, Path(clip.path), exc, errors))
            continue
        waves.append(wave)
        labels.append(clip.label or "")
    if not waves:
        raise TrainError(f"{root}: none of the {len(clips)} clips in folds {folds} is readable "
                         f"(first: {skipped[0]['error']})")
    if cache is not None:
        cache.mkdir(parents=True, exist_ok=True)
        with atomic_path(cache / key) as tmp, open(tmp, "wb") as fh:
            np.savez(fh, n=len(waves), labels=np.array(labels), signature=np.array(signature),
                     skipped=np.array(json.dumps(skipped)),
                     **{f"w{i}": w for i, w in enumerate(waves)})
    return waves, labels


class DynamicMixer:
    """Random 1…K-source mixtures from a pool of clips (``[M, T]`` references, zero-padded).

    Args:
        waves: clips ``[T_i]`` at the model rate.
        labels: class of each clip (sources in one mixture come from distinct classes).
        num_outputs: M, rows of the returned reference array.
        max_sources: at most this many sources.
        gain_db_min: gains are uniform in ``[gain_db_min, 0]`` dB after RMS normalisation.
    """

    def __init__(self, waves: list[np.ndarray], labels: list[str], num_outputs: int,
                 max_sources: int, gain_db_min: float) -> None:
        self.waves = waves
        self.labels = np.array(labels)
        self.num_outputs = num_outputs
        self.max_sources = min(max_sources, num_outputs)
        self.gain_db_min = gain_db_min
        #: When set (class → row), ``sample`` lays references out by class (``to_slots``).
        self.slots: dict[str, int] | None = None

    def _crop(self, wave: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
        if wave.shape[0] <= length:
            return np.pad(wave, (0, length - wave.shape[0]))
        best, best_rms = None, -1.0
        for _ in range(4):  # prefer a crop with sound in it (ESC clips are zero-padded)
            start = int(rng.integers(0, wave.shape[0] - length + 1))
            seg = wave[start:start + length]
            rms = float(np.sqrt(np.mean(seg**2)))
            if rms > best_rms:
                best, best_rms = seg, rms
            if rms > 1e-3:
                break
        assert best is not None
        return best

    def sample(self, length: int, rng: np.random.Generator, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """One mixture: ``(mix [T], refs [M, T])`` with refs summing to mix exactly."""
        n = int(n if n is not None else rng.integers(1, self.max_sources + 1))
        classes = rng.permutation(np.unique(self.labels))[:n]
        refs = np.zeros((self.num_outputs, length), np.float32)
        for k, cls in enumerate(classes):
            idx = rng.choice(np.flatnonzero(self.labels == cls))
            seg = self._crop(self.waves[idx], length, rng).astype(np.float64)
            rms = np.sqrt(np.mean(seg**2))
            if rms < 1e-5:
                continue  # digitally silent crop: this slot stays an absent source
            gain = 10 ** (rng.uniform(self.gain_db_min, 0.0) / 20) * 0.05 / rms
            refs[k] = (seg * gain).astype(np.float32)
        peak = np.abs(refs.sum(0)).max()
        if peak > 0.95:
            refs *= 0.95 / peak
        if self.slots is not None:
            refs = to_slots(refs, [str(c) for c in classes], self.slots)
        return refs.sum(0).astype(np.float32), refs


class RecordCropper:
    """Random crops of FUSS-layout records; the crop's mixture is the sum of its sources.

    Sources are held in memory as float16 (half the RAM; the quantisation noise sits near
    −70 dB, far below the loss's 30 dB SNR cap) and cast back to float32 per crop.
    """

    def __init__(self, records: list[Any], num_outputs: int, sr: int, errors: Any = None) -> None:
        from auralens.audio import load
        from auralens.progress import progress

        self.items: list[np.ndarray] = []
        skipped = 0
        for rec in progress(records, desc="load sources"):
            srcs = []
            for src in rec.sources[:num_outputs]:
                try:
                    srcs.append(load(src.path, sr))
                except (AuralensError, OSError) as exc:  # skip the mixture, keep the rest
                    _skip_clip(str(rec.id), Path(src.path), exc, errors)
                    skipped += 1
                    srcs = []
                    break
            if not srcs:
                continue
            # Pad to the longest source (as evaluation does): a short event file must not cut
            # the other sources, or the background, short.
            t = max(len(s) for s in srcs)
            self.items.append(np.stack([np.pad(s, (0, t - len(s))) for s in srcs]).astype(np.float16))
        if not self.items:
            why = (f"{skipped} of {len(records)} records have unreadable sources, the others none"
                   if skipped else "records without sources")
            raise TrainError(f"no usable mixtures ({why})")
        self.num_outputs = num_outputs

    def sample(self, length: int, rng: np.random.Generator, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        src = self.items[int(rng.integers(len(self.items)))]
        refs = np.zeros((self.num_outputs, length), np.float32)
        start = int(rng.integers(0, src.shape[1] - length + 1)) if src.shape[1] > length else 0
        crop = src[:, start:start + length].astype(np.float32)
        refs[: crop.shape[0], : crop.shape[1]] = crop
        refs = zero_absent(refs)  # a crop can miss a source entirely
        return refs.sum(0).astype(np.float32), refs


class MixedSampler:
    """Draws each example from ``a`` with probability ``share_a``, else from ``b``.

    Both samplers take ``(length, rng, n)`` and return ``(mix [T], refs [M, T])``.
    """

    def __init__(self, a: Any, b: Any, share_a: float) -> None:
        if not 0.0 <= share_a <= 1.0:
            raise TrainError(f"dynamic_share must be in [0, 1], got {share_a}")
        self.a, self.b, self.share_a = a, b, share_a

    def sample(self, length: int, rng: np.random.Generator, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        src = self.a if rng.random() < self.share_a else self.b
        return src.sample(length, rng, n)


def resolve_paths(records: list[Any], root: Path) -> list[Any]:
    """Make relative mixture/source paths of manifest records relative to ``root``."""
    for rec in records:
        if not rec.mixture.is_absolute():
            rec.mixture = root / rec.mixture
        for src in rec.sources:
            if not src.path.is_absolute():
                src.path = root / src.path
    return records


#: The splits of a FUSS-layout folder training reads (validation falls back to eval).
_FUSS_SPLITS = ("train", "validation", "eval")


def _fuss_splits(root: Path) -> dict[str, list[Any]]:
    """Records of each of :data:`_FUSS_SPLITS`: from ``manifest.jsonl`` when present, else the
    FUSS loader. Read once at start-up and passed to the data check, :func:`data_signature`
    and :func:`make_sources` (a release's split folders are large to list)."""
    from auralens.types import load_scenes

    if (root / "manifest.jsonl").exists():
        records = resolve_paths(load_scenes(root / "manifest.jsonl"), root)
        return {split: [r for r in records if (r.split or "train") == split] for split in _FUSS_SPLITS}
    try:
        from auralens.data.fuss import load_fuss
    except ImportError as exc:
        raise TrainError(f"{root}: no manifest.jsonl and no FUSS loader available") from exc
    return {split: load_fuss(root, split=split) for split in _FUSS_SPLITS}


def make_sources(data: Path, cfg: TrainConfig, num_outputs: int, sr: int,
                 cache: Path | None, slots: dict[str, int] | None = None,
                 errors: Any = None, splits: dict[str, list[Any]] | None = None,
                 clips: list[Clip] | None = None, dynamic_clips: list[Clip] | None = None,
                 ) -> tuple[Any, list[tuple[np.ndarray, np.ndarray]]]:
    """Training sampler and a fixed validation list ``[(mix, refs)]`` for ``data``
    (``splits``: its :func:`_fuss_splits` when read already; ``clips`` / ``dynamic_clips``:
    the :func:`esc50_clips` of an ESC-50 ``data`` / of ``dynamic_data`` when listed already).

    With ``slots`` (class → row) the training references are laid out by class, ``[S, T]``;
    validation references stay ``[num_outputs, T]`` (scored by PIT like any separator's).
    Unreadable clips are skipped and listed in ``errors`` (an :class:`~auralens.io.ErrorLog`;
    without one they are logged as warnings).

    Raises:
        TrainError: a pool or split without readable clips, or (with ``slots``) a class
            whose clips are all unreadable.
    """
    data = Path(data)
    rng = np.random.default_rng(cfg.seed + 10_000)
    val_len = int(cfg.val_seconds * sr)
    if cfg.recipe not in ("dry", "fuss"):
        raise TrainError(f"unknown recipe {cfg.recipe!r}; use 'dry' or 'fuss'")
    kind = data_kind(data)
    if kind == "esc50":
        if cfg.recipe == "fuss":
            train, val_mixer = _recipe_mixers(data, cfg, num_outputs, sr, cache, errors, clips)
        else:
            if clips is None:  # one listing for both pools
                clips = esc50_clips(data, [*cfg.train_folds, *cfg.val_folds])
            tw, tl = _load_pool(data, cfg.train_folds, sr, cache, errors, clips)
            vw, vl = _load_pool(data, cfg.val_folds, sr, cache, errors, clips)
            missing = sorted(set(slots or ()) - set(tl))
            if missing:
                raise TrainError(f"{data}: no readable clip of class(es) {missing} in train_folds "
                                 f"{cfg.train_folds}, so their output slots would never train")
            train = DynamicMixer(tw, tl, num_outputs, cfg.max_sources, cfg.gain_db_min)
            val_mixer = DynamicMixer(vw, vl, num_outputs, cfg.max_sources, cfg.gain_db_min)
        counts = [1 + i % val_mixer.max_sources for i in range(cfg.n_val)]
        val = [val_mixer.sample(val_len, rng, n) for n in counts]
        train.slots = slots
        return train, val
    if slots is not None:
        _need_classes(data)
    # a FUSS folder (data_kind)
    splits = splits if splits is not None else _fuss_splits(data)
    train_recs, val_recs = splits["train"], splits["validation"] or splits["eval"]
    if not train_recs or not val_recs:
        raise TrainError(f"{data}: needs train and validation/eval mixtures")
    train = RecordCropper(train_recs, num_outputs, sr, errors)
    if cfg.dynamic_data:
        dyn_root = Path(cfg.dynamic_data)
        if not (dyn_root / "meta" / "esc50.csv").exists():
            raise TrainError(f"{dyn_root}: dynamic_data must be an ESC-50 folder (meta/esc50.csv)")
        tw, tl = _load_pool(dyn_root, cfg.train_folds, sr, cache, errors, dynamic_clips)
        dyn = DynamicMixer(tw, tl, num_outputs, cfg.max_sources, cfg.gain_db_min)
        train = MixedSampler(dyn, train, cfg.dynamic_share)
    val_src = RecordCropper(val_recs[: cfg.n_val], num_outputs, sr, errors)
    val = []
    # The first val_seconds of each validation mixture, zero-padded to one common length so
    # they batch (validation mixtures may differ in length and be shorter than val_seconds).
    common = min(val_len, max(item.shape[1] for item in val_src.items))
    for item in val_src.items:
        refs = np.zeros((num_outputs, common), np.float32)
        n = min(common, item.shape[1])
        refs[: item.shape[0], :n] = item[:, :n].astype(np.float32)
        val.append((refs.sum(0), refs))
    return train, val


def _recipe_mixers(data: Path, cfg: TrainConfig, num_outputs: int, sr: int,
                   cache: Path | None, errors: Any = None,
                   clips: list[Clip] | None = None) -> tuple[Any, Any]:
    """On-the-fly FUSS-recipe mixers for the training and the validation folds (one room bank;
    ``clips``: the folder's :func:`esc50_clips` when listed already)."""
    from auralens.data.mix import RecipeMixer, RoomBank
    from auralens.io import ErrorLog

    if errors is None:
        errors = ErrorLog((cache.parent if cache is not None else data) / "errors.jsonl")
    bank = RoomBank(cfg.rooms, num_outputs, sr, seed=cfg.seed) if cfg.rooms > 0 else None
    if clips is None:
        clips = esc50_clips(data, [*cfg.train_folds, *cfg.val_folds])
    mixers = []
    for folds in (cfg.train_folds, cfg.val_folds):
        chosen = in_folds(clips, folds)
        if not chosen:
            raise TrainError(f"{data}: no clips in folds {folds}")
        mixers.append(RecipeMixer(chosen, num_outputs, cfg.max_sources, sr, errors=errors,
                                  seconds=cfg.recipe_seconds, bank=bank))
    return mixers[0], mixers[1]


def _count_sampler(weights: list[float], max_sources: int) -> Any:
    """``rng → n`` drawing 1 … len(weights) with the given relative weights (None: sampler's own)."""
    if not weights:
        return lambda rng: None
    w = np.asarray(weights[:max_sources], dtype=np.float64)
    if (w < 0).any() or w.sum() <= 0:
        raise TrainError(f"count_weights must be non-negative with a positive sum, got {weights}")
    p = w / w.sum()
    return lambda rng: int(rng.choice(len(p), p=p)) + 1


def data_kind(data: Path) -> str:
    """``"esc50"`` (``meta/esc50.csv``) or ``"fuss"`` (``manifest.jsonl`` or a ``train/`` folder).

    Raises:
        TrainError: ``data`` is missing or of neither layout.
    """
    data = Path(data)
    if not data.exists():
        raise TrainError(f"{data}: training data not found")
    if (data / "meta" / "esc50.csv").exists():
        return "esc50"
    if (data / "manifest.jsonl").exists() or (data / "train").is_dir():
        return "fuss"
    raise TrainError(f"{data}: neither an ESC-50 folder (meta/esc50.csv) nor a FUSS folder "
                     "(manifest.jsonl of auralens data mix, or the release's train/ folder)")


def _check_data(data: Path, kind: str, cfg: TrainConfig,
                splits: dict[str, list[Any]] | None = None,
                clips: list[Clip] | None = None) -> None:
    """Refuse data that would give no training or validation examples, before any work
    (``splits``: the :func:`_fuss_splits` of a FUSS folder when read already; ``clips``: the
    :func:`esc50_clips` of an ESC-50 folder when listed already)."""
    if kind == "esc50":
        if clips is None:
            clips = esc50_clips(data, [*cfg.train_folds, *cfg.val_folds])
        for name in ("train_folds", "val_folds"):
            if not in_folds(clips, getattr(cfg, name)):
                raise TrainError(f"{data}: no clips in {name} {getattr(cfg, name)}")
        return
    splits = splits if splits is not None else _fuss_splits(data)
    if not splits["train"] or not (splits["validation"] or splits["eval"]):
        raise TrainError(f"{data}: needs train and validation/eval mixtures")
    if cfg.dynamic_data and not (Path(cfg.dynamic_data) / "meta" / "esc50.csv").exists():
        raise TrainError(f"{cfg.dynamic_data}: dynamic_data must be an ESC-50 folder (meta/esc50.csv)")


#: Audio files whose first bytes enter :func:`data_signature` (a stride through longer lists),
#: so that the check costs about the same on ESC-10 and on the FUSS release.
_SIGNATURE_HEADS = 4096


def data_signature(data: Path, kind: str, folds: list[int] | None = None,
                   splits: dict[str, list[Any]] | None = None,
                   clips: list[Clip] | None = None) -> str:
    """A short hash of what training reads from ``data``: each audio file's path relative to
    ``data``, size and (for up to :data:`_SIGNATURE_HEADS` of them) first 4 KiB, plus the
    clips' labels and folds (ESC-50, only ``folds``) or the ``manifest.jsonl`` (FUSS; its
    records are ``splits``, the :func:`_fuss_splits` when read already; an ESC-50 folder's
    clips are ``clips``, its :func:`esc50_clips` when listed already). Another library with
    the same names and sizes is told apart; a moved or copied folder is not."""
    from auralens.data.esc50 import load_esc50

    data = Path(data)
    base = os.path.abspath(data)  # paths relative to the folder itself, however it was named
    h = hashlib.sha256()
    if kind == "esc50":
        if clips is None:
            clips = load_esc50(data, folds=folds)
        elif folds is not None:
            clips = in_folds(clips, folds)
        paths = [Path(c.path) for c in clips]
        h.update("".join(f"{c.id}\t{c.label}\t{c.fold}\n" for c in clips).encode())
    else:
        if (data / "manifest.jsonl").is_file():
            h.update(hashlib.sha256((data / "manifest.jsonl").read_bytes()).digest())
        splits = splits if splits is not None else _fuss_splits(data)
        records = [r for split in _FUSS_SPLITS for r in splits[split]]
        paths = [Path(p) for r in records for p in (r.mixture, *(src.path for src in r.sources))]
    stride = max(1, math.ceil(len(paths) / _SIGNATURE_HEADS))
    for i, path in enumerate(paths):
        try:
            size = path.stat().st_size
            head = b""
            if i % stride == 0:
                with open(path, "rb") as fh:
                    head = fh.read(4096)
        except OSError:
            size, head = -1, b""
        rel = os.path.relpath(os.path.abspath(path), base)
        h.update(f"{rel}\t{size}\t".encode() + hashlib.sha256(head).digest())
    return h.hexdigest()[:16]


def check_options(cfg: TrainConfig, kind: str, data: Path, num_sources: int) -> list[str]:
    """Refuse options that ``DATA`` of ``kind`` would leave unused, so a run records only the
    settings it trained with; returns notes on options that apply in part.

    Options left at their defaults are not checked (they are recorded, as every default is).

    Raises:
        TrainError: ``max_sources`` above the model's outputs, more ``count_weights`` than
            ``max_sources``, ESC-50 ``train_folds`` and ``val_folds`` that share a fold, or a
            changed option that does not apply to this ``DATA``.
    """
    if cfg.max_sources > num_sources:
        raise TrainError(f"max_sources {cfg.max_sources} is more than the model's {num_sources} "
                         "outputs (model.num_sources)")
    if len(cfg.count_weights) > cfg.max_sources:
        raise TrainError(f"count_weights has {len(cfg.count_weights)} entries (1 … "
                         f"{len(cfg.count_weights)} sources) but max_sources is {cfg.max_sources}")
    if kind == "esc50":
        shared = sorted(set(cfg.train_folds) & set(cfg.val_folds))
        if shared:
            raise TrainError(f"train_folds {cfg.train_folds} and val_folds {cfg.val_folds} share "
                             f"fold(s) {shared}: best.safetensors would be chosen on training clips; "
                             "give validation folds that are not trained on")
    default = TrainConfig()
    unused: dict[str, str] = {}
    if kind == "esc50":
        for name in ("dynamic_data", "dynamic_share"):
            unused[name] = "applies to FUSS-layout DATA only"
        if cfg.recipe == "dry":
            for name in ("rooms", "recipe_seconds"):
                unused[name] = "applies with recipe 'fuss' only"
        else:
            unused["gain_db_min"] = "applies with recipe 'dry' only (recipe 'fuss' draws its own levels)"
    else:
        for name in ("recipe", "rooms", "recipe_seconds", "val_folds"):
            unused[name] = "applies to ESC-50 DATA only"
        if not cfg.dynamic_data:
            for name in ("train_folds", "max_sources", "gain_db_min", "count_weights", "dynamic_share"):
                unused[name] = "applies with FUSS-layout DATA only to dynamic_data mixtures, and none is given"
    bad = [f"{n} {getattr(cfg, n)!r} ({why})" for n, why in unused.items()
           if getattr(cfg, n) != getattr(default, n)]
    if bad:
        what = "an ESC-50" if kind == "esc50" else "a FUSS-layout"
        raise TrainError(f"{data} is {what} folder, which leaves these options unused: {'; '.join(bad)}")
    notes = []
    if kind == "fuss" and cfg.count_weights:
        notes.append(f"count_weights shapes only the dynamic_data mixtures (dynamic_share "
                     f"{cfg.dynamic_share}); the FUSS crops keep their own source counts")
    return notes


# ----------------------------------------------------------------------------- loop


@torch.inference_mode()
def validate(model: TDCNpp, val: list[tuple[np.ndarray, np.ndarray]], batch: int = 8) -> dict[str, Any]:
    """FUSS metrics (1S, MSi) of ``model`` on ``[(mix, refs)]`` (equal lengths)."""
    model.eval()
    scores = []
    for i in range(0, len(val), batch):
        chunk = val[i:i + batch]
        mix = torch.from_numpy(np.stack([m for m, _ in chunk]))
        est = model(mix).numpy()
        for j, (m, r) in enumerate(chunk):
            scores.append(score_mixture(m, r, est[j], id=str(i + j)))
    model.train()
    return summarize(scores)


def _rng_state(rng: np.random.Generator) -> torch.Tensor:
    return torch.tensor(list(json.dumps(rng.bit_generator.state).encode()), dtype=torch.uint8)


def _set_rng(rng: np.random.Generator, blob: torch.Tensor) -> None:
    rng.bit_generator.state = json.loads(bytes(blob.tolist()).decode())


def _msi_key(entry: dict[str, Any]) -> float:
    v = entry.get("val_MSi")
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else -math.inf


def _device(name: str, acc: Any) -> torch.device:
    """The training device: the launcher's under several processes, else ``name``."""
    from auralens.devices import check_device

    if acc.num_processes > 1 or name == "auto":
        return acc.device
    return check_device(name, TrainError)


def _accelerator() -> Any:
    """The run's ``Accelerator``; ``device_placement=False`` so a single process honours
    ``--device`` while launched runs use the device the launcher assigned."""
    from auralens.distributed import make_accelerator

    return make_accelerator(TrainError, device_placement=False)


def _sum_across(acc: Any, *values: float, device: torch.device | None = None) -> list[float]:
    """Add scalars over all processes (identity in a single process)."""
    from auralens.distributed import sum_across

    return sum_across(acc, *values, device=device)


def _validate_split(model: TDCNpp, val: list[tuple[np.ndarray, np.ndarray]], acc: Any,
                    device: torch.device, batch: int = 8) -> dict[str, Any]:
    """:func:`validate` with every process scoring every ``num_processes``-th mixture.

    The per-mixture scores are gathered and summarised in the one-process order, so the
    result equals the one-process value up to float effects of the batch composition.
    ``model`` must be the unwrapped module (a DDP forward needs matching calls everywhere).
    """
    rank, world = acc.process_index, acc.num_processes
    idx = list(range(rank, len(val), world))
    model.eval()
    scores = []
    with torch.inference_mode():
        for i in range(0, len(idx), batch):
            chunk = idx[i:i + batch]
            mix = torch.from_numpy(np.stack([val[k][0] for k in chunk])).to(device)
            est = model(mix).float().cpu().numpy()
            for j, k in enumerate(chunk):
                scores.append((k, score_mixture(val[k][0], val[k][1], est[j], id=str(k))))
    model.train()
    if world > 1:
        from accelerate.utils import gather_object

        scores = gather_object(scores)
    return summarize([s for _, s in sorted(scores, key=lambda x: x[0])])


def _check_pair(out: Path, last_ckpt: Path, last_state: Path, steps_per_epoch: int) -> None:
    """Refuse a run directory holding only one of the two files a resume needs.

    Starting over there would silently replace a trained model. The one exception is a kill
    between the two writes of the very first epoch (weights at that step, no state yet): that
    epoch is simply redone.
    """
    if last_ckpt.exists() == last_state.exists():
        return
    if last_ckpt.exists():
        try:
            step = int(read_header(last_ckpt).get("step") or 0)
        except Exception:  # noqa: BLE001 - an unreadable file is reported below
            step = -1
        if 0 <= step <= steps_per_epoch:
            log.warning("%s: the first epoch's training state is missing (interrupted); "
                        "starting over", out)
            return
        raise TrainError(f"{out}: holds last.safetensors (step {step}) but no last_state.pt, so "
                         "training cannot resume exactly; continue from the weights with "
                         f"--init {last_ckpt} and another --out, or delete {out} to start over")
    raise TrainError(f"{out}: holds last_state.pt but no last.safetensors; delete "
                     f"{last_state} to start over")


#: What a training run writes in its folder: files at the top, and a pattern per subfolder.
_RUN_FILES = frozenset({"last.safetensors", "last_state.pt", "best.safetensors", "history.jsonl",
                        "run.json", "errors.jsonl"})
_RUN_SUBFOLDERS = {"tb": re.compile(r"events\.out\.tfevents\..*"),
                   "cache": re.compile(r"pool-[\d-]+-\d+\.npz"),
                   "keep": re.compile(r"step\d+\.safetensors")}


def _written_by_training(rel: Path) -> bool:
    """Whether a training run writes the file at ``rel`` in its folder."""
    if len(rel.parts) == 1:
        return rel.name in _RUN_FILES
    pattern = _RUN_SUBFOLDERS.get(rel.parts[0]) if len(rel.parts) == 2 else None
    return pattern is not None and bool(pattern.fullmatch(rel.name))


def _check_run_dir(out: Path) -> None:
    """Refuse an existing ``--out`` that holds another command's output or files a training
    run does not write (its ``run.json`` and files must not be written over or mixed with a
    run's); a folder written by ``separate train`` is resumed."""
    from auralens.data.folder import check_out_owner

    check_out_owner(out, "separate train", _written_by_training, TrainError, scan_own=True)


def _need_classes(data: Path) -> None:
    """``assign: classes`` reads each clip's class from an ESC-50 folder's metadata."""
    if not (Path(data) / "meta" / "esc50.csv").exists():
        raise TrainError(f"{data}: assign 'classes' needs an ESC-50 folder (meta/esc50.csv) to "
                         "know each clip's class")


def class_slots(data: Path, cfg: TrainConfig, model_cfg: TDCNppConfig,
                clips: list[Clip] | None = None) -> TDCNppConfig:
    """``model_cfg`` with one slot per class of the training clips (``assign: classes``;
    ``clips``: the folder's :func:`esc50_clips` when listed already).

    Raises:
        TrainError: not an ESC-50 folder, fewer classes than sources, or a model whose
            ``slot_labels`` name other classes.
    """
    _need_classes(data)
    clips = esc50_clips(data, cfg.train_folds) if clips is None else in_folds(clips, cfg.train_folds)
    labels = sorted({c.label or "" for c in clips})
    if len(labels) < model_cfg.num_sources:
        raise TrainError(f"{data}: assign 'classes' needs at least {model_cfg.num_sources} classes "
                         f"in folds {cfg.train_folds}, found {len(labels)}")
    if model_cfg.slot_labels and model_cfg.slot_labels != labels:
        raise TrainError(f"model slot_labels {model_cfg.slot_labels} differ from the classes of "
                         f"{data} folds {cfg.train_folds}: {labels}")
    return replace(model_cfg, num_slots=len(labels), slot_labels=labels)


def _set_text(value: Any) -> str:
    """``value`` as ``--set`` reads it back (YAML scalars; lists as flow sequences)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    return json.dumps(value)


def _model_changes(stored: TDCNppConfig, now: TDCNppConfig,
                   skip: tuple[str, ...] = ()) -> list[tuple[str, Any, Any]]:
    """``[(field, stored value, this run's value)]`` for the model fields that differ."""
    a, b = stored.to_dict(), now.to_dict()
    return [(k, a.get(k), b.get(k)) for k in b if k not in skip and a.get(k) != b.get(k)]


def _set_hint(changes: list[tuple[str, Any, Any]]) -> str:
    """The ``--set model.KEY=VALUE`` options that give the stored values back (``num_slots``
    follows from ``slot_labels`` when both differ)."""
    keys = {k for k, _, _ in changes}
    return " ".join(f"--set model.{k}={_set_text(old)}" for k, old, _ in changes
                    if not (k == "num_slots" and "slot_labels" in keys))


def init_model(init: str | Path, model_cfg: TDCNppConfig) -> TDCNpp:
    """A model of ``model_cfg`` started from the checkpoint ``init``.

    The checkpoint must have the same config, except that a universal separator may become a
    class-slot one: then every tensor of the same shape is copied and the output layers start
    fresh.

    Raises:
        CheckpointMismatchError: any other config difference (:class:`ModelSettingsError`,
            naming the ``--set model.KEY=VALUE`` options that match the checkpoint), including
            a class-slot checkpoint with other classes than ``model_cfg`` (its slots would be
            copied onto the wrong classes) or started as a universal separator.
    """
    header = read_header(init)
    stored = TDCNppConfig.from_dict(header["model_args"])
    has_slots = stored.outputs > stored.num_sources or bool(stored.slot_labels)
    if has_slots and (stored.num_slots, stored.slot_labels) != (model_cfg.num_slots, model_cfg.slot_labels):
        want = (f"this run's classes {model_cfg.slot_labels}" if model_cfg.slot_labels
                else "this run (no class slots; add --set assign=classes to continue it per class)")
        raise CheckpointMismatchError(
            f"{init}: its output slots ({stored.slot_labels or stored.num_slots}) do not match "
            f"{want}")
    slot_keys = {"num_slots": 0, "slot_labels": []}
    changes = _model_changes(stored, model_cfg, skip=tuple(slot_keys))
    if changes:
        what = "; ".join(f"model.{k} {old!r} in the checkpoint, {new!r} here" for k, old, new in changes)
        raise ModelSettingsError(f"{init}: config mismatch with this run's model ({what}); give "
                                 f"{_set_hint(changes)} to start from it")
    if stored == model_cfg:
        model, _ = load_checkpoint(init, expect=model_cfg)
        return model.train()
    source, _ = load_checkpoint(init)
    model = TDCNpp(model_cfg)
    own = model.state_dict()
    fit = {k: v for k, v in source.state_dict().items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(fit, strict=False)
    fresh = sorted(set(own) - set(fit))
    log.info("%s: copied %d tensors; %s start fresh (%d → %d outputs)", init, len(fit),
             ", ".join(fresh), stored.outputs, model_cfg.outputs)
    return model.train()


#: Settings a resumed run may change; any other change would mix two trainings in one run
#: (another seed or validation folds also change the validation set ``best`` is chosen on).
RESUME_MAY_CHANGE = ("steps", "lr", "threads", "device", "keep")


#: Keys of the stored settings that name the data rather than a training option.
_DATA_KEYS = ("data", "data_signature", "dynamic_data_signature")


def _run_settings(cfg: TrainConfig, data: str | Path, kind: str | None,
                  splits: dict[str, list[Any]] | None = None,
                  clips: list[Clip] | None = None,
                  dynamic_clips: list[Clip] | None = None) -> str:
    """The settings a resume must keep, as JSON (stored in ``last_state.pt``): the options,
    the resolved ``DATA`` and :func:`data_signature` of it for its ``kind`` (:func:`data_kind`;
    None: nothing to sign; ``splits``: a FUSS folder's :func:`_fuss_splits` when read
    already; ``clips``: an ESC-50 folder's :func:`esc50_clips` when listed already), and of
    ``dynamic_data`` (its clips ``dynamic_clips`` when listed already). The model options
    are left to the checkpoint's own config check."""
    kept = {k: v for k, v in asdict(cfg).items() if k not in (*RESUME_MAY_CHANGE, "model", "preset")}
    extra: dict[str, Any] = {"data": str(Path(data).resolve())}
    if kind is not None:
        extra["data_signature"] = data_signature(
            Path(data), kind, [*cfg.train_folds, *cfg.val_folds] if kind == "esc50" else None, splits,
            clips if kind == "esc50" else None)
    if cfg.dynamic_data and (Path(cfg.dynamic_data) / "meta" / "esc50.csv").exists():
        extra["dynamic_data_signature"] = data_signature(Path(cfg.dynamic_data), "esc50",
                                                         cfg.train_folds, clips=dynamic_clips)
    return json.dumps({**kept, **extra}, sort_keys=True)


def _check_resume_settings(out: Path, state: dict[str, Any], settings: str) -> None:
    """Refuse to resume with other settings, or other data, than the run was started with
    (states written before settings were stored are resumed unchecked). The same data in a
    moved or copied folder only warns; a state written before data signatures were stored is
    refused when its data folder still exists beside the new one."""
    if "settings" not in state:
        return
    before, now = json.loads(state["settings"]), json.loads(settings)
    changed = [f"{k} {before.get(k)!r} → {now[k]!r}" for k in sorted(now)
               if k not in _DATA_KEYS and before.get(k) != now[k]]
    if changed:
        raise TrainError(f"{out}: resumed with other settings ({'; '.join(changed)}); only "
                         f"{', '.join(RESUME_MAY_CHANGE)} may change — use another --out, or "
                         "--init from this run's checkpoint")
    hint = (f"use another --out (--init {out / 'last.safetensors'} continues from this run's "
            f"weights), or delete {out} to start over")
    old_sig, new_sig = before.get("data_signature"), now.get("data_signature")
    if before.get("data") != now["data"] or (old_sig is not None and old_sig != new_sig):
        # An older state has no signature: a data folder still there is another folder.
        same = (old_sig == new_sig) if old_sig is not None else not Path(str(before.get("data"))).exists()
        if not same:
            raise TrainError(f"{out}: the run was trained on {before.get('data')}, and "
                             f"{now['data']} holds other data (other clips or files); a run trains "
                             f"on one DATA — {hint}")
        log.warning("%s: the run was trained on %s, resumed on %s (the same files)", out,
                    before.get("data"), now["data"])
    old_dyn = before.get("dynamic_data_signature")
    if old_dyn is not None and old_dyn != now.get("dynamic_data_signature"):
        raise TrainError(f"{out}: dynamic_data {now.get('dynamic_data')} holds other clips than when "
                         f"the run started — {hint}")


def _check_resume_model(out: Path, last_ckpt: Path, model_cfg: TDCNppConfig) -> None:
    """Refuse to resume with another model config than the run's, naming the changed fields
    and the ``--set`` options that give the run's values back."""
    header = read_header(last_ckpt)
    try:
        stored = TDCNppConfig.from_dict(header["model_args"])
    except (CheckpointMismatchError, KeyError, TypeError):
        return  # load_checkpoint reports a checkpoint without a usable config
    changes = _model_changes(stored, model_cfg)
    if changes:
        what = "; ".join(f"model.{k} {old!r} → {new!r}" for k, old, new in changes)
        raise ModelSettingsError(f"{out}: resumed with other model settings ({what}); give "
                                 f"{_set_hint(changes)} to resume, or another --out")


def _resume_state(out: Path, model_cfg: TDCNppConfig,
                  settings: str) -> tuple[TDCNpp, dict[str, Any]]:
    """Model and training state of the run in ``out`` at one consistent step.

    The run's stored ``settings`` are checked first (:func:`_check_resume_settings`), then
    its model config (:func:`_check_resume_model`).

    ``last.safetensors`` is written before ``last_state.pt``, which also holds its own copy of
    the weights: a kill between the two leaves a newer weights file next to the previous
    state, and resume falls back to that state with its own weights (the later epoch is
    redone). A pair at different steps without such a copy is refused rather than resumed
    with an optimizer from another step.
    """
    last_ckpt, last_state = out / "last.safetensors", out / "last_state.pt"
    try:
        # States saved on a GPU resume anywhere; the optimizer moves them to the model's device.
        state = torch.load(last_state, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch raises several types for a bad file
        raise TrainError(f"{last_state}: unreadable training state ({exc}); "
                         "delete it and last.safetensors to start over") from exc
    if "step" not in state:
        raise TrainError(f"{last_state}: no step stored; delete it and last.safetensors to start over")
    s_step = int(state["step"])
    _check_resume_settings(out, state, settings)
    _check_resume_model(out, last_ckpt, model_cfg)
    model, header = load_checkpoint(last_ckpt, expect=model_cfg)
    w_step = header.get("step")
    if w_step is None or int(w_step) != s_step:
        if "model" not in state:
            raise TrainError(f"{out}: last.safetensors is at step {w_step} but last_state.pt at step "
                             f"{s_step}; refusing to resume from a mismatched pair — delete both "
                             "to start over")
        log.warning("%s: last.safetensors is at step %s, last_state.pt at %d (interrupted write); "
                    "resuming from the state's own weights", out, w_step, s_step)
        try:
            model.load_state_dict(state["model"], strict=True)
        except RuntimeError as exc:
            raise TrainError(f"{last_state}: stored weights do not fit the model ({exc})") from exc
    model.train()
    return model, state


def train(data: str | Path, out: str | Path, cfg: TrainConfig | None = None, *,
          init: str | Path | None = None) -> dict[str, Any]:
    """Train (or resume) a TDCN++ in ``out``.

    Runs through ``accelerate.Accelerator``: the same call works in one process and under
    ``accelerate launch --num_processes N``. Every process draws the same whole batch from the
    seeded generator and trains on its share (``batch[rank::N]``), with the loss weighted so
    the averaged gradient is the one-process gradient: batch size, learning rate and the data
    seen do not depend on N. Validation mixtures are split across processes and the scores
    gathered; only the main process writes files.

    Per epoch the history line is written first, then the checkpoint (``best``, the state,
    ``last``); resume drops history lines after the checkpoint's step, so a kill anywhere
    records every epoch exactly once.

    Args:
        data: ESC-50-layout or FUSS-layout folder.
        out: run directory; when it holds ``last.safetensors`` and ``last_state.pt`` the run
            resumes from there (only one of them is refused, see :func:`_check_pair`).
        cfg: settings.
        init: optional checkpoint to start from (not used when resuming; a warning says so).

    Returns:
        ``{"best": {...}, "last": {...}, "step": int}``.

    Unreadable clips are skipped, each named in a warning and listed in ``out/errors.jsonl``
    and ``run.json``; training stops only when a pool is left without readable clips.

    Raises:
        TrainError: unusable data (no readable clips), options this data leaves unused or
            overlapping ESC-50 folds (:func:`check_options`), crops or validation mixtures
            shorter than one STFT window, an ``out`` holding another command's output or
            other files (:func:`_check_run_dir`), a run directory whose checkpoint files
            disagree, a resume with other settings than :data:`RESUME_MAY_CHANGE`, another
            model config (:class:`ModelSettingsError`) or other data, or ``steps`` below the
            run's. What the inputs alone decide is refused before ``out`` is created, and a
            failure while the data is decoded removes an ``out`` this call created.
    """
    from auralens.progress import progress

    cfg = cfg or TrainConfig()
    out, data = Path(out), Path(data)
    check_out_dir(out, TrainError, " (--out names the run directory)")
    _check_run_dir(out)
    # Everything that can be refused from the inputs is checked before --out is created, so
    # a refused run leaves no empty run folder behind.
    kind = data_kind(data)
    acc = _accelerator()
    rank, world, main = acc.process_index, acc.num_processes, acc.is_main_process
    device = _device(cfg.device, acc)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    try:
        model_cfg: TDCNppConfig = preset(cfg.preset, **cfg.model)
    except CheckpointMismatchError as exc:
        raise TrainError(f"model options: {exc}") from None
    # Each ESC-50 folder is listed once, with every fold training reads (a listed clip that
    # is missing is warned about once); the checks, signatures and samplers share the list.
    clips = esc50_clips(data, [*cfg.train_folds, *cfg.val_folds]) if kind == "esc50" else None
    if cfg.assign == "classes":
        model_cfg = class_slots(data, cfg, model_cfg, clips)
    for name in ("crop_seconds", "val_seconds"):
        if getattr(cfg, name) * model_cfg.sample_rate < model_cfg.n_fft:
            raise TrainError(f"{name} {getattr(cfg, name)} is shorter than one STFT window "
                             f"({model_cfg.n_fft} samples)")
    notes = check_options(cfg, kind, data, model_cfg.num_sources)
    splits = _fuss_splits(data) if kind == "fuss" else None  # listed once: checks, signature, samplers
    _check_data(data, kind, cfg, splits, clips)
    dynamic_clips = (esc50_clips(Path(cfg.dynamic_data), cfg.train_folds)
                     if kind == "fuss" and cfg.dynamic_data else None)  # _check_data saw its csv
    settings = _run_settings(cfg, data, kind, splits, clips, dynamic_clips)
    last_ckpt, last_state = out / "last.safetensors", out / "last_state.pt"
    hist_path = out / "history.jsonl"
    step, best_msi = 0, -math.inf
    _check_pair(out, last_ckpt, last_state, cfg.steps_per_epoch)
    if last_ckpt.exists() and last_state.exists():
        model, state = _resume_state(out, model_cfg, settings)
        step, best_msi = int(state["step"]), float(state["best_msi"])
        if step > cfg.steps:
            raise TrainError(f"{out}: the run is at step {step}, past --steps {cfg.steps}; "
                             "give more steps to go on, or another --out")
        if init is not None:
            log.warning("%s: resuming at step %d; --init %s is not used", out, step, init)
        _set_rng(rng, state["rng"])
        torch.set_rng_state(state["torch_rng"])
        log.info("resuming %s at step %d", out, step)
    elif init is not None:
        model, state = init_model(init, model_cfg), None
    else:
        model, state = TDCNpp(model_cfg), None
    created = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:  # until the data is decoded: a failure removes a run folder this call created
        errors = ErrorLog(out / "errors.jsonl", reset=main)  # the clips skipped by this session
        if main:
            remove_stale_temps(out)
        acc.wait_for_everyone()  # everyone has read the run directory before the main process edits it
        if main and hist_path.exists():
            # Lines after the checkpoint's step (all of them on a fresh start) come from an epoch a
            # kill cut short before its checkpoint: that epoch is redone and recorded once.
            write_jsonl(hist_path, [h for h in read_jsonl(hist_path) if int(h.get("step", 0)) <= step])
            if step == 0:
                (out / "best.safetensors").unlink(missing_ok=True)
        model.to(device)
        opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
        if state is not None:
            opt.load_state_dict(state["optimizer"])
            for group in opt.param_groups:  # a resumed run may lower the learning rate
                group["lr"] = cfg.lr
        sr = model_cfg.sample_rate
        with acc.main_process_first():  # the main process fills the decode cache, the others read it
            slots = {c: i for i, c in enumerate(model_cfg.slot_labels)} if cfg.assign == "classes" else None
            sampler, val = make_sources(data, cfg, model_cfg.num_sources, sr, out / "cache", slots,
                                        errors if main else None, splits, clips, dynamic_clips)
        if val and val[0][0].shape[-1] < model_cfg.n_fft:  # FUSS validation mixtures may be short
            raise TrainError(f"{data}: the validation mixtures are {val[0][0].shape[-1]} samples long, "
                             f"shorter than one STFT window ({model_cfg.n_fft} samples)")
        if not any(int((np.sqrt((refs**2).mean(-1)) > ACTIVE_REF_RMS).sum()) >= 2 for _, refs in val):
            notes.append(f"none of the {len(val)} validation mixtures has two or more sources, so "
                         "validation MSi is undefined and best.safetensors is the latest epoch's "
                         "(more validation mixtures, n_val, give MSi)")
    except BaseException:
        if created and main:
            shutil.rmtree(out, ignore_errors=True)
        raise
    if errors:
        notes.append(f"{len(errors)} unreadable clip(s) skipped, listed in {errors.path}")
    for note in notes:
        log.warning("%s: %s", out, note)
    crop = int(cfg.crop_seconds * sr)
    draw_count = _count_sampler(cfg.count_weights, min(cfg.max_sources, model_cfg.num_sources))
    writer = None
    if main:
        from torch.utils.tensorboard import SummaryWriter

        # Steps after the checkpoint were logged by a run cut short; TensorBoard drops its
        # events from this step on (the redone steps are logged once).
        writer = SummaryWriter(str(out / "tb"), purge_step=step + 1)
    core = model
    model, opt = acc.prepare(model, opt)
    n_params = sum(p.numel() for p in core.parameters())
    log.info("TDCN++ %s: %d parameters, %d process(es) on %s", cfg.preset, n_params, world, device)
    t0 = time.perf_counter()
    losses: list[float] = []
    last: dict[str, Any] = {}
    bar = progress(range(step, cfg.steps), desc="train", total=cfg.steps - step,
                   disable=None if main else True)
    for step in bar:  # noqa: B020 - step continues after the loop on purpose
        # The whole batch on every process (same generator state), then this process's share.
        batch = [sampler.sample(crop, rng, draw_count(rng)) for _ in range(cfg.batch_size)]
        share, weight = batch[rank::world], 1.0
        if not share:  # fewer mixtures than processes: DDP still needs a backward here
            share, weight = batch[:1], 0.0
        mix = torch.from_numpy(np.stack([b[0] for b in share])).to(device)
        refs = torch.from_numpy(np.stack([b[1] for b in share])).to(device)
        if slots is not None:
            loss = assigned_loss(refs, model(mix, slots=True), mix, scale_invariant=cfg.loss == "si-snr")
        else:
            loss, _ = pit_loss(refs, model(mix), mix, scale_invariant=cfg.loss == "si-snr")
        # pit_loss is a mean over the share; DDP averages over processes. Scaled this way the
        # update is the mean over the whole batch, as in one process.
        frac = weight * len(share) / cfg.batch_size
        opt.zero_grad(set_to_none=True)
        acc.backward(loss * (frac * world))
        gnorm = torch.nn.utils.clip_grad_norm_(core.parameters(), cfg.grad_clip)
        opt.step()
        step_loss = float(loss.detach()) * frac
        if world > 1:
            step_loss = _sum_across(acc, step_loss, device=device)[0]
        losses.append(step_loss)
        if writer is not None:
            writer.add_scalar("train/loss", losses[-1], step + 1)
            writer.add_scalar("train/grad_norm", float(gnorm), step + 1)
        if (step + 1) % cfg.steps_per_epoch == 0 or step + 1 == cfg.steps:
            summary = _validate_split(core, val, acc, device)
            epoch = (step + 1 + cfg.steps_per_epoch - 1) // cfg.steps_per_epoch
            last = {"step": step + 1, "epoch": epoch, "train_loss": float(np.mean(losses)),
                    "val_1S": summary["1S"], "val_MSi": summary["MSi"],
                    "elapsed_s": round(time.perf_counter() - t0, 1)}
            losses = []
            score = summary["MSi"] if math.isfinite(summary["MSi"]) else -math.inf
            # Until an epoch has a MSi, the latest epoch is the best one known.
            improved = score > best_msi or best_msi == -math.inf or not (out / "best.safetensors").exists()
            if improved:
                best_msi = score
            if main:
                assert writer is not None
                writer.add_scalar("val/MSi", summary["MSi"], step + 1)
                writer.add_scalar("val/1S", summary["1S"], step + 1)
                # History first, then the checkpoint: a kill in between leaves a line past the
                # checkpoint's step, which resume drops (the epoch is redone, recorded once).
                append_jsonl(hist_path, last)
                log.info("step %d: loss %.2f, val MSi %.2f dB, 1S %.2f dB", step + 1,
                         last["train_loss"], summary["MSi"], summary["1S"])
                if improved:
                    save_checkpoint(out / "best.safetensors", core, {"step": step + 1, "val": last})
                save_checkpoint(last_ckpt, core, {"step": step + 1})
                if cfg.keep:
                    save_checkpoint(out / "keep" / f"step{step + 1}.safetensors", core, {"step": step + 1})
                # The state last, with its own copy of the weights: a kill before it leaves the
                # previous state, a consistent point that resume falls back to.
                with atomic_path(last_state) as tmp:
                    torch.save({"optimizer": opt.state_dict(), "step": step + 1, "best_msi": best_msi,
                                "rng": _rng_state(rng), "torch_rng": torch.get_rng_state(),
                                "settings": settings,
                                "model": {k: v.detach().cpu() for k, v in core.state_dict().items()}},
                               tmp)
            acc.wait_for_everyone()  # nobody starts the next epoch before its files exist
    if writer is not None:
        writer.close()
    history = read_jsonl(hist_path)
    scored = [h for h in history if math.isfinite(_msi_key(h))]
    best = max(scored, key=_msi_key) if scored else (history[-1] if history else {})
    if main:
        write_run_json(out, command="separate train",
                       config={"train": asdict(cfg), "model": model_cfg.to_dict(), "data": str(data)},
                       seed=cfg.seed, timings={"train": time.perf_counter() - t0},
                       models={"separator": "tdcnpp", "parameters": n_params},
                       extra={"best": best, "last": last or (history[-1] if history else {}),
                              "best_by": "val_MSi" if scored else "latest epoch (no validation MSi)",
                              "notes": notes, "num_processes": world,
                              "skipped": errors.items})
    acc.wait_for_everyone()
    return {"best": best, "last": last, "step": cfg.steps}
