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
