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


def fuss_manifest_folder(root: Path, counts: dict[str, int], sr: int = 16000) -> Path:
    """A FUSS-layout folder with ``manifest.jsonl``: ``counts[split]`` mixtures per split, each
    the float-WAV sum of two seeded 0.5 s noise sources ``<split>/<id>_sources/s{0,1}.wav``."""
    import numpy as np
    import soundfile as sf

    from auralens.types import SceneRecord, Source, save_records

    rng = np.random.default_rng(0)
    records = []
    for split, n in counts.items():
        for i in range(n):
            folder = root / split / f"{split}{i}_sources"
            folder.mkdir(parents=True)
            refs = (0.1 * rng.standard_normal((2, sr // 2))).astype(np.float32)
            for k, w in enumerate(refs):
                sf.write(folder / f"s{k}.wav", w, sr, subtype="FLOAT")
            sf.write(root / split / f"{split}{i}.wav", refs.sum(0), sr, subtype="FLOAT")
            records.append(SceneRecord(
                id=f"{split}{i}", mixture=Path(split) / f"{split}{i}.wav", split=split, duration=0.5,
                sources=[Source(path=Path(split) / f"{split}{i}_sources" / f"s{k}.wav", label=f"c{k}")
                         for k in range(2)]))
    save_records(root / "manifest.jsonl", records)
    return root
