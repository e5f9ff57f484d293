"""Datasets: ESC-50 / plain-folder loaders, a procedural sound library and a FUSS-recipe mixer.

Modules:
    esc50:  ``load_esc50``, ``make_splits``, ``write_splits``, ``read_splits``.
    folder: ``load_folder`` (any audio files; label = parent folder).
    synth:  ``synthesize`` a labelled ESC-50-layout library from parameterised generators.
    mix:    ``build_mixtures`` (FUSS recipe: background + foreground events, shoebox rooms).
    fuss:   ``load_fuss`` (the official FUSS release and what ``build_mixtures`` writes).

Submodules are imported lazily so ``import auralens.data`` stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from auralens.errors import AuralensError

if TYPE_CHECKING:
    from auralens.types import Clip

__all__ = ["MAX_DURATION_S", "MAX_SAMPLES", "DatasetError", "check_free_space", "check_length", "detect_layout",
           "load_dataset"]

#: Longest clip (``data synth``) or mixture (``data mix``) in seconds. Generous for sound
#: events and scenes, and it keeps a mistyped value from allocating gigabytes.
MAX_DURATION_S = 600.0
#: Most samples per clip or mixture: 600 s at 48 kHz. A generator holds a few float64
#: copies of the clip (several GiB here), so higher rates allow proportionally shorter clips.
MAX_SAMPLES = 600 * 48000


class DatasetError(AuralensError):
    """A dataset directory or metadata file that cannot be used (message names the path)."""


def check_length(duration: float, sample_rate: int, what: str = "duration") -> int:
    """The number of samples of ``duration`` seconds at ``sample_rate``, checked against the limits.

    Args:
        duration: seconds (already known to be a positive finite number).
        sample_rate: Hz (already known to be supported).
        what: the setting's name in messages (``duration``, ``--duration`` …).

    Raises:
        DatasetError: longer than :data:`MAX_DURATION_S` or :data:`MAX_SAMPLES`, or shorter
            than one sample.
    """
    if duration > MAX_DURATION_S:
        raise DatasetError(f"{what} {duration:g} s is longer than the {MAX_DURATION_S:g} s limit")
    n = int(round(duration * sample_rate))
    if n > MAX_SAMPLES:
        raise DatasetError(f"{what} {duration:g} s at {sample_rate} Hz is {n} samples, more than the "
                           f"limit of {MAX_SAMPLES} ({MAX_DURATION_S:g} s at 48 kHz); use a shorter "
                           "duration or a lower sample rate")
    if n < 1:
        raise DatasetError(f"{what} {duration:g} s is shorter than one sample at {sample_rate} Hz")
    return n


def check_free_space(out_dir: str | Path, need: int, what: str) -> None:
    """Refuse a job whose output clearly cannot fit on the disk of ``out_dir``.

    Args:
        out_dir: where the job writes (need not exist yet: its nearest existing parent is asked).
        need: estimated bytes the job still writes (an estimate, so only a clear shortfall is refused).
        what: what is written, for the message (``"12 clips"``).

    Raises:
        DatasetError: ``need`` exceeds the free space.
    """
    import shutil

    probe = Path(out_dir).absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
    except OSError:  # cannot tell (odd mount): let the writes themselves fail if they must
        return
    if need > free:
        raise DatasetError(f"{out_dir}: {what} need about {_size(need)} but only {_size(free)} is free "
                           "on that disk; ask for less or choose another --out")


def _size(n: float) -> str:
    """``1536`` → ``"1.5 KiB"``."""
    units = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")
    i = 0
    while n >= 1024 and i < len(units) - 1:
        n /= 1024
        i += 1
    return f"{n:.1f} {units[i]}"



def detect_layout(path: str | Path) -> str:
    """Return ``"esc50"`` when ``path/meta/esc50.csv`` exists, else ``"folder"``.

    Raises:
        DatasetError: ``path`` does not exist or is not a directory.
    """
    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: dataset directory not found")
    if not path.is_dir():
        raise DatasetError(f"{path}: not a directory")
    if (path / "meta" / "esc50.csv").is_file():
        return "esc50"
    return "folder"


def load_dataset(path: str | Path) -> list[Clip]:
    """Load an ESC-50-layout dataset or a plain folder of audio files, detected automatically.

    Args:
        path: dataset root.

    Returns:
        the clips (ESC-50: one label per clip; folder: parent folder name as label).

    Raises:
        DatasetError: missing directory, malformed metadata, or no audio found.
    """
    layout = detect_layout(path)
    if layout == "esc50":
        from auralens.data.esc50 import load_esc50

        return load_esc50(Path(path))
    from auralens.data.folder import load_folder

    return load_folder(Path(path))
