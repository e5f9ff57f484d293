"""Train the compact AST-architecture classifier on an ESC-50-layout folder.

The result is an ordinary Hugging Face ``ASTForAudioClassification`` directory
(``config.json`` with ``id2label``, ``model.safetensors``, ``preprocessor_config.json``), so it
loads through the same ``ast`` extractor code path as the real AudioSet model
(``EXTRACTORS.build(out_dir)`` or, for the committed preset, ``EXTRACTORS.build("classifier")``).

Recipe:
    * split: every fold except the last trains, the last fold validates (``val_fold`` overrides);
    * input: the AST Kaldi filterbank (16 kHz, 10 ms hop, ``num_mel_bins`` × ``max_length``),
      computed once per file and kept in the auralens cache (keyed by file content);
    * augmentation (train only): random gain (±``gain_db``), random circular time shift of
      the real frames, SpecAugment (2 frequency + 2 time masks) and mixup; with ``reverb`` = k,
      k more copies of every training clip, each convolved with the impulse response of its
      own seeded random shoebox room (the rooms ``auralens data mix`` draws), so the model
      also knows its classes in the reverberant mixtures it is asked to caption;
    * AdamW, linear warm-up then cosine decay, label smoothing; the checkpoint with the best
      validation accuracy is kept (ties: lower validation loss);
    * resumable: ``OUT/train_state.pt`` holds the model, optimiser and history after every
      epoch (and, when ``max_steps`` stops an epoch partway, the position in it), and a rerun
      with the same OUT continues from there. Only ``epochs`` (never below the epochs already
      trained), ``max_steps`` and ``threads`` may change on a rerun; any other change, other
      data (the clip list with folds and targets) or another resolved validation fold is
      refused with the differing keys and both values.

``OUT/run.json`` tells how the run stands: ``result.status`` is ``running`` while it trains,
``ok`` when it finished, ``interrupted`` after Ctrl-C and ``failed`` after an error, and
``result.epochs_run`` counts the epochs whose state was saved (where a rerun continues), so a
``model.safetensors`` left by a stopped run is never mistaken for a finished one.
``timings_s`` are this invocation's (``features``, ``train``, ``total``); ``result.train_seconds``
adds up the training time of every invocation, and ``result.resumed_from_epoch`` /
``epochs_this_run`` say what this one did.

Scale-out: the loop runs through ``accelerate.Accelerator``; ``accelerate launch
--num_processes N`` (or torchrun) trains with N processes and no code change. Every process
draws the same batch order and augmentation (one seeded generator), scores its share of each
global batch, and weights its loss so the averaged gradient is the single-process one.
Validation sums are added across processes; only the main process writes files.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from auralens.checks import as_bool, is_number, is_whole
from auralens.encoders.hf import DTYPES, short_error
from auralens.errors import AuralensError
from auralens.io import (
    ErrorLog,
    Timer,
    atomic_path,
    check_out_dir,
    make_temp_dir,
    read_json,
    remove_stale_temp_dirs,
    remove_stale_temps,
    write_json,
    write_run_json,
)

log = logging.getLogger(__name__)

#: Fbank normalisation constants of ASTFeatureExtractor (AudioSet statistics).
FBANK_MEAN = -4.2677393
FBANK_STD = 4.5689974


@dataclass
class ClassifierConfig:
    """Architecture and training settings (all recorded in run.json).

    Attributes mirror ``auralens train-classifier`` options; see its ``--help``.
    """

    hidden_size: int = 192
    num_layers: int = 4
    num_heads: int = 4
    intermediate_size: int = 768
    num_mel_bins: int = 128
    max_length: int = 512
    patch_stride: int = 16
    dropout: float = 0.1
    epochs: int = 30
    batch_size: int = 16
    lr: float = 5e-4
    weight_decay: float = 0.05
    warmup_epochs: float = 2.0
    label_smoothing: float = 0.1
    mixup: float = 0.3
    gain_db: float = 6.0
    freq_mask: int = 24
    time_mask: int = 48
    augment: bool = True
    reverb: int = 0
    val_fold: int | None = None
    seed: int = 0
    save_dtype: str = "float16"
    max_steps: int | None = None
    threads: int | None = None

    def __post_init__(self) -> None:
        """Refuse settings that cannot build or train the model (one line naming the option)."""
        # (a negative mask width or seed would only fail mid-training, inside torch or numpy)
        at_least = {"hidden_size": 1, "num_layers": 1, "num_heads": 1, "intermediate_size": 1,
                    "num_mel_bins": 16, "max_length": 16, "patch_stride": 1, "epochs": 1,
                    "batch_size": 1, "freq_mask": 0, "time_mask": 0, "seed": 0, "reverb": 0}
        for name, low in at_least.items():
            value = getattr(self, name)
            if not is_whole(value, low):
                raise AuralensError(f"{name} must be a whole number ≥ {low}, got {value!r}")
        if self.hidden_size % self.num_heads:
            raise AuralensError(f"hidden_size {self.hidden_size} must be a multiple of the "
                                f"{self.num_heads} attention heads")
        if not (is_number(self.lr) and self.lr > 0):
            raise AuralensError(f"lr must be a positive number, got {self.lr!r}")
        for name in ("dropout", "label_smoothing"):
            value = getattr(self, name)
            if not (is_number(value) and 0.0 <= value < 1.0):
                raise AuralensError(f"{name} must be in [0, 1), got {value!r}")
        for name in ("weight_decay", "warmup_epochs", "mixup", "gain_db"):
            value = getattr(self, name)
            if not (is_number(value) and value >= 0):
                raise AuralensError(f"{name} must be a number ≥ 0, got {value!r}")
        for name in ("threads", "max_steps"):
            value = getattr(self, name)
            if value is not None and not is_whole(value, 1):
                raise AuralensError(f"{name} must be a whole number ≥ 1, got {value!r}")
        augment = as_bool(self.augment)
        if augment is None:  # augment="false" would train with augmentation
            raise AuralensError(f"augment must be true or false, got {self.augment!r}")
        self.augment = augment
        if self.val_fold is not None and not is_whole(self.val_fold):  # True would pick fold 1
            raise AuralensError(f"val_fold must be a fold number, got {self.val_fold!r}")
        if not isinstance(self.save_dtype, str) or self.save_dtype.lower() not in DTYPES:
            raise AuralensError(f"save_dtype must be one of {sorted(set(DTYPES.values()))}, "
                                f"got {self.save_dtype!r}")


def _fbank_extractor(cfg: ClassifierConfig) -> Any:
    from transformers import ASTFeatureExtractor

    return ASTFeatureExtractor(num_mel_bins=cfg.num_mel_bins, max_length=cfg.max_length,
                               mean=FBANK_MEAN, std=FBANK_STD)


def clip_room(seed: int, clip_id: str, copy: int) -> dict[str, Any]:
    """The seeded random shoebox room (one source) of reverberant copy ``copy`` of a clip."""
    from auralens.data.mix import _example_rng, _random_room

    return _random_room(_example_rng(seed, str(clip_id), copy), 1)


def reverberate(wave: np.ndarray, room: dict[str, Any], sample_rate: int = 16000) -> np.ndarray:
    """``[T]`` → ``[T]``: ``wave`` convolved with the impulse response of ``room``'s source,
    cut to the input's length (as ``auralens data mix`` places a source in a room)."""
    from scipy.signal import fftconvolve

    from auralens.data.mix import room_impulse_responses

    rir = room_impulse_responses(room, sample_rate)[0]
    return fftconvolve(wave.astype(np.float64), rir)[: wave.shape[0]].astype(np.float32)


