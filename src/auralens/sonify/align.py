"""Time alignment between an extractor's embedding and a codec's latent.

Two explicit steps, never an unexplained reshape:

1. **Orientation** (:func:`channel_first`). Extractors return ``[frames, dim]`` (time first);
   codecs use ``[latent_dim, frames]`` (time last). The study found that transposing the
   embedding so that time runs along the *same* axis as the latent's time axis gave a lower
   loss and better audio, so every gate sees ``[B, dim, frames]``, exactly like the latent
   ``[B, latent_dim, frames]``.

2. **Frame-count mapping** (:class:`TimeResampler`) from the embedding's frame count to the
   latent's, selectable:

   * ``interp``  – parameter-free linear interpolation along time (``align_corners=False``,
     i.e. frame centres are mapped proportionally), the default;
   * ``learned`` – a small learned resampler: a depthwise ``Conv1d`` (downsampling, stride
     ``floor(frames_in / frames_out)``) or ``ConvTranspose1d`` (upsampling, stride
     ``round(frames_out / frames_in)``) initialised as a box filter, followed by a final
     linear interpolation that absorbs the non-integer remainder of the ratio;
   * ``dense``   – one ``Linear(frames_in, frames_out)`` over the time axis (every output
     frame a learned mix of all input frames), initialised to the interpolation matrix. It
     needs a fixed ``frames_in``; other lengths are interpolated to ``frames_in`` first.

AST patch grids
---------------
AST splits the ``[128 mel, 1024 frame]`` fbank (10.24 s at a 10 ms hop, zero-padded) into
16×16 patches with stride 10, giving ``12`` frequency × ``101`` time patches = 1212 tokens.
Its patch embedder flattens the ``[dim, 12, 101]`` conv output *frequency-major* (token index
``f * 101 + t``), so consecutive tokens walk along time within one frequency band and
the sequence jumps back in time 12 times. :func:`patch_grid_to_time_major` reorders the tokens
to index ``t * 12 + f``: the 12 frequency patches of time step 0, then of time step 1, and so
on, so the token axis becomes monotonic in time (1212 tokens ≈ 101 time steps × 12 sub-steps)
and interpolation along it is a sensible time mapping. The grid covers AST's padded 10.24 s
input, so for shorter clips the time patches past the end of the audio are dropped first
(:func:`to_gate_input`; a 5 s clip keeps 50 of 101 time patches = 600 tokens): otherwise a
5 s latent would be stretched over 10.24 s of tokens. :func:`pool_patch_grid` instead
averages the 12 frequency patches of each time step (``[101, dim]``).
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

log = logging.getLogger(__name__)

#: AST's patch grid for its default 1024-frame input: (frequency patches, time patches).
AST_PATCH_GRID = (12, 101)
#: Frame-mapping modes accepted by :class:`TimeResampler`.
RESAMPLE_MODES = ("interp", "learned", "dense")


def channel_first(embedding: np.ndarray) -> np.ndarray:
    """``[frames, dim]`` → ``[dim, frames]`` (time on the last axis, like codec latents)."""
    if embedding.ndim != 2:
        raise ValueError(f"expected a [frames, dim] embedding, got shape {embedding.shape}")
    return np.ascontiguousarray(embedding.T)


def patch_grid_to_time_major(tokens: np.ndarray, freq_patches: int = 12) -> np.ndarray:
    """Reorder frequency-major patch tokens to time-major order.

    Args:
        tokens: ``[freq_patches * time_patches, dim]`` in AST order (index ``f * T + t``).
        freq_patches: number of frequency patches (12 for AST's 128 mel bins).
    Returns:
        ``[freq_patches * time_patches, dim]`` with index ``t * freq_patches + f``.
    """
    n, dim = tokens.shape
    if n % freq_patches:
        raise ValueError(f"{n} tokens do not form a grid with {freq_patches} frequency patches")
    grid = tokens.reshape(freq_patches, n // freq_patches, dim)  # [F, T, dim]
    return np.ascontiguousarray(grid.transpose(1, 0, 2).reshape(n, dim))


def grid_info(extractor: object, num_samples: int | None = None) -> dict[str, object]:
    """Patch-grid facts of an extractor worth recording (empty for frame-based models).

    AST-style extractors expose ``freq_patches``, ``time_patches`` and ``layout``;
    ``layout="flat"`` means the tokens come frequency-major and :func:`to_gate_input` must
    reorder them. With ``num_samples`` (the clip length at the extractor's rate) and an
    untrimmed grid, ``valid_time_patches`` records how many time patches hold real audio.
    """
    fp = getattr(extractor, "freq_patches", None)
    layout = getattr(extractor, "layout", None)
    if not fp or layout is None:
        return {}
    info: dict[str, object] = {"freq_patches": int(fp), "layout": str(layout),
                               "time_patches": int(getattr(extractor, "time_patches", 0) or 0),
                               "trim": bool(getattr(extractor, "trim", False))}
    valid = getattr(extractor, "valid_time_patches", None)
    if num_samples is not None and callable(valid) and not info["trim"]:
        info["valid_time_patches"] = int(valid(int(num_samples)))
    return info


def to_gate_input(embedding: np.ndarray, info: dict[str, object] | None = None,
                  valid_time_patches: int | None = None) -> np.ndarray:
    """The extractor's ``[frames, dim]`` output → the gate's ``[dim, frames]`` input.

    With ``info = {"layout": "flat", "freq_patches": F}`` (AST's frequency-major patch tokens)
    the tokens are first reordered time-major (:func:`patch_grid_to_time_major`), so the token
    axis runs forward in time before it is treated as the time axis. AST pads every clip to
    10.24 s; the time patches past the end of the audio are then dropped (``valid_time_patches``
    argument, else ``info["valid_time_patches"]``), so interpolating the remaining tokens onto
    the latent's frames maps audio time onto the same audio time.
    """
    emb = np.asarray(embedding, dtype=np.float32)
    info = info or {}
    fp = int(info.get("freq_patches") or 0)  # type: ignore[call-overload]
    if info.get("layout") == "flat" and fp > 1 and emb.shape[0] % fp == 0:
        emb = patch_grid_to_time_major(emb, fp)
        valid = valid_time_patches if valid_time_patches is not None else info.get("valid_time_patches")
        if valid is not None and 0 < int(valid) * fp < emb.shape[0]:  # type: ignore[call-overload]
            emb = emb[: int(valid) * fp]  # type: ignore[call-overload]
    return channel_first(emb)


def pool_patch_grid(tokens: np.ndarray, freq_patches: int = 12) -> np.ndarray:
    """Average the frequency patches of each time step: ``[F*T, dim]`` → ``[T, dim]``."""
    n, dim = tokens.shape
    if n % freq_patches:
        raise ValueError(f"{n} tokens do not form a grid with {freq_patches} frequency patches")
    return tokens.reshape(freq_patches, n // freq_patches, dim).mean(axis=0)


def interp_frames(x: torch.Tensor, frames_out: int) -> torch.Tensor:
    """Linear interpolation along the last axis: ``[B, C, T]`` → ``[B, C, frames_out]``."""
    if x.shape[-1] == frames_out:
        return x
    if x.shape[-1] == 1:
        return x.expand(*x.shape[:-1], frames_out)
    return F.interpolate(x, size=frames_out, mode="linear", align_corners=False)


def interp_matrix(frames_in: int, frames_out: int) -> torch.Tensor:
    """``[frames_out, frames_in]`` matrix M with ``interp_frames(x) == x @ M.T``."""
    eye = torch.eye(frames_in).unsqueeze(0)  # [1, frames_in, frames_in]: rows are unit impulses
    return interp_frames(eye, frames_out)[0].T.contiguous()


class TimeResampler(nn.Module):
    """Map ``[B, C, frames_in]`` to ``[B, C, frames_out]`` (see the module docstring).

    Args:
        channels: C (only the ``learned`` mode has per-channel weights).
        frames_in: embedding frames seen in training.
        frames_out: latent frames seen in training.
        mode: ``interp``, ``learned`` or ``dense``.
    """

    def __init__(self, channels: int, frames_in: int, frames_out: int, mode: str = "interp") -> None:
        super().__init__()
        if mode not in RESAMPLE_MODES:
            raise ValueError(f"unknown resample mode {mode!r}; choose from {', '.join(RESAMPLE_MODES)}")
        self.mode = mode
        self.frames_in = int(frames_in)
        self.frames_out = int(frames_out)
        self.conv: nn.Module | None = None
        self.dense: nn.Linear | None = None
        if mode == "learned" and frames_in != frames_out:
            if frames_in > frames_out:
                stride = max(1, frames_in // frames_out)
                kernel = stride if stride > 1 else 3
                self.conv = nn.Conv1d(channels, channels, kernel, stride=stride,
                                      padding=(kernel - stride) // 2 if stride > 1 else 1,
                                      groups=channels)
            else:
                stride = max(1, round(frames_out / frames_in))
                kernel = stride if stride > 1 else 3
                cls = nn.ConvTranspose1d if stride > 1 else nn.Conv1d
                self.conv = cls(channels, channels, kernel, stride=stride,
                                padding=0 if stride > 1 else 1, groups=channels)
            with torch.no_grad():  # start as a box filter: close to plain interpolation
                w = self.conv.weight
                w.fill_(1.0 / w.shape[-1] if isinstance(self.conv, nn.Conv1d) else 1.0)
                self.conv.bias.zero_()
        elif mode == "dense":
            self._told: set[int] = set()  # input frame counts already warned about
            self.dense = nn.Linear(frames_in, frames_out)
            with torch.no_grad():
                self.dense.weight.copy_(interp_matrix(frames_in, frames_out))
                self.dense.bias.zero_()

    def forward(self, x: torch.Tensor, frames_out: int | None = None) -> torch.Tensor:
        """``[B, C, T]`` → ``[B, C, frames_out]`` (default: the training frame count)."""
        target = int(frames_out or self.frames_out)
        if self.dense is not None:
            if x.shape[-1] != self.frames_in and x.shape[-1] not in self._told:
                # the weights map exactly frames_in frames: others are stretched to fit first
                self._told.add(int(x.shape[-1]))
                log.warning("the dense time resampler was trained on %d frames; %d frames are "
                            "interpolated to %d first (time resolution ×%.2f): clips of the "
                            "training length render best", self.frames_in, x.shape[-1],
                            self.frames_in, self.frames_in / x.shape[-1])
            x = self.dense(interp_frames(x, self.frames_in))
        elif self.conv is not None:
            # Integer-stride part of the ratio; the final interpolation fixes the remainder.
            x = self.conv(x)
        return interp_frames(x, target)

    def extra_repr(self) -> str:
        return f"mode={self.mode}, frames_in={self.frames_in}, frames_out={self.frames_out}"


def frames_ratio(frames_in: int, frames_out: int) -> float:
    """Latent frames per embedding frame (documentation/logging helper)."""
    return frames_out / frames_in if frames_in else math.nan
