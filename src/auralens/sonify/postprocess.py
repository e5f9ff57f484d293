"""Post-processing of rendered audio, chainable by name: ``"minmax,wiener"``.

Steps (all map a ``[T]`` float wave to a finite ``[T]`` float32 wave, silent input stays silent):

* ``none``         – identity.
* ``peak``         – rescale so ``max |x| = 1``.
* ``minmax``       – affine map of the render's [min, max] onto the *original* clip's
  [min, max] (the study's preferred step; needs ``reference``).
* ``threshold:P``  – zero every sample with ``|x| < P % of max |x|`` (0 ≤ P ≤ 100, default 5).
* ``square``       – sign-preserving square ``sign(x)·x²`` (suppresses low-level noise).
* ``wiener``       – :func:`scipy.signal.wiener` (local-variance denoising, window 29 by default;
  ``wiener:N`` sets the window).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from auralens.errors import AuralensError

#: Below this peak a signal is treated as silent (no rescaling, avoids dividing by ~0).
EPS = 1e-9


class PostprocessError(AuralensError, ValueError):
    """An unknown or malformed post-processing step."""


def _finite(x: np.ndarray) -> np.ndarray:
    return np.nan_to_num(np.asarray(x, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)


def peak(x: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    m = float(np.max(np.abs(x))) if x.size else 0.0
    return x / m if m > EPS else x


def minmax(x: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    """Map ``[x.min(), x.max()]`` onto ``[reference.min(), reference.max()]``."""
    if reference is None:
        raise PostprocessError("minmax post-processing needs the original clip as reference")
    ref = _finite(reference)
    if not x.size or not ref.size:
        return x
    lo, hi = float(x.min()), float(x.max())
    rlo, rhi = float(ref.min()), float(ref.max())
    if hi - lo <= EPS:  # a constant render carries no signal: return silence, not a DC offset
        return np.zeros_like(x)
    return (x - lo) / (hi - lo) * (rhi - rlo) + rlo


def threshold(x: np.ndarray, reference: np.ndarray | None = None, percent: float = 5.0) -> np.ndarray:
    m = float(np.max(np.abs(x))) if x.size else 0.0
    if m <= EPS:
        return x
    return np.where(np.abs(x) < percent / 100.0 * m, 0.0, x)


def square(x: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
    return np.sign(x) * x * x


def wiener(x: np.ndarray, reference: np.ndarray | None = None, size: int = 29) -> np.ndarray:
    from scipy.signal import wiener as _wiener

    if x.size < 3 or float(np.max(np.abs(x))) <= EPS:
        return x
    size = int(size) | 1  # odd window
    with np.errstate(divide="ignore", invalid="ignore"):
        y = _wiener(x, mysize=min(size, x.size - (1 - x.size % 2)))
    return _finite(y)


_STEPS: dict[str, Callable[..., np.ndarray]] = {
    "none": lambda x, reference=None: x, "peak": peak, "minmax": minmax,
    "threshold": threshold, "square": square, "wiener": wiener,
}
STEP_NAMES = tuple(_STEPS)
#: Steps that take a ``:N`` argument; the others refuse one rather than ignore it.
_TAKES_ARGUMENT = ("threshold", "wiener")


def parse_chain(chain: str | Sequence[str] | None) -> list[tuple[str, float | None]]:
    """``"minmax,threshold:10"`` → ``[("minmax", None), ("threshold", 10.0)]``.

    Raises:
        PostprocessError: an unknown step, a non-numeric or out-of-range argument, or an
            argument to a step that takes none.
    """
    if chain is None:
        return []
    parts = chain.split(",") if isinstance(chain, str) else list(chain)
    out: list[tuple[str, float | None]] = []
    for part in parts:
        part = part.strip().lower()
        if not part:
            continue
        name, _, arg = part.partition(":")
        if name not in _STEPS:
            raise PostprocessError(f"unknown post-processing step {name!r}; choose from {', '.join(STEP_NAMES)}")
        value: float | None = None
        if arg:
            if name not in _TAKES_ARGUMENT:
                raise PostprocessError(f"post-processing step {part!r}: {name} takes no argument "
                                       f"(only {' and '.join(_TAKES_ARGUMENT)} do)")
            try:
                value = float(arg)
            except ValueError:
                raise PostprocessError(f"post-processing step {part!r}: {arg!r} is not a number") from None
            if name == "threshold" and not (np.isfinite(value) and 0 <= value <= 100):
                raise PostprocessError(f"post-processing step {part!r}: threshold takes a "
                                       "percentage of the peak in [0, 100]")
            if name == "wiener" and not (np.isfinite(value) and 1 <= value <= 4096):
                raise PostprocessError(f"post-processing step {part!r}: wiener takes a window "
                                       "of 1–4096 samples")
        out.append((name, value))
    return out


def chain_name(chain: str | Sequence[str] | None) -> str:
    """A folder-safe name for a chain: ``"minmax,wiener"`` → ``"minmax+wiener"``."""
    steps = parse_chain(chain)
    if not steps:
        return "none"
    return "+".join(n if v is None else f"{n}{v:g}" for n, v in steps)


def apply(wave: np.ndarray, chain: str | Sequence[str] | None,
          reference: np.ndarray | None = None) -> np.ndarray:
    """Apply the steps of ``chain`` in order.

    Args:
        wave: ``[T]`` rendered audio.
        chain: comma list or sequence of step names (see the module docstring).
        reference: ``[T']`` original clip (for ``minmax``).
    Returns:
        ``[T]`` float32, always finite.
    """
    x = _finite(wave)
    for name, value in parse_chain(chain):
        fn = _STEPS[name]
        if name == "threshold":
            x = fn(x, reference, 5.0 if value is None else value)
        elif name == "wiener" and value is not None:
            x = fn(x, reference, int(value))
        else:
            x = fn(x, reference)
        x = _finite(x)
    # Clip to the float32 range before the cast so huge values never turn into inf.
    f32 = float(np.finfo(np.float32).max)
    return np.clip(x, -f32, f32).astype(np.float32)