def _features(clips: list[Any], cfg: ClassifierConfig, errors: ErrorLog, copies: int = 0,
              ) -> tuple[list[Any], np.ndarray, np.ndarray]:
    """Normalised fbanks ``[N, max_length, mels]`` (float16) and valid frame counts ``[N]``.

    With ``copies`` = k, every clip is followed by its k reverberant copies (:func:`clip_room`),
    and the returned clips repeat it k + 1 times; a clip is kept only with all its copies.
    """
    from auralens.audio import load
    from auralens.cache import ArrayCache, hash_file, make_key
    from auralens.progress import progress

    fe = _fbank_extractor(cfg)
    cache = ArrayCache(namespace="fbank")
    kept, feats, valid = [], [], []
    for clip in progress(clips, desc="fbank features", total=len(clips)):
        with errors.guard(clip.id, clip.path):
            digest, wave, hits = hash_file(clip.path), None, []
            for copy in range(copies + 1):
                room = clip_room(cfg.seed, clip.id, copy) if copy else None
                key = make_key(digest, kind="ast-fbank", mels=cfg.num_mel_bins,
                               max_length=cfg.max_length, mean=FBANK_MEAN, std=FBANK_STD,
                               **({"room": room} if room else {}))
                hit = cache.get(key)
                if hit is None:
                    if wave is None:
                        wave = load(clip.path, 16000)
                    if wave.shape[0] < 400:  # the filterbank needs one whole 25 ms window
                        raise AuralensError(f"too short: {wave.shape[0]} samples at 16 kHz, "
                                            "needs at least 400 (25 ms)")
                    x = fe(reverberate(wave, room) if room else wave, sampling_rate=16000,
                           return_tensors="np")["input_values"][0]
                    n = 1 + max(0, wave.shape[0] - 400) // 160
                    hit = {"fbank": x.astype(np.float16),
                           "valid": np.array([min(n, cfg.max_length)], np.int64)}
                    cache.put(key, hit)
                hits.append(hit)
            for hit in hits:
                feats.append(hit["fbank"])
                valid.append(int(hit["valid"][0]))
                kept.append(clip)
    if not kept:
        return kept, np.zeros((0, cfg.max_length, cfg.num_mel_bins), np.float16), np.zeros(0, int)
    return kept, np.stack(feats), np.asarray(valid)


