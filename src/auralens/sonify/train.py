"""Train a gate on a prepared dataset: MSE between predicted and codec latents.

Recipe (the study's): AdamW, batch 64 with gradient accumulation 2 (128 clips per update),
evaluation batch 32, seed 42, 15 epochs by default (50 also used), best checkpoint by validation
loss. Tensors are read from the prepared cache into memory once; nothing re-decodes audio.

RUN directory (read by the evaluation report, keep it stable)::

    RUN/run.json          config (encoder spec, layer, codec spec, gate, lr, epochs, device asked
                          and device_resolved …), timings, result (status ok / diverged /
                          interrupted / failed, epochs_run, losses, val_split: "train" when the
                          dataset has no validation clips and the train loss stands in,
                          resumed_from_epoch: 0, or the epoch the last process continued from)
    RUN/history.jsonl     {"epoch", "train_loss", "val_loss", "lr", "time_s"} per epoch
    RUN/best.safetensors  lowest validation loss so far
    RUN/last.safetensors  end of the latest epoch (with optimizer + RNG state and the training
                          time so far: where a rerun continues)
    RUN/tb/               TensorBoard scalars (loss/train, loss/val, lr)

Scale-out: the loop runs through ``accelerate.Accelerator``, so the same call works in one
process and under ``accelerate launch --num_processes N`` (or ``torchrun``). Every process
holds the (small) prepared tensors; each global batch of ``batch_size`` clips is split across
the processes and the per-process losses are weighted so that the averaged gradient equals the
single-process one (same effective batch, same number of updates). Validation losses are summed
across processes; only the main process writes checkpoints, history, TensorBoard and run.json.

Several learning rates (``lrs=[…]`` or the ``study`` preset) give one such run per value in
``RUN/lr=<v>/`` plus ``RUN/summary.csv``, ``RUN/summary.md`` and ``RUN/run.json`` (values naming the same folder,
``1e-3`` and ``0.001``, train once). ``RUN/run.json`` records the grid's learning rates, from
before the first of them trains (``result.status`` ``running``, ``done`` with one row per
learning rate at the end): the ``lr=<v>`` folders of an earlier call with other values are kept
(with a warning) but are not part of the grid, which render and the summary use. One folder
holds either a single run or an lr grid: training the other kind into it is refused.

Reruns: training again into a RUN that holds a run continues it from ``last.safetensors`` when
the settings are the run's own — only :data:`RERUN_MAY_CHANGE` may differ, ``epochs`` never
below the epochs already trained — and a run that already finished is reported as such and not
trained again (one that diverged with the same learning rate is reported as diverged). Any other
difference, the prepared data included, is refused before anything is written, naming each
setting with both values. A RUN with ``run.json`` but no checkpoint (the run diverged, was
interrupted or was killed in its first epoch) is checked against that record the same way: a
diverged or finished run is reported, other settings are refused, and the run's own settings
train it again from epoch 1. A run whose last epoch has its checkpoint but whose ``run.json``
does not say it finished (its process was killed in between) is recorded as finished, with the
time of its checkpoint, and not trained again; so is one whose checkpoint holds the ``epochs``
asked for but which went on and stopped later (interrupted, failed, or diverged with another
learning rate than the one asked for now, i.e. ``--resume --lr``): a warning says that nothing
is trained, and ``result.stopped_earlier`` keeps how it stopped. An lr grid checks every learning rate before any
of them trains, skips the finished ones and continues the others; a rerun with another list of
learning rates is refused. ``overwrite=True`` starts again instead. ``resume=True`` (``--resume``) also
continues, and besides allows the changes of :data:`RESUME_MAY_CHANGE` (a new learning rate)
and a grid of other learning rates; where there is nothing to resume it trains
from epoch 1 with a warning saying so.

Training time: ``last.safetensors`` records the training time up to its epoch
(``train_seconds``), so ``run.json["timings_s"]["train"]``, :attr:`TrainResult.seconds` and an lr
grid's ``time_s`` add up every process of an interrupted and continued run
(``timings_s.train_this_process`` is the last one's share). A process that stopped on its own
(interrupted, failed, diverged, finished) counts until it stopped; one killed outright counts
until its last checkpoint.

Ablations: ``blur`` — Gaussian blur of training embeddings (kernel 7 along time × 13 along
features, i.e. torchvision's ``(kx, ky) = (7, 13)`` on the ``[dim, frames]`` image, sigma drawn
uniformly from [0.1, 2] per batch, reflect padding); ``normalize="minmax"`` — per-channel
min-max scaling of embeddings and latents to [0, 1] with statistics from the train split,
stored in the checkpoint and inverted at render time (losses are then in normalised units).
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from auralens.errors import AuralensError, CheckpointMismatchError
from auralens.io import (
    append_jsonl,
    read_json,
    read_jsonl,
    remove_stale_temps,
    write_jsonl,
    write_run_json,
    write_text,
)
from auralens.sonify import checkpoint as ckpt
from auralens.sonify import gates
from auralens.sonify.prepare import PreparedData, load_prepared

log = logging.getLogger(__name__)

#: The study's learning-rate grid (``--lr study``).
STUDY_LRS: tuple[float, ...] = (1, 5e-1, 1e-1, 5e-2, 1e-2, 5e-3, 1e-3, 5e-4, 1e-4, 1e-5, 1e-6)
NORMALIZE_MODES = ("none", "minmax")
BLUR_KERNEL = (7, 13)  # (time, features)
BLUR_SIGMA = (0.1, 2.0)


class TrainError(AuralensError):
    """A training run that cannot start or continue."""


class NonFiniteLossError(TrainError):
    """The loss became NaN/Inf; the run was stopped."""


@dataclass
class TrainConfig:
    """Hyper-parameters of one run (defaults: the study's recipe)."""

    gate: str = "lin"
    lr: float = 1e-3
    epochs: int = 15
    batch_size: int = 64
    grad_accum: int = 2
    eval_batch_size: int = 32
    seed: int = 42
    weight_decay: float = 0.01
    blur: bool = False
    normalize: str = "none"
    resample: str = "interp"
    hidden: int = 256
    channels: int = 8
    device: str = "auto"
    tensorboard: bool = True
    gate_options: dict[str, Any] = field(default_factory=dict)

    def validate(self) -> None:
        """Check every option that can be checked without data (nothing is written before).

        Raises:
            TrainError: naming the option and the problem.
        """
        from auralens.sonify.align import RESAMPLE_MODES

        gates.canonical(self.gate)
        if self.normalize not in NORMALIZE_MODES:
            raise TrainError(f"unknown normalisation {self.normalize!r}; choose from {', '.join(NORMALIZE_MODES)}")
        if self.resample not in RESAMPLE_MODES:
            raise TrainError(f"--resample: unknown frame mapping {self.resample!r}; "
                             f"choose from {', '.join(RESAMPLE_MODES)}")
        if self.epochs < 1 or self.batch_size < 1 or self.grad_accum < 1 or self.eval_batch_size < 1:
            raise TrainError("epochs, batch sizes and gradient accumulation must be at least 1")
        if self.hidden < 1 or self.channels < 1:
            raise TrainError("--hidden and --channels must be at least 1")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise TrainError(f"learning rate must be a positive number, got {self.lr}")
        _device(self.device)


#: TrainConfig fields that may change when a run is continued with ``resume=True``
#: (``--resume``): they shape neither the model nor the loss it is trained on.
RESUME_MAY_CHANGE = ("lr", "epochs", "device", "tensorboard", "eval_batch_size")
#: TrainConfig fields a rerun without ``resume`` may change: those that leave the run as it
#: would have been trained in one go (``epochs`` only upwards, see :func:`check_rerun`).
RERUN_MAY_CHANGE = ("epochs", "device", "tensorboard", "eval_batch_size")


def _plain(value: Any) -> Any:
    """JSON round trip (tuples → lists …) so stored and requested values compare equal."""
    import json

    return json.loads(json.dumps(value, default=str))


def config_differences(stored: Mapping[str, Any], cfg: TrainConfig,
                       ignore: Sequence[str] = RESUME_MAY_CHANGE) -> list[str]:
    """Keys of ``cfg`` whose value differs from a stored run config, as ``key a → b`` strings.

    Gate names are compared by their canonical name (``lin`` = ``v0``); keys the stored config
    does not hold (runs of older versions) are not compared.
    """
    want = asdict(cfg)
    out = []
    for key, value in want.items():
        if key in ignore or key not in stored:
            continue
        have = stored[key]
        if key == "gate":
            try:
                have, value = gates.canonical(str(have)), gates.canonical(str(value))
            except AuralensError:
                pass
        if _plain(have) != _plain(value):
            out.append(f"{key} {have!r} → {value!r}")
    return out


@dataclass
class TrainResult:
    """Outcome of one run.

    ``val_split`` names the split the validation losses were computed on: ``"val"``, or
    ``"train"`` when the prepared dataset has no validation clips (the "validation" losses
    are then training losses and say nothing about generalisation). ``seconds`` is the run's
    training time over every process that trained it (an interrupted run continued later
    counts both).
    """

    run_dir: Path
    lr: float
    status: str  # "ok" | "diverged" | "interrupted" | "failed"
    epochs_run: int
    best_epoch: int | None
    best_val_loss: float | None
    first_val_loss: float | None
    final_train_loss: float | None
    seconds: float
    message: str = ""
    val_split: str = "val"
    #: the run had finished before this call, which trained nothing
    already_finished: bool = False
    #: the epoch this call continued from (0: it trained from epoch 1, or trained nothing)
    resumed_from_epoch: int = 0


def parse_lrs(text: str | float | Sequence[float]) -> list[float]:
    """``"study"`` → the study grid; ``"1e-3,5e-4"`` → ``[0.001, 0.0005]``.

    Values that name the same run directory (``1e-3`` and ``0.001``) are kept once, in order.
    """
    if isinstance(text, (int, float)):
        return [float(text)]
    if not isinstance(text, str):
        return _unique_lrs(float(v) for v in text)
    if text.strip().lower() == "study":
        return [float(v) for v in STUDY_LRS]
    if not text.strip():
        raise TrainError("--lr: no learning rate given")
    out = []
    for part in text.split(","):
        part = part.strip()
        if not part:  # "1e-3,,1e-2": a value lost in typing, not one to skip
            raise TrainError(f"--lr {text!r}: an empty entry in the list; give learning rates "
                             "separated by single commas, e.g. 1e-3,1e-2")
        try:
            out.append(float(part))
        except ValueError:
            raise TrainError(f"--lr: {part!r} is not a number (use a comma list or 'study')") from None
    if not out:
        raise TrainError("--lr: no learning rate given")
    return _unique_lrs(out)


def _unique_lrs(values: Any) -> list[float]:
    """First of the values per run directory name, in order."""
    seen: dict[str, float] = {}
    for v in values:
        seen.setdefault(lr_dirname(v), v)
    return list(seen.values())


def lr_dirname(lr: float) -> str:
    return f"lr={lr:g}"


# --- normalisation and augmentation ---------------------------------------------------

def minmax_stats(emb: np.ndarray, lat: np.ndarray) -> dict[str, np.ndarray]:
    """Per-channel min/max of ``[N, C, T]`` arrays (train split)."""
    return {"emb_min": emb.min(axis=(0, 2)), "emb_max": emb.max(axis=(0, 2)),
            "lat_min": lat.min(axis=(0, 2)), "lat_max": lat.max(axis=(0, 2))}


def _scale(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return np.where(hi - lo > 1e-8, hi - lo, 1.0).astype(np.float32)


def normalize(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``[..., C, T]`` → ``(x - lo) / (hi - lo)`` per channel C (constant channels → x - lo)."""
    return ((x - lo[:, None]) / _scale(lo, hi)[:, None]).astype(np.float32)


def denormalize(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Inverse of :func:`normalize`."""
    return (x * _scale(lo, hi)[:, None] + lo[:, None]).astype(np.float32)


def _gauss1d(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def gaussian_blur(x: torch.Tensor, sigma: float, kernel: tuple[int, int] = BLUR_KERNEL) -> torch.Tensor:
    """Separable Gaussian blur of ``[B, C, T]`` seen as a ``C × T`` image.

    Args:
        x: ``[B, C, T]``.
        sigma: standard deviation (same on both axes, like torchvision's GaussianBlur).
        kernel: (time, features) kernel sizes, odd.
    """
    kt, kc = kernel
    img = x.unsqueeze(1)  # [B, 1, C, T]
    for size, axis in ((kt, 3), (kc, 2)):
        pad = size // 2
        mode = "reflect" if img.shape[axis] > pad else "replicate"
        w = _gauss1d(size, sigma).to(x)
        if axis == 3:
            img = F.conv2d(F.pad(img, (pad, pad, 0, 0), mode=mode), w.view(1, 1, 1, size))
        else:
            img = F.conv2d(F.pad(img, (0, 0, pad, pad), mode=mode), w.view(1, 1, size, 1))
    return img.squeeze(1)


# --- training ---------------------------------------------------------------------------

def _device(name: str) -> torch.device:
    """``auto`` → cuda when available, else cpu; any other name must be a usable device.

    Raises:
        TrainError: an unknown device name, or one this machine does not have.
    """
    from auralens.devices import check_device

    return check_device(name, TrainError, "--device")


def _evaluate(model: torch.nn.Module, emb: torch.Tensor, lat: torch.Tensor, batch: int,
              acc: Any = None) -> float:
    """Mean squared error over ``emb [N, C, T]`` → ``lat [N, D, T']``.

    With an accelerator of several processes each one scores every ``num_processes``-th clip
    and the sums are added across processes, so the result equals the one-process value.
    ``model`` must be the unwrapped module: a DDP forward would need the same number of calls
    on every process.
    """
    rank, world = (acc.process_index, acc.num_processes) if acc is not None else (0, 1)
    emb, lat = emb[rank::world], lat[rank::world]
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, emb.shape[0], batch):
            pred = model(emb[i:i + batch])
            total += F.mse_loss(pred, lat[i:i + batch], reduction="sum").item()
            count += pred.numel()
    total, count = _sum_across(acc, total, count, device=emb.device)
    return total / max(count, 1)


def _sum_across(acc: Any, *values: float, device: torch.device | None = None) -> list[float]:
    """Add scalars over all processes (identity in a single process)."""
    from auralens.distributed import sum_across

    return sum_across(acc, *values, device=device)


def _accelerator() -> Any:
    """The run's ``Accelerator``; ``device_placement=False`` so a single process honours
    ``--device`` while launched runs use the device the launcher assigned."""
    from auralens.distributed import make_accelerator

    return make_accelerator(TrainError, device_placement=False)


def prepared_fingerprint(data: PreparedData) -> str:
    """:attr:`PreparedData.fingerprint`: two prepared folders holding the same clips with the
    same cached arrays share it (computed once per loaded dataset, read at every checkpoint)."""
    return data.fingerprint


def _header(cfg: TrainConfig, data: PreparedData, model_args: dict[str, Any], **state: Any) -> dict[str, Any]:
    info = data.info
    return {"model_name": gates.canonical(cfg.gate), "model_args": model_args,
            "versions": _versions(),
            "extractor": info["extractor"], "codec": info["codec"], "normalize": cfg.normalize,
            "duration": info.get("duration"), "prepared": data.location,
            "prepared_sha256": prepared_fingerprint(data), "prepared_settings": data.settings,
            "lr": cfg.lr,
            "config": asdict(cfg), **state}


def _versions() -> dict[str, Any]:
    global _VERSIONS
    if _VERSIONS is None:  # read once per process: it is the same for every checkpoint
        from auralens.io import package_versions

        _VERSIONS = package_versions()
    return _VERSIONS


_VERSIONS: dict[str, Any] | None = None


def _run_config(cfg: TrainConfig, data: PreparedData) -> dict[str, Any]:
    """run.json ``config`` of a training run (or an lr grid): the data it trained on and ``cfg``."""
    info = data.info
    # Absolute: render and report read PREP again, from whatever directory they run in.
    return {"prepared": data.location, "prepared_sha256": prepared_fingerprint(data),
            "prepared_settings": data.settings,
            "encoder": info["extractor"].get("spec"),
            "layer": info["extractor"].get("layer"), "codec": info["codec"].get("spec"),
            "duration": info.get("duration"),
            **asdict(cfg), "gate": gates.canonical(cfg.gate), "gate_alias": gates.alias(cfg.gate)}


def _write_run(run: Path, cfg: TrainConfig, data: PreparedData, timings: dict[str, float],
               result: dict[str, Any] | None = None, device: torch.device | str | None = None) -> None:
    info = data.info
    config = _run_config(cfg, data)
    if device is not None:  # "device" is the request (auto …); this is what it resolved to
        config["device_resolved"] = str(device)
    write_run_json(run, command="sonify train", config=config,
                   models={"extractor": info["extractor"], "codec": info["codec"]},
                   timings=timings, seed=cfg.seed,
                   extra={"result": result or {}, "shapes": {
                       "emb": [data.in_dim, data.frames_in], "lat": [data.out_dim, data.frames_out],
                       "train": len(data.ids.get("train", [])), "val": len(data.ids.get("val", [])),
                       "test": len(data.ids.get("test", []))}})


def train(prep: str | Path | PreparedData, out: str | Path, cfg: TrainConfig | None = None, *,
          resume: bool = False, overwrite: bool = False) -> TrainResult:
    """Train one gate with one learning rate into the run directory ``out``.

    Args:
        prep: PREP directory or an already loaded :class:`PreparedData`.
        out: RUN directory.
        cfg: hyper-parameters.
        resume: continue from ``out/last.safetensors`` (the next epoch after the stored one)
            also with the changes :data:`RESUME_MAY_CHANGE` allows (a new learning rate …);
            with nothing there to continue, train from epoch 1 with a warning.
        overwrite: start over even when ``out`` already holds a run.

    Without ``resume`` or ``overwrite`` a run in ``out`` is continued too, but only with its own
    settings (:func:`check_rerun`: :data:`RERUN_MAY_CHANGE` may differ, ``epochs`` may grow).
    Either way a run that already trained its ``cfg.epochs`` epochs is not trained again: its
    recorded result is returned with ``already_finished`` set and no file is touched. Where
    the last epoch has its checkpoint but ``run.json`` does not record the end (the process was
    killed in between), only ``run.json`` is written: the run is recorded as finished, adding
    no time. Without a checkpoint, a run that ``run.json`` records is checked against that
    record (:func:`_outcome_without_checkpoint`).

    Returns:
        a :class:`TrainResult`.

    ``run.json["result"]["status"]`` is ``ok`` when every epoch ran, ``diverged`` after a
    non-finite loss, ``interrupted`` after Ctrl-C (KeyboardInterrupt) and ``failed`` after any
    other error; for the last two ``epochs_run`` and the losses are those of the last epoch
    whose checkpoint was written, which is where ``resume`` continues. For a diverged run
    ``epochs_run`` is the epoch during which the loss became non-finite.

    Raises:
        NonFiniteLossError: the loss became NaN/Inf (``run.json`` records the stop), or the run
            in ``out`` already stopped so with this learning rate.
        TrainError: bad configuration, both ``resume`` and ``overwrite``, or an unreadable
            ``last.safetensors``.
        CheckpointMismatchError: ``out`` holds a run made with other settings (or data), or one
            that trained more epochs than ``cfg.epochs`` (on a rerun without ``resume``).
    """
    cfg = cfg or TrainConfig()
    cfg.validate()
    if resume and overwrite:
        raise TrainError("resume continues the run in the run directory and overwrite starts it "
                         "again; give one of them")
    run = Path(out)
    check_not_grid(run)
    record = check_run_record(run, refuse_damaged=not overwrite)
    data = prep if isinstance(prep, PreparedData) else load_prepared(prep)
    start_time = time.perf_counter()
    last_path, best_path, hist_path = run / "last.safetensors", run / "best.safetensors", run / "history.jsonl"
    header = None if overwrite or not last_path.exists() else _read_last(last_path)
    if header is not None:
        if resume:
            check_resumable(header, cfg, last_path, prepared=data)
        else:
            check_rerun(header, cfg, run, prepared=data)
        stored = _stored_outcome(run, cfg, header, record)
        if stored is not None:
            return _report_stored(stored, cfg)
    elif not overwrite:  # no checkpoint, but run.json may record a run (stopped in epoch 1)
        stored = _outcome_without_checkpoint(run, cfg, data, record, resume=resume)
        if stored is not None:
            return _report_stored(stored, cfg)
    seconds_before = _seconds_before(run, header, record) if header is not None else 0.0
    if header is not None and int(header.get("epoch") or 0) >= cfg.epochs:
        # every epoch has its checkpoint, but run.json does not say so: the process that wrote
        # the last one stopped before recording the end; nothing is left to train
        return _report_stored(_record_finished(run, cfg, data, header, seconds_before, record), cfg)
    torch.manual_seed(cfg.seed)
    opts = {"resample": cfg.resample, "hidden": cfg.hidden, "channels": cfg.channels, **cfg.gate_options}
    try:
        model_args = gates.gate_args(cfg.gate, data.in_dim, data.out_dim, data.frames_in, data.frames_out, **opts)
        build_args = {k: v for k, v in model_args.items() if k != "name"}
        model = gates.build(cfg.gate, **build_args)
    except (TypeError, ValueError) as exc:
        raise TrainError(f"gate {cfg.gate!r} cannot be built with options {opts}: {exc}") from None
    acc = _accelerator()
    rank, world, main = acc.process_index, acc.num_processes, acc.is_main_process
    if resume and header is None and main:
        log.warning("%s: nothing to resume (no last.safetensors there); training from epoch 1", run)
    if world > 1 and cfg.device not in ("auto", acc.device.type, str(acc.device)):
        log.warning("--device %s ignored under %d processes: using %s", cfg.device, world, acc.device)
    device = acc.device if world > 1 or cfg.device == "auto" else _device(cfg.device)
    # Everyone checked for an existing run above; only now may the main process write.
    acc.wait_for_everyone()
    run.mkdir(parents=True, exist_ok=True)
    if main:
        remove_stale_temps(run)

    train_e, train_l = data.emb["train"], data.lat["train"]
    has_val = "val" in data.emb and len(data.emb["val"]) > 0
    val_e, val_l = (data.emb["val"], data.lat["val"]) if has_val else (train_e, train_l)
    val_split = "val" if has_val else "train"
    if not has_val and main:
        log.warning("%s: the prepared dataset has no validation clips; the best checkpoint and "
                    "the reported losses use the TRAINING loss instead (prepare more clips, or "
                    "give DATA a val.txt, for a real validation loss)", data.root)
    norm: dict[str, np.ndarray] = {}
    if cfg.normalize == "minmax":
        norm = minmax_stats(train_e, train_l)
        train_e, val_e = (normalize(a, norm["emb_min"], norm["emb_max"]) for a in (train_e, val_e))
        train_l, val_l = (normalize(a, norm["lat_min"], norm["lat_max"]) for a in (train_l, val_l))
    te, tl = torch.from_numpy(train_e).to(device), torch.from_numpy(train_l).to(device)
    ve, vl = torch.from_numpy(val_e).to(device), torch.from_numpy(val_l).to(device)

    model = model.to(device)
    optim = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)

    start_epoch, best_val, best_epoch, first_val = 1, math.inf, None, None
    train_loss: float | None = None
    if header is not None:
        ck = ckpt.load(last_path)
        ckpt.check_compatible(ck.header, last_path, extractor=data.info["extractor"].get("name"),
                              layer=data.info["extractor"].get("layer"),
                              codec=data.info["codec"].get("name"), model_name=gates.canonical(cfg.gate))
        model.load_state_dict(ck.model)
        optim.load_state_dict(ckpt.optimizer_state(ck))
        for group in optim.param_groups:
            group["lr"] = cfg.lr
        if ck.rng is not None:
            torch.set_rng_state(ck.rng)
        start_epoch = int(ck.header["epoch"]) + 1
        best_val = float(ck.header.get("best_val_loss") or math.inf)
        best_epoch = ck.header.get("best_epoch")
        first_val = ck.header.get("first_val_loss")
        train_loss = ck.header.get("train_loss")
        # Drop history lines of epochs after the checkpoint (a run killed mid-write).
        if main:
            write_jsonl(hist_path, [h for h in read_jsonl(hist_path) if h["epoch"] < start_epoch])
        log.info("%s: continuing at epoch %d", run, start_epoch)
    elif main:  # a new run: nothing of an earlier one may be taken for its own
        for path in (hist_path, best_path, last_path):
            path.unlink(missing_ok=True)
    if world > 1 and rank > 0:
        # Same initial weights everywhere (seeded above), different dropout masks per process.
        torch.manual_seed(cfg.seed + 7919 * rank + start_epoch)
    model, optim = acc.prepare(model, optim)
    core = acc.unwrap_model(model)  # plain module: evaluation and checkpoints

    writer = _tb_writer(run / "tb") if cfg.tensorboard and main else None
    if main:
        _write_run(run, cfg, data, {}, {"status": "running", "val_split": val_split}, device)
    acc.wait_for_everyone()
    n = te.shape[0]
    steps_per_update = cfg.grad_accum
    epoch = start_epoch - 1
    # State as of the last epoch whose checkpoint exists: what an interrupted run reports
    # (the epoch in progress is lost, and resume redoes it).
    done = {"epoch": epoch, "train_loss": train_loss, "best_val": best_val, "best_epoch": best_epoch,
            "first_val": first_val}
    status, message = "ok", ""
    try:
        for epoch in range(start_epoch, cfg.epochs + 1):
            t0 = time.perf_counter()
            model.train()
            # The order depends only on (seed, epoch), so a resumed run sees the same batches.
            order = torch.randperm(n, generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch))
            # Blur strengths from their own (seed, epoch) stream: identical on every process.
            blur_gen = torch.Generator().manual_seed(cfg.seed * 1000 + epoch + 500_000)
            total, count, micro = 0.0, 0.0, 0
            optim.zero_grad(set_to_none=True)
            batches = [order[i:i + cfg.batch_size] for i in range(0, n, cfg.batch_size)]
            for bi, idx in enumerate(batches):
                # This process's share of the global batch. A process left without clips (batch
                # smaller than the process count) still runs forward/backward on one clip with
                # weight 0, because DDP needs every process in each gradient all-reduce.
                local, weight = idx[rank::world], 1.0
                if len(local) == 0:
                    local, weight = idx[:1], 0.0
                local = local.to(device)
                x, y = te[local], tl[local]
                if cfg.blur:
                    sigma = float(torch.empty(1).uniform_(*BLUR_SIGMA, generator=blur_gen))
                    x = gaussian_blur(x, sigma)
                micro += 1
                update = micro % steps_per_update == 0 or bi == len(batches) - 1
                # Skip the gradient all-reduce on accumulation steps that do not update.
                sync = contextlib.nullcontext() if update or world == 1 else acc.no_sync(model)
                with sync:
                    pred = model(x)
                    per_clip = pred[0].numel()
                    sq = F.mse_loss(pred, y, reduction="sum") * weight
                    bad = not bool(torch.isfinite(sq))
                    if world > 1:
                        bad = _sum_across(acc, float(bad), device=device)[0] > 0
                    if bad:
                        raise NonFiniteLossError(
                            f"{run}: training loss became {sq.item() / max(per_clip * len(local), 1)} at "
                            f"epoch {epoch}, batch {bi + 1} (lr={cfg.lr:g}); run stopped — try a "
                            "smaller learning rate")
                    # DDP averages gradients over processes: scaling by world / global element
                    # count makes the result the mean over the whole global batch.
                    acc.backward(sq * (world / (len(idx) * per_clip * steps_per_update)))
                if update:
                    optim.step()
                    optim.zero_grad(set_to_none=True)
                total += sq.item() / per_clip
                count += len(local) * weight
            total, count = _sum_across(acc, total, count, device=device)
            train_loss = total / max(count, 1)
            val_loss = _evaluate(core, ve, vl, cfg.eval_batch_size, acc)
            if not math.isfinite(val_loss):
                raise NonFiniteLossError(f"{run}: validation loss became {val_loss} at epoch {epoch} "
                                         f"(lr={cfg.lr:g}); run stopped — try a smaller learning rate")
            if first_val is None:
                first_val = val_loss
            improved = val_loss < best_val
            if improved:
                best_val, best_epoch = val_loss, epoch
            state = {"epoch": epoch, "val_loss": val_loss, "train_loss": train_loss,
                     "best_val_loss": best_val, "best_epoch": best_epoch, "first_val_loss": first_val,
                     "train_seconds": round(seconds_before + time.perf_counter() - start_time, 4)}
            header = _header(cfg, data, model_args, **state)
            elapsed = time.perf_counter() - t0
            if main:
                # History first: a kill before the checkpoint leaves a line that resume trims
                # (and the epoch is redone); the other order would lose the line for good.
                append_jsonl(hist_path, {"epoch": epoch, "train_loss": train_loss, "val_loss": val_loss,
                                         "lr": optim.param_groups[0]["lr"], "time_s": round(elapsed, 4)})
                if improved:  # ckpt.save copies tensors to the CPU itself
                    ckpt.save(best_path, core, header, norm=norm)
                ckpt.save(last_path, core, header, optimizer=optim, norm=norm, rng=True)
            # this epoch is now where resume continues (before anything else can be interrupted)
            done = {"epoch": epoch, "train_loss": train_loss, "best_val": best_val,
                    "best_epoch": best_epoch, "first_val": first_val}
            if writer is not None:
                writer.add_scalar("loss/train", train_loss, epoch)
                writer.add_scalar("loss/val", val_loss, epoch)
                writer.add_scalar("lr", optim.param_groups[0]["lr"], epoch)
                writer.flush()
            acc.wait_for_everyone()  # nobody starts the next epoch before its files exist
            log.info("epoch %d/%d train %.5g val %.5g (%.1f s)", epoch, cfg.epochs, train_loss, val_loss, elapsed)
    except NonFiniteLossError as exc:
        status, message = "diverged", str(exc)
        raise
    except KeyboardInterrupt:
        status, message = ("interrupted", f"interrupted during epoch {done['epoch'] + 1}; rerun the same "
                           "command to continue")
        raise
    except BaseException as exc:
        status, message = "failed", f"{type(exc).__name__}: {exc}"
        raise
    finally:
        if writer is not None:
            writer.close()
        seconds = time.perf_counter() - start_time
        if status in ("interrupted", "failed"):  # report the last finished epoch, not the lost one
            epoch, train_loss, best_val = done["epoch"], done["train_loss"], done["best_val"]
            best_epoch, first_val = done["best_epoch"], done["first_val"]
        result = TrainResult(run, cfg.lr, status, epoch, best_epoch,
                             None if math.isinf(best_val) else best_val, first_val, train_loss,
                             seconds_before + seconds, message, val_split,
                             resumed_from_epoch=start_epoch - 1)
        if main:
            _write_run(run, cfg, data, {"train": seconds_before + seconds, "train_this_process": seconds}, {
                "status": status, "message": message, "epochs_run": epoch, "best_epoch": best_epoch,
                "best_val_loss": result.best_val_loss, "first_val_loss": first_val,
                "final_train_loss": train_loss, "val_split": val_split,
                "resumed_from_epoch": start_epoch - 1, "num_processes": world}, device)
    acc.wait_for_everyone()
    return result


def check_resumable(header: Mapping[str, Any], cfg: TrainConfig, path: str | Path = "checkpoint", *,
                    prepared: PreparedData | None = None) -> None:
    """Refuse to continue a checkpoint with settings that change the model or the loss.

    Only the keys in :data:`RESUME_MAY_CHANGE` (learning rate, epochs, device …) may differ
    from the stored ``header["config"]``; with ``prepared``, the prepared data must be the one
    the checkpoint was trained on (:func:`prepared_fingerprint`; checkpoints of older versions,
    which record none, are not checked).

    Raises:
        CheckpointMismatchError: listing every key that differs, with both values.
    """
    diffs = _header_differences(header, cfg, RESUME_MAY_CHANGE, prepared)
    if diffs:
        raise CheckpointMismatchError(
            f"{path}: cannot resume with changed settings ({'; '.join(diffs)}); only "
            f"{', '.join(RESUME_MAY_CHANGE)} may change — drop those options or pass --overwrite "
            "(or another --out) to start a new run")


def _header_differences(header: Mapping[str, Any], cfg: TrainConfig, ignore: Sequence[str],
                        prepared: PreparedData | None) -> list[str]:
    """``key a → b`` for each setting of ``cfg`` (but ``ignore``) and the prepared data that
    differ from the ones the checkpoint ``header`` was trained with."""
    diffs = config_differences(header.get("config") or {}, cfg, ignore=ignore)
    stored_fp = header.get("prepared_sha256")
    if prepared is not None and stored_fp and stored_fp != prepared_fingerprint(prepared):
        diffs.append(prepared_change(header.get("prepared"), header.get("prepared_settings"), prepared.root))
    return diffs


def check_rerun(header: Mapping[str, Any], cfg: TrainConfig, run: str | Path = "run", *,
                prepared: PreparedData | None = None) -> None:
    """Refuse to continue the run in ``run`` (its ``last.safetensors`` has ``header``) on a rerun
    without ``resume`` whose settings are not the run's own.

    Only :data:`RERUN_MAY_CHANGE` may differ from the stored ``header["config"]``, and
    ``cfg.epochs`` may not be below the epochs already trained; with ``prepared``, the prepared
    data must be the one the run was trained on (as in :func:`check_resumable`).

    Raises:
        CheckpointMismatchError: one line listing every setting that differs, with both
            values, and what to do instead (``--resume`` where only the learning rate differs,
            ``--overwrite``, another ``--out``).
    """
    diffs = _header_differences(header, cfg, RERUN_MAY_CHANGE, prepared)
    trained = int(header.get("epoch") or 0)
    if not diffs and cfg.epochs < trained:
        raise _epochs_below(Path(run), trained, cfg.epochs)
    if diffs:
        if cfg.epochs < trained:
            diffs.append(f"epochs {trained} trained → {cfg.epochs}")
        resumable = not _header_differences(header, cfg, RESUME_MAY_CHANGE, prepared)
        hint = "pass --resume to continue it with the new --lr, " if resumable else "pass "
        raise CheckpointMismatchError(
            f"{run}: holds a run trained with other settings ({'; '.join(diffs)}); a rerun "
            f"continues it only with its own settings (--epochs may grow) — {hint}--overwrite to "
            "train it again, or choose another --out")


def _read_last(path: Path) -> dict[str, Any]:
    """The header of a run's ``last.safetensors``.

    Raises:
        TrainError: the file cannot be read (naming it, and how to start again).
    """
    try:
        return ckpt.read_header(path)
    except ckpt.CheckpointError as exc:
        raise TrainError(f"{exc}; pass --overwrite to start the run again, or choose another --out") from None


def _recorded_result(run: Path, record: Mapping[str, Any], **kw: Any) -> TrainResult:
    """A :class:`TrainResult` from a run's ``run.json`` record."""
    res, stored = record.get("result") or {}, record.get("config") or {}
    return TrainResult(run, float(stored["lr"]), res["status"], int(res.get("epochs_run") or 0),
                       res.get("best_epoch"), res.get("best_val_loss"), res.get("first_val_loss"),
                       res.get("final_train_loss"), float((record.get("timings_s") or {}).get("train", 0.0)),
                       res.get("message", ""), res.get("val_split", "val"), **kw)


def _stored_outcome(run: Path, cfg: TrainConfig, header: Mapping[str, Any],
                   record: Mapping[str, Any] | None) -> TrainResult | None:
    """The recorded result of the run in ``run`` when it needs no more training with ``cfg``,
    else None.

    It needs none when ``record`` (its ``run.json``, :func:`check_run_record`) records the run
    of the checkpoint ``header`` as finished (status ``ok``) with at least ``cfg.epochs``
    epochs, or as diverged with ``cfg.lr`` (the same learning rate diverges again). The
    settings were checked against the checkpoint before.
    """
    res = record.get("result") if record is not None else None
    lr = (record.get("config") or {}).get("lr") if record is not None else None
    if not isinstance(res, dict) or not isinstance(lr, (int, float)) or isinstance(lr, bool):
        return None
    epoch, ran, status = int(header.get("epoch") or 0), res.get("epochs_run"), res.get("status")
    if status == "ok":
        done = ran == epoch and epoch >= cfg.epochs
    elif status == "diverged":  # the checkpoint is the epoch before the one that diverged
        done = ran in (epoch, epoch + 1) and float(lr) == float(cfg.lr)
    else:
        done = False
    return _recorded_result(run, record, already_finished=True) if done else None


def _outcome_without_checkpoint(run: Path, cfg: TrainConfig, data: PreparedData,
                                record: Mapping[str, Any] | None, *,
                                resume: bool) -> TrainResult | None:
    """For a ``run`` without ``last.safetensors``: refuse a run its ``run.json`` (``record``,
    :func:`check_run_record`) records with other settings, and return the recorded result
    when there is nothing to train.

    The settings are checked as against a checkpoint (:func:`check_rerun`, or
    :func:`check_resumable` with ``resume``). Nothing is to be trained when the record is of a
    run that diverged with ``cfg.lr`` (in its first epoch: it left no checkpoint) or of one that
    finished at least ``cfg.epochs`` epochs. A record of a run still ``running`` (killed),
    ``interrupted`` or ``failed`` before its first checkpoint starts afresh (None).

    Raises:
        CheckpointMismatchError: the record is of a run made with other settings (or data), or
            of a finished one of more epochs than ``cfg.epochs`` (without ``resume``).
    """
    stored = record.get("config") if record is not None else None
    if not isinstance(stored, dict):
        return None
    res = record.get("result") if isinstance(record.get("result"), dict) else {}
    status, ran = res.get("status"), res.get("epochs_run")
    ran = ran if isinstance(ran, int) and not isinstance(ran, bool) else 0
    # run.json in place of the missing checkpoint header: the same keys, the epochs it holds
    header = {"config": stored, "prepared_sha256": stored.get("prepared_sha256"),
              "prepared": stored.get("prepared"), "prepared_settings": stored.get("prepared_settings"),
              "epoch": ran if status == "ok" else 0}
    if resume:
        check_resumable(header, cfg, run / "run.json", prepared=data)
    else:
        check_rerun(header, cfg, run, prepared=data)
    lr = stored.get("lr")
    same_lr = isinstance(lr, (int, float)) and not isinstance(lr, bool) and float(lr) == float(cfg.lr)
    if status == "diverged" and same_lr or status == "ok" and ran >= cfg.epochs:
        return _recorded_result(run, record, already_finished=True)
    if ran > 0 and status != "diverged" and not resume and _accelerator().is_main_process:
        log.warning("%s: run.json records %d epochs but there is no last.safetensors to continue "
                    "from; training from epoch 1", run, ran)
    return None


def _record_finished(run: Path, cfg: TrainConfig, data: PreparedData, header: Mapping[str, Any],
                     seconds: float, record: Mapping[str, Any] | None) -> TrainResult:
    """Record the run in ``run`` as finished from its checkpoint ``header`` (its last epoch),
    which holds at least the ``cfg.epochs`` asked for while ``run.json`` does not say the run
    finished; return its result (``already_finished``).

    Usually the process that wrote the checkpoint stopped before recording the end. It may
    also be a run that went on and stopped on its own (interrupted, failed, or diverged in the
    epoch after the checkpoint, rerun with ``--resume --lr`` and ``--epochs`` no more than the
    checkpoint's): the message then says so, ``result.stopped_earlier`` keeps what ``record``
    said, and a warning tells that nothing is trained.

    The recorded time is ``seconds``, the run's own: none of this process, which trains
    nothing. The learning rate is the checkpoint's (a new ``--lr`` is not used) and ``epochs``
    the checkpoint's; the resolved device is the one ``record`` (the run's ``run.json`` as it
    was) names.
    """
    from dataclasses import replace

    stored_lr = header.get("lr")
    lr = float(stored_lr) if isinstance(stored_lr, (int, float)) else cfg.lr
    epoch = int(header.get("epoch") or 0)
    # the config of the run the checkpoint holds (a resume may ask for fewer epochs)
    rcfg = replace(cfg, lr=lr, epochs=epoch)
    has_val = "val" in data.emb and len(data.emb["val"]) > 0
    best = header.get("best_val_loss")
    best = float(best) if isinstance(best, (int, float)) and math.isfinite(best) else None
    res = record.get("result") if record is not None else None
    res = res if isinstance(res, dict) else {}
    status, ran = res.get("status"), res.get("epochs_run")
    planned = ((record.get("config") or {}) if record is not None else {}).get("epochs")
    went_on = status == "diverged" or (status in ("interrupted", "failed") and isinstance(planned, int)
                                       and planned > epoch)
    earlier: dict[str, Any] | None = None
    if went_on:
        # the run went on after this checkpoint (and stopped): not an unrecorded end
        earlier = {"status": status, "epochs_run": ran, "lr": lr, "message": res.get("message", "")}
        what = (f"diverged during epoch {ran} (lr={lr:g})" if status == "diverged"
                else f"{status} during epoch {epoch + 1}")
        asked = "the" if epoch == cfg.epochs else "more than the"
        message = (f"{what}; its checkpoint of epoch {epoch} holds {asked} --epochs {cfg.epochs} "
                   "asked for: recorded as finished from it, nothing trained")
    else:
        message = (f"the process that trained epoch {epoch} stopped before recording the end of the "
                   "run; recorded as finished from its last checkpoint")
    result = TrainResult(run, lr, "ok", epoch, header.get("best_epoch"), best,
                         header.get("first_val_loss"), header.get("train_loss"), seconds, message,
                         "val" if has_val else "train", already_finished=True)
    acc = _accelerator()
    if earlier is not None and acc.is_main_process:
        unused = "" if float(lr) == float(cfg.lr) else f" (--lr {cfg.lr:g} not used)"
        log.warning("%s: %s; its checkpoint of epoch %d holds %s --epochs %d asked for, so the run "
                    "is recorded as finished with %d epochs (lr=%g) and nothing is trained%s; pass "
                    "--epochs %d or more to train on from epoch %d", run, what, epoch, asked,
                    cfg.epochs, epoch, lr, unused, epoch + 1, epoch + 1)
    acc.wait_for_everyone()  # every process has read the record this rewrites
    if acc.is_main_process:
        device = ((record.get("config") or {}).get("device_resolved") if record is not None else None)
        _write_run(run, rcfg, data, {"train": seconds, "train_this_process": 0.0}, {
            "status": "ok", "message": message, "epochs_run": epoch, "best_epoch": result.best_epoch,
            "best_val_loss": best, "first_val_loss": result.first_val_loss,
            "final_train_loss": result.final_train_loss, "val_split": result.val_split,
            "resumed_from_epoch": 0, **({"stopped_earlier": earlier} if earlier else {})}, device)
    acc.wait_for_everyone()
    return result


def _report_stored(stored: TrainResult, cfg: TrainConfig) -> TrainResult:
    """Say that the run in ``stored.run_dir`` is not trained again, and return its result.

    Raises:
        NonFiniteLossError: the run diverged with this learning rate.
    """
    if stored.status == "diverged":  # epochs_run: the epoch during which the loss became non-finite
        raise NonFiniteLossError(
            f"{stored.run_dir}: already stopped with a non-finite loss during epoch {stored.epochs_run} "
            f"(lr={cfg.lr:g}); not trained again — continue it with a smaller learning rate "
            "(--resume --lr …), or pass --overwrite to start again")
    if _accelerator().is_main_process:
        log.info("%s: already finished (%d epochs%s); not trained again", stored.run_dir,
                 stored.epochs_run, lr_not_used(stored.lr, cfg.lr))
    return stored


def lr_not_used(trained: float, asked: float) -> str:
    """``" with lr 0.01; --lr 0.005 not used"`` when a finished run, trained with ``trained``, is
    reported for a call asking for ``asked`` (``--resume --lr``); empty when they are the same."""
    if float(trained) == float(asked):
        return ""
    return f" with lr {trained:g}; --lr {asked:g} not used"


def _seconds_before(run: Path, header: Mapping[str, Any], record: Mapping[str, Any] | None) -> float:
    """Training time spent on the run in ``run`` until its checkpoint ``header``: the time the
    checkpoint records (the epochs' own times in history.jsonl for checkpoints of older
    versions), or the time its ``run.json`` (``record``) records where the process that wrote
    the checkpoint stopped on its own after it (interrupted, failed, finished, diverged)."""
    epoch = int(header.get("epoch") or 0)
    seconds = header.get("train_seconds")
    if not isinstance(seconds, (int, float)):
        hist = run / "history.jsonl"
        seconds = sum(float(h.get("time_s") or 0.0) for h in (read_jsonl(hist) if hist.exists() else [])
                      if isinstance(h, dict) and isinstance(h.get("epoch"), int) and h["epoch"] <= epoch)
    res = record.get("result") if record is not None else None
    if isinstance(res, dict):
        ran, status = res.get("epochs_run"), res.get("status")
        if (status in ("ok", "interrupted", "failed") and ran == epoch
                or status == "diverged" and ran in (epoch, epoch + 1)):
            with contextlib.suppress(TypeError, ValueError, KeyError, AttributeError):
                seconds = max(float(seconds), float(record["timings_s"]["train"]))
    return float(seconds)


def prepared_change(recorded: Any, settings: Mapping[str, Any] | None, root: str | Path | None) -> str:
    """How the prepared data differs from the one a run was trained on (fingerprints differ):
    another folder, or the same folder whose content changed (naming changed settings)."""
    from auralens.sonify.prepare import absolute_path, describe_prepared_change

    if root is None:
        return f"prepared data {recorded} → another prepared dataset"
    same = recorded is not None and absolute_path(str(recorded)) == absolute_path(root)
    if not same:
        return f"prepared data {recorded} → {root} (other clips, splits or arrays)"
    return f"prepared data {root}: {describe_prepared_change(dict(settings or {}), root)} since the run was trained"


def _tb_writer(path: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception as exc:  # noqa: BLE001 - tensorboard is optional at run time
        log.warning("TensorBoard logging disabled (%s)", exc)
        return None
    return SummaryWriter(log_dir=str(path))


_RUN_FILES = ("run.json", "last.safetensors", "best.safetensors")


def grid_lr_runs(out: str | Path) -> list[str]:
    """Names of the ``lr=<v>`` folders of ``out`` that hold a run (a run.json or a checkpoint)."""
    out = Path(out)
    if not out.is_dir():
        return []
    return sorted(p.name for p in out.glob("lr=*") if p.is_dir() and any((p / f).exists() for f in _RUN_FILES))


def check_run_record(run: Path, *, refuse_damaged: bool) -> dict[str, Any] | None:
    """Refuse a ``run`` whose ``run.json`` another command wrote (``sonify prepare``, ``sweep`` …):
    training there would write over its record; with ``refuse_damaged``, also one whose
    ``run.json`` cannot be read, since what it records (and so whether a rerun may continue
    it) is unknown.

    Returns:
        ``run.json`` when it is a readable ``sonify train`` record (as :func:`_train_record`
        reads it), else None.

    Raises:
        TrainError: naming the folder or the file and what to do instead.
    """
    path = run / "run.json"
    if not path.is_file():
        return None
    try:
        record = _read_run_json(path)
    except TrainError:
        if refuse_damaged:
            raise
        return None
    command = record.get("command") if isinstance(record, dict) else None
    if isinstance(command, str) and command != "sonify train":
        raise TrainError(f"{run}: holds the output of {command!r}, not of sonify train; choose "
                         "another --out")
    return record if command == "sonify train" else None


def _read_run_json(path: Path) -> Any:
    """A run's ``run.json`` as read.

    Raises:
        TrainError: it is not valid JSON (naming it, and what to do instead).
    """
    from auralens.io import JSONFileError

    try:
        return read_json(path)
    except JSONFileError as exc:  # names the file already
        raise TrainError(f"{exc}; pass --overwrite to train it again, or choose another --out") from None


def _train_record(out: Path) -> dict[str, Any] | None:
    """``out/run.json`` when it is a readable ``sonify train`` record, else None."""
    path = out / "run.json"
    if not path.is_file():
        return None
    try:
        record = read_json(path)
    except ValueError:  # unreadable: records nothing
        return None
    if not isinstance(record, dict) or record.get("command") != "sonify train":
        return None
    return record


def recorded_grid(out: str | Path) -> list[str] | None:
    """Folder names (``lr=<v>``) of the learning rates ``out/run.json`` records for an lr grid,
    in the grid's order; None when ``out`` records no grid (a single run, or no record)."""
    record = _train_record(Path(out))
    lrs = (record.get("config") or {}).get("lr") if record is not None else None
    if not isinstance(lrs, list):
        return None
    names = []
    for value in lrs:
        with contextlib.suppress(TypeError, ValueError):
            names.append(lr_dirname(float(value)))
    return list(dict.fromkeys(names))


def check_not_grid(run: str | Path) -> None:
    """Refuse to train one learning rate into a folder holding an lr grid (it would write a
    single run beside the grid's runs and replace the grid's run.json).

    Raises:
        TrainError: naming the folder and the grid's runs.
    """
    run = Path(run)
    runs = grid_lr_runs(run)
    if runs or recorded_grid(run) is not None:
        held = ", ".join(runs) if runs else "recorded in run.json"
        raise TrainError(f"{run}: holds an lr grid ({held}); one learning rate cannot train into "
                         "it — pass the grid's --lr list to continue the grid, or choose another --out")


def check_not_single_run(out: str | Path) -> None:
    """Refuse to train an lr grid into a folder holding a single run (its ``lr=<v>`` runs
    would sit beside the single run's checkpoint, which render would take instead).

    Raises:
        TrainError: naming the folder and the single run's learning rate.
    """
    out = Path(out)
    record = _train_record(out)
    lr = (record.get("config") or {}).get("lr") if record is not None else None
    has_ckpt = (out / "last.safetensors").exists() or (out / "best.safetensors").exists()
    if has_ckpt or isinstance(lr, (int, float)):
        what = f" (lr={float(lr):g})" if isinstance(lr, (int, float)) else ""
        raise TrainError(f"{out}: holds a single training run{what}; an lr grid cannot train into "
                         "it — give one --lr to continue that run, or choose another --out for the grid")


def train_grid(prep: str | Path, out: str | Path, cfg: TrainConfig, lrs: Sequence[float], *,
               resume: bool = False, overwrite: bool = False) -> list[TrainResult]:
    """One run per learning rate in ``out/lr=<v>/`` plus ``summary.csv``/``summary.md``/``run.json``.

    A diverging learning rate is recorded as such and the grid continues. Run again into
    ``out``, the grid continues: finished runs (and diverged ones) are skipped, with
    ``already_finished`` set, and unfinished ones continue from their last checkpoint. Every
    learning rate's run is checked before any of them trains: one made with other settings is
    refused (:func:`_finished`, :func:`check_rerun`), and so is another list of learning rates
    than ``run.json`` records. ``resume`` allows that other list and the changes
    :func:`check_resumable` allows; ``overwrite`` trains every learning rate again.
    ``run.json`` records the learning rates of this call, written before the first of them
    trains (so a rerun after a kill knows the grid) and again at the end with the results:
    ``lr=<v>`` folders of earlier calls
    with other learning rates are kept (with a warning) but are no longer part of the grid —
    its summary and :func:`auralens.sonify.render.resolve_run` use only the recorded ones.
    A folder holding a single run is refused. Under several processes every one returns once
    the main process wrote the summary.
    """
    from dataclasses import replace

    out = Path(out)
    cfg.validate()
    if resume and overwrite:
        raise TrainError("resume continues the grid in the run directory and overwrite starts it "
                         "again; give one of them")
    check_not_single_run(out)
    check_run_record(out, refuse_damaged=False)  # the grid's record is written again anyway
    lrs = _unique_lrs(float(v) for v in lrs)
    names = [lr_dirname(v) for v in lrs]
    if not resume and not overwrite:
        _check_same_grid(out, names)
    existing = grid_lr_runs(out)
    outside = [name for name in existing if name not in names]
    data = prep if isinstance(prep, PreparedData) else load_prepared(prep)
    # the run's own Accelerator (a bare PartialState would set up one process under a launcher)
    acc = _accelerator()
    main = acc.is_main_process
    if main and outside:
        log.warning("%s: %s not in this grid (--lr %s); kept, but the grid's summary and "
                    "`sonify render` use only the learning rates given now", out,
                    ", ".join(outside), ",".join(f"{v:g}" for v in lrs))
    if main and resume and not existing:
        log.warning("%s: nothing to resume (no lr=<v> runs there); training the grid from epoch 1", out)
    done: dict[float, TrainResult | None] = {}
    if not overwrite:  # refuse mismatched runs before any of them trains
        for lr in lrs:
            run, rcfg = out / lr_dirname(lr), replace(cfg, lr=float(lr))
            finished = _finished(run, rcfg, data.info, fingerprint=prepared_fingerprint(data),
                                 prepared_root=data.root)
            if finished is not None:
                if not resume and finished.status == "ok" and finished.epochs_run > cfg.epochs:
                    raise _epochs_below(run, finished.epochs_run, cfg.epochs)
                done[lr] = replace(finished, already_finished=True)
            elif (run / "last.safetensors").exists():
                last = run / "last.safetensors"
                if resume:
                    check_resumable(_read_last(last), rcfg, last, prepared=data)
                else:
                    check_rerun(_read_last(last), rcfg, run, prepared=data)
    # Everyone checked the runs above; only now may the main process write. The grid's record
    # names its learning rates from the start, so a rerun after a kill sees which they were.
    acc.wait_for_everyone()
    if main:
        _write_grid_record(out, cfg, data, lrs, {"status": "running", "outside_grid": outside})
    results: list[TrainResult] = []
    for lr in lrs:
        run = out / lr_dirname(lr)
        finished = done.get(lr)
        if finished is not None:
            if main:
                log.info("%s: already finished; skipped", run)
            results.append(finished)
            continue
        # a learning rate new to the grid starts from epoch 1 (told once above for a new grid)
        continues = not overwrite and (run / "last.safetensors").exists()
        if resume and not continues and existing and main:
            log.info("%s: nothing to resume; training from epoch 1", run)
        try:
            results.append(train(data, run, replace(cfg, lr=float(lr)), resume=resume and continues,
                                 overwrite=overwrite))
        except NonFiniteLossError as exc:
            log.warning("%s", exc)
            results.append(replace(_recorded_result(run, read_json(run / "run.json")), lr=float(lr),
                                   status="diverged", message=str(exc)))
    if main:
        write_summary(out, results)
        _write_grid_record(out, cfg, data, lrs, {"status": "done", "grid": [_row(r, out) for r in results],
                                                 "outside_grid": outside})
    acc.wait_for_everyone()  # the summary exists for every process (the CLI prints it)
    return results


def _write_grid_record(out: Path, cfg: TrainConfig, data: PreparedData, lrs: Sequence[float],
                       result: dict[str, Any]) -> None:
    """Write an lr grid's ``run.json``: its learning rates (``config.lr``, a list) and ``result``
    (``status`` ``running`` from before the first learning rate trains, ``done`` with one
    ``grid`` row per learning rate at the end)."""
    info = data.info
    write_run_json(out, command="sonify train", seed=cfg.seed,
                   config={**_run_config(cfg, data), "lr": [float(v) for v in lrs]},
                   models={"extractor": info["extractor"], "codec": info["codec"]},
                   extra={"result": result})


def _check_same_grid(out: Path, names: Sequence[str]) -> None:
    """Refuse a rerun of an lr grid with other learning rates than its ``run.json`` records
    (or, for a grid of an older version stopped before writing one, than its ``lr=<v>``
    folders hold: those must be among ``names``).

    Raises:
        TrainError: naming both lists and what to do instead.
    """
    recorded = recorded_grid(out)
    if recorded is None:  # a grid of an older version, killed before its record: its folders
        recorded = grid_lr_runs(out)
        if set(recorded) <= set(names):
            return
    elif set(recorded) == set(names):
        return

    def values(folders: Sequence[str]) -> str:
        return ",".join(name.removeprefix("lr=") for name in folders)

    raise TrainError(f"{out}: holds an lr grid of other learning rates (lr {values(recorded)} → "
                     f"{values(names)}); a rerun continues a grid only with its own --lr list — pass "
                     "--resume to train the new list beside it (the other runs are kept), --overwrite "
                     "to train it again, or choose another --out")


def _epochs_below(run: Path, trained: int, epochs: int) -> CheckpointMismatchError:
    """The error of a rerun asking for fewer epochs than ``run`` already trained."""
    return CheckpointMismatchError(
        f"{run}: already trained for {trained} epochs, more than --epochs {epochs}; pass "
        f"--epochs {trained} or more to continue it, --overwrite to train it again, or choose "
        "another --out")


#: Run-config keys that tie a finished run to its prepared data.
_DATA_KEYS = ("encoder", "layer", "codec", "duration")
#: … of which these hold model specs (compared by :func:`normalise_spec`).
_SPEC_KEYS = ("encoder", "codec")


def normalise_spec(spec: Any) -> str:
    """A model spec in a spelling-independent form (:func:`auralens.specs.canonical_spec`), for
    comparing stored and requested specs; specs that do not parse are returned as given."""
    from auralens.specs import SpecError, canonical_spec

    if not isinstance(spec, str):
        return str(spec)
    try:
        return str(canonical_spec(spec))
    except SpecError:
        return spec


def _data_differs(key: str, have: Any, want: Any) -> bool:
    if key in _SPEC_KEYS:
        return normalise_spec(have) != normalise_spec(want)
    if key == "duration" and have is not None and want is not None:
        with contextlib.suppress(TypeError, ValueError):
            return float(have) != float(want)  # 1 and 1.0 s are the same duration
    return str(have) != str(want)


def _finished(run: Path, cfg: TrainConfig, prepared: Mapping[str, Any] | None = None, *,
              fingerprint: str | None = None, prepared_root: str | Path | None = None) -> TrainResult | None:
    """The result of a finished run in ``run`` made with ``cfg``, else None (nothing or unfinished).

    Args:
        run: RUN directory.
        cfg: the settings the caller wants; all but epochs/device/tensorboard/eval batch
            size must match the stored ones (the learning rate included).
        prepared: ``run.json["prepared"]`` of the data the caller trains on (or a mapping of
            the same shape describing the data it is about to prepare); its encoder, layer,
            codec and duration must match too, encoder and codec specs compared with local
            paths resolved (:func:`normalise_spec`).
        fingerprint: :func:`prepared_fingerprint` of that data; compared with the stored one
            where the run records it (runs of older versions are not checked); ``prepared_root``
            names that data in the message.

    Raises:
        TrainError: ``run`` holds a run made with other settings (the message lists them).
    """
    path = run / "run.json"
    if not path.exists():
        return None
    info = _read_run_json(path)
    stored = info.get("config") or {}
    diffs = config_differences(stored, cfg, ignore=tuple(k for k in RESUME_MAY_CHANGE if k != "lr"))
    if prepared is not None:
        ext, cod = prepared.get("extractor") or {}, prepared.get("codec") or {}
        want = {"encoder": ext.get("spec"), "layer": ext.get("layer"), "codec": cod.get("spec"),
                "duration": prepared.get("duration")}
        diffs += [f"{k} {stored[k]!r} → {want[k]!r}" for k in _DATA_KEYS
                  if k in stored and _data_differs(k, stored[k], want[k])]
    if fingerprint is not None and stored.get("prepared_sha256") and stored["prepared_sha256"] != fingerprint:
        diffs.append(prepared_change(stored.get("prepared"), stored.get("prepared_settings"), prepared_root))
    if diffs:
        raise TrainError(f"{run}: holds a run made with other settings ({'; '.join(diffs)}); choose "
                         "another --out or pass --overwrite to train it again")
    res = info.get("result", {})
    if res.get("status") not in ("ok", "diverged") or (res.get("status") == "ok" and (res.get("epochs_run") or 0) < cfg.epochs):
        return None
    return _recorded_result(run, info)


def loss_name(val_split: str) -> str:
    """How to call the loss a run selected its best checkpoint by (see TrainResult.val_split)."""
    return "validation loss" if val_split == "val" else "training loss (no validation clips)"


SUMMARY_COLUMNS = ("lr", "status", "best_val_loss", "best_epoch", "first_val_loss",
                   "final_train_loss", "epochs_run", "time_s", "run")


def _row(r: TrainResult, root: Path) -> dict[str, Any]:
    def fmt(v: float | None) -> str:
        return "" if v is None else f"{v:.6g}"

    return {"lr": f"{r.lr:g}", "status": r.status, "best_val_loss": fmt(r.best_val_loss),
            "best_epoch": "" if r.best_epoch is None else str(r.best_epoch),
            "first_val_loss": fmt(r.first_val_loss), "final_train_loss": fmt(r.final_train_loss),
            "epochs_run": str(r.epochs_run), "time_s": f"{r.seconds:.1f}",
            "run": str(r.run_dir.relative_to(root)) if r.run_dir.is_relative_to(root) else str(r.run_dir)}


def write_summary(out: str | Path, results: Sequence[TrainResult]) -> tuple[Path, Path]:
    """Write ``summary.csv`` and ``summary.md`` (one row per run, best first among finished)."""
    out = Path(out)
    rows = [_row(r, out) for r in results]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    csv_path = write_text(out / "summary.csv", buf.getvalue())
    ok = [r for r in results if r.status == "ok" and r.best_val_loss is not None]
    best = min(ok, key=lambda r: r.best_val_loss) if ok else None  # type: ignore[arg-type, return-value]
    lines = ["| " + " | ".join(SUMMARY_COLUMNS) + " |", "|" + "---|" * len(SUMMARY_COLUMNS)]
    lines += ["| " + " | ".join(row[c] for c in SUMMARY_COLUMNS) + " |" for row in rows]
    if best is not None:
        lines += ["", f"Best: lr={best.lr:g} ({loss_name(best.val_split)} {best.best_val_loss:.6g}, "
                      f"epoch {best.best_epoch})."]
    md_path = write_text(out / "summary.md", "\n".join(lines) + "\n")
    return csv_path, md_path
