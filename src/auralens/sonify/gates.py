"""The 12 gating layers that map an embedding to a codec latent.

Every gate maps ``[B, in_dim, frames_in]`` (channel-first embedding, see
:mod:`auralens.sonify.align`) to ``[B, out_dim, frames_out]`` (a codec latent). Build one with
:func:`build`::

    gate = build("conv", in_dim=768, out_dim=64, frames_in=1212, frames_out=431)

Structure: ``Gate = TimeResampler → body``. The resampler (``interp`` by default, or
``learned``/``dense``) first maps the frame count to ``frames_out``; the body then follows
the study's layer order and preserves the frame count. Printing a gate shows its layers.

Layer orders (names ``v0``–``v11`` and readable aliases):

====  ==========  ==========================================================================
v0    lin         Linear, Linear
v1    conv        Conv(10×10, stride (2,1)), ReLU, Linear, Linear
v2    attn        Linear (project to 192 = 3 × 64), self-attention block (3 heads), Linear
v3    conv-r      Conv, ReLU, Conv, ReLU, Linear, Linear
v4    conv-d      Conv, Conv, ReLU, Dropout(0.2), Linear, Linear
v5    conv-rdd    Conv, ReLU, Dropout(0.1), Conv, ReLU, Dropout(0.1), Linear, Linear
v6    conv-ln     Conv, Conv, ReLU, LayerNorm, Linear, Linear
v7    conv-gn     Conv, Conv, ReLU, GroupNorm, Linear, Linear
v8    conv-rdn    Conv, ReLU, Dropout(0.1), Conv, ReLU, Dropout(0.1), LayerNorm, Linear, Linear
v9    lin-d       Linear, Dropout(0.2), Linear
v10   lin-r       Linear, Linear, ReLU
v11   lin-c       Linear, Conv, ReLU, Linear, Linear
====  ==========  ==========================================================================

Sizes the study leaves open (all keyword arguments of :func:`build`):

* ``hidden=256``: width between two Linear layers. Linear layers act per frame on the
  feature axis (``[B, T, features]``), so time is never mixed by a Linear.
* Convolutions are 2-D and see the embedding as a one-channel image ``[B, 1, dim, frames]``
  (features × time). Every conv has a 10×10 kernel; the *first* conv of a gate has stride
  (2, 1) (halving the feature axis, as in v1), later convs stride 1. ``channels=8`` output
  channels each. The even kernel is zero-padded asymmetrically (4 before, 5 after on both
  axes) so the time axis keeps exactly ``frames_out`` frames and the feature axis becomes
  ``ceil(dim / 2)`` after the strided conv.
* After the conv stack, ``[B, C, H, T]`` is flattened per frame to ``[B, T, C·H]`` (channel-
  major) for the Linear layers. LayerNorm (v6, v8) normalises these ``C·H`` features per frame;
  GroupNorm (v7) uses ``min(4, C)`` groups over the conv channels before flattening.
* ``attn`` (v2): multi-head attention needs an embedding size divisible by the 3 heads, so a
  Linear first projects ``in_dim → attn_dim=192``; then a pre-norm block as in AST/ViT
  (LayerNorm → 3-head self-attention over frames → residual), then a Linear ``→ out_dim``.
* ``lin-c`` (v11): the first Linear maps ``in_dim → hidden``; the conv then sees
  ``[B, 1, hidden, frames]``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from auralens.errors import AuralensError
from auralens.sonify.align import TimeResampler

#: Canonical names in study order, with their readable aliases.
GATE_ALIASES: dict[str, str] = {
    "v0": "lin", "v1": "conv", "v2": "attn", "v3": "conv-r", "v4": "conv-d", "v5": "conv-rdd",
    "v6": "conv-ln", "v7": "conv-gn", "v8": "conv-rdn", "v9": "lin-d", "v10": "lin-r",
    "v11": "lin-c",
}
GATE_NAMES: tuple[str, ...] = tuple(GATE_ALIASES)


class UnknownGateError(AuralensError, ValueError):
    """A gate name that is neither v0–v11 nor one of their aliases."""


def canonical(name: str) -> str:
    """``"conv"`` / ``"V1"`` / ``"v1"`` → ``"v1"``."""
    key = name.strip().lower()
    if key in GATE_ALIASES:
        return key
    for v, alias in GATE_ALIASES.items():
        if key == alias:
            return v
    choices = ", ".join(f"{v} ({a})" for v, a in GATE_ALIASES.items())
    raise UnknownGateError(f"unknown gate {name!r}; choose one of {choices}")


def alias(name: str) -> str:
    """The readable alias of a gate name (``"v1"`` → ``"conv"``)."""
    return GATE_ALIASES[canonical(name)]


# --- layout helpers: each is a named layer so print(gate) shows every step -------------

class ToSeq(nn.Module):
    """``[B, D, T]`` → ``[B, T, D]`` (per-frame features for Linear/LayerNorm/attention)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2)