def _augment(x: Any, valid: Any, cfg: ClassifierConfig, gen: Any) -> Any:
    """Gain, circular shift of the real frames, SpecAugment masks; ``x`` is ``[B, T, F]``."""
    import torch

    x = x.clone()
    bsz, total, mels = x.shape
    pad_value = (0.0 - FBANK_MEAN) / (2 * FBANK_STD)  # what the extractor's zero padding becomes
    for i in range(bsz):
        n = int(valid[i])
        # Gain g scales power by g²: log-fbank moves by 2 ln g, then the /(2 std) normalisation.
        gain = (torch.rand(1, generator=gen).item() * 2 - 1) * cfg.gain_db
        x[i, :n] += (2 * math.log(10 ** (gain / 20))) / (2 * FBANK_STD)
        if n > 1:
            shift = int(torch.randint(0, n, (1,), generator=gen))
            x[i, :n] = torch.roll(x[i, :n], shift, dims=0)
        for _ in range(2):
            w = int(torch.randint(0, cfg.freq_mask + 1, (1,), generator=gen))
            f0 = int(torch.randint(0, max(1, mels - w), (1,), generator=gen))
            x[i, :, f0 : f0 + w] = 0.0
            w = int(torch.randint(0, cfg.time_mask + 1, (1,), generator=gen))
            t0 = int(torch.randint(0, max(1, n - w), (1,), generator=gen))
            x[i, t0 : t0 + w, :] = 0.0
        x[i, n:] = pad_value
    return x


def _lr_at(step: int, total: int, warmup: int, base: float) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


def _evaluate(model: Any, x: np.ndarray, y: np.ndarray, batch_size: int,
              acc: Any = None) -> tuple[float, float]:
    """Accuracy and mean cross-entropy on ``x [N, T, F]``; with several processes each scores
    every ``num_processes``-th clip and the sums are added (``model``: the unwrapped module)."""
    import torch

    rank, world = (acc.process_index, acc.num_processes) if acc is not None else (0, 1)
    device = acc.device if acc is not None else torch.device("cpu")
    x, y = x[rank::world], y[rank::world]
    model.eval()
    losses, correct = 0.0, 0
    with torch.inference_mode():
        for i in range(0, len(x), batch_size):
            xb = torch.from_numpy(x[i : i + batch_size].astype(np.float32)).to(device)
            yb = torch.from_numpy(y[i : i + batch_size]).to(device)
            logits = model(input_values=xb).logits
            losses += float(torch.nn.functional.cross_entropy(logits, yb, reduction="sum"))
            correct += int((logits.argmax(-1) == yb).sum())
    model.train()
    n = len(x)
    if acc is not None and world > 1:
        t = acc.reduce(torch.tensor([losses, correct, n], dtype=torch.float64, device=device), "sum")
        losses, correct, n = (float(v) for v in t.tolist())
    n = max(1, n)
    return correct / n, losses / n


