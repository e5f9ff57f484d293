"""Whisper encoder hidden states (the decoder is never run).

Whisper's feature extractor makes an 80- (or 128-) band log-mel with a 10 ms hop over a fixed
window of ``chunk_length`` seconds (30 s for the released models), padded with silence; two
convolutions (the second with stride 2) give 50 encoder frames per second, 1500 per window.

* Clips longer than one window are cut into consecutive windows, encoded as one batch, and the
  frames concatenated; the result is trimmed to ``ceil(T / 320)`` frames (the padding frames
  of the last window are dropped), so the frame count follows the clip's duration.
* Layers: ``features`` (also spelt ``0``) = ``hidden_states[0]`` (convolutions + sinusoidal
  positions, before the first block); ``k`` = the output of block ``k``, taken from the block itself, so no ``k``
  includes the encoder's final layer norm; ``last`` (default) = the output of the last block,
  also without that layer norm (``last_hidden_state``, which transformers also reports as
  the last entry of ``hidden_states``, is the layer-normed one; it is not used here).

Input: mono float32 at 16 kHz.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from auralens.encoders.base import Extractor
from auralens.encoders.hf import (
    batch_size_option,
    load_pretrained,
    model_revision,
    model_source,
    pick_device,
    torch_dtype,
)
from auralens.errors import AuralensError
from auralens.specs import ModelSpec


class WhisperExtractor(Extractor):
    """Hidden states of a Whisper encoder.

    Args:
        source: hub id or local directory (any Whisper checkpoint; the decoder is dropped).
        layer: ``"features"``, ``"last"`` or a block index.
        device: ``"auto"``, ``"cpu"``, ``"cuda"`` …
        dtype: ``"float32"`` (default), ``"float16"``, ``"bfloat16"``.
        batch_size: windows per forward pass.
        name: display name (defaults to ``"whisper:<source>"``).
        trust_remote_code: allow custom modelling code (off by default).
    """

    first_name = "features"
    zero_is_first = True

    def __init__(self, source: str, layer: Any = None, device: str | None = None,
                 dtype: str | None = None, batch_size: int = 4, name: str | None = None,
                 trust_remote_code: bool = False) -> None:
        import torch
        from transformers import WhisperFeatureExtractor, WhisperModel

        self.batch_size = batch_size_option(batch_size)
        self.source = source
        self.device = pick_device(device)
        self.torch_dtype = torch_dtype(dtype)
        full = load_pretrained(WhisperModel, source, dtype=self.torch_dtype,
                               trust_remote_code=trust_remote_code)
        self.encoder = full.get_encoder().to(self.device).eval()
        del full  # the decoder is not needed
        self.config = self.encoder.config
        try:
            self.feature_extractor = WhisperFeatureExtractor.from_pretrained(source)
        except (OSError, ValueError):
            self.feature_extractor = WhisperFeatureExtractor(feature_size=self.config.num_mel_bins)
        fe = self.feature_extractor
        self.sample_rate = int(fe.sampling_rate)
        self.window = int(fe.n_samples)
        self.samples_per_frame = int(fe.hop_length) * 2  # conv2 has stride 2
        self.frames_per_window = self.window // self.samples_per_frame
        if self.frames_per_window != self.config.max_source_positions:
            raise AuralensError(
                f"{source}: feature window ({fe.nb_max_frames} mel frames) does not match the "
                f"encoder ({self.config.max_source_positions} positions)")
        self.frame_rate = self.sample_rate / self.samples_per_frame
        self.dim = int(self.config.d_model)
        self.layer = self.resolve_layer(layer)  # 0 is "features", hidden_states[0]
        self.name = name or f"whisper:{source}"
        self.revision = model_revision(source)
        if self.layer == self.config.encoder_layers:
            # The last block used to be read after the final layer norm; a distinct revision
            # keeps cached embeddings of that kind from being served for the raw block output.
            self.revision += "+raw-last-block"
        self._torch = torch

    def num_layers(self) -> int:
        return int(self.config.encoder_layers)

    def num_frames(self, num_samples: int) -> int:
        """``ceil(T / 320)`` encoder frames (at least one)."""
        return max(1, math.ceil(num_samples / self.samples_per_frame))

    def embed(self, wave: np.ndarray) -> np.ndarray:
        """``[T]`` at 16 kHz → ``[ceil(T / 320), d_model]``."""
        return self.embed_batch([wave])[0]

    def embed_batch(self, waves: Sequence[np.ndarray]) -> list[np.ndarray]:
        """All windows of all clips go through the encoder in batches, then are reassembled."""
        windows: list[np.ndarray] = []
        owners: list[int] = []
        for i, w in enumerate(waves):
            # mono [T] and non-empty (else one frame of padding): the Extractor protocol checks
            n = max(1, math.ceil(w.shape[0] / self.window))
            for j in range(n):
                windows.append(w[j * self.window : (j + 1) * self.window])
                owners.append(i)
        states = []
        for i in range(0, len(windows), self.batch_size):
            states.extend(self._forward(windows[i : i + self.batch_size]))
        out = []
        for i, w in enumerate(waves):
            parts = [s for s, o in zip(states, owners, strict=True) if o == i]
            full = np.concatenate(parts, axis=0)[: self.num_frames(np.asarray(w).shape[0])]
            out.append(np.ascontiguousarray(full, dtype=np.float32))
        return out

    def _forward(self, chunk: list[np.ndarray]) -> list[np.ndarray]:
        torch = self._torch
        feats = self.feature_extractor(chunk, sampling_rate=self.sample_rate,
                                       return_tensors="pt")["input_features"]
        x = feats.to(self.device, self.torch_dtype)
        with torch.inference_mode():
            if self.layer == "features":
                hidden = self.encoder(x, output_hidden_states=True).hidden_states[0]
            else:
                hidden = self._block_output(x, int(self.layer))
        return list(hidden.float().cpu().numpy())

    def _block_output(self, x: Any, k: int) -> Any:
        """Output of block ``k`` (1-based) for mel input ``x``, caught by a forward hook.

        ``hidden_states[-1]`` is the final layer norm's output, not the last block's, so every
        block is read the same way, from the block.
        """
        caught: list[Any] = []

        def hook(_module: Any, _inputs: Any, output: Any) -> None:
            caught.append(output[0] if isinstance(output, tuple) else output)

        handle = self.encoder.layers[k - 1].register_forward_hook(hook)
        try:
            self.encoder(x)
        finally:
            handle.remove()
        if len(caught) != 1:
            raise AuralensError(f"whisper block {k} ran {len(caught)} times in one forward pass")
        return caught[0]


def build_whisper(spec: ModelSpec, **params: Any) -> WhisperExtractor:
    """Registry factory for ``whisper:<hub id or dir>@layer=…`` (default ``openai/whisper-base``)."""
    params.setdefault("name", f"whisper:{spec.id or 'openai/whisper-base'}")
    return WhisperExtractor(model_source(spec, default="openai/whisper-base"), **params)
