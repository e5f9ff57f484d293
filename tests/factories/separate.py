"""Tiny random-weight TDCN++ checkpoints for separation tests."""

from __future__ import annotations

from pathlib import Path

import torch

from auralens.scene.separate.tdcnpp import TDCNpp, TDCNppConfig, save_checkpoint

#: A network small enough to train for a few steps inside a unit test.
MICRO = dict(bottleneck=16, conv_channels=32, blocks_per_repeat=2, repeats=2)


def micro_config(**overrides: object) -> TDCNppConfig:
    return TDCNppConfig(**{**MICRO, **overrides})  # type: ignore[arg-type]


def make_tdcnpp(out_dir: Path) -> Path:
    """Save a micro TDCN++ as ``out_dir/model.safetensors``."""
    torch.manual_seed(0)
    return save_checkpoint(Path(out_dir) / "model.safetensors", TDCNpp(micro_config()))