def train_classifier(data: Path, out: Path, cfg: ClassifierConfig | None = None) -> dict[str, Any]:
    """Train (or resume) the classifier and save the best checkpoint in HF format.

    Args:
        data: ESC-50-layout folder (``meta/esc50.csv`` + ``audio/``).
        out: output directory (model files, run.json, history.json, train_state.pt).
        cfg: settings; defaults to :class:`ClassifierConfig`.

    Returns:
        A summary: ``best_val_accuracy``, ``best_epoch``, ``epochs_run``, ``train_seconds`` …

    Raises:
        AuralensError: unusable dataset (fewer than two folds, no classes …).
    """
    import torch
    from transformers import ASTConfig, ASTForAudioClassification

    from auralens.data.esc50 import load_esc50
    from auralens.distributed import make_accelerator
    from auralens.progress import progress

    cfg = cfg or ClassifierConfig()
    out = Path(out)
    acc = make_accelerator(AuralensError)
    rank, world, main = acc.process_index, acc.num_processes, acc.is_main_process
    timer, started = Timer(), time.perf_counter()
    # The data and a saved state are checked before OUT is created or written to.
    clips = load_esc50(Path(data))
    folds = sorted({c.fold for c in clips if c.fold is not None})
    if len(folds) < 2:
        raise AuralensError(f"{data}: need at least two folds (train + validation), found {folds}")
    val_fold = cfg.val_fold if cfg.val_fold is not None else folds[-1]
    if val_fold not in folds:
        raise AuralensError(f"{data}: validation fold {val_fold} not present (folds {folds})")
    classes = _classes(clips, Path(data) / "meta" / "esc50.csv")
    label2id = {name: i for i, name in enumerate(classes)}
    data_id = _data_fingerprint(clips)
    check_out_dir(out, AuralensError, "; pick another --out")
    _check_out_owner(out)
    state_path = out / "train_state.pt"
    state: dict[str, Any] | None = None
    if state_path.exists():
        # Checked before anything is written: a refused rerun leaves the run as it was.
        state = _load_state(state_path)
        _check_resume(state, state_path, cfg, classes, data_id, val_fold, folds[-1])
    else:
        _check_no_lost_state(out)
    out.mkdir(parents=True, exist_ok=True)
    if main:
        remove_stale_temps(out)
        remove_stale_temp_dirs(out, _SAVE_PREFIX)  # what a kill during _save_model leaves
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    # Other processes keep their (identical) failure records in memory only.
    errors = ErrorLog(out / "errors.jsonl" if main else out / f".errors.rank{rank}.jsonl", reset=True)
    # The main process fills the fbank cache first; the others then only read it.
    with timer("features"), acc.main_process_first():
        train_clips, x_tr, v_tr = _features([c for c in clips if c.fold != val_fold], cfg, errors,
                                            cfg.reverb)
        val_clips, x_va, v_va = _features([c for c in clips if c.fold == val_fold], cfg, errors)
    if not main:
        errors.path.unlink(missing_ok=True)
    if not len(train_clips) or not len(val_clips):
        raise AuralensError(f"{data}: no usable training or validation audio")
    y_tr = np.array([label2id[c.labels[0]] for c in train_clips], np.int64)
    y_va = np.array([label2id[c.labels[0]] for c in val_clips], np.int64)
    log.info("%d train examples (%d reverberant copies of each clip) / %d val clips, %d classes",
             len(y_tr), cfg.reverb, len(y_va), len(classes))

    torch.manual_seed(cfg.seed)
    model_cfg = ASTConfig(
        hidden_size=cfg.hidden_size, num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads, intermediate_size=cfg.intermediate_size,
        num_mel_bins=cfg.num_mel_bins, max_length=cfg.max_length, patch_size=16,
        frequency_stride=cfg.patch_stride, time_stride=cfg.patch_stride,
        hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.dropout,
        id2label=dict(enumerate(classes)), label2id=label2id,
    )
    model = ASTForAudioClassification(model_cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(y_tr) / cfg.batch_size)
    # The schedule spans every epoch; max_steps only stops early, so a run stopped by it and
    # resumed with the same epochs follows the rates of one run straight through (a rerun
    # with more epochs stretches the schedule from where it is).
    schedule_steps = steps_per_epoch * cfg.epochs
    total_steps = schedule_steps if cfg.max_steps is None else min(schedule_steps, cfg.max_steps)
    warmup = max(1, int(cfg.warmup_epochs * steps_per_epoch))
    gen = torch.Generator().manual_seed(cfg.seed)
    history: list[dict[str, Any]] = []
    start_epoch, step, best = 0, 0, {"acc": -1.0, "loss": float("inf"), "epoch": -1}
    train_seconds = 0.0
    partial: dict[str, Any] | None = None  # where a max_steps stop left an epoch
    if state is not None:
        partial = state.get("partial")
        if partial is not None and len(partial["order"]) != len(y_tr):
            raise AuralensError(f"{state_path}: stopped partway through an epoch of "
                                f"{len(partial['order'])} training clips, {len(y_tr)} are usable "
                                "now; use a new --out directory")
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        gen.set_state(state["generator"])
        start_epoch, step = int(state["epoch"]) + 1, int(state["step"])
        best = {"acc": float(state["best_acc"]), "loss": float(state["best_loss"]),
                "epoch": int(state["best_epoch"])}
        train_seconds = float(state["train_seconds"])
        if "torch_rng" in state:  # dropout draws continue where the stopped run left them
            torch.set_rng_state(state["torch_rng"])
        history = read_json(out / "history.json") if (out / "history.json").exists() else []
        # An epoch whose history line was written but whose state was not is redone once.
        history = [h for h in history if int(h.get("epoch", 0)) <= start_epoch]
        log.info("resuming %s at epoch %d (best val acc %.3f)", out, start_epoch, best["acc"])
    acc.wait_for_everyone()  # everyone has read the state before the main process rewrites it

    model = model.to(acc.device)
    model, opt = acc.prepare(model, opt)
    core = acc.unwrap_model(model)
    model.train()
    soft_ce_sum = torch.nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing, reduction="sum")
    info = {"data": str(Path(data).resolve()), "train_clips": len(y_tr), "val_clips": len(y_va),
            "val_fold": val_fold, "classes": classes, "num_processes": world,
            "parameters": int(sum(p.numel() for p in core.parameters()))}
    # Epochs whose state is saved: what a stopped run reports and where a rerun continues.
    done = {"epochs": start_epoch, "step": step, "best": dict(best), "train_seconds": train_seconds}
    session_train = 0.0
    if main:
        _write_run(out, cfg, timer, started, 0.0, {**info, **_progress(done, start_epoch),
                                                   "status": "running"})
    fingerprint = _config_fingerprint(cfg, classes, data_id, val_fold)
    status, message = "ok", ""
    try:
        for epoch in range(start_epoch, cfg.epochs):
            if step >= total_steps:
                break
            t0 = time.perf_counter()
            if partial is not None:  # finish the epoch where the saved state stopped
                order, first = partial["order"].numpy(), int(partial["batch"])
                run_loss, seen = (float(partial["run_loss"]), float(partial["seen"])) if main else (0.0, 0)
                partial = None
            else:
                order, first = torch.randperm(len(y_tr), generator=gen).numpy(), 0
                run_loss, seen = 0.0, 0
            next_batch = first
            for b in progress(range(first, steps_per_epoch), desc=f"epoch {epoch + 1}/{cfg.epochs}"):
                if step >= total_steps:
                    break
                idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
                # The whole global batch is augmented and mixed on every process (same generator,
                # same draws); each process then forwards only its share.
                xb = torch.from_numpy(x_tr[idx].astype(np.float32))
                yb = torch.from_numpy(y_tr[idx])
                if cfg.augment:
                    xb = _augment(xb, v_tr[idx], cfg, gen)
                for group in opt.param_groups:
                    group["lr"] = _lr_at(step, schedule_steps, warmup, cfg.lr)
                ya, yb2, lam = yb, yb, 1.0
                if cfg.augment and cfg.mixup > 0 and len(idx) > 1:
                    lam = float(np.random.default_rng([cfg.seed, step]).beta(cfg.mixup, cfg.mixup))
                    perm = torch.randperm(len(idx), generator=gen)
                    xb, yb2 = lam * xb + (1 - lam) * xb[perm], yb[perm]
                share, weight = slice(rank, None, world), 1.0
                if len(range(len(idx))[share]) == 0:  # no clip for this process: weight-0 stand-in
                    share, weight = slice(0, 1), 0.0
                xs, ya_s, yb_s = (t[share].to(acc.device) for t in (xb, ya, yb2))
                logits = model(input_values=xs).logits
                loss_sum = lam * soft_ce_sum(logits, ya_s) + (1 - lam) * soft_ce_sum(logits, yb_s)
                loss_sum = loss_sum * weight
                opt.zero_grad(set_to_none=True)
                # DDP averages over processes: × world / global batch gives the global-batch mean.
                acc.backward(loss_sum * (world / len(idx)))
                acc.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                step += 1
                next_batch = b + 1
                run_loss += float(loss_sum.detach())
                seen += len(xs) if weight else 0
            if world > 1:
                t = acc.reduce(torch.tensor([run_loss, seen], dtype=torch.float64, device=acc.device), "sum")
                run_loss, seen = (float(v) for v in t.tolist())
            train_seconds += time.perf_counter() - t0
            session_train += time.perf_counter() - t0
            if next_batch < steps_per_epoch:
                # max_steps stopped the epoch partway: it is not finished, so it is neither
                # validated nor counted; the state keeps the position and a rerun continues
                # from the next batch (resumed = uninterrupted).
                if main:
                    _save_state(state_path, core, opt, gen, epoch - 1, step, best, train_seconds,
                                fingerprint, partial={"batch": next_batch,
                                                      "order": torch.from_numpy(order),
                                                      "run_loss": run_loss, "seen": seen})
                acc.wait_for_everyone()
                done.update(step=step, train_seconds=train_seconds)
                message = (f"stopped at max_steps {cfg.max_steps} after batch {next_batch} of "
                           f"{steps_per_epoch} of epoch {epoch + 1}; rerun with the same --out "
                           "to continue")
                break
            val_acc, val_loss = _evaluate(core, x_va, y_va, cfg.batch_size * 2, acc)
            record = {"epoch": epoch + 1, "step": step, "train_loss": run_loss / max(1, seen),
                      "val_accuracy": val_acc, "val_loss": val_loss,
                      "lr": opt.param_groups[0]["lr"], "seconds": round(train_seconds, 1)}
            history.append(record)
            log.info("epoch %d: train loss %.4f, val acc %.3f, val loss %.4f", epoch + 1,
                     record["train_loss"], val_acc, val_loss)
            improved = val_acc > best["acc"] or (val_acc == best["acc"] and val_loss < best["loss"])
            if improved:
                best = {"acc": val_acc, "loss": val_loss, "epoch": epoch + 1}
            if main:
                if improved:
                    _save_model(core, cfg, out)
                write_json(out / "history.json", history)
                _save_state(state_path, core, opt, gen, epoch, step, best, train_seconds, fingerprint)
            acc.wait_for_everyone()
            done.update(epochs=epoch + 1, step=step, best=dict(best), train_seconds=train_seconds)
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except BaseException as exc:
        status, message = "failed", f"{type(exc).__name__}: {exc}"
        raise
    finally:
        if status != "ok" and main:  # a finished run's record is written below, with the summary
            _saved_progress(state_path, done)
            if status == "interrupted":
                message = (f"interrupted after epoch {done['epochs']} of {cfg.epochs}; rerun with "
                           "the same --out to continue")
            _write_run(out, cfg, timer, started, session_train, {
                **info, **_progress(done, start_epoch), "status": status, "message": message,
                "errors": len(errors)})
    if step >= total_steps and done["epochs"] < cfg.epochs and not message:
        message = f"stopped at max_steps {cfg.max_steps} after {done['epochs']} epochs"
    history = history[: done["epochs"]]

    summary = {
        "best_val_accuracy": best["acc"], "best_val_loss": best["loss"],
        "best_epoch": best["epoch"], "epochs_run": done["epochs"], "steps": step,
        "train_seconds": round(train_seconds, 3), "classes": classes,
        "train_clips": len(y_tr), "val_clips": len(y_va), "val_fold": val_fold,
        "train_folds": [f for f in folds if f != val_fold],
        "parameters": info["parameters"],
        "history": history, "errors": len(errors), "num_processes": world,
    }
    if main:
        _write_run(out, cfg, timer, started, session_train, {
            **info, **_progress(done, start_epoch), "status": "ok", "message": message,
            **{k: v for k, v in summary.items() if k != "history"}})
        errors.summary(len(clips))
    acc.wait_for_everyone()
    return summary


