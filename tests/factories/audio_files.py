"""Small audio folders written for metric tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from auralens import audio

SR = 16000


def tone_folder(root: Path, name: str, freqs: list[float], noise: float) -> Path:
    """``root/name/tone{f}.wav``: one second of a sine at each frequency plus seeded noise."""
    rng = np.random.default_rng(len(name))
    t = np.arange(SR) / SR
    for f in freqs:
        x = 0.4 * np.sin(2 * np.pi * f * t) + noise * rng.standard_normal(SR)
        audio.write(root / name / f"tone{int(f)}.wav", x.astype(np.float32), SR)
    return root / name


def noise_wav(path: Path, seed: int, seconds: float = 0.5, sr: int = SR) -> Path:
    """``path``: ``seconds`` of seeded white noise at RMS 0.1 (parent folders created)."""
    import soundfile as sf

    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    sf.write(path, (0.1 * rng.standard_normal(int(sr * seconds))).astype(np.float32), sr)
    return path


def fuss_folder(root: Path, n: int) -> Path:
    """A FUSS-layout folder (no manifest): ``train/exampleNNNNN.wav``, each the sum of two
    noise sources in ``exampleNNNNN_sources/`` (``background0_sound``, ``foreground0_sound``)."""
    import soundfile as sf

    for k in range(n):
        mix = root / "train" / f"example{k:05d}.wav"
        a = noise_wav(mix.with_name(f"{mix.stem}_sources") / "background0_sound.wav", 10 * k)
        b = noise_wav(mix.with_name(f"{mix.stem}_sources") / "foreground0_sound.wav", 10 * k + 1)
        sf.write(mix, sf.read(a)[0] + sf.read(b)[0], SR)
    return root
