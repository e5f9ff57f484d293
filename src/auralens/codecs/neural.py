"""Shared plumbing for neural codecs (DAC, Oobleck, EnCodec) and the generic ``hf`` codec.

Conventions for every neural codec:
    * :meth:`encode` takes mono float32 ``[T]`` at :attr:`sample_rate` (resampling is the
      caller's job, see :func:`auralens.audio.resample`); it is zero-padded to a whole number
      of hops, so ``frames = ceil(T / hop_length)``. Stereo models get the mono signal on
      every channel.
    * :meth:`decode` returns mono ``[frames * hop_length]`` (stereo outputs are averaged).
    * A model is given as a hub id or a local directory; offline failures raise
      :class:`~auralens.errors.ModelUnavailableError`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from auralens.codecs.base import Codec
from auralens.errors import AuralensError, ModelUnavailableError
from auralens.specs import ModelSpec


class NeuralCodec(Codec):
    """Base for torch codecs: device/dtype handling, padding, mono↔channels.

    Subclasses set ``model``, ``sample_rate``, ``hop_length``, ``latent_dim``,
    ``audio_channels`` and implement :meth:`_encode` / :meth:`_decode` on torch tensors.
    """

    hop_length: int = 512
    audio_channels: int = 1
    device: str = "cpu"

    def _setup(self, source: str, device: str | None, dtype: str | None) -> None:
        from auralens.encoders.hf import model_revision, pick_device, torch_dtype

        self.source = source
        self.device = pick_device(device)
        self.torch_dtype = torch_dtype(dtype)
        self.revision = model_revision(source) if Path(source).is_dir() else _hub_revision(source)

    def _finish(self) -> None:
        self.frame_rate = self.sample_rate / self.hop_length
        if getattr(self.model, "dtype", None) == self.torch_dtype:
            # Already in the compute dtype: only move it. (A dtype given to diffusers' to()
            # logs a "should be kept in float32" warning even when nothing is cast.)
            self.model.to(self.device).eval()
        else:
            self.model.to(self.device, self.torch_dtype).eval()

    def num_frames(self, num_samples: int) -> int:
        """``ceil(num_samples / hop_length)`` latent frames."""
        return max(1, math.ceil(num_samples / self.hop_length))

    def encode(self, wave: np.ndarray) -> np.ndarray:
        """``[T]`` → ``[latent_dim, ceil(T / hop_length)]`` float32."""
        import torch

        x = wave  # mono float32 [T]: the Codec protocol checks
        frames = self.num_frames(x.shape[0])
        x = np.pad(x, (0, frames * self.hop_length - x.shape[0]))
        t = torch.from_numpy(x)[None, None].repeat(1, self.audio_channels, 1)
        with torch.inference_mode():
            z = self._encode(t.to(self.device, self.torch_dtype))[0]
        return np.ascontiguousarray(z[:, :frames].float().cpu().numpy())

    def decode(self, latent: np.ndarray) -> np.ndarray:
        """``[latent_dim, frames]`` → mono ``[frames * hop_length]`` float32."""
        import torch

        z = np.asarray(latent, dtype=np.float32)
        if z.ndim != 2 or z.shape[0] != self.latent_dim or z.shape[1] == 0:
            raise AuralensError(
                f"{self.name} expects a [{self.latent_dim}, frames ≥ 1] latent, got {z.shape}")
        with torch.inference_mode():
            y = self._decode(torch.from_numpy(z)[None].to(self.device, self.torch_dtype))
        y = y.float().cpu()
        if y.ndim == 3:
            y = y.mean(1)  # channels → mono
        out = y[0, : z.shape[1] * self.hop_length].numpy()
        return np.ascontiguousarray(np.nan_to_num(out), dtype=np.float32)

    def _encode(self, x: Any) -> Any:  # [B, C, T] → [B, D, frames]
        raise NotImplementedError

    def _decode(self, z: Any) -> Any:  # [B, D, frames] → [B, (C,) T]
        raise NotImplementedError


def _hub_revision(source: str) -> str:
    from auralens.encoders.hf import model_revision

    try:
        return model_revision(source)
    except Exception:  # noqa: BLE001 - a revision is informative only
        return ""


def codec_source(spec: ModelSpec, default: str) -> str:
    """Local directory or hub id named by the spec (``default`` when none is given)."""
    from auralens.encoders.hf import model_source

    return model_source(spec, default=default)


def load(cls: Any, source: str, **kwargs: Any) -> Any:
    """``cls.from_pretrained`` through :func:`auralens.encoders.hf.load_pretrained`: the
    checkpoint kind is checked and missing/offline models give a one-line error."""
    from auralens.encoders.hf import load_pretrained

    return load_pretrained(cls, source, **kwargs)


def codec_kind_of_dir(root: Path) -> tuple[str | None, Path | None]:
    """Which codec backend a local directory holds, from its ``config.json``.

    Returns:
        ``(kind, config path)``: kind ``dac`` / ``encodec`` (transformers ``model_type``) or
        ``oobleck`` (diffusers ``_class_name: AutoencoderOobleck``, also a pipeline dir with
        ``vae/``), None when it is something else; the config path is None when there is none.
    """
    cfg_path = root / "config.json"
    if not cfg_path.exists() and (root / "vae" / "config.json").exists():
        cfg_path = root / "vae" / "config.json"
    if not cfg_path.exists():
        return None, None
    try:
        cfg = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise AuralensError(f"{cfg_path}: unreadable config ({exc})") from exc
    if not isinstance(cfg, dict):
        return None, cfg_path
    if cfg.get("_class_name") == "AutoencoderOobleck":
        return "oobleck", cfg_path
    return {"dac": "dac", "encodec": "encodec"}.get(str(cfg.get("model_type", ""))), cfg_path


def build_hf_codec(spec: ModelSpec, **params: Any) -> Codec:
    """Generic codec backend for a bare local dir: its config says which codec it is
    (see :func:`codec_kind_of_dir`)."""
    from auralens.codecs.base import CODECS

    if spec.path is None:
        raise ModelUnavailableError(spec.id or str(spec), "not a local directory; use "
                                    "dac:<id>, oobleck:<id> or encodec:<id> for hub models")
    root = spec.path
    kind, cfg_path = codec_kind_of_dir(root)
    if cfg_path is None:
        raise ModelUnavailableError(str(root), "the directory has no config.json")
    if kind is None:
        raise AuralensError(f"{cfg_path}: not a codec auralens knows (dac, encodec, oobleck)")
    return CODECS.get(kind)(ModelSpec(kind, str(root), dict(params), spec.raw), **params)