def _saved_progress(state_path: Path, done: dict[str, Any]) -> None:
    """Bring ``done`` up to the state file on disk: a stop that lands after an epoch's state
    was saved but before the loop noted it must not under-report that epoch."""
    import torch

    try:
        state = torch.load(state_path, weights_only=True, mmap=True)  # mmap: no tensor is read
        if int(state["epoch"]) + 1 > done["epochs"]:
            done.update(epochs=int(state["epoch"]) + 1, step=int(state["step"]),
                        train_seconds=float(state["train_seconds"]),
                        best={"acc": float(state["best_acc"]), "loss": float(state["best_loss"]),
                              "epoch": int(state["best_epoch"])})
    except Exception as exc:  # noqa: BLE001 - the record of a stopped run must still be written
        log.debug("could not read %s: %s", state_path, exc)


def _progress(done: dict[str, Any], start_epoch: int) -> dict[str, Any]:
    """The run.json fields that say how far training got."""
    best = done["best"]
    trained = best["epoch"] > 0
    return {"epochs_run": done["epochs"], "resumed_from_epoch": start_epoch,
            "epochs_this_run": done["epochs"] - start_epoch, "steps": done["step"],
            "best_epoch": best["epoch"] if trained else None,
            "best_val_accuracy": best["acc"] if trained else None,
            "train_seconds": round(done["train_seconds"], 3)}


