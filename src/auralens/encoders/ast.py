"""Audio Spectrogram Transformer (AST) hidden states, and the offline ``classifier`` preset.

How the patch grid relates to time
----------------------------------
The feature extractor turns 16 kHz audio into a Kaldi-style log-mel filterbank with a 10 ms
frame shift (100 frames/s), padded or cut to ``config.max_length`` frames (1024 = 10.24 s for
the AudioSet models). The patch embedding is a 16×16 convolution with strides
``frequency_stride × time_stride`` (10×10), giving a grid of
``F' = (num_mel_bins - 16) // 10 + 1`` frequency patches by
``T' = (max_length - 16) // 10 + 1`` time patches: 12 × 101 = 1212 patches for
``MIT/ast-finetuned-audioset-10-10-0.4593``. Time patch ``t`` covers fbank frames
``[10 t, 10 t + 16)``, i.e. 160 ms starting at ``t / 10`` s: the time patches run at
10 per second. Hugging Face flattens the grid *frequency-major*
(patch index ``f * T' + t``) and prepends a CLS and a distillation token.

Layers and layouts
------------------
* ``layer=patch``: the first hidden state (patch embeddings plus position embeddings) without
  the two tokens; ``layer=k`` (1..num_layers): output of block ``k`` without the two tokens;
  ``layer=0`` is the same as ``patch``; ``layer=last`` = the last block (default).
* ``layout=flat`` (default): ``[F' * T', dim]`` in the model's frequency-major order, the full
  padded grid (``[1212, 768]`` for the real model) unless ``trim=true``.
  ``frame_rate`` is then only nominal: ``F' * T'`` patches per ``max_length / 100`` seconds.
* ``layout=time``: the grid reshaped time-major to ``[T', F' * dim]`` (one frame per 100 ms,
  frequency patches concatenated), by default trimmed to the time patches that start inside
  the real audio (``trim=true``), so the frame count grows with the clip's duration.

Input: mono float32 at 16 kHz (:attr:`ASTExtractor.sample_rate`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from auralens.encoders.base import Extractor
from auralens.encoders.hf import (
    batch_size_option,
    bool_option,
    load_pretrained,
    model_revision,
    model_source,
    pick_device,
    torch_dtype,
)
from auralens.errors import AuralensError, ModelUnavailableError
from auralens.specs import ModelSpec

log = logging.getLogger(__name__)

#: Kaldi fbank frame shift used by ASTFeatureExtractor (seconds).
FBANK_SHIFT = 0.01
#: Kaldi fbank window length (seconds).
FBANK_WINDOW = 0.025
#: The two leading tokens (CLS, distillation) dropped from every hidden state.
NUM_SPECIAL_TOKENS = 2
#: Where the committed offline classifier lives.
CLASSIFIER_DIR = Path(__file__).resolve().parents[1] / "presets" / "classifier"


class ASTExtractor(Extractor):
    """Hidden states of an AST model (``ASTModel`` or ``ASTForAudioClassification``).

    Args:
        source: hub id or local directory.
        layer: ``"patch"``, ``"last"`` or a block index (see the module docstring).
        layout: ``"flat"`` (``[F'*T', dim]``) or ``"time"`` (``[T', F'*dim]``).
        trim: drop time patches that lie entirely in the padding (default: only for ``time``).
        device: ``"auto"`` (cuda when available), ``"cpu"``, ``"cuda:1"`` …
        dtype: ``"float32"`` (default), ``"float16"``, ``"bfloat16"``.
        batch_size: clips per forward pass in :meth:`embed_batch`.
        name: display name (defaults to ``"ast:<source>"``).
        trust_remote_code: allow custom modelling code from the checkpoint (off by default).
    """

    first_name = "patch"
    zero_is_first = True

    def __init__(self, source: str, layer: Any = None, layout: str = "flat",
                 trim: bool | None = None, device: str | None = None,
                 dtype: str | None = None, batch_size: int = 8, name: str | None = None,
                 trust_remote_code: bool = False) -> None:
        import torch
        from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification, ASTModel

        if layout not in {"flat", "time"}:
            raise AuralensError(f"AST layout must be 'flat' or 'time', got {layout!r}")
        trim = (layout == "time") if trim is None else bool_option("trim", trim)
        batch_size = batch_size_option(batch_size)
        self.source = source
        config = load_pretrained(ASTConfig, source, trust_remote_code=trust_remote_code)
        self.config = config
        self.device = pick_device(device)
        self.torch_dtype = torch_dtype(dtype)
        archs = list(getattr(config, "architectures", None) or [])
        kwargs = {"dtype": self.torch_dtype, "trust_remote_code": trust_remote_code}
        if "ASTForAudioClassification" in archs:
            self.classifier = load_pretrained(ASTForAudioClassification, source, **kwargs)
            self.model = self.classifier.audio_spectrogram_transformer
        else:
            self.classifier = None
            self.model = load_pretrained(ASTModel, source, **kwargs)
        for module in (self.classifier, self.model):
            if module is not None:
                module.to(self.device).eval()
        try:
            self.feature_extractor = ASTFeatureExtractor.from_pretrained(source)
        except (OSError, ValueError):
            log.info("%s: no preprocessor_config.json; using AST defaults", source)
            self.feature_extractor = ASTFeatureExtractor(
                num_mel_bins=config.num_mel_bins, max_length=config.max_length)
        fe = self.feature_extractor
        if fe.max_length != config.max_length or fe.num_mel_bins != config.num_mel_bins:
            raise AuralensError(
                f"{source}: feature extractor ({fe.num_mel_bins} mels × {fe.max_length} frames) "
                f"does not match the model ({config.num_mel_bins} × {config.max_length})")
        self.sample_rate = int(fe.sampling_rate)
        self.freq_patches = (config.num_mel_bins - config.patch_size) // config.frequency_stride + 1
        self.time_patches = (config.max_length - config.patch_size) // config.time_stride + 1
        self.layer = self.resolve_layer(layer)
        self.layout = layout
        self.trim = trim
        self.batch_size = batch_size
        hidden = config.hidden_size
        seconds = config.max_length * FBANK_SHIFT
        # The fbank is cut to max_length frames: later audio never reaches the model.
        self.max_duration = float(seconds)
        if layout == "flat":
            self.dim = hidden
            self.frame_rate = self.freq_patches * self.time_patches / seconds
        else:
            self.dim = hidden * self.freq_patches
            self.frame_rate = 1.0 / (config.time_stride * FBANK_SHIFT)
        # Layout/trim change the output, so they are part of the name (cache keys, checkpoints).
        opts = []
        if layout != "flat":
            opts.append(f"layout={layout}")
        if self.trim != (layout == "time"):
            opts.append(f"trim={str(self.trim).lower()}")
        self.name = (name or f"ast:{source}") + ("@" + ",".join(opts) if opts else "")
        self.revision = model_revision(source)
        self._torch = torch

    # ------------------------------------------------------------------ public API
    def num_layers(self) -> int:
        return int(self.config.num_hidden_layers)

    def describe(self) -> dict[str, object]:
        return {**super().describe(), "layout": self.layout, "trim": self.trim,
                "freq_patches": self.freq_patches, "time_patches": self.time_patches,
                "max_duration": self.max_duration}

    @property
    def labels(self) -> list[str]:
        """Class names of a classification checkpoint (empty for a bare ASTModel)."""
        if self.classifier is None:
            return []
        id2label = self.classifier.config.id2label
        return [str(id2label[i]) for i in range(len(id2label))]

    @property
    def min_samples(self) -> int:  # type: ignore[override]
        """One filterbank window: the fewest samples the filterbank takes."""
        return int(round(FBANK_WINDOW * self.sample_rate))

    def valid_time_patches(self, num_samples: int) -> int:
        """Time patches whose first fbank frame lies inside a clip of ``num_samples``."""
        win = int(round(FBANK_WINDOW * self.sample_rate))
        shift = int(round(FBANK_SHIFT * self.sample_rate))
        frames = 1 + max(0, num_samples - win) // shift
        return int(min(self.time_patches, max(1, math.ceil(frames / self.config.time_stride))))

    def features(self, waves: Sequence[np.ndarray]) -> Any:
        """Filterbank input ``[B, max_length, num_mel_bins]`` for ``waves`` (a torch tensor)."""
        batch = [np.asarray(w, dtype=np.float32) for w in waves]
        win = self.min_samples
        for w in batch:
            if w.ndim != 1:
                raise AuralensError(f"AST expects mono [T] waves, got shape {w.shape}")
            if w.shape[0] < win:  # the filterbank needs one whole window
                raise AuralensError(f"AST needs at least {win} samples ({1000 * FBANK_WINDOW:g} ms), "
                                    f"got {w.shape[0]}")
        out = self.feature_extractor(batch, sampling_rate=self.sample_rate, return_tensors="pt")
        return out["input_values"]

    def embed(self, wave: np.ndarray) -> np.ndarray:
        """``[T]`` at 16 kHz → ``[frames, dim]`` (see the module docstring for frames)."""
        return self.embed_batch([wave])[0]

    def embed_batch(self, waves: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Embed clips in batches of :attr:`batch_size` (AST inputs are fixed size)."""
        out: list[np.ndarray] = []
        for i in range(0, len(waves), self.batch_size):
            chunk = list(waves[i : i + self.batch_size])
            states = self._forward(self.features(chunk))  # [B, F'*T', hidden]
            for wave, state in zip(chunk, states, strict=True):
                out.append(self._arrange(state, wave.shape[-1]))
        return out

    def embed_features(self, input_values: Any) -> Any:
        """Hidden states ``[B, F'*T', hidden]`` (torch, special tokens dropped) of fbank input."""
        return self._forward(input_values)

    def classify(self, waves: Sequence[np.ndarray]) -> np.ndarray:
        """Class probabilities ``[B, num_labels]`` (classification checkpoints only)."""
        if self.classifier is None:
            raise AuralensError(f"{self.source} is not an audio classification checkpoint")
        torch = self._torch
        with torch.inference_mode():
            x = self.features(waves).to(self.device, self.torch_dtype)
            logits = self.classifier(input_values=x).logits
        return torch.softmax(logits.float(), dim=-1).cpu().numpy()

    # ------------------------------------------------------------------ internals
    def _forward(self, input_values: Any) -> Any:
        torch = self._torch
        with torch.inference_mode():
            x = input_values.to(self.device, self.torch_dtype)
            if self.layer == "patch":
                # Only the embedding layer is needed: skip the transformer blocks.
                hidden = self.model.embeddings(x)
            else:
                result = self.model(input_values=x, output_hidden_states=True)
                hidden = result.hidden_states[int(self.layer)]
        return hidden[:, NUM_SPECIAL_TOKENS:].float().cpu()

    def _arrange(self, state: Any, num_samples: int) -> np.ndarray:
        """Flat ``[F'*T', h]`` → the configured layout, trimmed when asked."""
        fp, tp = self.freq_patches, self.time_patches
        grid = state.reshape(fp, tp, -1)  # frequency-major, as flattened by the model
        keep = self.valid_time_patches(num_samples) if self.trim else tp
        grid = grid[:, :keep]
        if self.layout == "time":
            arr = grid.permute(1, 0, 2).reshape(keep, -1)  # [T', F'*h]
        else:
            arr = grid.reshape(fp * keep, -1)
        return np.ascontiguousarray(arr.numpy(), dtype=np.float32)


def build_ast(spec: ModelSpec, **params: Any) -> ASTExtractor:
    """Registry factory for ``ast:<hub id or dir>@layer=…,layout=…``."""
    return ASTExtractor(model_source(spec, default="MIT/ast-finetuned-audioset-10-10-0.4593"),
                        **params)


def build_classifier(spec: ModelSpec, **params: Any) -> ASTExtractor:
    """Registry factory for the committed offline ``classifier`` (same code path as ``ast``).

    ``classifier:/other/dir`` loads another directory produced by ``auralens train-classifier``.
    """
    source = Path(spec.id) if spec.id else CLASSIFIER_DIR
    if not (source / "config.json").exists():
        raise ModelUnavailableError(
            str(source), "the offline classifier checkpoint is missing; create one with "
            "`auralens train-classifier DATA --out DIR`")
    params.setdefault("name", "classifier" if not spec.id else f"classifier:{source}")
    return ASTExtractor(str(source), **params)
