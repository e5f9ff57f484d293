"""Weight-free test doubles for the sonify pipeline: a band-energy extractor, a band codec
and a tiny procedural ESC-50-layout library.

They register as ``toyband`` (extractor) and ``toyband`` (codec) so tests exercise the same
registry/spec path as real backends.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import torch

from auralens.codecs.base import CODECS, Codec
from auralens.encoders.base import EXTRACTORS, Extractor


def _bands(n_bins: int, n_bands: int) -> np.ndarray:
    """``[n_bands, n_bins]`` averaging matrix over equal-width frequency bands."""
    edges = np.linspace(0, n_bins, n_bands + 1).astype(int)
    fb = np.zeros((n_bands, n_bins), np.float32)
    for i in range(n_bands):
        fb[i, edges[i]:max(edges[i + 1], edges[i] + 1)] = 1.0
    return fb / fb.sum(axis=1, keepdims=True)


class ToyExtractor(Extractor):
    """Log band energies at 50 frames/s; ``layer`` k scales the features by (k + 1)."""

    first_name = "features"  # layers: features, 1..num_layers() (checked by check_layer)

    def __init__(self, layer: Any = "features", dim: int = 16, sample_rate: int = 8000,
                 fail_on_silence: bool = False) -> None:
        self.layer = layer if layer is not None else "features"
        self.dim = int(dim)
        self.sample_rate = int(sample_rate)
        self.hop = self.sample_rate // 50
        self.frame_rate = self.sample_rate / self.hop
        self.name = f"toyband@dim={self.dim}"
        self.revision = "1"
        self.fail_on_silence = fail_on_silence
        self.calls = 0
        self._fb = _bands(129, self.dim)

    def embed(self, wave: np.ndarray) -> np.ndarray:
        self.calls += 1
        t = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
        spec = torch.stft(t, 256, self.hop, window=torch.hann_window(256), center=True,
                          return_complex=True).abs().numpy()
        feats = np.log(self._fb @ spec + 1e-4).T  # [frames, dim]
        scale = 1.0 if not isinstance(self.layer, int) else float(self.layer + 1)
        return (feats * scale).astype(np.float32)

    def num_layers(self) -> int:
        return 3


class ToyCodec(Codec):
    """Log band magnitudes ``[bands, frames]`` (hop 128); decode = band-shaped noise + ISTFT."""

    def __init__(self, bands: int = 12, sample_rate: int = 8000) -> None:
        self.sample_rate = int(sample_rate)
        self.hop = 128
        self.latent_dim = int(bands)
        self.frame_rate = self.sample_rate / self.hop
        self.name = f"toyband-codec@bands={bands}"
        self.revision = "1"
        self._fb = _bands(129, bands)
        self._pinv = self._fb.T * (self._fb.sum(axis=1) > 0)

    def num_frames(self, num_samples: int) -> int:
        return 1 + int(num_samples) // self.hop

    def encode(self, wave: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32))
        spec = torch.stft(t, 256, self.hop, window=torch.hann_window(256), center=True,
                          return_complex=True).abs().numpy()
        return np.log(self._fb @ spec + 1e-4).astype(np.float32)

    def decode(self, latent: np.ndarray) -> np.ndarray:
        z = np.clip(np.nan_to_num(np.asarray(latent, np.float32)), -12, 8)
        mag = torch.from_numpy((self._pinv @ np.exp(z)).astype(np.float32))  # [129, frames]
        gen = torch.Generator().manual_seed(0)
        phase = torch.rand(mag.shape, generator=gen) * 2 * np.pi
        spec = torch.polar(mag, phase)
        length = (z.shape[1] - 1) * self.hop
        return torch.istft(spec, 256, self.hop, window=torch.hann_window(256), center=True,
                           length=length).numpy().astype(np.float32)


def _build_extractor(spec: Any, **params: Any) -> ToyExtractor:
    return ToyExtractor(**params)


def _build_codec(spec: Any, **params: Any) -> ToyCodec:
    return ToyCodec(**params)


if "toyband" not in EXTRACTORS:
    EXTRACTORS.register("toyband", _build_extractor)
if "toyband" not in CODECS:
    CODECS.register("toyband", _build_codec)


def write_library(root: Path, per_class: int = 8, seconds: float = 1.0, sr: int = 16000,
                  seed: int = 0, bad: int = 0) -> Path:
    """A tiny ESC-50-layout library: 3 classes (tone, noise burst, chirp) × ``per_class``.

    ``bad`` extra rows point at corrupt files (for errors.jsonl tests).
    """
    rng = np.random.default_rng(seed)
    audio = root / "audio"
    audio.mkdir(parents=True, exist_ok=True)
    (root / "meta").mkdir(exist_ok=True)
    import soundfile as sf

    n = int(seconds * sr)
    t = np.arange(n) / sr
    rows = []
    classes = ["tone", "noise", "chirp"]
    for target, cls in enumerate(classes):
        for i in range(per_class):
            if cls == "tone":
                f = rng.uniform(300, 1200)
                x = 0.5 * np.sin(2 * np.pi * f * t) * np.exp(-t * rng.uniform(0.5, 3))
            elif cls == "noise":
                env = (np.abs(np.sin(np.pi * t * rng.uniform(2, 6)))) ** 2
                x = 0.15 * rng.standard_normal(n) * env
            else:
                f0, f1 = rng.uniform(200, 600), rng.uniform(1500, 3000)
                x = 0.4 * np.sin(2 * np.pi * (f0 * t + (f1 - f0) * t * t / (2 * seconds)))
            x = x + 0.01 * rng.standard_normal(n)
            name = f"{(i % 4) + 1}-{target}{i:03d}-A-{target}.wav"
            sf.write(str(audio / name), x.astype(np.float32), sr)
            rows.append([name, (i % 4) + 1, target, cls, "True", f"{target}{i:03d}", "A"])
    for j in range(bad):
        name = f"1-bad{j}-A-0.wav"
        (audio / name).write_bytes(b"RIFF\x00\x00not really audio")
        rows.append([name, 1, 0, "tone", "True", f"bad{j}", "A"])
    with open(root / "meta" / "esc50.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["filename", "fold", "target", "category", "esc10", "src_file", "take"])
        w.writerows(rows)
    return root


def toy_prep(root: Path, per_class: int) -> Path:
    """``root/prep``: a toyband layer-1 PREP of a ``write_library`` of 0.5 s clips."""
    from auralens.sonify.prepare import prepare

    library = write_library(root / "lib", per_class=per_class, seconds=0.5)
    out = root / "prep"
    prepare(library, "toyband", "toyband", 1, out, duration=0.5, cache_dir=root / "cache")
    return out


def mixed_length_library(root: Path) -> Path:
    """``root``: two labels of five noise clips, the first 0.5 s, the others 1 s (16 kHz)."""
    import soundfile as sf

    rng = np.random.default_rng(0)
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i, seconds in enumerate((0.5, 1.0, 1.0, 1.0, 1.0)):
            sf.write(root / label / f"c{i}.wav",
                     (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32), 16000)
    return root