def _write_run(out: Path, cfg: ClassifierConfig, timer: Timer, started: float,
               session_train: float, result: dict[str, Any]) -> None:
    """run.json: the settings, this invocation's timings and ``result`` (status, epochs_run …)."""
    result = dict(result)
    data = result.pop("data")
    timings = {**timer.timings, "train": session_train, "total": time.perf_counter() - started}
    write_run_json(out, command=_COMMAND, config={"data": data, **asdict(cfg)},
                   models={"classifier": "ASTForAudioClassification"}, timings=timings,
                   seed=cfg.seed, extra={"result": result})


#: What a run writes at the top of OUT (hidden files are its temporary files and the other
#: processes' error logs).
_RUN_FILES = frozenset({"run.json", "history.json", "train_state.pt", "errors.jsonl", "config.json",
                        "model.safetensors", "preprocessor_config.json"})
_COMMAND = "train-classifier"
#: The hidden folder a model is saved into before its files are moved into ``out``.
_SAVE_PREFIX = ".save-"


def _check_out_owner(out: Path) -> None:
    """Refuse an existing ``out`` that holds another command's output (its ``run.json`` names
    another command) or files a training run does not write; a folder of an earlier
    train-classifier run is resumed.

    Raises:
        AuralensError: naming the folder and the command or the first foreign file.
    """
    from auralens.data.folder import check_out_owner

    check_out_owner(out, _COMMAND, lambda rel: len(rel.parts) == 1 and rel.name in _RUN_FILES,
                    AuralensError, scan_own=True)


