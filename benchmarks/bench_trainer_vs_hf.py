"""Gate training: our loop on cached tensors vs the Hugging Face Trainer, same data and model.

Both sides train the same gate (``auralens.sonify.gates.build``, identical initial weights from
the same seed) on the same prepared tensors with the study's recipe: AdamW, lr 1e-3,
weight decay 0.01, batch 64 × gradient accumulation 2, evaluation batch 32, constant learning
rate, no gradient clipping, validation every epoch and the best checkpoint kept
(``load_best_model_at_end`` on the Trainer side; ``best.safetensors`` + ``last.safetensors``
with optimizer state on ours). Measured per gate:

* seconds per epoch (wall) and the ratio HF / ours. The two sides do not time the same span:
  ours is the ``time_s`` of ``history.jsonl``, training + validation only (the loop stops its
  clock before it writes the history line and saves ``best``/``last``); the Trainer's is the
  time between epoch starts, training + validation + its checkpoint save and rotation (the last
  epoch also loading the best model). So this ratio favours our loop by the cost of its
  checkpoint saves;
* the whole ``train()`` / ``trainer.train()`` wall time of each side, which includes every
  checkpoint on both (and our TensorBoard and ``run.json`` writing), and its ratio HF / ours;
* the best validation MSE of each run, both scored afterwards by the same evaluation function,
  and their ratio (near 1 means the faster loop does not cost accuracy).

Known recipe differences the Trainer brings and we keep (they are its defaults): its AdamW
skips weight decay on biases and norm weights, and its sampler shuffles with its own RNG, so
losses match closely but not bit for bit.

Data: ``--prep DIR`` uses a prepared dataset (``auralens sonify prepare``); without it, synthetic
tensors with the study's shapes are made (AST patch tokens time-major ``[768, 1212]`` →
DAC-VAE latent ``[64, 431]``): latents are random and embeddings a fixed random linear image of
them plus noise, time-stretched to 1212 frames, so the gate has something to learn.

    .venv/bin/python benchmarks/bench_trainer_vs_hf.py [--gates lin,conv] [--clips 160] [--epochs 3]

Prints a table and one JSON line per gate (``{"bench": "trainer_vs_hf", …}``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("AURALENS_NO_PROGRESS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402


def synthetic_prepared(n: int, in_dim: int, frames_in: int, out_dim: int, frames_out: int,
                       seed: int, root: Path) -> Any:
    """A :class:`PreparedData` in memory: 80 % train, 20 % validation."""
    from auralens.sonify.prepare import PreparedData

    g = torch.Generator().manual_seed(seed)
    lat = torch.randn(n, out_dim, frames_out, generator=g)
    mix = torch.randn(in_dim, out_dim, generator=g) / out_dim**0.5
    emb = torch.einsum("io,not->nit", mix, lat)
    emb = F.interpolate(emb, size=frames_in, mode="linear", align_corners=False)
    emb += 0.1 * torch.randn(emb.shape, generator=g)
    n_train = int(round(0.8 * n))
    split = {"train": slice(0, n_train), "val": slice(n_train, n)}
    info = {"extractor": {"name": "synthetic", "spec": "synthetic", "layer": "patch"},
            "codec": {"name": "synthetic", "spec": "synthetic"}, "duration": 5.0,
            "cache_root": str(root)}
    return PreparedData(
        root=root, info=info,
        ids={k: [f"clip{i}" for i in range(n)[s]] for k, s in split.items()},
        emb={k: emb[s].numpy().astype(np.float32) for k, s in split.items()},
        lat={k: lat[s].numpy().astype(np.float32) for k, s in split.items()},
        records={k: [] for k in split})


class _Pairs(torch.utils.data.Dataset):
    def __init__(self, emb: np.ndarray, lat: np.ndarray) -> None:
        self.emb, self.lat = torch.from_numpy(emb), torch.from_numpy(lat)

    def __len__(self) -> int:
        return self.emb.shape[0]

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.emb[i], "labels": self.lat[i]}


class _HFGate(nn.Module):
    """The gate with the ``forward(**batch) -> {"loss", "logits"}`` the Trainer expects."""

    def __init__(self, gate: nn.Module) -> None:
        super().__init__()
        self.gate = gate

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, Any]:
        pred = self.gate(x)
        return {"loss": None if labels is None else F.mse_loss(pred, labels), "logits": pred}


def run_ours(data: Any, gate: str, epochs: int, lr: float, seed: int, device: str, out: Path) -> dict[str, Any]:
    from auralens.io import read_jsonl
    from auralens.sonify import checkpoint as ckpt
    from auralens.sonify import gates
    from auralens.sonify.train import TrainConfig, _evaluate, train

    cfg = TrainConfig(gate=gate, lr=lr, epochs=epochs, seed=seed, device=device)
    t0 = time.perf_counter()
    res = train(data, out, cfg)
    wall = time.perf_counter() - t0
    hist = read_jsonl(out / "history.jsonl")
    best = ckpt.load(out / "best.safetensors")
    model = gates.build(gate, **{k: v for k, v in best.header["model_args"].items() if k != "name"})
    model.load_state_dict(best.model)
    dev = torch.device(device)
    ve, vl = (torch.from_numpy(a).to(dev) for a in (data.emb["val"], data.lat["val"]))
    return {"wall_s": wall, "s_per_epoch": float(np.mean([h["time_s"] for h in hist])),
            "best_val": _evaluate(model.to(dev), ve, vl, 32), "reported_best_val": res.best_val_loss,
            "final_train_loss": res.final_train_loss}


def run_hf(data: Any, gate: str, epochs: int, lr: float, seed: int, device: str, out: Path) -> dict[str, Any]:
    from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments
    from transformers.utils import logging as hf_logging

    from auralens.sonify import gates
    from auralens.sonify.train import _evaluate

    hf_logging.set_verbosity_error()
    torch.manual_seed(seed)  # the same initial weights as our loop (it seeds, then builds)
    model = _HFGate(gates.build(gate, data.in_dim, data.out_dim, data.frames_in, data.frames_out))
    args = TrainingArguments(
        output_dir=str(out), num_train_epochs=epochs, learning_rate=lr, weight_decay=0.01,
        per_device_train_batch_size=64, gradient_accumulation_steps=2, per_device_eval_batch_size=32,
        lr_scheduler_type="constant", warmup_steps=0, max_grad_norm=0.0, optim="adamw_torch",
        eval_strategy="epoch", save_strategy="epoch", logging_strategy="epoch",
        load_best_model_at_end=True, metric_for_best_model="eval_loss", greater_is_better=False,
        save_total_limit=2, label_names=["labels"], seed=seed, report_to="none",
        dataloader_num_workers=0, disable_tqdm=True, use_cpu=device == "cpu")
    trainer = Trainer(model=model, args=args,
                      train_dataset=_Pairs(data.emb["train"], data.lat["train"]),
                      eval_dataset=_Pairs(data.emb["val"], data.lat["val"]))
    trainer.remove_callback(PrinterCallback)
    marks: list[float] = []

    class EpochClock(TrainerCallback):
        """Epoch boundaries; an epoch's time includes its validation and checkpoint save."""

        def on_epoch_begin(self, *a: Any, **k: Any) -> None:
            marks.append(time.perf_counter())

        def on_train_end(self, *a: Any, **k: Any) -> None:
            marks.append(time.perf_counter())

    trainer.add_callback(EpochClock())
    t0 = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - t0
    evals = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h]
    train_losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    dev = torch.device(device)
    ve, vl = (torch.from_numpy(a).to(dev) for a in (data.emb["val"], data.lat["val"]))
    best = _evaluate(trainer.model.gate.to(dev), ve, vl, 32)
    return {"wall_s": wall, "s_per_epoch": float(np.mean(np.diff(marks))), "best_val": best,
            "reported_best_val": min(evals) if evals else None,
            "final_train_loss": train_losses[-1] if train_losses else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prep", type=Path, default=None, help="Prepared dataset (else synthetic).")
    ap.add_argument("--gates", default="lin", help="Comma list of gates.")
    ap.add_argument("--clips", type=int, default=160, help="Synthetic clips (80 %% train).")
    ap.add_argument("--shape", default="768,1212,64,431", help="in_dim,frames_in,out_dim,frames_out.")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default).")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)

    with tempfile.TemporaryDirectory(prefix="bench-trainer-") as tmp:
        root = Path(tmp)
        if args.prep is not None:
            from auralens.sonify.prepare import load_prepared

            data, source = load_prepared(args.prep, ("train", "val")), str(args.prep)
        else:
            in_dim, frames_in, out_dim, frames_out = (int(v) for v in args.shape.split(","))
            data = synthetic_prepared(args.clips, in_dim, frames_in, out_dim, frames_out, args.seed, root)
            source = f"synthetic {args.clips} clips"
        n_train, n_val = len(data.ids["train"]), len(data.ids.get("val", []))
        print(f"data: {source}; train {n_train}, val {n_val}; emb [{data.in_dim}, {data.frames_in}] → "
              f"latent [{data.out_dim}, {data.frames_out}]; device {args.device}, "
              f"{torch.get_num_threads()} torch threads, {args.epochs} epochs")
        print("s/epoch: ours = training + validation (no checkpoint saves); HF = training + validation + "
              "checkpoint save. wall s: the whole training call (setup and every checkpoint) on both sides")
        print(f"{'gate':<6}{'loop':<6}{'s/epoch':>9}{'wall s':>9}{'best val':>11}{'train loss':>12}")
        rows = []
        for gate in [g.strip() for g in args.gates.split(",") if g.strip()]:
            ours = run_ours(data, gate, args.epochs, args.lr, args.seed, args.device, root / f"ours-{gate}")
            hf = run_hf(data, gate, args.epochs, args.lr, args.seed, args.device, root / f"hf-{gate}")
            for name, r in (("ours", ours), ("hf", hf)):
                print(f"{gate:<6}{name:<6}{r['s_per_epoch']:>9.3f}{r['wall_s']:>9.2f}{r['best_val']:>11.5f}"
                      f"{(r['final_train_loss'] or float('nan')):>12.5f}")
            speedup = hf["s_per_epoch"] / max(ours["s_per_epoch"], 1e-9)
            wall_ratio = hf["wall_s"] / max(ours["wall_s"], 1e-9)
            loss_ratio = ours["best_val"] / max(hf["best_val"], 1e-12)
            print(f"{gate}: HF/ours time per epoch = {speedup:.2f}× (ours without checkpoint saves, HF with); "
                  f"HF/ours wall = {wall_ratio:.2f}× (both with checkpoints); best val loss ours/HF = {loss_ratio:.3f}")
            rows.append({"bench": "trainer_vs_hf", "gate": gate, "data": source, "train": n_train,
                         "val": n_val, "epochs": args.epochs, "device": args.device,
                         "threads": torch.get_num_threads(),
                         "ours_s_per_epoch": round(ours["s_per_epoch"], 4),
                         "hf_s_per_epoch": round(hf["s_per_epoch"], 4),
                         "ours_wall_s": round(ours["wall_s"], 3), "hf_wall_s": round(hf["wall_s"], 3),
                         "hf_over_ours_time": round(speedup, 3),
                         "hf_over_ours_wall": round(wall_ratio, 3),
                         "s_per_epoch_spans": "ours train+val; HF train+val+checkpoint save",
                         "ours_best_val": round(ours["best_val"], 6), "hf_best_val": round(hf["best_val"], 6),
                         "ours_over_hf_loss": round(loss_ratio, 4),
                         "load_avg_1min": round(os.getloadavg()[0], 2), "host": platform.node()})
    for row in rows:
        print(json.dumps(row))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