class ToChannels(nn.Module):
    """``[B, T, D]`` → ``[B, D, T]`` (back to channel-first)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.transpose(1, 2)


class ToGrid(nn.Module):
    """``[B, D, T]`` → ``[B, 1, D, T]``: the embedding as a one-channel features×time image."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unsqueeze(1)


class GridToSeq(nn.Module):
    """``[B, C, H, T]`` → ``[B, T, C·H]`` (channel-major flattening per frame)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, t = x.shape
        return x.permute(0, 3, 1, 2).reshape(b, t, c * h)


class Conv2dSame(nn.Module):
    """2-D conv with an even or odd kernel that keeps the time axis length.

    Args:
        cin/cout: channels.
        kernel: (features, time) kernel size.
        stride: (features, time) stride; the time stride must be 1.
    """

    def __init__(self, cin: int, cout: int, kernel: tuple[int, int] = (10, 10),
                 stride: tuple[int, int] = (1, 1)) -> None:
        super().__init__()
        if stride[1] != 1:
            raise ValueError("the time stride must be 1 so frames are preserved")
        kh, kw = kernel
        # F.pad order: (time_left, time_right, feat_top, feat_bottom)
        self.pad = nn.ZeroPad2d(((kw - 1) // 2, kw // 2, (kh - 1) // 2, kh // 2))
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(self.pad(x))

    @staticmethod
    def out_height(h: int, stride: int) -> int:
        return -(-h // stride)  # ceil(h / stride) thanks to the (k-1) total padding


class SelfAttentionBlock(nn.Module):
    """Pre-norm multi-head self-attention with a residual, as in AST/ViT blocks.

    ``[B, T, dim]`` → ``[B, T, dim]``; ``dim`` must be divisible by ``heads``.
    """

    def __init__(self, dim: int, heads: int = 3, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"attention dim {dim} is not divisible by {heads} heads")
        self.norm = nn.LayerNorm(dim, eps=1e-12)  # AST's layer_norm_eps
        self.attn = nn.MultiheadAttention(dim, heads, dropout=dropout, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        out, _ = self.attn(h, h, h, need_weights=False)
        return x + out


class Gate(nn.Module):
    """A time resampler followed by one of the 12 bodies.

    Attributes:
        name: canonical name (``v0``…``v11``).
        in_dim/out_dim/frames_in/frames_out: the shapes it was built for.
    """

    def __init__(self, name: str, resampler: TimeResampler, body: nn.Sequential,
                 in_dim: int, out_dim: int, frames_in: int, frames_out: int) -> None:
        super().__init__()
        self.name = name
        self.in_dim, self.out_dim = in_dim, out_dim
        self.frames_in, self.frames_out = frames_in, frames_out
        self.resample = resampler
        self.body = body

    def forward(self, x: torch.Tensor, frames_out: int | None = None) -> torch.Tensor:
        """``[B, in_dim, T]`` → ``[B, out_dim, frames_out]`` (default: the built frames_out)."""
        if x.ndim != 3 or x.shape[1] != self.in_dim:
            raise ValueError(f"gate {self.name} expects [B, {self.in_dim}, frames], got {tuple(x.shape)}")
        return self.body(self.resample(x, frames_out))


def _conv_body(layers: list[str], in_dim: int, out_dim: int, hidden: int, channels: int,
               kernel: tuple[int, int]) -> list[nn.Module]:
    """Conv-family body from a layer list such as ``["conv", "relu", "conv", "relu"]``.

    Linear layers are appended by the caller; this returns the grid part ending in
    ``GridToSeq`` plus the flattened feature size via the last element's attribute.
    """
    mods: list[nn.Module] = [ToGrid()]
    cin, h, first = 1, in_dim, True
    for layer in layers:
        if layer == "conv":
            stride = 2 if first else 1
            mods.append(Conv2dSame(cin, channels, kernel, (stride, 1)))
            h = Conv2dSame.out_height(h, stride)
            cin, first = channels, False
        elif layer == "relu":
            mods.append(nn.ReLU())
        elif layer.startswith("drop"):
            mods.append(nn.Dropout(float(layer[4:])))
        elif layer == "gn":
            mods.append(nn.GroupNorm(min(4, cin), cin))
        else:  # pragma: no cover - programming error in the tables below
            raise ValueError(layer)
    mods.append(GridToSeq())
    mods[-1].features = cin * h  # type: ignore[assignment]
    return mods


#: Grid part (before flattening) of each conv-family body.
_CONV_LAYERS: dict[str, list[str]] = {
    "v1": ["conv", "relu"],
    "v3": ["conv", "relu", "conv", "relu"],
    "v4": ["conv", "conv", "relu", "drop0.2"],
    "v5": ["conv", "relu", "drop0.1", "conv", "relu", "drop0.1"],
    "v6": ["conv", "conv", "relu"],
    "v7": ["conv", "conv", "relu", "gn"],
    "v8": ["conv", "relu", "drop0.1", "conv", "relu", "drop0.1"],
}


def _body(name: str, in_dim: int, out_dim: int, hidden: int, channels: int,
          kernel: tuple[int, int], attn_dim: int, heads: int) -> nn.Sequential:
    if name == "v0":
        mods = [ToSeq(), nn.Linear(in_dim, hidden), nn.Linear(hidden, out_dim), ToChannels()]
    elif name == "v9":
        mods = [ToSeq(), nn.Linear(in_dim, hidden), nn.Dropout(0.2), nn.Linear(hidden, out_dim),
                ToChannels()]
    elif name == "v10":
        mods = [ToSeq(), nn.Linear(in_dim, hidden), nn.Linear(hidden, out_dim), nn.ReLU(),
                ToChannels()]
    elif name == "v2":
        mods = [ToSeq(), nn.Linear(in_dim, attn_dim), SelfAttentionBlock(attn_dim, heads),
                nn.Linear(attn_dim, out_dim), ToChannels()]
    elif name == "v11":
        grid = _conv_body(["conv", "relu"], hidden, out_dim, hidden, channels, kernel)
        mods = [ToSeq(), nn.Linear(in_dim, hidden), ToChannels(), *grid,
                nn.Linear(grid[-1].features, hidden), nn.Linear(hidden, out_dim), ToChannels()]
    elif name in _CONV_LAYERS:
        grid = _conv_body(_CONV_LAYERS[name], in_dim, out_dim, hidden, channels, kernel)
        feats = grid[-1].features
        norm: list[nn.Module] = [nn.LayerNorm(feats)] if name in ("v6", "v8") else []
        mods = [*grid, *norm, nn.Linear(feats, hidden), nn.Linear(hidden, out_dim), ToChannels()]
    else:  # pragma: no cover
        raise UnknownGateError(name)
    return nn.Sequential(*mods)


def build(name: str, in_dim: int, out_dim: int, frames_in: int, frames_out: int, *,
          resample: str = "interp", hidden: int = 256, channels: int = 8,
          kernel: tuple[int, int] | list[int] = (10, 10), attn_dim: int = 192,
          heads: int = 3) -> Gate:
    """Build gate ``name`` (``v0``–``v11`` or an alias).

    Args:
        name: gate name.
        in_dim: embedding size (channels of the input ``[B, in_dim, frames_in]``).
        out_dim: latent channels.
        frames_in: embedding frames in training.
        frames_out: latent frames in training.
        resample: ``interp`` | ``learned`` | ``dense`` (see :mod:`auralens.sonify.align`).
        hidden: Linear hidden width.
        channels: conv output channels.
        kernel: conv kernel (features, time).
        attn_dim: projected size for ``attn`` (rounded up to a multiple of ``heads``).
        heads: attention heads (the study: 3).

    Returns:
        a :class:`Gate`: ``[B, in_dim, T] → [B, out_dim, frames_out]``.
    """
    key = canonical(name)
    if min(in_dim, out_dim, frames_in, frames_out) <= 0:
        raise ValueError("gate dimensions and frame counts must be positive")
    attn_dim = -(-int(attn_dim) // heads) * heads
    kernel_t = (int(kernel[0]), int(kernel[1]))
    body = _body(key, int(in_dim), int(out_dim), int(hidden), int(channels), kernel_t,
                 attn_dim, int(heads))
    return Gate(key, TimeResampler(int(in_dim), int(frames_in), int(frames_out), resample), body,
                int(in_dim), int(out_dim), int(frames_in), int(frames_out))


def gate_args(name: str, in_dim: int, out_dim: int, frames_in: int, frames_out: int,
              **options: Any) -> dict[str, Any]:
    """The JSON-ready argument dict stored in checkpoints (``build(**gate_args(...))``)."""
    return {"name": canonical(name), "in_dim": int(in_dim), "out_dim": int(out_dim),
            "frames_in": int(frames_in), "frames_out": int(frames_out), **options}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