def _check_no_lost_state(out: Path) -> None:
    """Refuse an ``out`` holding a trained model (or its history) but no ``train_state.pt``:
    starting over there would silently replace the model. The one exception is a run whose
    ``run.json`` says no epoch's state was saved yet (a stop during the first epoch's save):
    that epoch is simply redone.

    Raises:
        AuralensError: naming the folder and the way on.
    """
    found = [name for name in ("model.safetensors", "history.json") if (out / name).is_file()]
    if not found:
        return
    try:
        run = read_json(out / "run.json") if (out / "run.json").is_file() else None
    except (OSError, ValueError):
        run = None
    result = run.get("result") if isinstance(run, dict) else None
    if isinstance(result, dict) and result.get("epochs_run") == 0 and result.get("status") != "ok":
        log.warning("%s: the first epoch's training state is missing (stopped while saving); "
                    "starting over", out)
        return
    raise AuralensError(f"{out}: holds a trained model ({', '.join(found)}) but no train_state.pt "
                        f"to resume from; use another --out, or remove {out} to train again")


#: Settings a rerun may change (everything else must match the saved state).
RESUME_MAY_CHANGE = ("epochs", "max_steps", "threads")


def _check_resume(state: dict[str, Any], path: Path, cfg: ClassifierConfig,
                  classes: list[str], data_id: str, val_fold: int, default_fold: int) -> None:
    """Refuse to continue ``state`` with other settings or data, or with fewer epochs.

    ``val_fold`` is compared as resolved (``--val-fold 2`` equals the default when 2 is the
    last fold); ``default_fold`` resolves the None that older states recorded.

    Raises:
        AuralensError: naming each differing key with its saved and new value, or the
            epochs already trained.
    """
    import json

    try:
        saved = json.loads(state.get("config") or "{}")
    except (TypeError, ValueError):
        saved = {}
    want = json.loads(_config_fingerprint(cfg, classes, data_id, val_fold))
    if not isinstance(saved, dict) or not isinstance(saved.get("cfg"), dict):
        raise AuralensError(f"{path}: its settings cannot be read; use a new --out directory")
    old_cfg = dict(saved["cfg"])
    if old_cfg.get("val_fold") is None:
        old_cfg["val_fold"] = default_fold
    old_cfg.setdefault("reverb", 0)  # states from before reverberant copies existed
    diffs = [f"{key} {old_cfg.get(key)!r} → {want['cfg'].get(key)!r}"
             for key in sorted(set(old_cfg) | set(want["cfg"]))
             if old_cfg.get(key) != want["cfg"].get(key)]
    old_classes = saved.get("classes") or []
    if old_classes != classes:
        gone, new = sorted(set(old_classes) - set(classes)), sorted(set(classes) - set(old_classes))
        what = "; ".join(part for part in (f"missing now: {', '.join(gone)}" if gone else "",
                                          f"new: {', '.join(new)}" if new else "") if part)
        diffs.append(f"the data's classes ({what or 'same names, other order'})")
    # States written before the data was fingerprinted resume unchecked.
    if "data" in saved and saved["data"] != data_id:
        diffs.append("the data's clips (other files, folds or targets)")
    if diffs:
        raise AuralensError(f"{path}: made with different settings or data ({'; '.join(diffs)}); "
                            f"only {', '.join(RESUME_MAY_CHANGE)} may change on a rerun — use a "
                            "new --out directory")
    trained = int(state["epoch"]) + 1
    if cfg.epochs < trained:
        raise AuralensError(f"{path}: already trained for {trained} epochs, more than epochs "
                            f"{cfg.epochs}; pass --epochs {trained} or more to continue it, or "
                            "use a new --out directory")


