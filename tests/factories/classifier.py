"""A tiny ESC-50-layout dataset and classifier settings for train-classifier tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from auralens.audio import write
from auralens.encoders.train_classifier import ClassifierConfig


def tone_noise_dataset(root: Path, per_class: int = 4) -> Path:
    """Two folds × two classes: low tones ("hum", target 0) vs. bright noise bursts ("hiss",
    target 3), 0.6 s at 16 kHz."""
    rng = np.random.default_rng(0)
    sr, n = 16000, 9600
    t = np.arange(n) / sr
    rows = ["filename,fold,target,category,esc10,src_file,take"]
    for fold in (1, 2):
        for i in range(per_class):
            tone = 0.4 * np.sin(2 * np.pi * rng.uniform(150, 300) * t)
            noise = 0.3 * np.diff(rng.standard_normal(n + 1))  # high-passed noise
            for target, name, wave in ((0, "hum", tone), (3, "hiss", noise)):
                fname = f"{fold}-{i}{target}-A-{target}.wav"
                write(root / "audio" / fname, wave.astype(np.float32), sr)
                rows.append(f"{fname},{fold},{target},{name},True,{i},A")
    (root / "meta").mkdir(parents=True)
    (root / "meta" / "esc50.csv").write_text("\n".join(rows) + "\n")
    return root


def tiny_classifier_config(**kw: object) -> ClassifierConfig:
    """A one-layer, 32-wide AST classifier that trains in seconds (6 epochs unless given)."""
    base: dict[str, object] = dict(
        hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, num_mel_bins=32,
        max_length=64, patch_stride=16, epochs=6, batch_size=4, lr=3e-3, warmup_epochs=0.5,
        augment=False, save_dtype="float16", threads=1)
    base.update(kw)
    return ClassifierConfig(**base)  # type: ignore[arg-type]