def _config_fingerprint(cfg: ClassifierConfig, classes: list[str], data_id: str,
                        val_fold: int) -> str:
    """Settings and data that must match for a resume to be valid (epochs may grow)."""
    import json

    keep = {k: v for k, v in asdict(cfg).items() if k not in RESUME_MAY_CHANGE}
    keep["val_fold"] = val_fold  # resolved: the option's None and the fold it names are one
    return json.dumps({"cfg": keep, "classes": classes, "data": data_id}, sort_keys=True,
                      default=str)


def _classes(clips: list[Any], csv_path: Path) -> list[str]:
    """Class names in the order of the dataset's own targets (ESC-10 uses 0, 1, 10 …).

    Raises:
        AuralensError: a category under several targets or a target under several categories
            (class ids would be wrong or a class never trained).
    """
    by_target: dict[int, set[str]] = {}
    by_name: dict[str, set[int]] = {}
    for c in clips:
        target = c.target if c.target is not None else -1
        by_target.setdefault(target, set()).add(c.labels[0])
        by_name.setdefault(c.labels[0], set()).add(target)
    for name, targets in by_name.items():
        if len(targets) > 1:
            raise AuralensError(f"{csv_path}: category {name!r} has several targets "
                                f"({', '.join(map(str, sorted(targets)))}); each category needs "
                                "one target")
    for target, names in by_target.items():
        if len(names) > 1:
            raise AuralensError(f"{csv_path}: target {target} has several categories "
                                f"({', '.join(map(repr, sorted(names)))}); each target needs one "
                                "category")
    return [next(iter(by_target[t])) for t in sorted(by_target)]


def _data_fingerprint(clips: list[Any]) -> str:
    """Hash of the clip list (file, fold, target, category), for resume checks."""
    import hashlib
    import json

    rows = sorted((c.path.name, c.fold, c.target, c.labels[0]) for c in clips)
    return hashlib.sha256(json.dumps(rows).encode()).hexdigest()[:16]


#: Keys every train_state.pt holds.
_STATE_KEYS = {"model", "optimizer", "generator", "epoch", "step", "best_acc", "best_loss",
               "best_epoch", "train_seconds"}


def _load_state(path: Path) -> dict[str, Any]:
    """``train_state.pt``, or a one-line error when it cannot be resumed from.

    Raises:
        AuralensError: a truncated, corrupt or foreign file.
    """
    import torch

    try:
        state = torch.load(path, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - truncated, corrupt or not a torch file at all
        why = short_error(exc).split(". ")[0]  # torch appends several sentences of advice
        raise AuralensError(f"{path}: unreadable ({why}); use a new --out or delete it") from None
    if not isinstance(state, dict) or not _STATE_KEYS <= set(state):
        raise AuralensError(f"{path}: not a train-classifier state; use a new --out or delete it")
    return state


def _save_state(path: Path, model: Any, opt: Any, gen: Any, epoch: int, step: int,
                best: dict[str, Any], seconds: float, fingerprint: str,
                partial: dict[str, Any] | None = None) -> None:
    """State after ``epoch`` (0-based); ``partial``: how far the next epoch got (its batch
    order, next batch, loss sums) when max_steps stopped it partway."""
    import torch

    state = {"model": model.state_dict(), "optimizer": opt.state_dict(),
             "generator": gen.get_state(), "torch_rng": torch.get_rng_state(),
             "epoch": epoch, "step": step,
             "best_acc": best["acc"], "best_loss": best["loss"], "best_epoch": best["epoch"],
             "train_seconds": seconds, "config": fingerprint}
    if partial is not None:
        state["partial"] = partial
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def _save_model(model: Any, cfg: ClassifierConfig, out: Path) -> None:
    """save_pretrained (optionally float16 weights) + the feature extractor config."""
    import copy
    import os
    import shutil

    import torch

    from auralens.encoders.hf import torch_dtype

    dtype = torch_dtype(cfg.save_dtype)
    to_save = copy.deepcopy(model).to(dtype) if dtype != torch.float32 else model
    # Write into a sibling temp dir, then rename file by file: a kill never leaves half a model.
    tmp = make_temp_dir(out, _SAVE_PREFIX)
    try:
        to_save.save_pretrained(tmp)
        _fbank_extractor(cfg).save_pretrained(tmp)
        for f in tmp.iterdir():
            # through atomic_path for the mode a plain write gives (the weights come as 0600)
            with atomic_path(out / f.name) as dst:
                os.replace(f, dst)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
